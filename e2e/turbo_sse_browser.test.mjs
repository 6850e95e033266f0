// Hotwire over Server-Sent Events in a real browser: headless Chromium (Debian's
// /usr/bin/chromium via playwright-core) loads a page with @hotwired/turbo (from the
// turbo-rails bundle) whose <turbo-stream-source src="http://…/events?turbo_signed_stream_name=…&jid=…">
// opens the browser's own EventSource, cross-origin (the page is served from another
// port). Server: --sse --secret --turbo_streams --broker=memory. A TCP proxy sits between
// the browser and the server: cutting it and publishing meanwhile must end, after the
// browser reconnects by itself with Last-Event-ID, with every update in the DOM once, in order.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';


import { startServer, withServerLog } from './support/server.mjs';
import { signStreamName, makeJwt } from './support/signing.mjs';
import { waitUntil } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { buildBundle, escapeAttr, launchChromium, startWeb } from './support/web.mjs';

const SECRET = 'e2e-turbo-sse-secret';

let server;
let browser;
let web; // { server, port, pages }
let bundle;
const proxies = [];
const pageDiagnostics = [];

function pageHtml({ src }) {
  return `<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>anycable-rs e2e (SSE)</title>
    <script type="module" src="/bundle.js"></script>
  </head>
  <body>
    <turbo-stream-source id="source" src="${escapeAttr(src)}"></turbo-stream-source>
    <div id="messages"></div>
  </body>
</html>`;
}

// Runs in the page before any script: records what every EventSource the page opens sees
// (Turbo creates it with the global constructor), for assertions and failure output.
function instrumentEventSource() {
  window.__sse = [];
  const Native = window.EventSource;
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      const rec = { url: String(url), events: [] };
      window.__sse.push(rec);
      const t = () => Math.round(performance.now());
      this.addEventListener('open', () => rec.events.push({ t: 'open', at: t() }));
      this.addEventListener('error', () => rec.events.push({ t: 'error', readyState: this.readyState, at: t() }));
      this.addEventListener('message', (e) => rec.events.push({ t: 'message', id: e.lastEventId, data: e.data, at: t() }));
      for (const type of ['welcome', 'confirm_subscription', 'confirm_history', 'reject_history', 'disconnect']) {
        this.addEventListener(type, (e) => rec.events.push({ t: type, data: e.data, at: t() }));
      }
    }
  };
}

async function openPage(name, html) {
  web.pages.set(`/${name}`, html);
  const context = await browser.newContext();
  await context.addInitScript(instrumentEventSource);
  const page = await context.newPage();
  const diag = { name, page, console: [], errors: [] };
  pageDiagnostics.push(diag);
  page.on('console', (m) => diag.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => diag.errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${web.port}/${name}`);
  await page.waitForFunction(() => window.__e2eBundleLoaded === true, null, { timeout: 10000 });
  return { context, page };
}

// Turbo Stream without element ids: Turbo's append removes an existing element with the
// same id before appending, which would hide a duplicate delivery; these stay visible.
const turboStream = (n) =>
  `<turbo-stream action="append" target="messages"><template><p class="msg" data-n="${n}">update ${n}</p></template></turbo-stream>`;
const domNs = (page) => page.$$eval('#messages > p.msg', (ps) => ps.map((p) => Number(p.dataset.n)));
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function withDiagnostics(fn) {
  return withServerLog(() => server, async () => {
    try {
      return await fn();
    } catch (err) {
      const d = pageDiagnostics.at(-1);
      if (err && typeof err === 'object') {
        let extra = '';
        if (d) {
          let sse = '';
          try { sse = JSON.stringify(await d.page.evaluate(() => window.__sse)).slice(0, 3000); } catch { sse = '(page gone)'; }
          extra += `\n--- page ${d.name}: EventSources ---\n${sse}\n--- console ---\n${d.console.join('\n')}\n--- page errors ---\n${d.errors.join('\n')}`;
        }
        for (const p of proxies) {
          for (const c of p.connections) extra += `\n--- proxied request #${c.id} ---\n${p.upText(c).slice(0, 600)}`;
        }
        try { err.message += extra; } catch { /* ignore */ }
      }
      throw err;
    }
  });
}

