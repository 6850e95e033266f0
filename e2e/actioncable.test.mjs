// @rails/actioncable (the npm client Rails apps ship) in Node against the real
// anycable-rs binary: JWT auth via ?jid=, $pubsub signed/public streams,
// Turbo::StreamsChannel, HTTP broadcasts (single, batch, exclude_socket),
// auth failures. A raw `ws` client is used where the wire itself must be read.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, tamperSignedName, makeJwt } from './support/signing.mjs';
import { RawClient, nodeConsumer, withTimeout } from './support/clients.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const execFileP = promisify(execFile);

const SECRET = 'e2e-actioncable-secret';
const OTHER_SECRET = 'not-the-server-secret';
const now = () => Math.floor(Date.now() / 1000);
const pubsub = (signed) => ({ channel: '$pubsub', signed_stream_name: signed });

let server; // --secret --turbo_streams --public_streams (RPC not configured)
let enforced; // --secret --enforce_jwt --norpc
const consumers = [];
const raws = [];

function consumerFor(srv, query) {
  const c = nodeConsumer(srv.wsUrl(query));
  consumers.push(c);
  return c;
}
async function rawFor(srv, query, opts) {
  const c = await RawClient.connect(srv.wsUrl(query), opts);
  raws.push(c);
  return c;
}
const token = (ids = { user_id: 42 }, opts) => makeJwt(ids, SECRET, opts);
const logs = () => [server, enforced];

async function broadcastOk(srv, body) {
  const res = await srv.broadcast(body);
  assert.equal(res.status, 201, `POST /_broadcast ${JSON.stringify(body).slice(0, 200)} -> ${res.status} ${res.body}`);
}

/** The socket the library opened must receive a disconnect and be closed without a reconnect. */
async function assertRejectedConnection(c, sub, reason) {
  const ws = await withTimeout(
    (async () => { while (!c.sockets.length) await new Promise((r) => setTimeout(r, 10)); return c.sockets[0]; })(),
    5000, 'the consumer to open a WebSocket');
  const frame = await ws.frames.wait((m) => m.type === 'disconnect', 5000, 'a disconnect frame');
  assert.deepEqual({ type: frame.type, reason: frame.reason, reconnect: frame.reconnect },
    { type: 'disconnect', reason, reconnect: false });
  assert.ok(!ws.frames.find((m) => m.type === 'welcome'), 'no welcome may precede the rejection');
  // The library closes without allowReconnect: its subscriptions are told so and the monitor stops.
  const ev = await sub.waitFor('disconnected');
  assert.equal(ev.data.willAttemptReconnect, false, 'client must not plan a reconnect');
  assert.equal(c.consumer.connection.monitor.isRunning(), false, 'ConnectionMonitor must be stopped');
  assert.ok(!sub.events.find((e) => e.event === 'connected'), 'subscription must never be connected');
  // The library reopens a socket only from its ConnectionMonitor (poll and visibilitychange
  // both live there), stopped as checked above; so no other socket can follow, without a wait.
  assert.equal(c.sockets.length, 1, 'the consumer must not open another WebSocket');
}

