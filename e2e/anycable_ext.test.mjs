// Reliable streams with the AnyCable JS client: @anycable/core on the extended
// protocol (actioncable-v1-ext-json) against anycable-rs with the memory broker.
// The network is cut with a TCP proxy between client and server (support/proxy.mjs),
// so neither side is told: the client's socket just dies and its reconnects are reset
// until the proxy is restored.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, makeJwt } from './support/signing.mjs';
import { RawClient, waitUntil } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { extCable } from './support/anycable_client.mjs';

const SECRET = 'e2e-anycable-ext-secret';
const nowSec = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The server replays on its own 3 s after a restore if the client never sends `history`;
// waiting past that (see graceProbe) catches duplicates coming from that path too.
const SERVER_FALLBACK_MS = 3000;

let server; // --broker=memory, default history limit
let limited; // --broker=memory --history_limit=2
const proxies = [];
const cables = [];
const raws = [];

function newCable(url, opts) {
  const c = extCable(url, opts);
  cables.push(c);
  return c;
}
async function newProxy(srv) {
  const p = await TcpProxy.start(srv.port);
  proxies.push(p);
  return p;
}
async function publish(srv, stream, n) {
  const res = await srv.broadcast({ stream, data: JSON.stringify({ n }) });
  assert.equal(res.status, 201, `broadcast #${n} to ${stream} -> ${res.status} ${res.body}`);
}
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const ns = (inbox) => inbox.items.map((m) => m.message && m.message.n);

/**
 * Publishes message #n and waits for it: whatever the stream delivered before (a duplicate, a
 * late replay) has arrived by then, as one stream is delivered in order.
 */
async function marker(srv, stream, sub, n) {
  await publish(srv, stream, n);
  await sub.messages.wait((m) => m.message.n === n, 5000, `marker message #${n}`);
}

/**
 * The server lets a restored session's held subscriptions through on its own
 * SERVER_FALLBACK_MS after the restore when the client never asks for history, and shows
 * nothing when there is nothing to let through. To know that this moment has passed for a
 * session restored earlier, a probe session is restored after it, asks for nothing, and gets
 * a message held for it: the message arrives at the probe's own, later, moment.
 * Call before the restore to watch (it opens and closes the probe's first session), then
 * `passed()` after it.
 */
async function graceProbe(srv) {
  const stream = `ext/probe/${Date.now()}/${Math.random()}`;
  const identifier = JSON.stringify({ channel: '$pubsub', stream_name: stream });
  const opts = { protocols: ['actioncable-v1-ext-json'] };
  const first = await RawClient.connect(srv.wsUrl({ jid: makeJwt({ user_id: 'probe' }, SECRET) }), opts);
  raws.push(first);
  const { sid } = await first.welcome();
  assert.equal(await first.subscribe(identifier), 'confirm_subscription');
  await first.close();
  return {
    async passed() {
      const probe = await RawClient.connect(srv.wsUrl({}), { ...opts, headers: { 'X-AnyCable-Restore-Sid': sid } });
      raws.push(probe);
      const welcome = await probe.welcome();
      assert.equal(welcome.restored, true, `the probe session is restored: ${JSON.stringify(welcome)}`);
      await publish(srv, stream, 1);
      await probe.waitForData(identifier, (m) => m.n === 1, SERVER_FALLBACK_MS + 5000,
        'the message held for the probe until its restore grace ended');
    },
  };
}

/** Test body wrapper: on failure append the client's sockets/log and the server output. */
function withDiag(getServers, fn) {
  return withServerLog(getServers, async () => {
    const before = cables.length;
    try {
      return await fn();
    } catch (err) {
      const mine = cables.slice(before);
      if (mine.length && err && typeof err === 'object') {
        try { err.message += `\n${mine.map((c) => c.diagnostics()).join('\n')}`; } catch { /* ignore */ }
      }
      throw err;
    }
  });
}

