// anycable-rs with an RPC application backend that fails: over gRPC and HTTP RPC, what the
// clients see when the backend errors, is slow or down, and how disconnects are queued and
// drained (helpers in rpc/scenarios.mjs, backends in rpc/README.md).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { RawClient, withTimeout, waitUntil } from './support/clients.mjs';
import { makeJwt, signStreamName } from './support/signing.mjs';
import { startBackend, broadcastTarget, railsConsumer, coreCable, rpcSecret, sleep, summarizeCalls } from './rpc/support.mjs';
import { SECRET, KINDS, id, msg, unique, resources, withLogs, welcomed, nthData, commandMarker, expectNoFrame, serverArgs, startPair } from './rpc/scenarios.mjs';

for (const kind of KINDS) {
  // -------------------------------------------------------------------------
  describe(`RPC over ${kind}: failures`, () => {
    const r = resources();
    let current = { server: null, backend: null };
    const t = (fn) => withLogs(() => [current.server], () => current.backend, fn);
    after(() => r.cleanup());

    it('backend killed mid-session: the command gets no reply, the session is not stuck, an error is logged; after a restart it all works', t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_command_timeout=1500'], label: `rpc-${kind}-kill` });
      current = { backend, server };
      const raw = await r.raw(server, { headers: { cookie: 'user=survivor' } });
      await welcomed(raw);
      const echo = id('EchoChannel');
      assert.equal(await raw.subscribe(echo), 'confirm_subscription');
      raw.send(msg(echo, { action: 'echo', when: 'before' }));
      await raw.waitForData(echo, (m) => m.echo?.when === 'before');

      const mark = server.log.length;
      await backend.kill('SIGKILL');
      raw.send(msg(echo, { action: 'echo', when: 'during' }));
      await expectNoFrame(raw, (m) => m.message?.echo?.when === 'during', 'echo while the backend is down');

      // not stuck: server-side features still answer on the same session
      const stream = unique('while-down');
      const ps = id('$pubsub', { signed_stream_name: signStreamName(stream, SECRET) });
      assert.equal(await raw.subscribe(ps, 5000), 'confirm_subscription');
      assert.equal((await server.broadcast({ stream, data: '{"alive":true}' })).status, 201);
      await raw.waitForData(ps, (m) => m.alive === true);

      // a new client cannot authenticate: Connect fails -> 1011 without transmissions
      const newcomer = await r.raw(server, { headers: { cookie: 'user=newcomer' } });
      const closed = await withTimeout(newcomer.closed, 8000, 'the newcomer to be closed');
      assert.equal(closed.code, 1011, `newcomer close ${JSON.stringify(closed)}`);
      assert.ok(!newcomer.messages.find((m) => m.type === 'welcome'));

      await waitUntil(() => server.log.slice(mark).some((l) => /\b(ERR|ERROR)\b|level=error/i.test(l)), 3000, 'an error line in the server log after the kill');
      assert.equal((await fetch(server.httpUrl('/health'))).status, 200);

      await backend.restart();
      // new connections work again (gRPC reconnect backoff / HTTP circuit breaker may take a few seconds)
      const deadline = Date.now() + 20000;
      let welcome = null;
      while (!welcome && Date.now() < deadline) {
        const probe = await r.raw(server, { headers: { cookie: 'user=after-restart' } });
        welcome = await probe.welcome(3000).catch(() => null);
        if (welcome?.type !== 'welcome') { welcome = null; await probe.close(); await sleep(500); }
      }
      assert.ok(welcome, 'a new connection was welcomed within 20 s of the backend restart');
      raw.send(msg(echo, { action: 'echo', when: 'after' }));
      await raw.waitForData(echo, (m) => m.echo?.when === 'after', 5000, 'echo on the old session after the restart');
    }));

    it('backend slower than --rpc_command_timeout: no confirmation, other clients unaffected, session usable', t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_command_timeout=1000'], label: `rpc-${kind}-slow` });
      current = { backend, server };
      const a = await r.raw(server, { headers: { cookie: 'user=patient' } });
      await welcomed(a);
      const slow = id('SlowChannel', { ms: 2500 });
      const mark = server.log.length;
      const t0 = Date.now();
      a.send({ command: 'subscribe', identifier: slow });

      // meanwhile another client connects (Connect RPC) and uses a channel (Command RPC)
      const b = await r.raw(server, { headers: { cookie: 'user=other' } });
      await welcomed(b);
      const echo = id('EchoChannel');
      assert.equal(await b.subscribe(echo), 'confirm_subscription');
      b.send(msg(echo, { action: 'echo', fast: true }));
      await b.waitForData(echo, (m) => m.echo?.fast === true);
      const otherMs = Date.now() - t0;
      assert.ok(otherMs < 1500, `the other client was served in ${otherMs} ms while the slow call was pending`);

      // the backend answers after 2.5 s; the server gave up at 1 s and must not apply the late reply
      await waitUntil(() => server.log.slice(mark).some((l) => /\b(ERR|ERROR)\b|level=error/i.test(l) && /timed out|timeout|deadline/i.test(l)), 3000, 'the timeout logged');
      await backend.waitForCall((x) => x.method === 'command' && x.request.identifier === slow, 5000, 'the late answer of the backend');
      assert.equal(await a.subscribe(echo), 'confirm_subscription', 'the session is still usable');
      const late = a.messages.find((m) => m.identifier === slow);
      assert.equal(late, undefined, `slow subscription: unexpected frame ${JSON.stringify(late)}`);
      await a.close();
      const disc = await backend.waitForCall((x) => x.method === 'disconnect' && x.request.identifiers === '{"user":"patient"}', 5000, 'Disconnect');
      assert.deepEqual(disc.request.subscriptions, [echo], 'the timed-out subscription was never added');
    }));

    it('--rpc_request_timeout bounds each attempt; a timed-out attempt is not retried', t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_request_timeout=300', '--rpc_command_timeout=5000'], label: `rpc-${kind}-attempt` });
      current = { backend, server };
      const a = await r.raw(server, { headers: { cookie: 'user=attempt' } });
      await welcomed(a);
      const mark = server.log.length;
      const slow = id('SlowChannel', { ms: 1200 });
      const attemptsBefore = (await backend.state()).stats.attempts;
      const t0 = Date.now();
      a.send({ command: 'subscribe', identifier: slow });
      await waitUntil(() => server.log.slice(mark).some((l) => /\b(ERR|ERROR)\b|level=error/i.test(l)), 3000, 'the failed call logged');
      const failedAfter = Date.now() - t0;
      assert.ok(failedAfter < 1100, `the call failed after the 300 ms attempt timeout, not the backend's 1200 ms (${failedAfter} ms)`);
      await backend.waitForCall((x) => x.method === 'command' && x.request.identifier === slow, 3000, 'the late answer of the backend');
      // a command after it: its reply comes after anything the late answer could have caused
      assert.equal(await a.subscribe(id('EchoChannel')), 'confirm_subscription');
      assert.equal(a.messages.find((m) => m.identifier === slow), undefined, 'no late confirmation');
      // the backend counts attempts as they arrive: the slow one and the echo subscribe, no retry
      assert.equal((await backend.state()).stats.attempts - attemptsBefore, 2, 'DEADLINE_EXCEEDED is not retried');
      const attempts = (await backend.calls('command')).filter((x) => x.request.identifier === slow);
      assert.equal(attempts.length, 1, 'one attempt of the slow call');
    }));

    it(`retries: ${kind === 'grpc' ? 'RESOURCE_EXHAUSTED and UNAVAILABLE are' : 'dropped connections (transport errors) are'} retried, other errors are not; at the concurrency limit calls eventually succeed`, t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_command_timeout=10000', '--rpc_concurrency=10'], label: `rpc-${kind}-retry` });
      current = { backend, server };
      const jwtClient = async (user) => {
        const c = await r.raw(server, { query: { jid: makeJwt({ user }, SECRET) } });
        await welcomed(c);
        return c;
      };
      const outcomesFor = async (identifier) => (await backend.calls('command')).filter((x) => x.request.identifier === identifier).map((x) => x.outcome);
      const c = await jwtClient('retry-1');

      // (1) retryable errors, then success
      const retryable = kind === 'grpc'
        ? [['exhausted_n', 3, ['exhausted', 'exhausted', 'exhausted', 'ok']], ['unavailable_n', 2, ['unavailable', 'unavailable', 'ok']]]
        : [['unavailable_n', 2, ['unavailable', 'unavailable', 'ok']]];
      for (const [key, n, expected] of retryable) {
        await backend.config({ [key]: n, methods: ['command'] });
        const ident = id('EchoChannel', { retry: key });
        assert.equal(await c.subscribe(ident, 8000), 'confirm_subscription', `subscribe after ${n} × ${key}`);
        assert.deepEqual(await outcomesFor(ident), expected, `attempts seen by the backend for ${key}`);
      }

      // (2) a non-retryable error: one attempt, no reply; the same subscribe works afterwards
      await backend.config({ fail_n: 1, methods: ['command'] });
      const failing = id('EchoChannel', { retry: 'internal' });
      c.send({ command: 'subscribe', identifier: failing });
      await expectNoFrame(c, (m) => m.identifier === failing, `subscription after ${kind === 'grpc' ? 'INTERNAL' : 'HTTP 500'}`);
      assert.deepEqual(await outcomesFor(failing), ['failed'], 'not retried');
      assert.equal(await c.subscribe(failing), 'confirm_subscription', 'a new subscribe after the failure');

      // (3) concurrency limit in the backend: rejected attempts are retried until they fit
      await backend.reset();
      const limit = kind === 'grpc' ? 2 : 1;
      const n = kind === 'grpc' ? 6 : 3; // HTTP: few attempts, so the circuit breaker (10 req / 80 %) stays closed
      await backend.config({ max_concurrency: limit, slow_ms: kind === 'grpc' ? 200 : 150, methods: ['command'] });
      const clients = await Promise.all(Array.from({ length: n }, (_, i) => jwtClient(`crowd-${i}`)));
      const idents = clients.map((_, i) => id('EchoChannel', { crowd: i }));
      const replies = await Promise.all(clients.map((cl, i) => cl.subscribe(idents[i], 9000)));
      assert.deepEqual(replies, Array(n).fill('confirm_subscription'));
      const state = await backend.state();
      assert.ok(state.stats.exhausted > 0, `the backend rejected some attempts: ${JSON.stringify(state.stats)}`);
      assert.ok(state.stats.max_inflight <= limit, `never more than ${limit} admitted at once: ${JSON.stringify(state.stats)}`);
      for (const ident of idents) {
        const outcomes = state.calls.filter((x) => x.request.identifier === ident).map((x) => x.outcome);
        assert.equal(outcomes.at(-1), 'ok', `${ident}: ${outcomes}`);
        assert.equal(outcomes.filter((o) => o === 'ok').length, 1, `${ident} applied once: ${outcomes}`);
      }
      assert.ok(state.calls.some((x) => x.outcome === 'exhausted' && idents.includes(x.request.identifier)));
    }));

    if (kind === 'http') {
      // The breaker's thresholds are listed in docs/rpc.md (Failures).
      it('HTTP circuit breaker: mostly transport failures open it (calls fail fast, nothing reaches the backend), it closes again after 5 s', t(async () => {
        const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_command_timeout=1600'], label: 'rpc-http-breaker' });
        current = { backend, server };
        const c = await r.raw(server, { query: { jid: makeJwt({ user: 'breaker' }, SECRET) } });
        await welcomed(c);
        const mark = server.log.length;
        await backend.config({ unavailable_n: 1000, methods: ['command'] });
        // two calls retried for 1.6 s each: ~2 × 5 dropped attempts, 100 % failures
        const lost = [id('EchoChannel', { cb: 1 }), id('EchoChannel', { cb: 2 })];
        for (const x of lost) c.send({ command: 'subscribe', identifier: x });
        await waitUntil(() => server.log.slice(mark).some((l) => /circuit breaker is open/i.test(l)), 6000, '"circuit breaker is open" in the log');
        const opened = Date.now();
        await backend.config({ unavailable_n: 0 });
        await commandMarker(c); // the two lost calls (and their retry loops) are over
        const before = (await backend.state()).stats.attempts;

        const blocked = id('EchoChannel', { cb: 'blocked' });
        c.send({ command: 'subscribe', identifier: blocked });
        await expectNoFrame(c, (m) => m.identifier === blocked, 'subscribe while the breaker is open');
        assert.ok(Date.now() - opened < 4500, 'still inside the 5 s open period');
        assert.equal((await backend.state()).stats.attempts, before, 'no request reached the backend while open');

        // after the open period (5 s, fixed) a trial request goes through and the breaker closes:
        // subscribe again, each time until the marker after it, until one is confirmed
        let tries = 0;
        await waitUntil(async () => {
          const healed = id('EchoChannel', { cb: 'healed', n: ++tries });
          c.send({ command: 'subscribe', identifier: healed });
          await commandMarker(c);
          return c.messages.find((m) => m.identifier === healed && m.type === 'confirm_subscription');
        }, 10000, 'a subscribe to get through once the breaker let trials through', 200);
      }));
    }

    it('--rpc_concurrency=1: the server never has two calls in flight, so a backend limited to one never refuses', t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--rpc_concurrency=1', '--rpc_command_timeout=10000'], label: `rpc-${kind}-serial` });
      current = { backend, server };
      await backend.config({ max_concurrency: 1, slow_ms: 100, methods: ['command'] });
      const clients = await Promise.all(Array.from({ length: 4 }, async (_, i) => {
        const c = await r.raw(server, { query: { jid: makeJwt({ user: `serial-${i}` }, SECRET) } });
        await welcomed(c);
        return c;
      }));
      const t0 = Date.now();
      const replies = await Promise.all(clients.map((c, i) => c.subscribe(id('EchoChannel', { serial: i }), 8000)));
      const took = Date.now() - t0;
      assert.deepEqual(replies, Array(4).fill('confirm_subscription'));
      const { stats } = await backend.state();
      assert.equal(stats.exhausted, 0, `no attempt was refused: ${JSON.stringify(stats)}`);
      assert.equal(stats.max_inflight, 1);
      assert.ok(took >= 350, `4 × 100 ms one at a time (took ${took} ms)`);
    }));

    it('shutdown with a full disconnect queue (--disconnect_rate=1): every Disconnect is made before exit, within --shutdown_timeout', t(async () => {
      const { backend, server } = await startPair(r, kind, { serverExtra: ['--disconnect_rate=1', '--shutdown_timeout=10'], label: `rpc-${kind}-shutdown` });
      current = { backend, server };
      const leavers = await Promise.all(Array.from({ length: 5 }, async (_, i) => {
        const c = await r.raw(server, { headers: { cookie: `user=leaver-${i}` } });
        await welcomed(c);
        return c;
      }));
      const stayers = await Promise.all(Array.from({ length: 2 }, async (_, i) => {
        const c = await r.raw(server, { headers: { cookie: `user=stayer-${i}` } });
        await welcomed(c);
        return c;
      }));
      await Promise.all(leavers.map((c) => c.close()));
      // the closes are seen and their Disconnects queued: the first one has been made
      await backend.waitForCall((x) => x.method === 'disconnect' && /leaver-/.test(x.request.identifiers), 5000, 'the first Disconnect');
      const before = (await backend.calls('disconnect')).length;
      assert.ok(before <= 2, `rate 1/s: at most the first queued Disconnect ran before SIGTERM (saw ${before})`);

      const t0 = Date.now();
      const exit = await server.stop(20000);
      const took = Date.now() - t0;
      const calls = await backend.calls('disconnect');
      const users = calls.map((x) => JSON.parse(x.request.identifiers).user).sort();
      assert.deepEqual(users, ['leaver-0', 'leaver-1', 'leaver-2', 'leaver-3', 'leaver-4', 'stayer-0', 'stayer-1'],
        'all queued and all open sessions got their Disconnect before the process exited');
      assert.equal(exit.killed, false);
      assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}`);
      assert.ok(took < 10000, `within --shutdown_timeout=10 (took ${took} ms)`);
      assert.ok(took < 4500, `the backlog is drained without the rate limit on shutdown (took ${took} ms for 5 queued at 1/s)`);
      for (const s of stayers) {
        assert.deepEqual(s.messages.find((m) => m.type === 'disconnect'), { type: 'disconnect', reason: 'server_restart', reconnect: true });
      }
    }));
  });
}
