// Graceful shutdown as clients see it (docs/architecture.md, Shutdown): on SIGTERM
// every connection gets {"type":"disconnect","reason":"server_restart","reconnect":true}
// and a 1001 close; @rails/actioncable therefore plans a reconnect; the process exits 0.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, makeJwt } from './support/signing.mjs';
import { RawClient, nodeConsumer, withTimeout } from './support/clients.mjs';

const SECRET = 'e2e-shutdown-secret';
let server;
let consumer;

describe('graceful shutdown', () => {
  after(async () => {
    consumer?.disconnect();
    await server?.stop(5000);
  });

  it('SIGTERM: server_restart to every client, close 1001, exit status 0', withServerLog(() => server, async () => {
    server = await startServer({ args: [`--secret=${SECRET}`, '--norpc'], label: 'shutdown' });
    const signed = signStreamName('shutdown/room', SECRET);
    const jwt = makeJwt({ user_id: 5 }, SECRET);

    const raw = await RawClient.connect(server.wsUrl({ jid: jwt }));
    assert.equal((await raw.welcome()).type, 'welcome');
    assert.equal(await raw.subscribe({ channel: '$pubsub', signed_stream_name: signed }), 'confirm_subscription');

    consumer = nodeConsumer(server.wsUrl({ jid: jwt }));
    const sub = consumer.subscribe({ channel: '$pubsub', signed_stream_name: signed });
    await sub.waitFor('connected');

    const started = Date.now();
    const result = await server.stop(20000);

    const notice = await raw.waitFor((m) => m.type === 'disconnect', 1000, 'disconnect notice');
    assert.deepEqual(notice, { type: 'disconnect', reason: 'server_restart', reconnect: true });
    const closed = await withTimeout(raw.closed, 2000, 'close frame');
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, 'Server restart');

    const ev = await sub.waitFor('disconnected', () => true, 2000);
    assert.equal(ev.data.willAttemptReconnect, true, 'Rails client keeps reconnecting after server_restart');
    const ws = consumer.sockets[0];
    assert.ok(ws.frames.find((m) => m.type === 'disconnect' && m.reason === 'server_restart'));

    assert.equal(result.killed, false, `server did not exit within 20 s of SIGTERM`);
    assert.deepEqual({ code: result.code, signal: result.signal }, { code: 0, signal: null }, 'exit status 0');
    assert.ok(Date.now() - started < 20000);
    // the listener is gone
    await assert.rejects(fetch(server.httpUrl('/health'), { signal: AbortSignal.timeout(2000) }));
  }));
});
