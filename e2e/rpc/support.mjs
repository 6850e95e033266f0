// Test-side helpers for rpc.test.mjs: launching the RPC backends as child processes
// (so a test can kill and restart them), reading their call log, and clients that send
// request headers (cookies, tokens) — @rails/actioncable through a header-aware ws
// adapter, @anycable/core through its websocketOptions.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createCable } from '@anycable/core';
import { freePort } from '../support/server.mjs';
import { ActionCable, Inbox, withTimeout, waitUntil } from '../support/clients.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const HOST = '127.0.0.1';
const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** hex HMAC-SHA256(secret, "rpc-cable"): the HTTP RPC Bearer key anycable derives from --secret. */
export function rpcSecret(appSecret) {
  return createHmac('sha256', appSecret).update('rpc-cable').digest('hex');
}

/**
 * Start a backend: kind 'grpc' | 'http'.
 * Options: port (default: free port), controlPort (grpc), path (http, default /_anycable),
 * secret / appSecret (http Bearer), env, label.
 * Returns a handle with rpcHost (value for --rpc_host), calls()/state()/config()/reset(),
 * kill(signal) and restart() (same ports).
 */
export async function startBackend(kind, opts = {}) {
  // A port picked by freePort() is released before the backend binds it; another test process
  // may take it meanwhile. Then the backend exits before its ready line: try fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startBackendOnce(kind, opts);
    } catch (err) {
      const retry = attempt < 3 && opts.port === undefined && /exited .* before ready/.test(String(err?.message));
      if (!retry) throw err;
    }
  }
}

