// The test application behind both RPC backends (gRPC: grpc_backend.mjs, HTTP: http_backend.mjs).
//
// It is written with @anycable/serverless-js (Application / Channel / ChannelHandle, its
// connect/command/disconnect handlers and its HTTP broadcaster), the JS reference RPC server.
// Both transports feed the SAME handlers with the request in its JSON shape (snake_case proto
// field names, numeric status), so the application behaves identically over gRPC and HTTP.
//
// Two deliberate departures from serverless-js 0.1.0 defaults, to follow the AnyCable RPC
// contract (AnyCable-Go: protocol/protocol.go) the way the Ruby reference server (anycable-rb)
// does:
//  - channel state: Command `env.istate` is the channel's own flat map, and the reply carries
//    only the *changes* (a removed key is sent as ""), instead of serverless-js' JSON blob keyed
//    by identifier. Disconnect `env.istate` is {identifier: JSON text of that channel's map}.
//  - connection rejection transmits {"type":"disconnect","reason":"unauthorized","reconnect":false}.
//
// Besides the app, this module keeps a call log and the failure-injection switches that the
// transports consult (see `control` and `admit`), served by the backends under /_test/*.
import { Application, Channel, ConnectionHandle, ChannelHandle, broadcaster, connectHandler, commandHandler, disconnectHandler, Status } from '@anycable/serverless-js';

export { Status };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Failure injection and call log

const DEFAULT_CONTROL = {
  slow_ms: 0, // delay every admitted call by this many ms
  exhausted_n: 0, // the next N calls answer RESOURCE_EXHAUSTED (HTTP: connection dropped)
  unavailable_n: 0, // the next N calls answer UNAVAILABLE (HTTP: connection dropped)
  fail_n: 0, // the next N calls fail with a non-retryable error (gRPC INTERNAL, HTTP 500)
  max_concurrency: 0, // >0: calls above this many in flight answer RESOURCE_EXHAUSTED (HTTP: dropped)
  methods: ['connect', 'command', 'disconnect'], // which methods the switches above apply to
  nulls: false, // HTTP only: send null instead of empty strings/arrays/maps in responses (as older JS servers do)
  broadcast_url: '', // the anycable-rs HTTP broadcast endpoint (ChatChannel#speak)
  broadcast_key: '',
};

function envInt(name) {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : Number(v);
}

export const control = {
  ...DEFAULT_CONTROL,
  slow_ms: envInt('RPC_SLOW_MS') ?? 0,
  exhausted_n: envInt('RPC_EXHAUSTED_N') ?? 0,
  unavailable_n: envInt('RPC_UNAVAILABLE_N') ?? 0,
  fail_n: envInt('RPC_FAIL_N') ?? 0,
  max_concurrency: envInt('RPC_MAX_CONCURRENCY') ?? 0,
  broadcast_url: process.env.ANYCABLE_BROADCAST_URL || '',
  broadcast_key: process.env.ANYCABLE_HTTP_BROADCAST_SECRET || process.env.ANYCABLE_BROADCAST_KEY || '',
};

const stats = { inflight: 0, max_inflight: 0, attempts: 0, admitted: 0, exhausted: 0, unavailable: 0, failed: 0 };

/**
 * Every attempt that reached the backend: {seq, at, method, sid, protov, outcome, request, response?, error?}.
 * outcome: 'ok' | 'app_error' | 'exhausted' | 'unavailable' | 'failed' | 'unauthorized'.
 */
const calls = [];
let seq = 0;

export function configure(patch) {
  for (const [k, v] of Object.entries(patch || {})) {
    if (!(k in DEFAULT_CONTROL)) throw new Error(`unknown control key: ${k}`);
    control[k] = v;
  }
  return { ...control };
}

export function reset() {
  const keep = { broadcast_url: control.broadcast_url, broadcast_key: control.broadcast_key };
  Object.assign(control, DEFAULT_CONTROL, keep);
  calls.length = 0;
  Object.assign(stats, { inflight: 0, max_inflight: 0, attempts: 0, admitted: 0, exhausted: 0, unavailable: 0, failed: 0 });
}

