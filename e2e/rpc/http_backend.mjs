#!/usr/bin/env node
// HTTP RPC backend for anycable-rs built with @anycable/serverless-js, running the test
// application of app.mjs.
//
//   node e2e/rpc/http_backend.mjs [--host=127.0.0.1] [--port=3000] [--path=/_anycable]
//        [--secret=BEARER | --app-secret=SECRET | --secret=none]
//        [--broadcast-url=http://127.0.0.1:8080/_broadcast] [--broadcast-key=KEY]
//
// anycable-rs: --rpc_host=http://127.0.0.1:3000/_anycable plus either --http_rpc_secret=BEARER
// (backend: --secret=BEARER) or --secret=SECRET (backend: --app-secret=SECRET, which derives the
// same Bearer key: hex HMAC-SHA256(SECRET, "rpc-cable")). Env fallbacks: ANYCABLE_HTTP_RPC_SECRET,
// ANYCABLE_SECRET. Without any secret the Authorization header is not checked.
//
// Routes: POST <path>/connect|command|disconnect (RPC), /_test/* (control, see app.mjs).
// When ready, prints one JSON line to stdout: {"ready":true,"transport":"http","port":..,"path":..}.
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import './register.mjs';

// Dynamic import: the module hook of register.mjs must be in place before serverless-js loads.
const { runCall, handleControl, parseArgs, configure, readBody, recordCall, control } = await import('./app.mjs');

const opts = parseArgs(process.argv.slice(2));
const host = opts.host || '127.0.0.1';
const port = Number(opts.port ?? process.env.PORT ?? 3000);
const basePath = `/${(opts.path ?? '/_anycable').replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '');
if (opts['broadcast-url']) configure({ broadcast_url: opts['broadcast-url'] });
if (opts['broadcast-key']) configure({ broadcast_key: opts['broadcast-key'] });

function deriveRpcSecret(appSecret) {
  return createHmac('sha256', appSecret).update('rpc-cable').digest('hex');
}

let secret = opts.secret ?? process.env.ANYCABLE_HTTP_RPC_SECRET ?? '';
if (!secret) {
  const appSecret = opts['app-secret'] ?? process.env.ANYCABLE_SECRET ?? '';
  if (appSecret) secret = deriveRpcSecret(appSecret);
}
if (secret === 'none') secret = '';

function authorized(req) {
  if (!secret) return true;
  const got = Buffer.from(String(req.headers.authorization || ''));
  const want = Buffer.from(`Bearer ${secret}`);
  return got.length === want.length && timingSafeEqual(got, want);
}

// Empty values -> null, recursively one level into env (AnyCable-Go decodes HTTP RPC replies
// with Go's encoding/json, so null means absent).
function withNulls(response) {
  const out = {};
  for (const [k, v] of Object.entries(response)) {
    const empty = v === '' || v === false || (Array.isArray(v) && v.length === 0) ||
      (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0);
    if (k === 'status') out[k] = v;
    else if (empty) out[k] = null;
    else if (k === 'env') out[k] = { cstate: v.cstate ?? null, istate: v.istate ?? null };
    else out[k] = v;
  }
  return out;
}

const METHODS = new Set(['connect', 'command', 'disconnect']);

const server = http.createServer(async (req, res) => {
  try {
    if (await handleControl(req, res)) return;
    const { pathname } = new URL(req.url, 'http://backend.local');
    const method = pathname.startsWith(`${basePath}/`) ? pathname.slice(basePath.length + 1) : null;
    if (req.method !== 'POST' || !METHODS.has(method)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`not found: ${req.method} ${pathname}\n`);
      return;
    }
    const raw = await readBody(req);
    const meta = {
      sid: req.headers['x-anycable-meta-sid'] ?? null,
      protov: req.headers['x-anycable-meta-protov'] ?? null,
      transport: 'http',
    };
    let payload;
    try {
      payload = JSON.parse(raw || '{}');
    } catch {
      res.writeHead(422, { 'content-type': 'text/plain' });
      res.end('request body is not JSON\n');
      return;
    }
    if (!authorized(req)) {
      recordCall({ method, ...meta, outcome: 'unauthorized', request: payload, authorization: req.headers.authorization ?? null });
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end('unauthorized\n');
      return;
    }
    const { outcome, response } = await runCall(method, payload, {
      ...meta,
      // what only HTTP shows: the raw body and the request headers
      rawBody: raw,
      contentType: req.headers['content-type'] ?? null,
    });
    if (outcome === 'exhausted' || outcome === 'unavailable') {
      // HTTP RPC has no RESOURCE_EXHAUSTED: only transport errors are retried (docs/rpc.md),
      // so an overloaded/unavailable backend drops the connection without a response.
      req.socket.destroy();
      return;
    }
    if (outcome === 'failed') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('injected internal error (test backend)\n');
      return;
    }
    const text = JSON.stringify(control.nulls ? withNulls(response) : response);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`backend error: ${err?.message || err}\n`);
  }
});
server.keepAliveTimeout = 30000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const bound = server.address().port;
process.stdout.write(`${JSON.stringify({ ready: true, transport: 'http', host, port: bound, path: basePath, secret_required: Boolean(secret) })}\n`);
process.stderr.write(`HTTP RPC backend on http://${host}:${bound}${basePath} (anycable-rs --rpc_host=http://${host}:${bound}${basePath}${secret ? ' with the matching Bearer secret' : ''}); control http://${host}:${bound}/_test/state\n`);

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