describe('Turbo Streams over SSE (<turbo-stream-source>) in headless Chromium', () => {
  before(async () => {
    bundle = await buildBundle('turbo_entry.js');

    server = await startServer({
      args: ['--sse', `--secret=${SECRET}`, '--turbo_streams', '--broker=memory'],
      label: 'turbo-sse-browser',
    });
    web = await startWeb(() => bundle);
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await Promise.all(proxies.map((p) => p.close()));
    await new Promise((resolve) => (web ? web.server.close(resolve) : resolve()));
    await server?.stop();
  });

  it('updates reach the DOM; after a network cut the browser resumes with Last-Event-ID and every missed update lands once, in order',
    withDiagnostics(async () => {
      const stream = `gid://e2e/Room/${Date.now()}:messages`;
      const proxy = await TcpProxy.start(server.port);
      proxies.push(proxy);
      const src = `http://127.0.0.1:${proxy.port}/events?turbo_signed_stream_name=${encodeURIComponent(signStreamName(stream, SECRET))}` +
        `&jid=${encodeURIComponent(makeJwt({ user_id: 'browser' }, SECRET))}`;
      const { context, page } = await openPage('sse', pageHtml({ src }));
      try {
        // connected: the first proxied response carries the confirmation
        await waitUntil(() => proxy.connections[0] && proxy.downText(proxy.connections[0]).includes('event: confirm_subscription'),
          10000, 'the browser EventSource to get confirm_subscription');
        const first = proxy.connections[0];
        const request = proxy.upText(first);
        assert.match(request, /^GET \/events\?turbo_signed_stream_name=/, 'the page opened GET /events');
        assert.match(request, new RegExp(`^origin: http://127\\.0\\.0\\.1:${web.port}\\r?$`, 'im'), 'cross-origin request');
        assert.match(proxy.downText(first), /^access-control-allow-origin: \*\r?$/im, 'the server allows any origin');

        let res = await server.broadcast({ stream, data: JSON.stringify(turboStream(1)) });
        assert.equal(res.status, 201, res.body);
        await page.waitForSelector('#messages > p[data-n="1"]', { timeout: 10000 });
        // plain (non-JSON) HTML data works the same
        res = await server.broadcast({ stream, data: turboStream(2) });
        assert.equal(res.status, 201, res.body);
        await page.waitForSelector('#messages > p[data-n="2"]', { timeout: 10000 });
        assert.deepEqual(await domNs(page), [1, 2]);
        const epoch = /^id: 2\/([^/\r\n]+)\//m.exec(proxy.downText(first));
        assert.ok(epoch, `the second update carried id 2/<epoch>/<stream>:\n${proxy.downText(first).slice(-600)}`);

        // cut the network; keep refusing until the browser has failed at least one reconnect
        proxy.cut();
        for (const n of range(3, 6)) {
          res = await server.broadcast({ stream, data: JSON.stringify(turboStream(n)) });
          assert.equal(res.status, 201, res.body);
        }
        await waitUntil(() => proxy.resets > 0, 15000, 'the browser to try reconnecting while the network is down');
        assert.deepEqual(await domNs(page), [1, 2], 'nothing arrives while the network is down');
        const connsBefore = proxy.connections.length;
        proxy.restore();

        await page.waitForSelector('#messages > p[data-n="6"]', { timeout: 15000 });
        const resumed = proxy.connections[connsBefore];
        assert.ok(resumed, 'the browser reconnected through the proxy');
        const lastEventId = /^last-event-id: *(.*?)\r?$/im.exec(proxy.upText(resumed));
        assert.ok(lastEventId, `the reconnect request carries Last-Event-ID:\n${proxy.upText(resumed)}`);
        assert.equal(lastEventId[1], `2/${epoch[1]}/${stream}`, 'Last-Event-ID is the id of the last update seen');

        res = await server.broadcast({ stream, data: JSON.stringify(turboStream(7)) });
        assert.equal(res.status, 201, res.body);
        await page.waitForSelector('#messages > p[data-n="7"]', { timeout: 10000 });
        // #8 is the marker: a duplicate of an earlier update would be rendered before it
        res = await server.broadcast({ stream, data: JSON.stringify(turboStream(8)) });
        assert.equal(res.status, 201, res.body);
        await page.waitForSelector('#messages > p[data-n="8"]', { timeout: 10000 });
        assert.deepEqual(await domNs(page), range(1, 8), 'every update in the DOM exactly once, in order');
        const delivered = await page.evaluate(() => window.__sse.flatMap((r) => r.events.filter((e) => e.t === 'message').map((e) => e.id)));
        assert.deepEqual(delivered.map((id) => Number(id.split('/')[0])), range(1, 8), 'one message event per update (offsets 1..8)');
      } finally {
        await context.close();
      }
    }));

  it('continuous updates across the cut and the resume: the DOM ends with every update once, in order',
    withDiagnostics(async () => {
      const stream = `gid://e2e/Room/${Date.now()}:race`;
      const proxy = await TcpProxy.start(server.port);
      proxies.push(proxy);
      const src = `http://127.0.0.1:${proxy.port}/events?turbo_signed_stream_name=${encodeURIComponent(signStreamName(stream, SECRET))}` +
        `&jid=${encodeURIComponent(makeJwt({ user_id: 'browser-race' }, SECRET))}`;
      const { context, page } = await openPage('sse-race', pageHtml({ src }));
      try {
        await waitUntil(() => proxy.connections[0] && proxy.downText(proxy.connections[0]).includes('event: confirm_subscription'),
          10000, 'the browser EventSource to get confirm_subscription');
        let next = 1;
        let running = true;
        // ~8 updates/s; the browser is away a few seconds, well inside the history limit (100)
        const publisher = (async () => {
          while (running) {
            const res = await server.broadcast({ stream, data: JSON.stringify(turboStream(next++)) });
            assert.equal(res.status, 201, res.body);
            await new Promise((r) => setTimeout(r, 120));
          }
        })();
        try {
          await page.waitForSelector('#messages > p[data-n="3"]', { timeout: 10000 });
          proxy.cut();
          await waitUntil(() => proxy.resets > 0, 15000, 'the browser to try reconnecting while the network is down');
          const connsBefore = proxy.connections.length;
          proxy.restore();
          await waitUntil(() => proxy.connections[connsBefore] &&
            proxy.downText(proxy.connections[connsBefore]).includes('event: confirm_history'), 15000, 'the resumed stream to confirm its history');
          // updates go on arriving live on the resumed stream
          const resumedAt = next;
          await page.waitForSelector(`#messages > p[data-n="${resumedAt + 4}"]`, { timeout: 10000 });
        } finally {
          running = false;
          await publisher;
        }
        // one more update after the publisher stopped is the marker: a duplicate or a late
        // replay of an earlier one would be rendered before it
        const last = next;
        const res = await server.broadcast({ stream, data: JSON.stringify(turboStream(last)) });
        assert.equal(res.status, 201, res.body);
        await page.waitForSelector(`#messages > p[data-n="${last}"]`, { timeout: 10000 });
        const got = await domNs(page);
        const dups = got.filter((n, i) => got.indexOf(n) !== i);
        const missing = range(1, last).filter((n) => !got.includes(n));
        assert.deepEqual({ dups, missing }, { dups: [], missing: [] }, `DOM has ${got.length} of ${last} updates`);
        assert.deepEqual(got, range(1, last), 'in order');
      } finally {
        await context.close();
      }
    }));

});
