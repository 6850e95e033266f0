// Hotwire in a real browser: headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core) loads a page with @hotwired/turbo-rails, whose
// <turbo-cable-stream-source> subscribes to Turbo::StreamsChannel on anycable-rs
// (--secret --turbo_streams, JWT in the action-cable-url). A Turbo Stream
// broadcast over HTTP must change the DOM.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';


import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, tamperSignedName, makeJwt } from './support/signing.mjs';
import { buildBundle, escapeAttr, launchChromium, startWeb } from './support/web.mjs';

const SECRET = 'e2e-turbo-browser-secret';

let server;
let browser;
let web; // { server, port, pages: Map }
let bundle;
const pageDiagnostics = [];

function pageHtml({ cableUrl, sources }) {
  const elements = sources.map((s) =>
    `<turbo-cable-stream-source id="${escapeAttr(s.id)}" channel="Turbo::StreamsChannel" signed-stream-name="${escapeAttr(s.signed)}"></turbo-cable-stream-source>`).join('\n    ');
  return `<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>anycable-rs e2e</title>
    <meta name="action-cable-url" content="${escapeAttr(cableUrl)}">
    <script type="module" src="/bundle.js"></script>
  </head>
  <body>
    ${elements}
    <div id="messages"></div>
  </body>
</html>`;
}

/** Open a page in a fresh context; record console output, page errors and WebSocket frames. */
async function openPage(name, html) {
  web.pages.set(`/${name}`, html);
  const context = await browser.newContext();
  const page = await context.newPage();
  const frames = [];
  const diag = { name, console: [], errors: [], frames };
  pageDiagnostics.push(diag);
  page.on('console', (m) => diag.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => diag.errors.push(String(e)));
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => {
      try { frames.push(JSON.parse(f.payload)); } catch { frames.push({ $raw: String(f.payload) }); }
    });
  });
  await page.goto(`http://127.0.0.1:${web.port}/${name}`);
  await page.waitForFunction(() => window.__e2eBundleLoaded === true, null, { timeout: 10000 });
  return { context, page, frames, diag };
}

async function waitForFrame(frames, pred, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const f = frames.find(pred);
    if (f) return f;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; frames: ${JSON.stringify(frames.filter((x) => x.type !== 'ping')).slice(0, 1500)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

const turboStream = (id, text) =>
  `<turbo-stream action="append" target="messages"><template><p id="${id}">${text}</p></template></turbo-stream>`;

function withDiagnostics(fn) {
  return withServerLog(() => server, async () => {
    try {
      return await fn();
    } catch (err) {
      const d = pageDiagnostics.at(-1);
      if (d && err && typeof err === 'object') {
        try {
          err.message += `\n--- page ${d.name}: console ---\n${d.console.join('\n')}\n--- page errors ---\n${d.errors.join('\n')}`;
        } catch { /* ignore */ }
      }
      throw err;
    }
  });
}

describe('Turbo Streams in headless Chromium', () => {
  before(async () => {
    bundle = await buildBundle('turbo_entry.js');

    server = await startServer({ args: [`--secret=${SECRET}`, '--turbo_streams'], label: 'turbo-browser' });
    web = await startWeb(() => bundle);
    // playwright's launch() uses a fresh temporary --user-data-dir on every start.
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (web ? web.server.close(resolve) : resolve()));
    await server?.stop();
  });

  it('appends a broadcast Turbo Stream to the page', withDiagnostics(async () => {
    const stream = 'gid://e2e/Room/1:messages';
    const jwt = makeJwt({ user_id: 1 }, SECRET);
    const { context, page, frames } = await openPage('positive', pageHtml({
      cableUrl: server.wsUrl({ jid: jwt }),
      sources: [{ id: 'room', signed: signStreamName(stream, SECRET) }],
    }));
    try {
      await page.waitForSelector('turbo-cable-stream-source#room[connected]', { state: 'attached', timeout: 10000 });
      assert.ok(frames.some((f) => f.type === 'welcome'), 'browser got a welcome');
      assert.equal(await page.locator('#m1').count(), 0);

      // as turbo-rails/anycable-rails send it: HTML as a JSON-encoded string
      let res = await server.broadcast({ stream, data: JSON.stringify(turboStream('m1', 'Hello')) });
      assert.equal(res.status, 201, res.body);
      await page.waitForSelector('#messages > p#m1', { timeout: 10000 });
      assert.equal(await page.textContent('#m1'), 'Hello');

      // plain (non-JSON) HTML data is delivered as the raw string as well
      res = await server.broadcast({ stream, data: turboStream('m2', 'World &amp; more') });
      assert.equal(res.status, 201, res.body);
      await page.waitForSelector('#messages > p#m2', { timeout: 10000 });
      assert.equal(await page.textContent('#m2'), 'World & more');
      assert.deepEqual(await page.$$eval('#messages > p', (ps) => ps.map((p) => p.id)), ['m1', 'm2'], 'appended in order');
    } finally {
      await context.close();
    }
  }));

  it('a tampered signed stream name is rejected and its broadcasts never land', withDiagnostics(async () => {
    const secretStream = 'gid://e2e/Room/2:messages';
    const controlStream = 'gid://e2e/Room/3:messages';
    const tampered = tamperSignedName(signStreamName(secretStream, SECRET));
    const { context, page, frames } = await openPage('negative', pageHtml({
      cableUrl: server.wsUrl({ jid: makeJwt({ user_id: 2 }, SECRET) }),
      sources: [
        { id: 'tampered', signed: tampered },
        { id: 'control', signed: signStreamName(controlStream, SECRET) },
      ],
    }));
    try {
      // the valid control source on the same connection confirms; the tampered one is rejected
      await page.waitForSelector('turbo-cable-stream-source#control[connected]', { state: 'attached', timeout: 10000 });
      await waitForFrame(frames, (f) => f.type === 'reject_subscription' &&
        JSON.parse(f.identifier).signed_stream_name === tampered, 10000, 'reject_subscription for the tampered name');
      assert.equal(await page.getAttribute('#tampered', 'connected'), null, 'tampered source must not be connected');

      // a batch: first to the tampered source's stream, then to the control stream
      const res = await server.broadcast([
        { stream: secretStream, data: JSON.stringify(turboStream('leak', 'must not appear')) },
        { stream: controlStream, data: JSON.stringify(turboStream('ctl', 'control')) },
      ]);
      assert.equal(res.status, 201, res.body);
      // the control update is the marker: the batch is delivered in order on the page's one
      // connection, and Turbo renders in order, so a leaked update would be in the DOM first
      await page.waitForSelector('#messages > p#ctl', { timeout: 10000 });
      assert.equal(await page.locator('#leak').count(), 0, 'broadcast to the tampered stream must not land');
      assert.ok(!frames.some((f) => f.type === 'confirm_subscription' &&
        JSON.parse(f.identifier).signed_stream_name === tampered), 'no confirmation for the tampered name');
      assert.equal(await page.getAttribute('#tampered', 'connected'), null);
    } finally {
      await context.close();
    }
  }));
});
