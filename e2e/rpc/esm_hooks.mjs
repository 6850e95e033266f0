// Module resolution hook for @anycable/serverless-js 0.1.0 under plain Node ESM.
//
// The package is published as "type": "module" but its compiled dist/ uses extensionless
// directory imports (`export { Status } from './rpc'`), which only bundlers accept; Node
// throws ERR_UNSUPPORTED_DIR_IMPORT. This hook resolves such specifiers (inside that package
// only) to `<dir>/index.js`, exactly what a bundler would do. Registered by register.mjs.
export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const fromServerless = context.parentURL && context.parentURL.includes('/@anycable/serverless-js/');
    if (fromServerless && (err.code === 'ERR_UNSUPPORTED_DIR_IMPORT' || err.code === 'ERR_MODULE_NOT_FOUND') && specifier.startsWith('.')) {
      const base = specifier.replace(/\/$/, '');
      try {
        return await nextResolve(`${base}/index.js`, context);
      } catch {
        return nextResolve(`${base}.js`, context);
      }
    }
    throw err;
  }
}