export function snapshot() {
  return { control: { ...control }, stats: { ...stats }, calls };
}

export function recordCall(entry) {
  const call = { seq: ++seq, at: Date.now(), ...entry };
  calls.push(call);
  if (process.env.RPC_BACKEND_VERBOSE) {
    process.stderr.write(`[rpc-backend] ${call.method} ${call.outcome} sid=${call.sid} ${JSON.stringify(call.request).slice(0, 300)}\n`);
  }
  return call;
}

/**
 * Decide the fate of one incoming attempt. Returns {outcome} for an injected failure, or
 * {outcome: 'ok', release} when the call may run (the caller must call release() afterwards).
 */
export async function admit(method) {
  stats.attempts++;
  const applies = (control.methods || []).includes(method);
  if (applies && control.exhausted_n > 0) {
    control.exhausted_n--;
    stats.exhausted++;
    return { outcome: 'exhausted' };
  }
  if (applies && control.unavailable_n > 0) {
    control.unavailable_n--;
    stats.unavailable++;
    return { outcome: 'unavailable' };
  }
  if (applies && control.fail_n > 0) {
    control.fail_n--;
    stats.failed++;
    return { outcome: 'failed' };
  }
  if (applies && control.max_concurrency > 0 && stats.inflight >= control.max_concurrency) {
    stats.exhausted++;
    return { outcome: 'exhausted' };
  }
  stats.inflight++;
  stats.admitted++;
  stats.max_inflight = Math.max(stats.max_inflight, stats.inflight);
  let released = false;
  const release = () => { if (!released) { released = true; stats.inflight--; } };
  if (applies && control.slow_ms > 0) await sleep(control.slow_ms);
  return { outcome: 'ok', release };
}

// ---------------------------------------------------------------------------
// Connection / channel handles with AnyCable's state semantics

function diffState(before, after) {
  const changes = {};
  for (const [k, v] of Object.entries(after || {})) {
    const s = String(v);
    if (before[k] !== s) changes[k] = s;
  }
  for (const k of Object.keys(before)) {
    if (!after || !(k in after)) changes[k] = '';
  }
  return changes;
}

class RpcConnectionHandle extends ConnectionHandle {
  constructor(id, env) {
    super(id, env || {});
    this.cstateChanges = {};
    this.istateChanges = {};
  }

  /** Connection state as the server sent it, with this call's changes applied. */
  get cstate() {
    const merged = { ...(this.env.cstate || {}) };
    for (const [k, v] of Object.entries(this.cstateChanges)) {
      if (v === '') delete merged[k]; else merged[k] = v;
    }
    return merged;
  }

  setCstate(key, value) {
    this.cstateChanges[key] = value == null ? '' : String(value);
    return this;
  }

  /** Command: the channel's own state map (flat). Disconnect: decoded from {identifier: JSON}. */
  buildChannelHandle(identifier) {
    let state;
    if (this.mode === 'disconnect') {
      const raw = this.env.istate ? this.env.istate[identifier] : undefined;
      state = raw ? JSON.parse(raw) : {};
    } else {
      state = { ...(this.env.istate || {}) };
    }
    const handle = new ChannelHandle(this, identifier, state);
    handle.initialState = { ...state };
    return handle;
  }

  mergeChannelHandle(handle) {
    if (handle.rejected) this.reject();
    for (const transmission of handle.transmissions) {
      this.transmit({ identifier: handle.identifier, message: transmission });
    }
    Object.assign(this.istateChanges, diffState(handle.initialState, handle.state));
    this.streams = this.streams.concat(handle.streams);
    this.stoppedStreams = this.stoppedStreams.concat(handle.stoppedStreams);
    this.stopStreams = this.stopStreams || handle.stopStreams;
    return this;
  }

  get envChanges() {
    const env = {};
    if (Object.keys(this.cstateChanges).length) env.cstate = this.cstateChanges;
    if (Object.keys(this.istateChanges).length) env.istate = this.istateChanges;
    return env;
  }
}

// ---------------------------------------------------------------------------
// Channels

class EchoChannel extends Channel {
  async subscribed() {}

