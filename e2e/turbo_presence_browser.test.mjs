// Turbo presence in a real browser: headless Chromium loads a page with @hotwired/turbo,
// an @anycable/web cable (extended protocol, JWT in the action-cable-url) and
// @anycable/turbo-stream's <turbo-cable-presence-source> (presence on a signed `$pubsub`
// stream, on by default) against anycable-rs --secret --broker=memory --turbo_streams
// --presence_ttl=1.
//
// How the element shows presence (node_modules/@anycable/turbo-stream/presence_source_element.js):
// on connect it joins with {html: <its <template>'s content>}, asks for `presence` info and
// feeds every member's html (and every later `join` event's html) to Turbo as a stream
// message; a `leave` event removes the element whose id is the presence id; the
// `[data-presence-counter]` inside it shows the member count and `present` is set while
// there is anyone. Each page's join template appends <li id="<presence id>"> to #online,
// so #online is the page's list of members.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';


import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, makeJwt } from './support/signing.mjs';
import { RawClient, waitUntil } from './support/clients.mjs';
import { buildBundle, escapeAttr, launchChromium, startWeb } from './support/web.mjs';

const SECRET = 'e2e-turbo-presence-secret';

let server;
let browser;
let web; // { server, port, pages: Map }
let bundle;
const pageDiagnostics = [];

function pageHtml({ cableUrl, signed, presenceId, name }) {
  return `<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>anycable-rs e2e presence</title>
    <meta name="action-cable-url" content="${escapeAttr(cableUrl)}">
    <script type="module" src="/bundle.js"></script>
  </head>
  <body>
    <turbo-cable-presence-source id="presence" signed-stream-name="${escapeAttr(signed)}" presence-id="${escapeAttr(presenceId)}">
      <template><turbo-stream action="append" target="online"><template><li id="${escapeAttr(presenceId)}" class="member">${name}</li></template></turbo-stream></template>
      <span id="counter" data-presence-counter>0</span>
    </turbo-cable-presence-source>
    <ul id="online"></ul>
  </body>
</html>`;
}

/** Open a page in a fresh context; record console output, page errors and WebSocket frames/commands. */
async function openPage(name, html) {
  web.pages.set(`/${name}`, html);
  const context = await browser.newContext();
  const page = await context.newPage();
  const frames = [];
  const sent = [];
  const diag = { name, console: [], errors: [], frames, sent };
  pageDiagnostics.push(diag);
  page.on('console', (m) => { diag.console.push(`${m.type()}: ${m.text()}`); if (diag.console.length > 200) diag.console.shift(); });
  page.on('pageerror', (e) => diag.errors.push(String(e)));
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => {
      try { frames.push(JSON.parse(f.payload)); } catch { frames.push({ $raw: String(f.payload) }); }
    });
    ws.on('framesent', (f) => {
      try { sent.push(JSON.parse(f.payload)); } catch { sent.push({ $raw: String(f.payload) }); }
    });
  });
  await page.goto(`http://127.0.0.1:${web.port}/${name}`);
  await page.waitForFunction(() => window.__e2eBundleLoaded === true, null, { timeout: 10000 });
  return { context, page, frames, sent, diag };
}

/**
 * One round of presence expiry seen on `stream`: a short-lived member joins as `id` (an empty
 * template, so pages render nothing for it) and goes at once; its record expires after the
 * TTL and `watcher` (a page's frames) gets its leave, after every event published on the
 * stream before it.
 */
async function expiryRound(signed, id, watcher) {
  const identifier = JSON.stringify({ channel: '$pubsub', signed_stream_name: signed });
  const probe = await RawClient.connect(server.wsUrl({ jid: makeJwt({ user_id: id }, SECRET) }));
  try {
    assert.equal((await probe.welcome()).type, 'welcome');
    assert.equal(await probe.subscribe(identifier), 'confirm_subscription');
    probe.send({ command: 'join', identifier, presence: { id, info: { html: '' } } });
    await probe.waitFor((m) => m.type === 'presence' && m.message?.type === 'join' && m.message.id === id, 5000, `${id} joined`);
  } finally {
    await probe.close();
  }
  await waitUntil(() => watcher.some((f) => f.type === 'presence' && f.message?.type === 'leave' && f.message.id === id),
    8000, `the leave of ${id} after the TTL`);
}

/** The ids in the page's #online list, in DOM order. */
const onlineIds = (page) => page.$$eval('#online > li', (lis) => lis.map((li) => li.id));

/** Wait (bounded) until the page's member list is exactly `ids` (as a set). */
async function waitForMembers(page, ids, ms, what) {
  const want = [...ids].sort();
  try {
    await page.waitForFunction((w) => {
      const got = [...document.querySelectorAll('#online > li')].map((li) => li.id).sort();
      return JSON.stringify(got) === JSON.stringify(w);
    }, want, { timeout: ms, polling: 25 });
  } catch (err) {
    throw new Error(`${what}: expected members ${JSON.stringify(want)}, page shows ${JSON.stringify(await onlineIds(page))} ` +
      `(counter ${await page.textContent('#counter')}) after ${ms} ms`, { cause: err });
  }
}

function withDiagnostics(fn) {
  return withServerLog(() => server, async () => {
    try {
      return await fn();
    } catch (err) {
      if (err && typeof err === 'object') {
        try {
          for (const d of pageDiagnostics) {
            err.message += `\n--- page ${d.name}: frames received ---\n` +
              JSON.stringify(d.frames.filter((f) => f.type !== 'ping')).slice(0, 2000) +
              `\n--- page ${d.name}: commands sent ---\n${JSON.stringify(d.sent.filter((f) => f.command !== 'pong')).slice(0, 1500)}` +
              `\n--- page ${d.name}: console (tail) ---\n${d.console.slice(-30).join('\n')}\n--- page errors ---\n${d.errors.join('\n')}`;
          }
        } catch { /* read-only message */ }
      }
      throw err;
    }
  });
}

