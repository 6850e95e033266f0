// anycable-rs with an RPC application backend: the same scenarios over gRPC
// (rpc/grpc_backend.mjs, @grpc/grpc-js) and HTTP RPC (rpc/http_backend.mjs,
// @anycable/serverless-js). Clients: @rails/actioncable and @anycable/core in Node (with
// request headers), and a raw `ws` client where the wire itself must be read.
// The backends run as child processes and expose their call log under /_test/* (see rpc/README.md).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { RawClient, withTimeout, waitUntil } from './support/clients.mjs';
import { makeJwt, signStreamName } from './support/signing.mjs';
import { startBackend, broadcastTarget, railsConsumer, coreCable, rpcSecret, sleep, summarizeCalls } from './rpc/support.mjs';
import { SECRET, KINDS, id, msg, unique, resources, withLogs, welcomed, nthData, commandMarker, expectNoFrame, serverArgs, startPair } from './rpc/scenarios.mjs';

for (const kind of KINDS) {
  // -------------------------------------------------------------------------
  describe(`RPC over ${kind}: application scenarios`, () => {
    const r = resources();
    let backend;
    let server;
    const logs = () => [server];
    const t = (fn) => withLogs(logs, () => backend, fn);

    /**
     * The disconnect queue is FIFO: once a session closed *after* the ones in question has had
     * its Disconnect call, any Disconnect for those would have been made already.
     */
    async function flushDisconnects() {
      const user = unique('sentinel');
      const raw = await r.raw(server, { headers: { cookie: `user=${user}` } });
      await welcomed(raw);
      await raw.close();
      await backend.waitForCall((c) => c.method === 'disconnect' && c.request.identifiers === JSON.stringify({ user }),
        5000, `Disconnect of the sentinel session ${user}`);
    }

    before(async () => {
      ({ backend, server } = await startPair(r, kind, { label: `rpc-${kind}` }));
    });
    after(() => r.cleanup());

    it('Connect with a cookie: welcome carries the sid; the request has url, proxied headers, REMOTE_ADDR, protov', t(async () => {
      const sid = unique(`${kind}-req`);
      const raw = await r.raw(server, { headers: { cookie: 'theme=dark; user=alice', 'x-request-id': sid, 'x-not-proxied': 'nope' } });
      const w = await welcomed(raw);
      assert.deepEqual(w, { type: 'welcome', sid }, 'welcome transmitted verbatim by the app, sid = X-Request-ID');

      const call = await backend.waitForCall((c) => c.method === 'connect' && c.sid === sid, 3000, `Connect with sid ${sid}`);
      assert.equal(call.protov, 'v1', 'protov metadata');
      assert.equal(call.request.env.url, server.httpUrl('/cable'), 'env.url = http://<Host><RequestURI>');
      assert.deepEqual(call.request.env.headers, { cookie: 'theme=dark; user=alice', REMOTE_ADDR: '127.0.0.1' },
        'only --headers (cookie, x-api-token) plus REMOTE_ADDR are proxied');
      assert.equal(call.request.env.cstate, undefined, 'no cstate on Connect');
      assert.equal(call.response.identifiers, '{"user":"alice"}');

      // @rails/actioncable with the cookie: the connection is accepted and a subscription confirmed
      const c = r.railsConsumer(server, { cookie: 'user=alice' });
      const sub = c.subscribe({ channel: 'EchoChannel' });
      await sub.waitFor('connected');
      const ws = await c.firstSocket();
      const welcome = ws.frames.find((m) => m.type === 'welcome');
      assert.ok(welcome && /^[A-Za-z0-9_-]{21}$/.test(welcome.sid), `server-generated 21-char sid: ${JSON.stringify(welcome)}`);
      await backend.waitForCall((c2) => c2.method === 'connect' && c2.sid === welcome.sid, 3000, 'Connect with the welcome sid');
    }));

    it('Connect with the x-api-token header (proxied via --headers) through @anycable/core', t(async () => {
      const bob = r.core(server, { headers: { 'x-api-token': 'secret-bob', 'x-not-proxied': '1' } });
      const echo = bob.channel('EchoChannel');
      await echo.ensureSubscribed();
      await echo.perform('echo', { n: 2 });
      const got = await echo.waitMessage((m) => m.echo?.n === 2, 5000, 'echo reply');
      assert.deepEqual(got, { echo: { n: 2 } });

      const calls = await backend.calls();
      const connect = calls.find((c) => c.method === 'connect' && c.request.env?.headers?.['x-api-token'] === 'secret-bob');
      assert.ok(connect, 'Connect carried the x-api-token header');
      assert.equal(connect.request.env.headers['x-not-proxied'], undefined, 'headers outside --headers are not proxied');
      assert.equal(connect.response.identifiers, '{"user":"bob"}');
      const cmds = calls.filter((c) => c.method === 'command' && c.sid === connect.sid);
      assert.ok(cmds.length >= 2, `subscribe + message commands for bob: ${summarizeCalls(cmds)}`);
      for (const c of cmds) assert.equal(c.request.connection_identifiers, '{"user":"bob"}', 'identifiers echoed on every Command');
    }));

    it('Connect rejected (no cookie / bad token): disconnect unauthorized, close 1000, no reconnect, no Disconnect RPC', t(async () => {
      const sid = unique(`${kind}-rejected`);
      const c = r.railsConsumer(server, { 'x-request-id': sid });
      const sub = c.subscribe({ channel: 'EchoChannel' });
      const ws = await c.firstSocket();
      const frame = await ws.frames.wait((m) => m.type === 'disconnect', 5000, 'a disconnect frame');
      assert.deepEqual(frame, { type: 'disconnect', reason: 'unauthorized', reconnect: false });
      assert.ok(!ws.frames.find((m) => m.type === 'welcome'), 'no welcome');
      const ev = await sub.waitFor('disconnected');
      assert.equal(ev.data.willAttemptReconnect, false, '@rails/actioncable must not plan a reconnect');
      await waitUntil(() => ws.closeInfo, 5000, 'server close');
      assert.deepEqual(ws.closeInfo, { code: 1000, reason: 'Auth Failed' });
      assert.ok(!sub.events.find((e) => e.event === 'connected'));

      // @anycable/core with a bad token sees the same reason
      const eve = r.core(server, { headers: { 'x-api-token': 'wrong' } });
      const eveEcho = eve.channel('EchoChannel');
      await assert.rejects(eveEcho.ensureSubscribed(3000));
      const dis = await eve.events.wait((e) => e.event === 'disconnect' || e.event === 'close', 5000, 'core disconnect');
      assert.equal(dis.reason, 'unauthorized');

      const call = await backend.waitForCall((x) => x.method === 'connect' && x.sid === sid, 3000, 'the rejected Connect');
      assert.equal(call.response.status, 2, 'FAILURE');
      await flushDisconnects();
      const disc = (await backend.calls('disconnect')).filter((x) => x.sid === sid || !x.request.identifiers);
      assert.deepEqual(disc, [], 'a session that never connected gets no Disconnect call');
    }));

    it('EchoChannel: perform echo transmits back to the caller; data is forwarded verbatim', t(async () => {
      const c = r.railsConsumer(server, { cookie: 'user=echoer' });
      const sub = c.subscribe({ channel: 'EchoChannel', tag: 'verbatim' });
      await sub.waitFor('connected');
      sub.perform('echo', { text: 'hi ünïcødé', n: 1 });
      const got = await sub.waitFor('received');
      assert.deepEqual(got.data, { echo: { text: 'hi ünïcødé', n: 1 } });

      const calls = await backend.calls('command');
      const subscribe = calls.find((x) => x.request.identifier === sub.identifier && x.request.command === 'subscribe');
      assert.ok(subscribe, 'subscribe command seen');
      assert.equal(subscribe.request.data, undefined, 'no data on subscribe');
      const message = calls.find((x) => x.request.identifier === sub.identifier && x.request.command === 'message');
      assert.equal(message.request.data, JSON.stringify({ text: 'hi ünïcødé', n: 1, action: 'echo' }), 'data string forwarded byte for byte');
    }));

    it('ChatChannel: two rooms, broadcasts only to the right room, whisper, leave_room stops delivery', t(async () => {
      const r1 = unique(`${kind}-room1`);
      const r2 = unique(`${kind}-room2`);
      const alice = r.railsConsumer(server, { cookie: 'user=alice' });
      const aliceR1 = alice.subscribe({ channel: 'ChatChannel', room: r1 });
      const bob = r.core(server, { headers: { 'x-api-token': 'secret-bob' } });
      const bobR2 = bob.channel('ChatChannel', { room: r2 });
      const carol = r.core(server, { headers: { cookie: 'user=carol' } });
      const carolR1 = carol.channel('ChatChannel', { room: r1 });
      await Promise.all([aliceR1.waitFor('connected'), bobR2.ensureSubscribed(), carolR1.ensureSubscribed()]);

      aliceR1.perform('speak', { text: 'hi r1' });
      const fromAlice = { user: 'alice', text: 'hi r1' };
      await aliceR1.waitFor('received', (d) => d.text === 'hi r1');
      assert.deepEqual(await carolR1.waitMessage((m) => m.text === 'hi r1'), fromAlice);

      await bobR2.perform('speak', { text: 'hi r2' });
      assert.deepEqual(await bobR2.waitMessage((m) => m.text === 'hi r2'), { user: 'bob', text: 'hi r2' });

      // whisper: $w = chat_<room> set by the app; reaches others in the room, not the sender
      await carolR1.whisper({ event: 'typing', from: 'carol' });
      await aliceR1.waitFor('received', (d) => d.event === 'typing');
      // a marker broadcast on each room after the whisper: what the whisper could have reached
      // on a room's stream is delivered before it
      for (const [room, n] of [[r1, 1], [r2, 2]]) {
        const res = await server.broadcast({ stream: `chat_${room}`, data: JSON.stringify({ marker: n }) });
        assert.equal(res.status, 201, res.body);
      }
      await aliceR1.waitFor('received', (d) => d.marker === 1);
      await carolR1.waitMessage((m) => m.marker === 1);
      await bobR2.waitMessage((m) => m.marker === 2);
      assert.deepEqual(aliceR1.received(), [fromAlice, { event: 'typing', from: 'carol' }, { marker: 1 }]);
      assert.deepEqual(carolR1.messages(), [fromAlice, { marker: 1 }], 'carol: no r2 message, not her own whisper');
      assert.deepEqual(bobR2.messages(), [{ user: 'bob', text: 'hi r2' }, { marker: 2 }], 'bob (room 2) gets nothing from room 1');

      // the channel state set on subscribe comes back with every command
      const speak = (await backend.calls('command')).find((x) => x.request.data?.includes('hi r1'));
      assert.deepEqual(speak.request.env.istate, { room: r1, $w: `chat_${r1}` });

      // leave_room -> stopped_streams; the transmission comes after the streams were stopped
      aliceR1.perform('leave_room', {});
      await aliceR1.waitFor('received', (d) => d.left === r1);
      await carolR1.perform('speak', { text: 'after leave' });
      await carolR1.waitMessage((m) => m.text === 'after leave');
      // alice's next subscription is confirmed on her connection after 'after leave' was fanned out
      await alice.subscribe({ channel: 'EchoChannel', marker: r1 }).waitFor('connected');
      assert.ok(!aliceR1.received().some((d) => d.text === 'after leave'), `alice left the room: ${JSON.stringify(aliceR1.received())}`);
    }));

    it('RejectChannel: FAILURE + reject_subscription -> rejected callbacks; the connection stays usable', t(async () => {
      const c = r.railsConsumer(server, { cookie: 'user=rejected-sub' });
      const rej = c.subscribe({ channel: 'RejectChannel' });
      await rej.waitFor('rejected');
      const echo = c.subscribe({ channel: 'EchoChannel' });
      await echo.waitFor('connected');
      echo.perform('echo', { still: 'here' });
      await echo.waitFor('received', (d) => d.echo?.still === 'here');
      assert.ok(!rej.events.find((e) => e.event === 'connected'));

      const core = r.core(server, { headers: { cookie: 'user=rejected-core' } });
      await assert.rejects(core.channel('RejectChannel').ensureSubscribed(), (err) => {
        assert.match(String(err?.name || err), /Rejected|Subscription/i);
        return true;
      });
    }));

    it('CounterChannel: istate is sent back with every command; "" deletes a key; cstate changes merge', t(async () => {
      const sid = unique(`${kind}-counter`);
      const raw = await r.raw(server, { headers: { cookie: 'user=counter', 'x-request-id': sid } });
      await welcomed(raw);
      const c1 = id('CounterChannel', { id: 1 });
      const c2 = id('CounterChannel', { id: 2 });
      assert.equal(await raw.subscribe(c1), 'confirm_subscription');
      assert.equal(await raw.subscribe(c2), 'confirm_subscription');

      raw.send(msg(c1, { action: 'increment' }));
      assert.deepEqual(await nthData(raw, c1, 1), { count: 1, cstate_seen: true });
      raw.send(msg(c1, { action: 'increment' }));
      assert.deepEqual(await nthData(raw, c1, 2), { count: 2, cstate_seen: true });
      raw.send(msg(c2, { action: 'increment' }));
      assert.deepEqual(await nthData(raw, c2, 1), { count: 1, cstate_seen: true }, 'each channel has its own state');
      raw.send(msg(c1, { action: 'reset' }));
      assert.deepEqual(await nthData(raw, c1, 3), { reset: true });
      raw.send(msg(c1, { action: 'increment' }));
      assert.deepEqual(await nthData(raw, c1, 4), { count: 1, cstate_seen: true }, 'count deleted by reset, since kept');

      const cmds = (await backend.calls('command')).filter((x) => x.sid === sid && x.request.identifier === c1);
      const last = cmds.at(-1);
      assert.equal(last.request.command, 'message');
      assert.deepEqual(Object.keys(last.request.env.istate).sort(), ['since'], `istate after the delete: ${JSON.stringify(last.request.env.istate)}`);
      assert.ok(last.request.env.cstate.connected_at, 'cstate from Connect');
      assert.ok(last.request.env.cstate.last_reset, 'cstate change from a Command');
      const second = cmds.find((x) => x.request.data === JSON.stringify({ action: 'increment' }) && x.request.env?.istate?.count === '1');
      assert.ok(second, `the second increment saw count=1: ${JSON.stringify(cmds.map((x) => x.request.env?.istate))}`);
    }));

    it('DisconnectChannel: kick transmits first, then the server closes the socket; Disconnect follows', t(async () => {
      const user = unique('kim');
      const raw = await r.raw(server, { headers: { cookie: `user=${user}` } });
      await welcomed(raw);
      const dc = id('DisconnectChannel');
      assert.equal(await raw.subscribe(dc), 'confirm_subscription');
      raw.send(msg(dc, { action: 'kick' }));
      const closed = await withTimeout(raw.closed, 5000, 'the server to close the kicked socket');
      assert.deepEqual(raw.dataFor(dc).map((m) => m.message), [{ kicked: true }], 'the transmission arrives before the close');
      assert.ok([1000, 1006, 1011].includes(closed.code), `close code ${JSON.stringify(closed)}`);
      const disc = await backend.waitForCall((x) => x.method === 'disconnect' && x.request.identifiers === JSON.stringify({ user }),
        5000, 'Disconnect for the kicked session');
      assert.deepEqual(disc.request.subscriptions, [dc]);
    }));

    it('Disconnect RPC: identifiers, current subscriptions, per-channel istate as JSON, cstate, url, sid', t(async () => {
      const sid = unique(`${kind}-dave`);
      const room = unique('r9');
      const raw = await r.raw(server, { headers: { cookie: 'user=dave', 'x-request-id': sid } });
      await welcomed(raw);
      const chat = id('ChatChannel', { room });
      const counter = id('CounterChannel', { id: 9 });
      const echo = id('EchoChannel', { n: 9 });
      for (const x of [chat, counter, echo]) assert.equal(await raw.subscribe(x), 'confirm_subscription');
      raw.send(msg(counter, { action: 'increment' }));
      await nthData(raw, counter, 1);
      raw.send({ command: 'unsubscribe', identifier: echo });
      await backend.waitForCall((x) => x.method === 'command' && x.sid === sid && x.request.command === 'unsubscribe', 3000, 'unsubscribe command');
      await raw.close();

      const disc = await backend.waitForCall((x) => x.method === 'disconnect' && x.request.identifiers === '{"user":"dave"}' && x.request.env?.url,
        5000, 'Disconnect for dave');
      assert.equal(disc.sid, sid, 'sid metadata on Disconnect');
      assert.equal(disc.protov, 'v1');
      assert.deepEqual([...disc.request.subscriptions].sort(), [chat, counter].sort(), 'unsubscribed channel not listed');
      const istate = disc.request.env.istate || {};
      assert.deepEqual(JSON.parse(istate[chat]), { room, $w: `chat_${room}` });
      const cs = JSON.parse(istate[counter]);
      assert.equal(cs.count, '1');
      assert.ok(cs.since);
      assert.equal(istate[echo], undefined, 'no state for the unsubscribed channel');
      assert.ok(disc.request.env.cstate?.connected_at, 'final cstate');
      assert.equal(disc.request.env.url, server.httpUrl('/cable'));
      assert.equal(disc.request.env.headers?.cookie, 'user=dave');
      assert.equal(disc.response.status, 1);
    }));

    it('JWT (?jid=): no Connect call, Commands carry the ext identifiers; Disconnect follows', t(async () => {
      const user = unique('jwt');
      const ext = JSON.stringify({ user });
      const room = unique('jwt-room');
      const c = r.railsConsumer(server, {}, { jid: makeJwt({ user }, SECRET) });
      const sub = c.subscribe({ channel: 'ChatChannel', room });
      await sub.waitFor('connected');
      sub.perform('speak', { text: 'via jwt' });
      const got = await sub.waitFor('received', (d) => d.text === 'via jwt');
      assert.deepEqual(got.data, { user, text: 'via jwt' });

      const ws = await c.firstSocket();
      const welcome = ws.frames.find((m) => m.type === 'welcome');
      assert.ok(welcome?.sid, 'server-made welcome with sid');
      const calls = await backend.calls();
      assert.deepEqual(calls.filter((x) => x.method === 'connect' && x.sid === welcome.sid), [], 'Connect skipped for a valid JWT');
      const cmd = calls.find((x) => x.method === 'command' && x.request.identifier === sub.identifier);
      assert.equal(cmd.request.connection_identifiers, ext);
      assert.equal(cmd.sid, welcome.sid);

      c.disconnect();
      await backend.waitForCall((x) => x.method === 'disconnect' && x.request.identifiers === ext, 5000,
        'Disconnect for the JWT session (it got a Command answer from RPC)');
    }));

    it('signed $pubsub stream: no Command call; a JWT session that only used it gets no Disconnect', t(async () => {
      const user = unique('pubsub');
      const stream = unique(`${kind}-signed`);
      const raw = await r.raw(server, { query: { jid: makeJwt({ user }, SECRET) } });
      await welcomed(raw);
      const ps = id('$pubsub', { signed_stream_name: signStreamName(stream, SECRET) });
      assert.equal(await raw.subscribe(ps), 'confirm_subscription');
      const res = await server.broadcast({ stream, data: JSON.stringify({ via: 'pubsub' }) });
      assert.equal(res.status, 201);
      await raw.waitForData(ps, (m) => m.via === 'pubsub');

      // a cookie (RPC-authenticated) session subscribing to $pubsub: no Command either
      const raw2 = await r.raw(server, { headers: { cookie: 'user=pubsub-cookie' } });
      await welcomed(raw2);
      assert.equal(await raw2.subscribe(ps), 'confirm_subscription');

      await raw.close();
      await flushDisconnects();
      const calls = await backend.calls();
      assert.deepEqual(calls.filter((x) => x.method === 'command' && x.request.identifier?.includes('$pubsub')), [],
        '$pubsub is handled by the server');
      assert.deepEqual(calls.filter((x) => x.method === 'disconnect' && x.request.identifiers === JSON.stringify({ user })), [],
        'no Disconnect for a JWT + signed-streams-only session (disconnect_mode auto)');
    }));

    it('status ERROR: Connect -> close 1011 without transmissions; Command -> nothing sent, the session goes on', t(async () => {
      const mark = server.log.length;
      const sid = unique(`${kind}-boom`);
      const boom = await r.raw(server, { headers: { cookie: 'user=boom', 'x-request-id': sid } });
      const closed = await withTimeout(boom.closed, 5000, 'close after a Connect ERROR');
      assert.equal(closed.code, 1011, `close ${JSON.stringify(closed)}`);
      assert.deepEqual(boom.messages.filter((m) => m.type !== 'ping'), [], 'no transmissions on ERROR');
      const call = await backend.waitForCall((x) => x.method === 'connect' && x.sid === sid, 3000, 'the Connect');
      assert.equal(call.response.status, 0);
      await waitUntil(() => server.log.slice(mark).some((l) => l.includes('connect exploded')), 3000, 'the error_msg in the server log');

      const raw = await r.raw(server, { headers: { cookie: 'user=unlucky' } });
      await welcomed(raw);
      const unknown = id('NoSuchChannel');
      raw.send({ command: 'subscribe', identifier: unknown });
      await backend.waitForCall((x) => x.method === 'command' && x.request.identifier === unknown, 3000, 'the failing Command');
      await expectNoFrame(raw, (m) => m.identifier === unknown, 'reply to a Command with status ERROR');
      const echo = id('EchoChannel', { after: 'error' });
      assert.equal(await raw.subscribe(echo), 'confirm_subscription');
      assert.equal(raw.closedInfo, null, 'still open');
    }));

    it('unsubscribe: the channel stops receiving its streams, other channels keep theirs', t(async () => {
      const room = unique(`${kind}-unsub`);
      const raw = await r.raw(server, { headers: { cookie: 'user=quitter' } });
      await welcomed(raw);
      const chat = id('ChatChannel', { room });
      const chat2 = id('ChatChannel', { room, second: true }); // same stream, second identifier
      assert.equal(await raw.subscribe(chat), 'confirm_subscription');
      assert.equal(await raw.subscribe(chat2), 'confirm_subscription');
      const speaker = r.railsConsumer(server, { cookie: 'user=speaker' });
      const sp = speaker.subscribe({ channel: 'ChatChannel', room });
      await sp.waitFor('connected');
      sp.perform('speak', { text: 'one' });
      await raw.waitForData(chat, (m) => m.text === 'one');
      await raw.waitForData(chat2, (m) => m.text === 'one');

      raw.send({ command: 'unsubscribe', identifier: chat });
      await backend.waitForCall((x) => x.method === 'command' && x.request.command === 'unsubscribe' && x.request.identifier === chat, 3000, 'unsubscribe');
      await commandMarker(raw); // the unsubscribe (its reply applied) is done by then
      sp.perform('speak', { text: 'two' });
      await raw.waitForData(chat2, (m) => m.text === 'two');
      await sp.waitFor('received', (d) => d.text === 'two');
      // a later message on the same stream: a copy of 'two' for the old identifier would come first
      sp.perform('speak', { text: 'three' });
      await raw.waitForData(chat2, (m) => m.text === 'three');
      assert.deepEqual(raw.dataFor(chat).map((m) => m.message.text), ['one'], 'nothing after unsubscribe');
    }));

    it('--proxy-cookies keeps only the listed cookies; --disconnect_mode=always also calls Disconnect for a JWT + $pubsub session', t(async () => {
      const srv = await startServer({ args: serverArgs(backend, ['--proxy-cookies=user,session', '--disconnect_mode=always']), label: `rpc-${kind}-always` });
      r.servers.push(srv);
      const sid = unique(`${kind}-cookies`);
      const raw = await r.raw(srv, { headers: { cookie: 'theme=dark; user=alice; session=xyz', 'x-request-id': sid } });
      await welcomed(raw);
      const call = await backend.waitForCall((x) => x.method === 'connect' && x.sid === sid, 3000, 'Connect');
      assert.equal(call.request.env.headers.cookie, 'user=alice;session=xyz;', 'filtered cookies as name=value; pairs');

      const user = unique('always');
      const jwt = await r.raw(srv, { query: { jid: makeJwt({ user }, SECRET) } });
      await welcomed(jwt);
      const stream = unique('always-stream');
      assert.equal(await jwt.subscribe(id('$pubsub', { signed_stream_name: signStreamName(stream, SECRET) })), 'confirm_subscription');
      await jwt.close();
      await backend.waitForCall((x) => x.method === 'disconnect' && x.request.identifiers === JSON.stringify({ user }), 5000,
        'Disconnect for the JWT session in mode always');
      await srv.stop();
    }));

    it('--disconnect_mode=never: no Disconnect call for an RPC-authenticated session', t(async () => {
      const srv = await startServer({ args: serverArgs(backend, ['--disconnect_mode=never']), label: `rpc-${kind}-never` });
      r.servers.push(srv);
      const user = unique('never');
      const raw = await r.raw(srv, { headers: { cookie: `user=${user}` } });
      await welcomed(raw);
      assert.equal(await raw.subscribe(id('EchoChannel', { never: 1 })), 'confirm_subscription');
      await raw.close();
      // The server makes every queued Disconnect before it exits (see the shutdown test), so once
      // it has exited, a call it decided to make would be in the backend's log.
      const exit = await srv.stop();
      assert.equal(exit.killed, false, `the server exited by itself: ${JSON.stringify(exit)}`);
      const calls = (await backend.calls('disconnect')).filter((x) => x.request.identifiers === JSON.stringify({ user }));
      assert.deepEqual(calls, []);
    }));

    if (kind === 'grpc') {
      it('gRPC targets dns:/// and grpc-list:// (round robin over two backends, one of them killed)', t(async () => {
        const dns = await startServer({ args: serverArgs(backend, []).map((a) => (a.startsWith('--rpc_host=') ? `--rpc_host=dns:///${backend.rpcHost}` : a)), label: 'rpc-grpc-dns' });
        r.servers.push(dns);
        const viaDns = await r.raw(dns, { headers: { cookie: 'user=dns' } });
        await welcomed(viaDns);

        const second = await startBackend('grpc', { label: 'rpc-grpc-second-backend' });
        r.backends.push(second);
        const list = await startServer({
          args: serverArgs(backend, []).map((a) => (a.startsWith('--rpc_host=') ? `--rpc_host=grpc-list://${backend.rpcHost},${second.rpcHost}` : a)),
          label: 'rpc-grpc-list',
        });
        r.servers.push(list);
        const users = Array.from({ length: 6 }, () => unique('rr'));
        for (const user of users) {
          const c = await r.raw(list, { headers: { cookie: `user=${user}` } });
          await welcomed(c);
        }
        const seenBy = async (b) => (await b.calls('connect')).filter((x) => users.includes(x.response?.identifiers && JSON.parse(x.response.identifiers).user)).length;
        const [n1, n2] = [await seenBy(backend), await seenBy(second)];
        assert.equal(n1 + n2, 6);
        assert.ok(n1 >= 1 && n2 >= 1, `both endpoints get calls (round robin): ${n1} + ${n2}`);

        await second.kill('SIGKILL');
        for (let i = 0; i < 4; i++) {
          const c = await r.raw(list, { headers: { cookie: `user=${unique('survivor')}` } });
          await welcomed(c);
        }
        await list.stop();
        await dns.stop();
      }));
    }

    if (kind === 'http') {
      it('HTTP RPC requests: POST JSON with snake_case keys, zero values omitted, x-anycable-meta-* headers', t(async () => {
        const sid = unique('http-shape');
        const raw = await r.raw(server, { headers: { cookie: 'user=shape', 'x-request-id': sid } });
        await welcomed(raw);
        const echo = id('EchoChannel', { shape: 1 });
        assert.equal(await raw.subscribe(echo), 'confirm_subscription');
        raw.send(msg(echo, { action: 'echo', x: 1 }));
        await nthData(raw, echo, 1);
        const calls = (await backend.calls()).filter((x) => x.sid === sid);
        const [connect] = calls.filter((x) => x.method === 'connect');
        const [subscribe, message] = calls.filter((x) => x.method === 'command');
        for (const x of [connect, subscribe, message]) {
          assert.match(x.contentType, /^application\/json/);
          assert.equal(x.protov, 'v1', 'x-anycable-meta-protov');
        }
        const cBody = JSON.parse(connect.rawBody);
        assert.deepEqual(Object.keys(cBody), ['env']);
        assert.deepEqual(Object.keys(cBody.env).sort(), ['headers', 'url'], `Connect env: ${connect.rawBody}`);
        const sBody = JSON.parse(subscribe.rawBody);
        assert.equal(sBody.command, 'subscribe');
        assert.equal(sBody.connection_identifiers, '{"user":"shape"}');
        assert.ok(!('data' in sBody), `no data on subscribe: ${subscribe.rawBody}`);
        assert.ok(!('connectionIdentifiers' in sBody));
        const mBody = JSON.parse(message.rawBody);
        assert.equal(typeof mBody.data, 'string');
        assert.equal(mBody.env.cstate.connected_at, connect.response.env.cstate.connected_at);
      }));

      it('HTTP RPC responses with null fields (as older JS servers send) are treated as absent', t(async () => {
        await backend.config({ nulls: true });
        try {
          const sid = unique('nulls');
          const raw = await r.raw(server, { headers: { cookie: 'user=nully', 'x-request-id': sid } });
          await welcomed(raw);
          const echo = id('EchoChannel', { nulls: true });
          assert.equal(await raw.subscribe(echo), 'confirm_subscription');
          raw.send(msg(echo, { action: 'echo', z: 1 }));
          assert.deepEqual(await nthData(raw, echo, 1), { echo: { z: 1 } });
          const rej = id('RejectChannel', { nulls: true });
          assert.equal(await raw.subscribe(rej), 'reject_subscription');
        } finally {
          await backend.config({ nulls: false });
        }
      }));

      it('HTTP RPC secret: a wrong --http_rpc_secret -> 401 -> close 1011 without frames, not retried; the derived key works explicitly', t(async () => {
        const wrong = await startServer({ args: [`--rpc_host=${backend.rpcHost}`, '--http_rpc_secret=wrong-key'], label: 'rpc-http-wrong-secret' });
        r.servers.push(wrong);
        const sid = unique('wrong-secret');
        const raw = await r.raw(wrong, { headers: { cookie: 'user=wrong', 'x-request-id': sid } });
        const closed = await withTimeout(raw.closed, 6000, 'close after the 401');
        assert.equal(closed.code, 1011, `close ${JSON.stringify(closed)}`);
        assert.deepEqual(raw.messages.filter((m) => m.type !== 'ping'), [], 'no transmissions on an RPC error');
        // a retry would have been made before the server gave up and closed the connection
        const attempts = (await backend.calls('connect')).filter((x) => x.sid === sid);
        assert.deepEqual(attempts.map((x) => x.outcome), ['unauthorized'], '401 is not retried');
        assert.equal(attempts[0].authorization, 'Bearer wrong-key');

        const explicit = await startServer({ args: [`--rpc_host=${backend.rpcHost}`, `--http_rpc_secret=${rpcSecret(SECRET)}`], label: 'rpc-http-explicit-secret' });
        r.servers.push(explicit);
        const ok = await r.raw(explicit, { headers: { cookie: 'user=explicit' } });
        await welcomed(ok);
        await explicit.stop();
        await wrong.stop();
      }));
    }
  });
}