  async echo(handle, _params, data) {
    handle.transmit({ echo: data });
  }
}

class ChatChannel extends Channel {
  constructor(app) {
    super();
    this.app = app;
  }

  async subscribed(handle, params) {
    if (!params || !params.room) {
      handle.reject();
      return;
    }
    const stream = `chat_${params.room}`;
    handle.streamFrom(stream);
    handle.state.room = String(params.room);
    handle.state.$w = stream; // whisper enabled on the room stream
  }

  async speak(handle, params, data) {
    const user = handle.identifiers?.user;
    await this.app.broadcastTo(`chat_${params.room}`, { user, text: data.text });
  }

  async leave_room(handle, params) {
    handle.stopStreamFrom(`chat_${params.room}`);
    handle.transmit({ left: params.room });
  }
}

// Presence on the room stream through the channel state `$p` (what `join_presence` sets).
class PresenceChannel extends Channel {
  async subscribed(handle, params) {
    const stream = `presence_${params?.room || 'lobby'}`;
    handle.streamFrom(stream);
    handle.state.$p = stream;
  }
}

class RejectChannel extends Channel {
  async subscribed(handle) {
    handle.reject();
  }
}

class CounterChannel extends Channel {
  async subscribed(handle) {
    handle.state.count = '0';
    handle.state.since = String(Date.now());
  }

  // The server must send the channel state back with every command: `since` is set on
  // subscribe only and never deleted, so its absence means the istate was not sent.
  async increment(handle) {
    const s = handle.state;
    if (!s.since) {
      handle.transmit({ error: 'istate missing', istate: s });
      return;
    }
    const count = Number(s.count || '0') + 1;
    s.count = String(count);
    handle.transmit({ count, cstate_seen: Boolean(handle.delegate.cstate.connected_at) });
  }

  // Deletes the `count` key (sent as "" = delete) and records the last reset in cstate.
  async reset(handle) {
    delete handle.state.count;
    handle.delegate.setCstate('last_reset', String(Date.now()));
    handle.transmit({ reset: true });
  }
}

class DisconnectChannel extends Channel {
  async kick(handle) {
    handle.transmit({ kicked: true });
    handle.delegate.close();
  }
}

// The subscription takes `ms` milliseconds (param) to be confirmed.
class SlowChannel extends Channel {
  async subscribed(_handle, params) {
    await sleep(Number(params?.ms || 0));
  }
}

// ---------------------------------------------------------------------------
// Application

export class TestApplication extends Application {
  constructor() {
    super();
    this.registerChannel('EchoChannel', new EchoChannel());
    this.registerChannel('ChatChannel', new ChatChannel(this));
    this.registerChannel('RejectChannel', new RejectChannel());
    this.registerChannel('PresenceChannel', new PresenceChannel());
    this.registerChannel('CounterChannel', new CounterChannel());
    this.registerChannel('DisconnectChannel', new DisconnectChannel());
    this.registerChannel('SlowChannel', new SlowChannel());
  }

  buildHandle(id, env) {
    return new RpcConnectionHandle(id, env);
  }

  async broadcastTo(stream, data) {
    if (!control.broadcast_url) throw new Error('broadcast_url is not configured');
    // serverless-js' broadcaster: POST {stream, data: JSON.stringify(data)} with the Bearer key.
    await broadcaster(control.broadcast_url, control.broadcast_key)(stream, data);
  }

  // Authentication: cookie `user=<name>` or header `x-api-token: secret-<name>`.
  async connect(handle) {
    const headers = handle.env.headers || {};
    let user = null;
    const cookie = headers.cookie || '';
    for (const part of cookie.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === 'user') user = decodeURIComponent(part.slice(eq + 1).trim());
    }
    const token = headers['x-api-token'];
    if (!user && token && token.startsWith('secret-')) user = token.slice('secret-'.length);
    if (!user) {
      handle.reject();
      return;
    }
    if (user === 'boom') throw new Error('connect exploded (test backend)'); // -> status ERROR
    handle.identifiedBy({ user });
    handle.setCstate('connected_at', new Date().toISOString());
  }

  async handleOpen(handle) {
    handle.mode = 'connect';
    await this.connect(handle);
    if (handle.rejected) {
      handle.transmit({ type: 'disconnect', reason: 'unauthorized', reconnect: false });
    } else {
      handle.transmit({ type: 'welcome', sid: handle.id });
    }
  }

  async handleCommand(handle, command, identifier, data) {
    handle.mode = 'command';
    return super.handleCommand(handle, command, identifier, data);
  }

  async handleClose(handle, subscriptions) {
    handle.mode = 'disconnect';
    return super.handleClose(handle, subscriptions);
  }
}