describe('@rails/actioncable against anycable-rs', () => {
  before(async () => {
    server = await startServer({ args: [`--secret=${SECRET}`, '--turbo_streams', '--public_streams'], label: 'ac-main' });
    enforced = await startServer({ args: [`--secret=${SECRET}`, '--enforce_jwt', '--norpc'], label: 'ac-enforced' });
  });

  after(async () => {
    for (const c of consumers) c.disconnect();
    await Promise.all(raws.map((r) => r.close()));
    await Promise.all([server?.stop(), enforced?.stop()]);
  });

  it('(a) signed $pubsub stream: connected, then an HTTP broadcast arrives parsed', withServerLog(logs, async () => {
    const stream = 'chat/42';
    const c = consumerFor(server, { jid: token() });
    const sub = c.subscribe(pubsub(signStreamName(stream, SECRET)));
    await sub.waitFor('connected');

    const payload = { text: 'hi <b>&</b>', n: 1, nested: { ok: true, list: [1, 'two'] } };
    await broadcastOk(server, { stream, data: JSON.stringify(payload) });
    const got = await sub.waitFor('received');
    assert.deepEqual(got.data, payload);

    // data that is not JSON is delivered as the raw string
    await broadcastOk(server, { stream, data: 'Alice: Hey!' });
    const raw = await sub.waitFor('received', (d) => d === 'Alice: Hey!');
    assert.equal(raw.data, 'Alice: Hey!');
    // a JSON string literal arrives decoded
    await broadcastOk(server, { stream, data: JSON.stringify('<script>alert(1)</script>') });
    await sub.waitFor('received', (d) => d === '<script>alert(1)</script>');
    assert.equal(sub.received().length, 3, `exactly three deliveries: ${JSON.stringify(sub.received())}`);
  }));

  it('the broadcast endpoint requires the key derived from --secret', withServerLog(logs, async () => {
    const body = { stream: 'nobody-listens', data: '{}' };
    assert.equal((await server.broadcast(body, { key: null })).status, 401, 'no Authorization header');
    assert.equal((await server.broadcast(body, { key: 'wrong-key' })).status, 401, 'wrong bearer key');
    assert.equal((await server.broadcast(body)).status, 201, 'derived key hex(HMAC-SHA256(secret, "broadcast-cable"))');
  }));

  it('(b) Turbo::StreamsChannel with --turbo_streams receives an HTML string broadcast', withServerLog(logs, async () => {
    const stream = 'gid://app/Room/1:messages';
    const c = consumerFor(server, { jid: token({ user_id: 7 }) });
    const sub = c.subscribe({ channel: 'Turbo::StreamsChannel', signed_stream_name: signStreamName(stream, SECRET) });
    await sub.waitFor('connected');

    const html = '<turbo-stream action="append" target="messages"><template><p id="m1">Hello & "bye"</p></template></turbo-stream>';
    // turbo-rails/anycable-rails send the HTML as a JSON-encoded string; plain HTML must work too
    await broadcastOk(server, { stream, data: JSON.stringify(html) });
    const a = await sub.waitFor('received');
    assert.equal(a.data, html);
    const html2 = html.replace('m1', 'm2');
    await broadcastOk(server, { stream, data: html2 });
    const b = await sub.waitFor('received', (d) => d === html2);
    assert.equal(b.data, html2);
  }));

  it('(c) public stream via stream_name with --public_streams; rejected without it', withServerLog(logs, async () => {
    const stream = 'public/lobby';
    const c = consumerFor(server, { jid: token() });
    const sub = c.subscribe({ channel: '$pubsub', stream_name: stream });
    await sub.waitFor('connected');
    await broadcastOk(server, { stream, data: JSON.stringify({ hello: 'lobby' }) });
    const got = await sub.waitFor('received');
    assert.deepEqual(got.data, { hello: 'lobby' });

    // the enforced server has no --public_streams: same subscription is rejected
    const c2 = consumerFor(enforced, { jid: token() });
    const sub2 = c2.subscribe({ channel: '$pubsub', stream_name: stream });
    await sub2.waitFor('rejected');
    assert.ok(!sub2.events.find((e) => e.event === 'connected'));
  }));

  it('(d) a bad signature is rejected and the connection stays usable', withServerLog(logs, async () => {
    const stream = 'secret/room';
    const c = consumerFor(server, { jid: token() });
    const tampered = c.subscribe(pubsub(tamperSignedName(signStreamName(stream, SECRET))));
    await tampered.waitFor('rejected');
    const foreign = c.subscribe(pubsub(signStreamName(stream, OTHER_SECRET)));
    await foreign.waitFor('rejected');
    const turboBad = c.subscribe({ channel: 'Turbo::StreamsChannel', signed_stream_name: signStreamName(stream, OTHER_SECRET) });
    await turboBad.waitFor('rejected');

    // same connection, valid signature: works, and only it receives the broadcast
    const good = c.subscribe(pubsub(signStreamName(stream, SECRET)));
    await good.waitFor('connected');
    await broadcastOk(server, { stream, data: '{"n":1}' });
    await good.waitFor('received');
    assert.equal(c.sockets.length, 1, 'rejections must not cost the connection');
    for (const s of [tampered, foreign, turboBad]) {
      assert.ok(!s.events.find((e) => e.event === 'connected' || e.event === 'received'),
        `rejected subscription got events: ${JSON.stringify(s.events.items)}`);
    }
  }));

  it('(e1) --enforce_jwt: no token -> disconnect "unauthorized", no reconnect', withServerLog(logs, async () => {
    const c = consumerFor(enforced, {});
    const sub = c.subscribe(pubsub(signStreamName('x', SECRET)));
    await assertRejectedConnection(c, sub, 'unauthorized');

    // wire details with a raw client: disconnect frame, then close 1000 "Auth Failed"
    const raw = await rawFor(enforced, {});
    const first = await raw.welcome();
    assert.deepEqual(first, { type: 'disconnect', reason: 'unauthorized', reconnect: false });
    const closed = await withTimeout(raw.closed, 5000, 'server close');
    assert.equal(closed.code, 1000);
    assert.equal(closed.reason, 'Auth Failed');
  }));

  it('(e2) a token signed with another secret -> "unauthorized", no reconnect', withServerLog(logs, async () => {
    const bad = makeJwt({ user_id: 42 }, OTHER_SECRET);
    const c = consumerFor(server, { jid: bad });
    const sub = c.subscribe(pubsub(signStreamName('x', SECRET)));
    await assertRejectedConnection(c, sub, 'unauthorized');

    // even when it is also expired: signature is checked first
    const raw = await rawFor(enforced, { jid: makeJwt({ user_id: 42 }, OTHER_SECRET, { exp: now() - 60 }) });
    assert.deepEqual(await raw.welcome(), { type: 'disconnect', reason: 'unauthorized', reconnect: false });
  }));

  it('(f) an expired token -> "token_expired", no reconnect', withServerLog(logs, async () => {
    const expired = token({ user_id: 42 }, { exp: now() - 30 });
    const c = consumerFor(server, { jid: expired });
    const sub = c.subscribe(pubsub(signStreamName('x', SECRET)));
    await assertRejectedConnection(c, sub, 'token_expired');

    const raw = await rawFor(enforced, { jid: expired });
    assert.deepEqual(await raw.welcome(), { type: 'disconnect', reason: 'token_expired', reconnect: false });
    const closed = await withTimeout(raw.closed, 5000, 'server close');
    assert.equal(closed.code, 1000);
  }));

  it('a valid token is accepted by the --enforce_jwt server (welcome with sid)', withServerLog(logs, async () => {
    const raw = await rawFor(enforced, { jid: token() });
    const w = await raw.welcome();
    assert.equal(w.type, 'welcome');
    assert.equal(typeof w.sid, 'string');
    assert.ok(w.sid.length > 0);
    assert.equal(raw.protocol, 'actioncable-v1-json');
  }));

  it('token carried as an anycable-token.<JWT> sub-protocol (consumer.addSubProtocol) or X-JID header', withServerLog(logs, async () => {
    // @rails/actioncable >= 7.1: extra sub-protocols are appended to its own list
    const c = consumerFor(enforced, {});
    c.consumer.addSubProtocol(`anycable-token.${token({ user_id: 3 })}`);
    const sub = c.subscribe(pubsub(signStreamName('subproto', SECRET)));
    await sub.waitFor('connected');
    assert.equal(c.sockets[0].protocol, 'actioncable-v1-json', 'the token entry is never selected');
    await broadcastOk(enforced, { stream: 'subproto', data: '{"ok":1}' });
    assert.deepEqual((await sub.waitFor('received')).data, { ok: 1 });

    const raw = await rawFor(enforced, {}, { headers: { 'X-JID': token({ user_id: 4 }) } });
    assert.equal((await raw.welcome()).type, 'welcome', 'X-JID header accepted');
    // header wins over the query parameter
    const raw2 = await rawFor(enforced, { jid: 'garbage' }, { headers: { 'X-JID': token({ user_id: 4 }) } });
    assert.equal((await raw2.welcome()).type, 'welcome', 'X-JID header takes precedence over ?jid=');
  }));

  it('(g) a batch broadcast delivers to two streams', withServerLog(logs, async () => {
    const c = consumerFor(server, { jid: token() });
    const a = c.subscribe(pubsub(signStreamName('batch/a', SECRET)));
    const b = c.subscribe(pubsub(signStreamName('batch/b', SECRET)));
    await Promise.all([a.waitFor('connected'), b.waitFor('connected')]);

    await broadcastOk(server, [
      { stream: 'batch/a', data: JSON.stringify({ to: 'a' }) },
      { stream: 'batch/b', data: JSON.stringify({ to: 'b' }) },
      { stream: 'batch/a', data: JSON.stringify({ to: 'a', second: true }) },
    ]);
    await a.waitFor('received', (d) => d.second === true);
    await b.waitFor('received');
    assert.deepEqual(a.received(), [{ to: 'a' }, { to: 'a', second: true }], 'stream a gets its two, in order');
    assert.deepEqual(b.received(), [{ to: 'b' }]);
  }));

  it('(h) meta.exclude_socket skips the connection with that sid', withServerLog(logs, async () => {
    const stream = 'exclude/me';
    const signed = signStreamName(stream, SECRET);
    const id = JSON.stringify(pubsub(signed));

    const raw = await rawFor(server, { jid: token({ user_id: 1 }) });
    const welcome = await raw.welcome();
    assert.equal(welcome.type, 'welcome');
    assert.ok(welcome.sid, 'welcome must carry a sid');
    assert.equal(await raw.subscribe(id), 'confirm_subscription');

    const c = consumerFor(server, { jid: token({ user_id: 2 }) });
    const other = c.subscribe(pubsub(signed));
    await other.waitFor('connected');

    await broadcastOk(server, { stream, data: '{"n":1}', meta: { exclude_socket: welcome.sid } });
    await broadcastOk(server, { stream, data: '{"n":2}' });

    await other.waitFor('received', (d) => d.n === 2);
    assert.deepEqual(other.received(), [{ n: 1 }, { n: 2 }], 'the other connection gets both');
    await raw.waitForData(id, (m) => m.n === 2);
    assert.deepEqual(raw.dataFor(id).map((m) => m.message), [{ n: 2 }], 'excluded socket must get only n=2');
  }));

  it('names and tokens made by the Python generator (AnyCable docs snippet) work', withServerLog(logs, async () => {
    const py = path.join(here, 'support', 'sign.py');
    const stream = 'chat/café ☕'; // Python's json.dumps escapes non-ASCII (\u00e9): still verifies
    const { stdout: signed } = await execFileP('python3', [py, 'stream', SECRET, stream]);
    const { stdout: jwt } = await execFileP('python3', [py, 'jwt', SECRET, '{"user_id": 99, "team": "e2e"}']);
    assert.notEqual(signed.trim(), signStreamName(stream, SECRET), 'Python and JS encodings differ for non-ASCII');

    const raw = await rawFor(server, { jid: jwt.trim() });
    assert.equal((await raw.welcome()).type, 'welcome', 'Python-made JWT accepted');
    const c = consumerFor(server, { jid: jwt.trim() });
    const sub = c.subscribe(pubsub(signed.trim()));
    await sub.waitFor('connected');
    await broadcastOk(server, { stream, data: JSON.stringify({ from: 'python' }) });
    const got = await sub.waitFor('received');
    assert.deepEqual(got.data, { from: 'python' });

    // expired Python token -> token_expired
    const { stdout: old } = await execFileP('python3', [py, 'jwt', SECRET, '{"user_id": 99}', '--exp', String(now() - 5)]);
    const raw2 = await rawFor(server, { jid: old.trim() });
    assert.deepEqual(await raw2.welcome(), { type: 'disconnect', reason: 'token_expired', reconnect: false });
  }));
});

