// Starts the real anycable-rs binary for a test file and stops it again.
//
//   const server = await startServer({ args: ['--secret=s3Krit', '--turbo_streams'] });
//   server.wsUrl({ jid: token })     -> ws://127.0.0.1:<port>/cable?jid=...
//   await server.broadcast({ stream: 'x', data: '"hi"' })   -> 201 expected
//   await server.stop()
//
// Binary: $ANYCABLE_BIN, default <repo>/target/release/anycable-rs.
// Ports: picked by binding port 0 on 127.0.0.1 (then released), passed as --port and,
// when the broadcast endpoint would otherwise land on the fixed default 8090,
// --http_broadcast_port. The server is ready once GET /health on the main port is 200.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { broadcastKey as deriveBroadcastKey } from './signing.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..');
export const ANYCABLE_BIN = process.env.ANYCABLE_BIN
  ? path.resolve(process.env.ANYCABLE_BIN)
  : path.join(REPO_ROOT, 'target', 'release', 'anycable-rs');

const HOST = '127.0.0.1';
const LOG_LIMIT = 400; // lines kept per server for failure messages
const usedPorts = new Set();
const running = new Set();

process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** A currently free TCP port on 127.0.0.1 (never handed out twice by this process). */
export async function freePort() {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, HOST, () => {
        const { port: p } = srv.address();
        srv.close(() => resolve(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('could not find a free port');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function hasFlag(args, name) {
  return args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
}
function flagValue(args, name) {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : undefined;
}

async function httpStatus(url, timeoutMs) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/**
 * Start the server. Options:
 *  - args: extra CLI flags (AnyCable-Go names). --port/--host are added unless given.
 *  - env: extra environment variables (merged over process.env).
 *  - broadcastPort: 'auto' (default: separate port unless a --secret/--broadcast_key puts
 *    the endpoint on the main port), 'separate' or 'main'.
 *  - readyTimeoutMs: bound for the /health wait (default 20 s).
 *  - label: name used in log output.
 */
export async function startServer({ args = [], env = {}, broadcastPort = 'auto', readyTimeoutMs = 20000, label = 'anycable-rs' } = {}) {
  if (!existsSync(ANYCABLE_BIN)) {
    throw new Error(`anycable-rs binary not found at ${ANYCABLE_BIN}; run \`cargo build --release\` or set ANYCABLE_BIN`);
  }
  let lastError;
  // Retry with fresh ports if the process dies before becoming healthy (e.g. a port race).
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce({ args, env, broadcastPort, readyTimeoutMs, label });
    } catch (err) {
      lastError = err;
      if (!err.exitedEarly) break;
    }
  }
  throw lastError;
}

async function startOnce({ args, env, broadcastPort, readyTimeoutMs, label }) {
  const port = hasFlag(args, 'port') ? Number(flagValue(args, 'port')) : await freePort();
  const finalArgs = [...args];
  if (!hasFlag(args, 'port')) finalArgs.push(`--port=${port}`);
  if (!hasFlag(args, 'host')) finalArgs.push(`--host=${HOST}`);

  let bPort;
  if (hasFlag(args, 'http_broadcast_port')) {
    bPort = Number(flagValue(args, 'http_broadcast_port'));
  } else {
    const securedOnMain = (hasFlag(args, 'secret') && flagValue(args, 'secret') !== 'none') ||
      (hasFlag(args, 'broadcast_key') && flagValue(args, 'broadcast_key') !== 'none');
    const separate = broadcastPort === 'separate' || (broadcastPort === 'auto' && !securedOnMain);
    if (separate) {
      bPort = await freePort();
      finalArgs.push(`--http_broadcast_port=${bPort}`);
    } else {
      bPort = port;
    }
  }

  const log = [];
  const partial = { out: '', err: '' };
  const addLine = (stream, line) => {
    if (!line) return;
    log.push(`[${stream}] ${line}`);
    if (log.length > LOG_LIMIT) log.shift();
    if (process.env.E2E_VERBOSE) process.stderr.write(`[${label}:${port} ${stream}] ${line}\n`);
  };
  const push = (stream) => (chunk) => {
    const lines = (partial[stream] + chunk.toString('utf8')).split('\n');
    partial[stream] = lines.pop();
    for (const line of lines) addLine(stream, line);
  };
  const flushPartial = () => {
    for (const s of ['out', 'err']) { addLine(s, partial[s]); partial[s] = ''; }
  };

  const child = spawn(ANYCABLE_BIN, finalArgs, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.stdout.on('data', push('out'));
  child.stderr.on('data', push('err'));

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      flushPartial();
      exitInfo = { code, signal };
      running.delete(child);
      resolve(exitInfo);
    });
    child.on('error', (err) => {
      exitInfo = { code: null, signal: null, error: err };
      running.delete(child);
      resolve(exitInfo);
    });
  });

  const cmdline = `${ANYCABLE_BIN} ${finalArgs.join(' ')}`;
  const logTail = (n = 60) => [...log, ...['out', 'err'].filter((k) => partial[k]).map((k) => `[${k}] ${partial[k]}`)].slice(-n).join('\n');

  const deadline = Date.now() + readyTimeoutMs;
  let status = 0;
  while (Date.now() < deadline) {
    if (exitInfo) break;
    status = await httpStatus(`http://${HOST}:${port}/health`, 1000);
    if (status === 200) break;
    await sleep(100);
  }
  if (status !== 200) {
    const early = Boolean(exitInfo);
    if (!exitInfo) {
      child.kill('SIGKILL');
      await exited;
    }
    const err = new Error(
      `${label} did not become healthy (GET /health on port ${port} -> ${status || 'no answer'}) ` +
      `within ${readyTimeoutMs} ms; ${early ? `process exited ${JSON.stringify(exitInfo)}` : 'killed'}\n` +
      `command: ${cmdline}\n--- server output ---\n` +
      (log.length > 60 ? `${log.slice(0, 20).join('\n')}\n[... ${log.length - 60} lines ...]\n${logTail(40)}` : logTail()),
    );
    err.exitedEarly = early;
    throw err;
  }

  const server = {
    host: HOST,
    port,
    broadcastPort: bPort,
    args: finalArgs,
    cmdline,
    child,
    exited,
    get exitInfo() { return exitInfo; },
    log,
    logTail,
    httpUrl(p = '/') { return `http://${HOST}:${port}${p}`; },
    /** ws://host:port/cable with the given query params (undefined values are skipped). */
    wsUrl(query = {}, p = '/cable') {
      const u = new URL(`ws://${HOST}:${port}${p}`);
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) u.searchParams.set(k, v);
      return u.toString();
    },
    /**
     * POST a publication (object, array or raw string) to /_broadcast.
     * `key`: bearer token (string) or null for no Authorization header.
     * Returns { status, body }.
     */
    async broadcast(body, { key = server.broadcastKey, path: p = '/_broadcast' } = {}) {
      const headers = { 'Content-Type': 'application/json' };
      if (key) headers.Authorization = `Bearer ${key}`;
      const res = await fetch(`http://${HOST}:${bPort}${p}`, {
        method: 'POST',
        headers,
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      return { status: res.status, body: await res.text() };
    },
    /** Key sent by broadcast(): --broadcast_key, else derived from --secret, else none. */
    broadcastKey: defaultBroadcastKey(finalArgs),
    /** SIGTERM, wait up to timeoutMs, then SIGKILL. Resolves to { code, signal, killed }. */
    async stop(timeoutMs = 15000) {
      if (exitInfo) return { ...exitInfo, killed: false };
      child.kill('SIGTERM');
      let timer;
      const result = await Promise.race([
        exited.then((info) => ({ ...info, killed: false })),
        new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
      ]);
      clearTimeout(timer);
      if (result) return result;
      child.kill('SIGKILL');
      const info = await exited;
      return { ...info, killed: true };
    },
  };
  return server;
}

function defaultBroadcastKey(args) {
  const explicit = flagValue(args, 'broadcast_key');
  if (explicit && explicit !== 'none') return explicit;
  if (explicit === 'none') return undefined;
  const secret = flagValue(args, 'secret');
  if (secret) return deriveBroadcastKey(secret);
  return undefined;
}

/**
 * Wrap a test body so that a failure carries the tail of the server output(s).
 *   it('does x', withServerLog(() => server, async () => { ... }))
 */
export function withServerLog(getServers, fn) {
  return async (...testArgs) => {
    try {
      return await fn(...testArgs);
    } catch (err) {
      let servers = getServers();
      if (!Array.isArray(servers)) servers = [servers];
      const tails = servers.filter(Boolean).map((s) =>
        `--- ${s.cmdline}${s.exitInfo ? ` (exited ${JSON.stringify(s.exitInfo)})` : ''} ---\n${s.logTail(40)}`);
      if (tails.length && err && typeof err === 'object') {
        try {
          err.message = `${err.message}\n${tails.join('\n')}`;
        } catch { /* read-only message */ }
      }
      throw err;
    }
  };
}