describe('Turbo presence (<turbo-cable-presence-source>) in headless Chromium', () => {
  before(async () => {
    bundle = await buildBundle('turbo_presence_entry.js');

    server = await startServer({
      args: [`--secret=${SECRET}`, '--broker=memory', '--turbo_streams', '--presence_ttl=1'],
      label: 'turbo-presence-browser',
    });
    web = await startWeb(() => bundle);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (web ? web.server.close(resolve) : resolve()));
    await server?.stop();
  });

  it('two pages see each other online; closing one drops it from the other after the TTL', withDiagnostics(async () => {
    const stream = 'gid://e2e/Room/42:presence';
    const signed = signStreamName(stream, SECRET);
    const alice = await openPage('alice', pageHtml({
      cableUrl: server.wsUrl({ jid: makeJwt({ user_id: 'alice' }, SECRET) }), signed, presenceId: 'user-alice', name: 'Alice',
    }));
    let bob;
    try {
      await alice.page.waitForSelector('turbo-cable-presence-source#presence[connected]', { state: 'attached', timeout: 10000 });
      // the extended protocol was negotiated (the presence keep-alive depends on it)
      assert.equal(await alice.page.evaluate(() => window.__e2eCable.transport.ws.protocol), 'actioncable-v1-ext-json');
      const sub = alice.sent.find((c) => c.command === 'subscribe');
      assert.deepEqual(JSON.parse(sub.identifier), { channel: '$pubsub', signed_stream_name: signed });
      assert.ok(alice.frames.some((f) => f.type === 'confirm_subscription' && f.identifier === sub.identifier), 'signed $pubsub confirmed');
      await waitForMembers(alice.page, ['user-alice'], 10000, 'alice alone');
      const aliceJoinedAt = Date.now();

      bob = await openPage('bob', pageHtml({
        cableUrl: server.wsUrl({ jid: makeJwt({ user_id: 'bob' }, SECRET) }), signed, presenceId: 'user-bob', name: 'Bob',
      }));
      await bob.page.waitForSelector('turbo-cable-presence-source#presence[connected]', { state: 'attached', timeout: 10000 });

      // each page lists both members, rendered from the joiners' own templates
      await waitForMembers(bob.page, ['user-alice', 'user-bob'], 10000, 'bob sees both');
      await waitForMembers(alice.page, ['user-alice', 'user-bob'], 10000, 'alice sees both');
      for (const p of [alice.page, bob.page]) {
        assert.equal(await p.textContent('#online > li#user-alice'), 'Alice');
        assert.equal(await p.textContent('#online > li#user-bob'), 'Bob');
        await p.waitForFunction(() => document.querySelector('#counter').textContent === '2', null, { timeout: 5000 });
        assert.equal(await p.getAttribute('#presence', 'present'), '');
      }
      // the wire: presence commands and events of the extended protocol
      assert.ok(alice.sent.some((c) => c.command === 'join' && c.presence?.id === 'user-alice' &&
        typeof c.presence?.info?.html === 'string' && c.presence.info.html.includes('<turbo-stream')), 'join with the template html');
      assert.ok(alice.frames.some((f) => f.type === 'presence' && f.message?.type === 'join' && f.message.id === 'user-bob'),
        'alice got bob\'s join event');
      assert.ok(bob.frames.some((f) => f.type === 'presence' && f.message?.type === 'info' &&
        f.message.records?.some((r) => r.id === 'user-alice')), 'bob\'s info reply lists alice');

      // close bob's page (its browser context): the record outlives the socket for about the
      // TTL (1 s), then alice gets the leave and the element removes bob's entry
      const closedAt = Date.now();
      await bob.context.close();
      bob = null;
      await waitForMembers(alice.page, ['user-alice'], 8000, 'bob dropped from alice\'s list');
      const droppedAfter = Date.now() - closedAt;
      assert.ok(alice.frames.some((f) => f.type === 'presence' && f.message?.type === 'leave' && f.message.id === 'user-bob'),
        'alice got bob\'s leave event');
      await alice.page.waitForFunction(() => document.querySelector('#counter').textContent === '1', null, { timeout: 5000 });
      assert.ok(droppedAfter >= 500, `dropped ${droppedAfter} ms after close: the record should outlive the socket ~TTL`);

      // alice, still connected on the extended protocol, keeps her own record alive past
      // several TTLs (a base-protocol session's record would expire with a leave): after bob's,
      // three more records that nothing touches expire one after the other (each at least a
      // TTL after it was made), and each leave comes after any leave of alice's; she must
      // still be there
      for (const n of [1, 2, 3]) await expiryRound(signed, `probe-${n}`, alice.frames);
      assert.ok(Date.now() - aliceJoinedAt >= 3000, 'several TTLs passed since alice joined');
      assert.equal(await alice.page.getAttribute('#presence', 'connected'), '');
      const info = await alice.page.evaluate(async () => {
        const src = document.querySelector('#presence');
        return src.channel.presence.info();
      });
      assert.deepEqual(Object.keys(info), ['user-alice']);
      assert.ok(!alice.frames.some((f) => f.type === 'presence' && f.message?.type === 'leave' && f.message.id === 'user-alice'),
        'no leave for the connected page');
      assert.deepEqual(await onlineIds(alice.page), ['user-alice']);
    } finally {
      await bob?.context.close();
      await alice.context.close();
    }
  }));
});