/** Connect through a fresh proxy, subscribe, and check the live path (messages 1..live). */
async function connectAndReceiveLive(srv, { stream, token, live = 3, signed = false }) {
  const proxy = await newProxy(srv);
  const c = newCable(`ws://127.0.0.1:${proxy.port}/cable?jid=${token}`);
  const sub = c.stream(signed ? signStreamName(stream, SECRET) : stream, { signed });
  await sub.channel.ensureSubscribed();
  const first = c.sockets[0];
  assert.equal(first.protocol, 'actioncable-v1-ext-json', 'server must negotiate the extended sub-protocol');
  const welcome = await first.frames.wait((f) => f.type === 'welcome', 5000, 'welcome');
  assert.ok(typeof welcome.sid === 'string' && welcome.sid.length > 0, `welcome carries a sid: ${JSON.stringify(welcome)}`);
  assert.notEqual(welcome.restored, true, 'the first connection is not a restore');
  const confirm = await first.frames.wait((f) => f.type === 'confirm_subscription', 5000, 'confirm_subscription');
  const identifier = confirm.identifier;
  // anycable-core attaches {since, streams} to its subscribe; the server answers confirm_history
  const subscribeCmd = first.sent.find((m) => m.command === 'subscribe');
  assert.ok(subscribeCmd && subscribeCmd.history && subscribeCmd.history.since > 0,
    `the client subscribes with a history request: ${JSON.stringify(subscribeCmd)}`);
  await first.frames.wait((f) => f.type === 'confirm_history' && f.identifier === identifier, 5000, 'confirm_history after subscribe');

  for (const n of range(1, live)) await publish(srv, stream, n);
  await sub.messages.wait((m) => m.message.n === live, 5000, `live message #${live}`);
  assert.deepEqual(ns(sub.messages), range(1, live), 'live messages in order');
  const metas = sub.messages.items.map((m) => m.meta);
  const epoch = metas[0] && metas[0].epoch;
  assert.ok(typeof epoch === 'string' && epoch.length > 0, `broadcasts carry an epoch: ${JSON.stringify(metas)}`);
  assert.deepEqual(metas, range(1, live).map((o) => ({ stream, epoch, offset: o })),
    'every broadcast carries stream_id/epoch/offset, offsets from 1');
  return { proxy, c, sub, identifier, sid: welcome.sid, epoch };
}

/** Cut the network; wait until the client noticed and has had at least one reconnect reset. */
async function cutNetwork(proxy, c) {
  const disconnectsBefore = c.events.items.filter((e) => e.event === 'disconnect').length;
  proxy.cut();
  await waitUntil(() => c.events.items.filter((e) => e.event === 'disconnect').length > disconnectsBefore, 5000,
    'the client to notice the cut connection');
  assert.notEqual(c.cable.state, 'connected');
  await waitUntil(() => proxy.resets > 0, 5000, 'the client to try reconnecting (and be reset) while the network is down');
}

/** Restore the network; wait for the cable's next connect event (returns it and the new socket). */
async function restoreNetwork(proxy, c) {
  const connectsBefore = c.events.items.filter((e) => e.event === 'connect').length;
  const socketsBefore = c.sockets.length;
  proxy.restore();
  const ev = await waitUntil(() => c.events.items.filter((e) => e.event === 'connect')[connectsBefore], 10000,
    'the client to reconnect after the network came back');
  assert.ok(c.sockets.length > socketsBefore, 'a new socket was opened');
  const socket = c.sockets.find((s, i) => i >= socketsBefore && s.frames.find((f) => f.type === 'welcome'));
  assert.ok(socket, 'one of the new sockets got a welcome');
  return { ev, socket, at: Date.now() };
}

