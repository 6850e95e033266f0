// Server-Sent Events with the `eventsource` npm client (v5, the WHATWG EventSource
// implementation for Node) against anycable-rs --sse with the memory broker:
// GET /events?stream=… and ?turbo_signed_stream_name=…&jid=…, data events carrying only
// the message, `id: <offset>/<epoch>/<stream>`, and resume after a network cut
// (through a TCP proxy) with the Last-Event-ID header the client sends by itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, tamperSignedName, makeJwt } from './support/signing.mjs';
import { waitUntil } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { recordedEventSource } from './support/sse_client.mjs';

const SECRET = 'e2e-eventsource-secret';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/**
 * Publishes message #n and waits for it: whatever the stream delivered before (a duplicate, a
 * stray replay) has arrived by then, as one stream is delivered in order.
 */
async function marker(srv, src, stream, n) {
  await publishN(srv, stream, n);
  await src.waitFor('message', (e) => JSON.parse(e.data).n === n, 5000, `marker message #${n}`);
}

let open; // --sse --public_streams --broker=memory --noauth
let turbo; // --sse --secret --turbo_streams --broker=memory
const proxies = [];
const sources = [];

async function newProxy(srv) {
  const p = await TcpProxy.start(srv.port);
  proxies.push(p);
  return p;
}
function newSource(url, init) {
  const s = recordedEventSource(url, init);
  sources.push(s);
  return s;
}
function eventsUrl(port, query) {
  const u = new URL(`http://127.0.0.1:${port}/events`);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  return u.toString();
}
async function publish(srv, stream, data) {
  const res = await srv.broadcast({ stream, data });
  assert.equal(res.status, 201, `broadcast to ${stream} -> ${res.status} ${res.body}`);
}
const publishN = (srv, stream, n) => publish(srv, stream, JSON.stringify({ n }));
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** `<offset>/<epoch>/<stream>`; the stream part may itself contain '/'. */
function parseId(id) {
  const [offset, epoch, ...rest] = String(id).split('/');
  return { offset: Number(offset), epoch, stream: rest.join('/') };
}
const ns = (s) => s.messages().map((m) => JSON.parse(m.data).n);

function withDiag(getServers, fn) {
  return withServerLog(getServers, async () => {
    const before = sources.length;
    const proxiesBefore = proxies.length;
    try {
      return await fn();
    } catch (err) {
      if (err && typeof err === 'object') {
        const extra = sources.slice(before).map((s) => s.diagnostics());
        for (const p of proxies.slice(proxiesBefore)) {
          for (const c of p.connections) {
            extra.push(`--- proxied request #${c.id} ---\n${p.upText(c).slice(0, 800)}`);
          }
        }
        try { err.message += `\n${extra.join('\n')}`; } catch { /* ignore */ }
      }
      throw err;
    }
  });
}

/**
 * Cut the proxy while the client is connected, publish `publishMissed()` meanwhile, wait
 * for a failed reconnect attempt, restore. Returns the proxied connection the client
 * resumed on.
 */
async function cutPublishRestore(proxy, src, publishMissed) {
  const errorsBefore = src.count('error');
  const connsBefore = proxy.connections.length;
  proxy.cut();
  await waitUntil(() => src.count('error') > errorsBefore, 5000, 'the EventSource to notice the cut (error event)');
  assert.equal(src.es.readyState, src.es.CONNECTING, 'EventSource is reconnecting by itself');
  await publishMissed();
  // the client's own retry (3 s by default) hits the dead network first
  await waitUntil(() => proxy.resets > 0, 10000, 'a reconnect attempt while the network is down');
  proxy.restore();
  const conn = await waitUntil(() => proxy.connections[connsBefore], 10000, 'the EventSource to reconnect');
  return conn;
}