// The Hotwire guide's unsigned-names setup, exactly its command line: a JWT key and
// --turbo_rails_cleartext (no --turbo_streams, no Turbo key, no backend). Pages pass the
// plain stream name where turbo-rails would put the signed one.
describe('@rails/actioncable with --jwt_id_key --turbo_rails_cleartext (Hotwire guide)', () => {
  const JWT_KEY = 'e2e-cleartext-jwt-key';
  let cleartext;
  const own = [];
  before(async () => {
    cleartext = await startServer({ args: [`--jwt_id_key=${JWT_KEY}`, '--turbo_rails_cleartext'], label: 'ac-cleartext' });
  });
  after(async () => {
    for (const c of own) c.disconnect();
    await cleartext?.stop();
  });
  const clearConsumer = (query) => {
    const c = nodeConsumer(cleartext.wsUrl(query));
    own.push(c);
    return c;
  };

  it('Turbo::StreamsChannel takes the plain name in signed_stream_name; a bad JWT is still refused',
    withServerLog(() => [cleartext], async () => {
      const stream = 'gid://app/Room/7:messages';
      const c = clearConsumer({ jid: makeJwt({ user_id: 7 }, JWT_KEY) });
      const sub = c.subscribe({ channel: 'Turbo::StreamsChannel', signed_stream_name: stream });
      await sub.waitFor('connected');
      const html = '<turbo-stream action="append" target="messages"><template><p>plain</p></template></turbo-stream>';
      await broadcastOk(cleartext, { stream, data: JSON.stringify(html) });
      assert.equal((await sub.waitFor('received')).data, html);

      const intruder = clearConsumer({ jid: makeJwt({ user_id: 8 }, OTHER_SECRET) });
      const refused = intruder.subscribe({ channel: 'Turbo::StreamsChannel', signed_stream_name: stream });
      await assertRejectedConnection(intruder, refused, 'unauthorized');
    }));
});