export const app = new TestApplication();

const HANDLERS = { connect: connectHandler, command: commandHandler, disconnect: disconnectHandler };

/**
 * Run one RPC method through the serverless-js handler.
 *   payload: the request message in its JSON shape (snake_case; as HTTP RPC sends it)
 *   meta: {sid, protov}
 * Resolves to the response message (JSON shape). Application exceptions become status ERROR.
 */
export async function handleRpc(method, payload, meta = {}) {
  const handler = HANDLERS[method];
  if (!handler) throw new Error(`unknown RPC method ${method}`);
  const headers = { 'content-type': 'application/json' };
  if (meta.sid) headers['x-anycable-meta-sid'] = meta.sid;
  if (meta.protov) headers['x-anycable-meta-protov'] = meta.protov;
  const request = new Request(`http://rpc.invalid/_anycable/${method}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(payload ?? {}),
  });
  try {
    return await handler(request, app);
  } catch (err) {
    return { status: Status.ERROR, error_msg: String(err?.message || err) };
  }
}

/**
 * One attempt as a transport sees it: failure injection, the application, the call log.
 * Resolves to {outcome, response?}; the transport maps outcomes to its own errors
 * (gRPC status codes; HTTP dropped connection / 500).
 */
export async function runCall(method, payload, meta = {}) {
  const { sid = null, protov = null, transport, ...extra } = meta;
  const base = { method, sid, protov, transport, request: payload, ...extra };
  const gate = await admit(method);
  if (gate.outcome !== 'ok') {
    recordCall({ ...base, outcome: gate.outcome });
    return { outcome: gate.outcome };
  }
  try {
    const response = await handleRpc(method, payload, meta);
    const outcome = response.status === Status.ERROR ? 'app_error' : 'ok';
    recordCall({ ...base, outcome, response });
    return { outcome: 'ok', response };
  } finally {
    gate.release();
  }
}

// ---------------------------------------------------------------------------
// Control endpoints (served by both backends over HTTP)
//   GET  /_test/calls[?method=disconnect]  -> call log (JSON array)
//   GET  /_test/state                      -> {control, stats, calls}
//   POST /_test/config {key: value, ...}   -> merge into the failure switches / broadcast target
//   POST /_test/reset                      -> clear the log, stats and switches (keeps broadcast target)

export async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Returns true when the request was a control request (and has been answered). */
export async function handleControl(req, res) {
  const url = new URL(req.url, 'http://backend.local');
  if (!url.pathname.startsWith('/_test/')) return false;
  try {
    const what = url.pathname.slice('/_test/'.length);
    if (req.method === 'GET' && what === 'calls') {
      const method = url.searchParams.get('method');
      sendJson(res, 200, method ? calls.filter((c) => c.method === method) : calls);
    } else if (req.method === 'GET' && what === 'state') {
      sendJson(res, 200, snapshot());
    } else if (req.method === 'POST' && what === 'config') {
      const body = await readBody(req);
      sendJson(res, 200, configure(body ? JSON.parse(body) : {}));
    } else if (req.method === 'POST' && what === 'reset') {
      await readBody(req);
      reset();
      sendJson(res, 200, { ok: true });
    } else {
      sendJson(res, 404, { error: `no control endpoint ${req.method} ${url.pathname}` });
    }
  } catch (err) {
    sendJson(res, 400, { error: String(err?.message || err) });
  }
  return true;
}

/** `--name=value` / `--name value` command-line options. */
export function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) opts[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) opts[a.slice(2)] = argv[++i];
    else opts[a.slice(2)] = 'true';
  }
  return opts;
}