describe('eventsource (npm) against anycable-rs --sse', () => {
  before(async () => {
    [open, turbo] = await Promise.all([
      startServer({ args: ['--sse', '--public_streams', '--broker=memory', '--noauth'], label: 'sse-public' }),
      startServer({ args: ['--sse', `--secret=${SECRET}`, '--turbo_streams', '--broker=memory'], label: 'sse-turbo' }),
    ]);
  });

  after(async () => {
    for (const s of sources) s.close();
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all([open?.stop(), turbo?.stop()]);
  });

  it('?stream=: welcome, confirm_subscription, then data events with only the message and id offset/epoch/stream',
    withDiag(() => open, async () => {
      const stream = `sse/format/${Date.now()}`;
      const src = newSource(eventsUrl(open.port, { stream }));
      await src.waitFor('open');
      const welcome = await src.waitFor('welcome');
      assert.equal(welcome.data.type, 'welcome');
      const confirm = await src.waitFor('confirm_subscription');
      assert.equal(confirm.data.identifier, JSON.stringify({ channel: '$pubsub', stream_name: stream }));

      await publishN(open, stream, 1);
      const m1 = await src.waitFor('message', () => true, 5000, 'data event #1');
      assert.equal(m1.data, '{"n":1}', 'the data event carries only the message value, as compact JSON');
      const id1 = parseId(m1.lastEventId);
      assert.equal(id1.offset, 1);
      assert.equal(id1.stream, stream, `id is <offset>/<epoch>/<stream>: ${m1.lastEventId}`);
      assert.ok(/^[A-Za-z0-9_-]+$/.test(id1.epoch), `epoch in the id: ${m1.lastEventId}`);

      // a JSON string message is written raw (unquoted); line breaks survive as data: lines
      await publish(open, stream, JSON.stringify('plain <b>text</b> & "quotes"'));
      await publish(open, stream, JSON.stringify('line one\nline two\r\nline three'));
      await src.waitFor('message', (e) => e.data.startsWith('line one'), 5000, 'multi-line data event');
      const datas = src.messages().map((m) => m.data);
      assert.deepEqual(datas, ['{"n":1}', 'plain <b>text</b> & "quotes"', 'line one\nline two\nline three']);
      assert.deepEqual(src.messages().map((m) => parseId(m.lastEventId).offset), [1, 2, 3]);
      assert.equal(src.count('error'), 0, 'no error event');
    }));

  it('resumes after a network cut with Last-Event-ID: every missed message exactly once, in order, then live',
    withDiag(() => open, async () => {
      const stream = `sse/resume/${Date.now()}`;
      const proxy = await newProxy(open);
      const src = newSource(eventsUrl(proxy.port, { stream }));
      await src.waitFor('confirm_subscription');
      for (const n of range(1, 3)) await publishN(open, stream, n);
      const third = await src.waitFor('message', (e) => JSON.parse(e.data).n === 3, 5000, 'live message #3');
      const { epoch } = parseId(third.lastEventId);
      assert.deepEqual(ns(src), [1, 2, 3]);

      const conn = await cutPublishRestore(proxy, src, async () => {
        for (const n of range(4, 8)) await publishN(open, stream, n);
      });
      await src.waitFor('message', (e) => JSON.parse(e.data).n === 8, 10000, 'the last missed message (#8)');
      const request = proxy.upText(conn);
      const lastEventId = /^last-event-id: *(.*)$/im.exec(request);
      assert.ok(lastEventId, `the reconnect request carries Last-Event-ID:\n${request}`);
      assert.equal(lastEventId[1].trim(), `3/${epoch}/${stream}`, 'Last-Event-ID is the id of the last data event');
      await src.waitFor('confirm_history', () => true, 5000, 'confirm_history on the resumed stream');
      assert.equal(src.count('reject_history'), 0, 'no reject_history');

      for (const n of range(9, 10)) await publishN(open, stream, n);
      await src.waitFor('message', (e) => JSON.parse(e.data).n === 10, 5000, 'live message #10');
      await marker(open, src, stream, 11);
      assert.deepEqual(ns(src), range(1, 11), 'no gap, no duplicate, in order');
      assert.deepEqual(src.messages().map((m) => parseId(m.lastEventId)),
        range(1, 11).map((o) => ({ offset: o, epoch, stream })), 'each event keeps its own id');
    }));

  it('continuous publishing across the cut and the resume: no gap, no duplicate in the racy window',
    withDiag(() => open, async () => {
      const stream = `sse/race/${Date.now()}`;
      const proxy = await newProxy(open);
      const src = newSource(eventsUrl(proxy.port, { stream }));
      await src.waitFor('confirm_subscription');
      let next = 1;
      let running = true;
      // ~8 messages/s: the client is away ~6 s (its 3 s retry, once reset), so the gap stays well
      // inside the default history limit of 100 messages per stream
      const publisher = (async () => {
        while (running) {
          await publishN(open, stream, next++);
          await sleep(120);
        }
      })();
      // Waits until the publisher has sent `count` more messages.
      const published = (count) => {
        const target = next + count;
        return waitUntil(() => next >= target, 5000, `${count} more publications`);
      };
      try {
        await src.waitFor('message', () => true, 5000, 'the first live message');
        await cutPublishRestore(proxy, src, () => published(2));
        await src.waitFor('confirm_history', () => true, 10000, 'confirm_history on the resumed stream');
        // live messages flow again on the resumed stream while the publisher goes on
        const resumedAt = next;
        await src.waitFor('message', (e) => JSON.parse(e.data).n >= resumedAt + 4, 10000, 'live messages after the resume');
      } finally {
        running = false;
        await publisher;
      }
      const last = next;
      await marker(open, src, stream, last);
      const got = ns(src);
      const dups = got.filter((n, i) => got.indexOf(n) !== i);
      const missing = range(1, last).filter((n) => !got.includes(n));
      assert.deepEqual({ dups, missing }, { dups: [], missing: [] }, `received ${got.length} of ${last}`);
      assert.deepEqual(got, range(1, last), 'in order');
    }));

  it('a Last-Event-ID from another epoch gets reject_history, then live data', withDiag(() => open, async () => {
    const stream = `sse/epoch/${Date.now()}`;
    await publishN(open, stream, 1);
    await publishN(open, stream, 2);
    let sentHeader;
    const src = newSource(eventsUrl(open.port, { stream }), {
      fetch: (input, init) => {
        const headers = { ...init.headers };
        if (!Object.keys(headers).some((k) => k.toLowerCase() === 'last-event-id')) headers['Last-Event-ID'] = `1/zz9x/${stream}`;
        sentHeader = headers['Last-Event-ID'];
        return fetch(input, { ...init, headers });
      },
    });
    await src.waitFor('confirm_subscription');
    assert.equal(sentHeader, `1/zz9x/${stream}`);
    await src.waitFor('reject_history', () => true, 5000, 'reject_history for an unknown epoch');
    assert.equal(src.count('confirm_history'), 0);
    await publishN(open, stream, 3);
    await src.waitFor('message', (e) => JSON.parse(e.data).n === 3, 5000, 'live message #3');
    await marker(open, src, stream, 4);
    assert.deepEqual(ns(src), [3, 4], 'nothing replayed (no partial history), live data flows');
  }));

  it('CORS: any origin is allowed without --allowed_origins; a bad Last-Event-ID offset is 400', withDiag(() => open, async () => {
    const stream = `sse/cors/${Date.now()}`;
    const ctl = new AbortController();
    const res = await fetch(eventsUrl(open.port, { stream }), { headers: { Origin: 'http://elsewhere.test:8080' }, signal: ctl.signal });
    try {
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
    } finally {
      ctl.abort();
    }
    const pre = await fetch(eventsUrl(open.port, { stream }), { method: 'OPTIONS', headers: { Origin: 'http://elsewhere.test:8080' } });
    assert.equal(pre.status, 200);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    const bad = await fetch(eventsUrl(open.port, { stream }), { headers: { 'Last-Event-ID': `x/abcd/${stream}` } });
    assert.equal(bad.status, 400, 'non-numeric offset in Last-Event-ID');
    await bad.arrayBuffer();
  }));

  it('?turbo_signed_stream_name= with a JWT in jid: Turbo Stream HTML as raw data, resumed after a cut',
    withDiag(() => turbo, async () => {
      const stream = `gid://e2e/Room/${Date.now()}:messages`;
      const signed = signStreamName(stream, SECRET);
      const jwt = makeJwt({ user_id: 'sse' }, SECRET);
      const proxy = await newProxy(turbo);
      const src = newSource(eventsUrl(proxy.port, { turbo_signed_stream_name: signed, jid: jwt }));
      const confirm = await src.waitFor('confirm_subscription');
      assert.equal(confirm.data.identifier, JSON.stringify({ channel: 'Turbo::StreamsChannel', signed_stream_name: signed }));
      const html = (i) => `<turbo-stream action="append" target="messages">\n<template><p id="m${i}">Hi ${i} &amp; bye</p></template>\n</turbo-stream>`;

      await publish(turbo, stream, JSON.stringify(html(1)));
      const m1 = await src.waitFor('message', () => true, 5000, 'Turbo Stream #1');
      assert.equal(m1.data, html(1), 'the HTML string arrives raw, line breaks kept');
      assert.equal(parseId(m1.lastEventId).stream, stream, `id names the stream: ${m1.lastEventId}`);

      const conn = await cutPublishRestore(proxy, src, async () => {
        for (const i of range(2, 4)) await publish(turbo, stream, JSON.stringify(html(i)));
      });
      await src.waitFor('message', (e) => e.data === html(4), 10000, 'missed Turbo Stream #4');
      assert.match(proxy.upText(conn), /^last-event-id: *1\/[^/\r\n]+\/gid:\/\/e2e\/Room\//im, 'resumed with Last-Event-ID');
      assert.match(proxy.upText(conn), /[?&]jid=/, 'the reconnect request still carries the token');
      await publish(turbo, stream, JSON.stringify(html(5)));
      await src.waitFor('message', (e) => e.data === html(5), 5000, 'live Turbo Stream #5');
      await publish(turbo, stream, JSON.stringify(html(6)));
      await src.waitFor('message', (e) => e.data === html(6), 5000, 'marker Turbo Stream #6');
      assert.deepEqual(src.messages().map((m) => m.data), range(1, 6).map(html), 'every update once, in order');
    }));

  it('rejections are HTTP statuses the client does not retry: bad signature 400, bad JWT 401', withDiag(() => turbo, async () => {
    const stream = `gid://e2e/Room/${Date.now()}:secret`;
    const jwt = makeJwt({ user_id: 'sse' }, SECRET);
    const tampered = newSource(eventsUrl(turbo.port, { turbo_signed_stream_name: tamperSignedName(signStreamName(stream, SECRET)), jid: jwt }));
    const e1 = await tampered.waitFor('error');
    assert.equal(e1.code, 400, `tampered signed name: ${e1.message}`);
    const badJwt = newSource(eventsUrl(turbo.port, { turbo_signed_stream_name: signStreamName(stream, SECRET), jid: makeJwt({ user_id: 1 }, 'other-secret') }));
    const e2 = await badJwt.waitFor('error');
    assert.equal(e2.code, 401, `JWT signed with another secret: ${e2.message}`);
    const expired = newSource(eventsUrl(turbo.port, { turbo_signed_stream_name: signStreamName(stream, SECRET), jid: makeJwt({ user_id: 1 }, SECRET, { exp: Math.floor(Date.now() / 1000) - 10 }) }));
    const e3 = await expired.waitFor('error');
    assert.equal(e3.code, 401, `expired JWT: ${e3.message}`);
    for (const s of [tampered, badJwt, expired]) {
      assert.equal(s.es.readyState, s.es.CLOSED, 'a non-200 answer fails the EventSource for good');
      assert.equal(s.count('message'), 0);
    }
  }));
});

// The Hotwire guide: with --turbo_rails_cleartext, <turbo-stream-source> (an EventSource)
// passes the plain name as ?turbo_stream_name=; JWT (--jwt_id_key) still authenticates.
describe('eventsource (npm) with ?turbo_stream_name= and --turbo_rails_cleartext', () => {
  const JWT_KEY = 'e2e-cleartext-sse-key';
  let cleartext;
  before(async () => {
    cleartext = await startServer({ args: ['--sse', `--jwt_id_key=${JWT_KEY}`, '--turbo_rails_cleartext'], label: 'sse-cleartext' });
  });
  after(async () => {
    for (const s of sources) s.close();
    await cleartext?.stop();
  });

  it('subscribes Turbo::StreamsChannel with the plain name and streams the HTML; a bad JWT is 401',
    withDiag(() => cleartext, async () => {
      const stream = `gid://e2e/Room/${Date.now()}:plain`;
      const jwt = makeJwt({ user_id: 'sse' }, JWT_KEY);
      const src = newSource(eventsUrl(cleartext.port, { turbo_stream_name: stream, jid: jwt }));
      const confirm = await src.waitFor('confirm_subscription');
      assert.equal(confirm.data.identifier, JSON.stringify({ channel: 'Turbo::StreamsChannel', signed_stream_name: stream }));
      const html = '<turbo-stream action="append" target="messages"><template><p>plain &amp; simple</p></template></turbo-stream>';
      await publish(cleartext, stream, JSON.stringify(html));
      const m = await src.waitFor('message', () => true, 5000, 'the Turbo Stream');
      assert.equal(m.data, html);

      const forged = newSource(eventsUrl(cleartext.port, { turbo_stream_name: stream, jid: makeJwt({ user_id: 1 }, 'other-key') }));
      const e = await forged.waitFor('error');
      assert.equal(e.code, 401, `JWT signed with another key: ${e.message}`);
      assert.equal(forged.count('message'), 0);
    }));
});
