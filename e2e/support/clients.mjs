// Client-side helpers: bounded waits, a raw `ws` Action Cable client, and a
// @rails/actioncable consumer running in Node.
import WebSocket from 'ws';
import * as ActionCable from '@rails/actioncable';

/** Resolve `promise` or reject after `ms` with a message naming what we waited for. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Poll `predicate` (sync or async) every `interval` ms until truthy; bounded by `ms`. */
export async function waitUntil(predicate, ms, what, interval = 25) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Observable list: push items, wait for an item matching a predicate (past or future). */
export class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(item)) { w.resolve(item); return false; }
      return true;
    });
  }
  find(pred) {
    return this.items.find(pred);
  }
  wait(pred, ms, what) {
    const found = this.items.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    const d = deferred();
    const waiter = { pred, resolve: d.resolve };
    this.waiters.push(waiter);
    return withTimeout(d.promise, ms, `${what}; got so far: ${summarize(this.items)}`)
      .finally(() => { this.waiters = this.waiters.filter((w) => w !== waiter); });
  }
}

function summarize(items) {
  const shown = items.filter((m) => !(m && m.type === 'ping')).slice(-10);
  return JSON.stringify(shown).slice(0, 2000);
}

/**
 * Minimal Action Cable client on a raw WebSocket: records every frame (parsed),
 * exposes the welcome `sid`, and the close code/reason.
 */
export class RawClient {
  static async connect(url, { protocols = ['actioncable-v1-json'], headers, timeoutMs = 5000 } = {}) {
    const client = new RawClient(url, protocols, headers);
    await withTimeout(client.opened, timeoutMs, `WebSocket open ${url}`);
    return client;
  }

  constructor(url, protocols, headers) {
    this.url = url;
    this.inbox = new Inbox();
    this.ws = new WebSocket(url, protocols, { headers });
    this.closedInfo = null;
    this.upgradeHeaders = null;
    this.ws.on('upgrade', (res) => { this.upgradeHeaders = res.headers; });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closedInfo = { code, reason: reason.toString() };
        resolve(this.closedInfo);
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      let msg;
      try { msg = JSON.parse(data.toString('utf8')); } catch { msg = { $unparsed: data.toString('utf8'), isBinary }; }
      this.inbox.push(msg);
    });
  }

  get messages() { return this.inbox.items; }
  get protocol() { return this.ws.protocol; }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  waitFor(pred, ms = 5000, what = 'a matching message') { return this.inbox.wait(pred, ms, what); }

  async welcome(ms = 5000) {
    return this.waitFor((m) => m.type === 'welcome' || m.type === 'disconnect', ms, 'welcome');
  }

  /** Subscribe and wait for confirm/reject of exactly this identifier string. Returns the reply type. */
  async subscribe(identifier, ms = 5000) {
    const id = typeof identifier === 'string' ? identifier : JSON.stringify(identifier);
    this.send({ command: 'subscribe', identifier: id });
    const reply = await this.waitFor(
      (m) => (m.type === 'confirm_subscription' || m.type === 'reject_subscription') && m.identifier === id,
      ms, `subscription reply for ${id}`);
    return reply.type;
  }

  /** Messages (non-protocol frames) delivered for an identifier. */
  dataFor(identifier) {
    const id = typeof identifier === 'string' ? identifier : JSON.stringify(identifier);
    return this.messages.filter((m) => m.identifier === id && 'message' in m && m.type === undefined);
  }

  waitForData(identifier, pred = () => true, ms = 5000, what = 'data message') {
    const id = typeof identifier === 'string' ? identifier : JSON.stringify(identifier);
    return this.waitFor((m) => m.identifier === id && 'message' in m && m.type === undefined && pred(m.message), ms,
      `${what} for ${id}`);
  }

  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closedInfo;
    this.ws.close();
    return withTimeout(this.closed, 5000, 'WebSocket close').catch(() => { this.ws.terminate(); });
  }
}

// ---------------------------------------------------------------------------
// @rails/actioncable in Node.
//
// The package reads the global WebSocket once at import time and calls the global
// add/removeEventListener("visibilitychange") from its ConnectionMonitor; Node has
// neither (Node 20), so we install no-op listeners and inject ws's WebSocket
// through the library's own `adapters` hook. Every socket the library opens is a
// RecordingWebSocket so tests can inspect the raw frames and close codes.

if (typeof globalThis.addEventListener !== 'function') globalThis.addEventListener = () => {};
if (typeof globalThis.removeEventListener !== 'function') globalThis.removeEventListener = () => {};

const socketsByTag = new Map();
let consumerSeq = 0;

class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.frames = new Inbox();
    this.closeInfo = null;
    this.on('message', (data) => {
      try { this.frames.push(JSON.parse(data.toString('utf8'))); } catch { this.frames.push({ $unparsed: data.toString('utf8') }); }
    });
    this.on('close', (code, reason) => { this.closeInfo = { code, reason: reason.toString() }; });
    this.on('error', () => {});
    const tag = new URL(url).searchParams.get('e2e_consumer');
    if (tag && socketsByTag.has(tag)) socketsByTag.get(tag).push(this);
  }
}
for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
  // keep the enumerable state constants the library iterates over
  Object.defineProperty(RecordingWebSocket, k, { value: WebSocket[k], enumerable: true });
}

ActionCable.adapters.WebSocket = RecordingWebSocket;
ActionCable.adapters.logger = { log: () => {} };

export { ActionCable };

/**
 * createConsumer(url) from @rails/actioncable, plus:
 *  - sockets: every RecordingWebSocket this consumer opened (reconnects add more)
 *  - subscribe(params): creates a subscription whose callbacks feed an event Inbox
 *    (events: {event: 'connected'|'rejected'|'disconnected'|'received', data})
 */
export function nodeConsumer(url) {
  const tag = String(++consumerSeq);
  const u = new URL(url);
  u.searchParams.set('e2e_consumer', tag); // ignored by the server; lets us find our sockets
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
        waitFor(event, pred = () => true, ms = 5000) {
          return events.wait((e) => e.event === event && pred(e.data), ms, `'${event}' on ${subscription.identifier}`);
        },
        received() { return events.items.filter((e) => e.event === 'received').map((e) => e.data); },
      };
    },
    disconnect() {
      consumer.disconnect();
      socketsByTag.delete(tag);
    },
  };
}