describe('@anycable/core (actioncable-v1-ext-json) with the memory broker', () => {
  before(async () => {
    [server, limited] = await Promise.all([
      startServer({ args: [`--secret=${SECRET}`, '--broker=memory', '--public_streams'], label: 'ext-memory' }),
      startServer({ args: [`--secret=${SECRET}`, '--broker=memory', '--public_streams', '--history_limit=2'], label: 'ext-limit2' }),
    ]);
  });

  after(async () => {
    for (const c of cables) { try { c.disconnect(); } catch { /* closed */ } }
    await Promise.all(raws.map((r) => r.close()));
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all([server?.stop(), limited?.stop()]);
  });

  it('session restore after a network cut: no re-authentication, every missed message exactly once and in order, then live',
    withDiag(() => server, async () => {
      const stream = `ext/restore/${Date.now()}`;
      // A token that expires while the network is down: the restore must not authenticate again.
      const exp = nowSec() + 5;
      const token = makeJwt({ user_id: 'restore' }, SECRET, { exp });
      const { proxy, c, sub, identifier, sid, epoch } = await connectAndReceiveLive(server, { stream, token, live: 3 });
      assert.ok(Date.now() / 1000 < exp - 0.5, 'setup took too long: the token must still be valid when the cut starts');

      const grace = await graceProbe(server);
      await cutNetwork(proxy, c);
      const missed = range(4, 10);
      for (const n of missed) await publish(server, stream, n);

      // wait until the JWT in the client's URL is expired, and prove it: a fresh connection is refused
      await waitUntil(() => Date.now() / 1000 >= exp + 0.2, 10000, 'the token to expire');
      const fresh = await RawClient.connect(server.wsUrl({ jid: token }), { protocols: ['actioncable-v1-ext-json'] });
      raws.push(fresh);
      const refused = await fresh.welcome();
      assert.deepEqual({ type: refused.type, reason: refused.reason }, { type: 'disconnect', reason: 'token_expired' },
        'the token is expired by now (a new session with it is refused)');
      assert.equal(sub.messages.items.length, 3, 'nothing arrives while the network is down');

      const { ev, socket } = await restoreNetwork(proxy, c);
      assert.deepEqual(ev.data, { reconnect: true, restored: true }, 'the client reports a restored session');
      assert.equal(new URL(socket.openedUrl).searchParams.get('sid'), sid, 'the client reconnected with ?sid=<previous sid>');
      const welcome = socket.frames.find((f) => f.type === 'welcome');
      assert.equal(welcome.restored, true, `welcome must say restored: ${JSON.stringify(welcome)}`);
      assert.ok(welcome.sid && welcome.sid !== sid, `the restored connection has a new sid: ${JSON.stringify(welcome)}`);
      assert.deepEqual(welcome.restored_ids, [identifier], 'restored_ids lists the subscription');
      assert.ok(!socket.frames.find((f) => f.type === 'disconnect'), 'no disconnect (no token check on restore)');

      // the client asks for the gap with its last position instead of re-subscribing
      const historyCmd = await socket.sent.wait((m) => m.command === 'history', 5000, 'the history command');
      assert.deepEqual(historyCmd.history.streams, { [stream]: { epoch, offset: 3 } }, 'history from the last seen offset');
      assert.ok(!socket.sent.find((m) => m.command === 'subscribe'), 'no re-subscribe after a restore');

      await sub.messages.wait((m) => m.message.n === 10, 5000, 'the last missed message (#10)');
      await socket.frames.wait((f) => f.type === 'confirm_history' && f.identifier === identifier, 5000, 'confirm_history');
      assert.deepEqual(ns(sub.messages), range(1, 10), 'missed messages arrive exactly once, in order, after the live ones');
      assert.deepEqual(sub.messages.items.slice(3).map((m) => m.meta), missed.map((o) => ({ stream, epoch, offset: o })),
        'replayed messages carry their original offsets');

      // live again
      for (const n of range(11, 13)) await publish(server, stream, n);
      await sub.messages.wait((m) => m.message.n === 13, 5000, 'live message #13 after the restore');
      // past the server's own replay window: still no duplicate anywhere
      await grace.passed();
      await marker(server, stream, sub, 14);
      assert.deepEqual(ns(sub.messages), range(1, 14), 'the whole sequence, no gap, no duplicate');
      assert.ok(!sub.events.find((e) => e.event === 'disconnect'), 'the channel was never told the recovery failed');
      assert.equal(sub.events.items.filter((e) => e.event === 'info' && e.data.type === 'history_not_found').length, 0);
    }));

  it('history on subscribe: messages published since the client started are replayed before confirm_history, then live',
    withDiag(() => server, async () => {
      const stream = `ext/since/${Date.now()}`;
      const proxy = await newProxy(server);
      const since = nowSec();
      const c = newCable(`ws://127.0.0.1:${proxy.port}/cable?jid=${makeJwt({ user_id: 'since' }, SECRET)}`,
        { historyTimestamp: since });
      // published before the subscription exists
      await publish(server, stream, 1);
      await publish(server, stream, 2);
      const sub = c.stream(stream);
      await sub.channel.ensureSubscribed();
      const socket = c.sockets[0];
      const subscribeCmd = socket.sent.find((m) => m.command === 'subscribe');
      assert.equal(subscribeCmd.history.since, since, 'the client sends its start time as history.since');
      // (read from the wire: anycable-core maps the identifier to the channel only after its subscribe
      // promise settles, so a confirm_history in the same read as the confirmation never reaches the
      // channel as a history_received event)
      await socket.frames.wait((f) => f.type === 'confirm_history', 5000, 'confirm_history');
      assert.deepEqual(ns(sub.messages), [1, 2], 'the two earlier messages were replayed');
      const order = socket.frames.items.filter((f) => f.type !== 'ping' && f.type !== 'welcome')
        .map((f) => f.type || `msg${f.message.n}`);
      assert.deepEqual(order, ['confirm_subscription', 'msg1', 'msg2', 'confirm_history'],
        'confirm_subscription, replayed messages, confirm_history');
      await publish(server, stream, 3);
      await sub.messages.wait((m) => m.message.n === 3, 5000, 'live message #3');
      await marker(server, stream, sub, 4);
      assert.deepEqual(ns(sub.messages), [1, 2, 3, 4]);
    }));

  it('signed stream (streamFromSigned) is restored the same way', withDiag(() => server, async () => {
    const stream = `ext/signed/${Date.now()}`;
    const token = makeJwt({ user_id: 'signed' }, SECRET);
    const { proxy, c, sub, sid } = await connectAndReceiveLive(server, { stream, token, live: 2, signed: true });
    await cutNetwork(proxy, c);
    for (const n of range(3, 6)) await publish(server, stream, n);
    const { ev, socket } = await restoreNetwork(proxy, c);
    assert.deepEqual(ev.data, { reconnect: true, restored: true });
    assert.equal(new URL(socket.openedUrl).searchParams.get('sid'), sid);
    await sub.messages.wait((m) => m.message.n === 6, 5000, 'the last missed message (#6)');
    await publish(server, stream, 7);
    await sub.messages.wait((m) => m.message.n === 7, 5000, 'live message #7');
    await marker(server, stream, sub, 8);
    assert.deepEqual(ns(sub.messages), range(1, 8), 'exactly once, in order');
  }));

  it('continuous publishing across the cut and the restore: no gap, no duplicate in the racy window',
    withDiag(() => server, async () => {
      const stream = `ext/race/${Date.now()}`;
      const token = makeJwt({ user_id: 'race' }, SECRET);
      const { proxy, c, sub } = await connectAndReceiveLive(server, { stream, token, live: 1 });
      // a publisher that never pauses: messages land before, during and after the restore handshake
      let next = 2;
      let running = true;
      const publisher = (async () => {
        while (running) {
          await publish(server, stream, next++);
          await sleep(15);
        }
      })();
      // Waits until the publisher has sent `count` more messages.
      const published = (count) => {
        const target = next + count;
        return waitUntil(() => next >= target, 5000, `${count} more publications`);
      };
      try {
        await sub.messages.wait((m) => m.message.n >= 5, 5000, 'live messages before the cut');
        await cutNetwork(proxy, c);
        await published(10);
        const { ev } = await restoreNetwork(proxy, c);
        assert.equal(ev.data.restored, true);
        const restoredAt = next;
        await sub.messages.wait((m) => m.message.n >= restoredAt + 20, 10000, 'live messages after the restore');
      } finally {
        running = false;
        await publisher;
      }
      const last = next;
      await marker(server, stream, sub, last);
      const got = ns(sub.messages);
      const dups = got.filter((n, i) => got.indexOf(n) !== i);
      const missing = range(1, last).filter((n) => !got.includes(n));
      assert.deepEqual({ dups, missing }, { dups: [], missing: [] }, `received ${got.length} of ${last}`);
      assert.deepEqual(got, range(1, last), 'in order');
    }));

  it('raw wire: restore via X-AnyCable-Restore-Sid (wins over ?sid=, skips auth); without a history command only post-restore messages arrive',
    withDiag(() => server, async () => {
      const stream = `ext/raw/${Date.now()}`;
      const identifier = JSON.stringify({ channel: '$pubsub', stream_name: stream });
      const opts = { protocols: ['actioncable-v1-ext-json'] };
      const a = await RawClient.connect(server.wsUrl({ jid: makeJwt({ user_id: 'raw' }, SECRET) }), opts);
      raws.push(a);
      const w1 = await a.welcome();
      assert.equal(w1.type, 'welcome');
      assert.equal(await a.subscribe(identifier), 'confirm_subscription');
      await publish(server, stream, 1);
      const m1 = await a.waitForData(identifier, (m) => m.n === 1);
      assert.equal(m1.offset, 1);
      await a.close();
      await publish(server, stream, 2);
      await publish(server, stream, 3);

      // an invalid token and a bogus ?sid=: the header's sid must win and no authentication happen
      const b = await RawClient.connect(server.wsUrl({ jid: 'not-a-jwt', sid: 'no-such-session' }),
        { ...opts, headers: { 'X-AnyCable-Restore-Sid': w1.sid } });
      raws.push(b);
      const w2 = await b.welcome();
      assert.equal(w2.type, 'welcome', `restored without authentication: ${JSON.stringify(w2)}`);
      assert.equal(w2.restored, true);
      assert.deepEqual(w2.restored_ids, [identifier]);
      await publish(server, stream, 4);
      // No history command: the subscription is held until the server's wait ends, and #4 is
      // let through then; so once it is here, that moment has passed.
      await b.waitForData(identifier, (m) => m.n === 4, SERVER_FALLBACK_MS + 3000, 'message #4 published after the restore');
      await publish(server, stream, 5);
      await b.waitForData(identifier, (m) => m.n === 5, 5000, 'live message #5');
      await publish(server, stream, 6);
      await b.waitForData(identifier, (m) => m.n === 6, 5000, 'marker message #6');
      assert.deepEqual(b.dataFor(identifier).map((m) => [m.message.n, m.offset]), [[4, 4], [5, 5], [6, 6]],
        'only what was published after the restore, once each (the client did not ask for 2 and 3)');
    }));

  it('beyond --history_limit: reject_history (history_not_found), no partial replay, live messages continue',
    withDiag(() => limited, async () => {
      const stream = `ext/limit/${Date.now()}`;
      const token = makeJwt({ user_id: 'limit' }, SECRET);
      const { proxy, c, sub, identifier } = await connectAndReceiveLive(limited, { stream, token, live: 3 });
      const grace = await graceProbe(limited);

      await cutNetwork(proxy, c);
      // offsets 4..8; only 7 and 8 are retained, the client's position (3) is gone
      for (const n of range(4, 8)) await publish(limited, stream, n);

      const { ev, socket } = await restoreNetwork(proxy, c);
      assert.deepEqual(ev.data, { reconnect: true, restored: true }, 'the session itself is restored');
      const historyCmd = await socket.sent.wait((m) => m.command === 'history', 5000, 'the history command');
      assert.equal(historyCmd.history.streams[stream].offset, 3);
      const info = await sub.events.wait((e) => e.event === 'info' && e.data.type === 'history_not_found', 5000,
        'the history_not_found info event');
      assert.ok(info);
      const reject = socket.frames.find((f) => f.type === 'reject_history');
      assert.equal(reject && reject.identifier, identifier, 'reject_history for the subscription');
      assert.ok(!socket.frames.find((f) => f.type === 'confirm_history'), 'no confirm_history');

      // still subscribed: live messages flow
      await publish(limited, stream, 9);
      await sub.messages.wait((m) => m.message.n === 9, 5000, 'live message #9 after reject_history');
      await grace.passed();
      await marker(limited, stream, sub, 10);
      assert.deepEqual(ns(sub.messages), [1, 2, 3, 9, 10], 'no partial replay of the retained tail (7, 8)');
      assert.equal(sub.events.items.filter((e) => e.event === 'info' && e.data.type === 'history_not_found').length, 1);
    }));
});
