// Installs esm_hooks.mjs (see there). Import this module before anything that loads
// @anycable/serverless-js, and load the latter with a dynamic import() afterwards:
//   import './register.mjs';
//   const { app } = await import('./app.mjs');
// or preload it: node --import ./e2e/rpc/register.mjs ...
import { register } from 'node:module';

register('./esm_hooks.mjs', import.meta.url);
