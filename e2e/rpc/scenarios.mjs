// Shared scenario helpers of the RPC e2e files (rpc.test.mjs, rpc_failures.test.mjs): the
// backend kinds to run, identifiers, per-group resources with their cleanup, log dumps on
// failure, markers, and a server paired with its backend.
import { after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from '../support/server.mjs';
import { RawClient, waitUntil } from '../support/clients.mjs';
import { signStreamName } from '../support/signing.mjs';
import { startBackend, broadcastTarget, railsConsumer, coreCable, summarizeCalls } from './support.mjs';

export const SECRET = 'e2e-rpc-secret';
export const KINDS = (process.env.E2E_RPC_KINDS || 'grpc,http').split(',').map((s) => s.trim()).filter(Boolean);

export const id = (channel, params = {}) => JSON.stringify({ channel, ...params });
export const msg = (identifier, data) => ({ command: 'message', identifier, data: JSON.stringify(data) });
let uniq = 0;
export const unique = (prefix) => `${prefix}-${process.pid}-${++uniq}`;

/** Per-scenario-group resources, cleaned up in after(). */
export function resources() {
  const r = { raws: [], rails: [], cores: [], servers: [], backends: [] };
  r.cleanup = async () => {
    for (const c of r.rails) { try { c.disconnect(); } catch { /* */ } }
    for (const c of r.cores) { try { c.disconnect(); } catch { /* */ } }
    await Promise.all(r.raws.map((c) => c.close().catch(() => {})));
    await Promise.all(r.servers.map((s) => s.stop().catch(() => {})));
    await Promise.all(r.backends.map((b) => b.stop().catch(() => {})));
  };
  r.raw = async (srv, { headers, query } = {}) => {
    const c = await RawClient.connect(srv.wsUrl(query || {}), { headers });
    r.raws.push(c);
    return c;
  };
  r.railsConsumer = (srv, headers, query) => {
    const c = railsConsumer(srv.wsUrl(query || {}), headers);
    r.rails.push(c);
    return c;
  };
  r.core = (srv, opts, query) => {
    const c = coreCable(srv.wsUrl(query || {}), opts);
    r.cores.push(c);
    return c;
  };
  return r;
}

/** Attach the backend call log (and server logs) to a failing assertion. */
export function withLogs(getServers, getBackend, fn) {
  return withServerLog(getServers, async (...a) => {
    try {
      return await fn(...a);
    } catch (err) {
      const b = getBackend();
      if (b && err && typeof err === 'object') {
        try {
          const calls = await b.calls();
          err.message += `\n--- ${b.kind} backend: last calls ---\n${summarizeCalls(calls)}\n--- backend output ---\n${b.logTail(10)}`;
        } catch (e) {
          err.message += `\n(backend call log unavailable: ${e.message})`;
        }
      }
      throw err;
    }
  });
}

export async function welcomed(raw) {
  const w = await raw.welcome();
  assert.equal(w.type, 'welcome', `expected a welcome, got ${JSON.stringify(w)}`);
  return w;
}

/** The n-th (1-based) data message for identifier on a raw client. */
export function nthData(raw, identifier, n, ms = 5000) {
  return waitUntil(() => raw.dataFor(identifier)[n - 1], ms, `data message #${n} for ${identifier}; got ${JSON.stringify(raw.dataFor(identifier))}`)
    .then((m) => m.message);
}

/**
 * Subscribes `raw` to a signed `$pubsub` stream, which the server answers itself (no RPC):
 * commands of one connection are handled in order, so once this is confirmed, the commands sent
 * before it are done and whatever they sent has arrived.
 */
export async function commandMarker(raw) {
  const marker = id('$pubsub', { signed_stream_name: signStreamName(unique('marker'), SECRET) });
  assert.equal(await raw.subscribe(marker), 'confirm_subscription', 'the marker subscription');
}

/** No frame matching `pred` came for the commands sent so far (see commandMarker). */
export async function expectNoFrame(raw, pred, what) {
  await commandMarker(raw);
  const found = raw.messages.find(pred);
  assert.equal(found, undefined, `${what}: unexpected frame ${JSON.stringify(found)}`);
}

export function serverArgs(backend, extra = []) {
  return [`--secret=${SECRET}`, `--rpc_host=${backend.rpcHost}`, '--headers=cookie,x-api-token', ...extra];
}

export async function startPair(r, kind, { serverExtra = [], label }) {
  const backend = await startBackend(kind, { appSecret: SECRET, label: `${label}-backend` });
  r.backends.push(backend);
  const server = await startServer({ args: serverArgs(backend, serverExtra), label });
  r.servers.push(server);
  await backend.config(broadcastTarget(server));
  return { backend, server };
}