async function startBackendOnce(kind, opts) {
  const port = opts.port ?? await freePort();
  const controlPort = kind === 'grpc' ? (opts.controlPort ?? await freePort()) : port;
  const script = path.join(here, kind === 'grpc' ? 'grpc_backend.mjs' : 'http_backend.mjs');
  const rpcPath = opts.path ?? '/_anycable';
  const args = [`--host=${HOST}`, `--port=${port}`];
  if (kind === 'grpc') args.push(`--control-port=${controlPort}`);
  else {
    args.push(`--path=${rpcPath}`);
    if (opts.secret) args.push(`--secret=${opts.secret}`);
    if (opts.appSecret) args.push(`--app-secret=${opts.appSecret}`);
  }
  const label = opts.label ?? `${kind}-backend`;
  const log = [];

  const backend = {
    kind,
    port,
    controlUrl: `http://${HOST}:${controlPort}`,
    rpcHost: kind === 'grpc' ? `${HOST}:${port}` : `http://${HOST}:${port}${rpcPath}`,
    child: null,
    log,
    logTail: (n = 30) => log.slice(-n).join('\n'),
    cmdline: `node ${path.relative(process.cwd(), script)} ${args.join(' ')}`,
    exitInfo: null,
    lastConfig: {},

    async launch() {
      const child = spawn(process.execPath, [script, ...args], {
        env: { ...process.env, ...(opts.env || {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      running.add(child);
      backend.child = child;
      backend.exitInfo = null;
      backend.exited = new Promise((resolve) => child.on('close', (code, signal) => {
        running.delete(child);
        backend.exitInfo = { code, signal };
        resolve(backend.exitInfo);
      }));
      let buf = '';
      const ready = new Promise((resolve, reject) => {
        child.stdout.on('data', (chunk) => {
          buf += chunk.toString('utf8');
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            log.push(`[out] ${line}`);
            try {
              const msg = JSON.parse(line);
              if (msg.ready) resolve(msg);
            } catch { /* not the ready line */ }
          }
        });
        child.on('close', (code) => reject(new Error(`${label} exited (${code}) before ready:\n${log.join('\n')}`)));
      });
      child.stderr.on('data', (chunk) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          log.push(`[err] ${line}`);
          if (log.length > 300) log.shift();
          if (process.env.E2E_VERBOSE) process.stderr.write(`[${label}] ${line}\n`);
        }
      });
      await withTimeout(ready, 15000, `${label} ready line`);
      return backend;
    },

    async control(method, what, body) {
      const res = await fetch(`${backend.controlUrl}/_test/${what}`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      const json = await res.json();
      if (res.status !== 200) throw new Error(`${label} /_test/${what}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    /** The call log, optionally of one method ('connect' | 'command' | 'disconnect'). */
    calls(method) { return backend.control('GET', method ? `calls?method=${method}` : 'calls'); },
    state() { return backend.control('GET', 'state'); },
    async config(patch) {
      Object.assign(backend.lastConfig, patch);
      return backend.control('POST', 'config', patch);
    },
    reset() { return backend.control('POST', 'reset', {}); },

    /** Wait until the call log has a call matching pred; returns it. */
    async waitForCall(pred, ms = 5000, what = 'a matching RPC call') {
      let last = [];
      try {
        return await waitUntil(async () => {
          last = await backend.calls();
          return last.find(pred);
        }, ms, what, 50);
      } catch (err) {
        err.message += `\nbackend calls so far: ${summarizeCalls(last)}`;
        throw err;
      }
    },

    async kill(signal = 'SIGKILL') {
      if (!backend.child || backend.exitInfo) return backend.exitInfo;
      backend.child.kill(signal);
      return backend.exited;
    },
    /** Start again on the same port(s); the call log starts empty; broadcast target is restored. */
    async restart() {
      await backend.kill();
      await backend.launch();
      const keep = {};
      for (const k of ['broadcast_url', 'broadcast_key']) if (backend.lastConfig[k]) keep[k] = backend.lastConfig[k];
      if (Object.keys(keep).length) await backend.config(keep);
      return backend;
    },
    async stop() {
      if (!backend.child || backend.exitInfo) return;
      backend.child.kill('SIGTERM');
      const t = setTimeout(() => backend.child.kill('SIGKILL'), 3000);
      await backend.exited;
      clearTimeout(t);
    },
  };
  await backend.launch();
  return backend;
}

export function summarizeCalls(calls) {
  return JSON.stringify(calls.slice(-15).map((c) => ({
    method: c.method,
    outcome: c.outcome,
    sid: c.sid,
    identifier: c.request?.identifier,
    command: c.request?.command,
    status: c.response?.status,
  })));
}

/** Point the backend's ChatChannel broadcasts at this anycable-rs server. */
export function broadcastTarget(server) {
  return {
    broadcast_url: `http://${server.host}:${server.broadcastPort}/_broadcast`,
    broadcast_key: server.broadcastKey || '',
  };
}

// ---------------------------------------------------------------------------
// @rails/actioncable with request headers.
//
// The library constructs its socket as `new adapters.WebSocket(url, protocols)`: there is no
// way to pass headers. Like support/clients.mjs we install our own ws subclass as the adapter;
// it looks the headers up by a tag in the URL (`e2e_rpc_consumer`, ignored by the server).

const headersByTag = new Map();
const socketsByTag = new Map();
let seq = 0;

class HeaderWebSocket extends WebSocket {
  constructor(url, protocols) {
    const tag = new URL(url).searchParams.get('e2e_rpc_consumer');
    const headers = tag ? headersByTag.get(tag) : undefined;
    super(url, protocols, headers ? { headers } : undefined);
    this.frames = new Inbox();
    this.closeInfo = null;
    this.on('message', (data) => {
      try { this.frames.push(JSON.parse(data.toString('utf8'))); } catch { this.frames.push({ $unparsed: data.toString('utf8') }); }
    });
    this.on('close', (code, reason) => { this.closeInfo = { code, reason: reason.toString() }; });
    this.on('error', () => {});
    if (tag && socketsByTag.has(tag)) socketsByTag.get(tag).push(this);
  }
}
for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
  Object.defineProperty(HeaderWebSocket, k, { value: WebSocket[k], enumerable: true });
}
ActionCable.adapters.WebSocket = HeaderWebSocket;

/**
 * @rails/actioncable consumer whose sockets send `headers` (e.g. {cookie: 'user=alice'}).
 * Same shape as support/clients.mjs nodeConsumer: {consumer, sockets, subscribe(params), disconnect()}.
 */
export function railsConsumer(url, headers = {}) {
  const tag = `rpc${++seq}`;
  const u = new URL(url);
  u.searchParams.set('e2e_rpc_consumer', tag);
  headersByTag.set(tag, headers);
  const sockets = [];
  socketsByTag.set(tag, sockets);
  const consumer = ActionCable.createConsumer(u.toString());
  return {
    consumer,
    sockets,
    subscribe(params) {
      const events = new Inbox();
      const subscription = consumer.subscriptions.create(params, {
        connected(data) { events.push({ event: 'connected', data }); },
        rejected() { events.push({ event: 'rejected' }); },
        disconnected(data) { events.push({ event: 'disconnected', data }); },
        received(data) { events.push({ event: 'received', data }); },
      });
      return {
        subscription,
        events,
        identifier: subscription.identifier,
        perform(action, data) { return subscription.perform(action, data); },
        waitFor(event, pred = () => true, ms = 5000) {
          return events.wait((e) => e.event === event && pred(e.data), ms, `'${event}' on ${subscription.identifier}`);
        },
        received() { return events.items.filter((e) => e.event === 'received').map((e) => e.data); },
      };
    },
    async firstSocket(ms = 5000) {
      return waitUntil(() => sockets[0], ms, 'the consumer to open a WebSocket');
    },
    disconnect() {
      consumer.disconnect();
      headersByTag.delete(tag);
      socketsByTag.delete(tag);
    },
  };
}

// ---------------------------------------------------------------------------
// @anycable/core with request headers (ws accepts {headers} as its third argument).

/**
 * createCable() from @anycable/core over ws. Returns {cable, channel(name, params)} where
 * channel() subscribes and records 'message' events in an Inbox.
 */
export function coreCable(url, { headers, protocol = 'actioncable-v1-json', ...rest } = {}) {
  const cable = createCable(url, {
    websocketImplementation: WebSocket,
    websocketOptions: headers ? { headers } : undefined,
    protocol,
    logLevel: process.env.E2E_VERBOSE ? 'debug' : 'error',
    ...rest,
  });
  const events = new Inbox(); // cable-level: connect / disconnect / close
  cable.on('connect', (ev) => events.push({ event: 'connect', ev }));
  cable.on('disconnect', (ev) => events.push({ event: 'disconnect', reason: ev?.reason }));
  cable.on('close', (ev) => events.push({ event: 'close', reason: ev?.reason }));
  return {
    cable,
    events,
    channel(name, params = {}) {
      const channel = cable.subscribeTo(name, params);
      const inbox = new Inbox();
      channel.on('message', (msg, meta) => inbox.push({ msg, meta }));
      return {
        channel,
        inbox,
        ensureSubscribed: (ms = 5000) => withTimeout(channel.ensureSubscribed(), ms, `${name} ${JSON.stringify(params)} subscription`),
        perform: (action, payload) => channel.perform(action, payload),
        whisper: (payload) => channel.whisper(payload),
        waitMessage: (pred = () => true, ms = 5000, what = 'a message') =>
          inbox.wait((e) => pred(e.msg), ms, `${what} on ${name} ${JSON.stringify(params)}`).then((e) => e.msg),
        messages: () => inbox.items.map((e) => e.msg),
      };
    },
    disconnect() { cable.disconnect(); },
  };
}
