// A tiny static web server for the browser tests: serves the esbuild bundle at /bundle.js and
// the pages registered in `pages` (path -> HTML), on a free loopback port.
import http from 'node:http';

/** Starts the server; `bundle()` returns the current bundle text. */
export async function startWeb(bundle) {
  const pages = new Map();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/bundle.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(bundle());
    } else if (pages.has(url.pathname)) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(pages.get(url.pathname));
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port, pages };
}

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

/** Debian's Chromium, with the flags that work in the sandbox (no network, no GPU). */
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches headless Chromium; playwright gives every launch a fresh temporary profile. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
}

/** Bundles `entry` (a file in e2e/support/) for the browser; returns the bundle text. */
export async function buildBundle(entry) {
  const dir = mkdtempSync(path.join(tmpdir(), 'anycable-e2e-bundle-'));
  const outfile = path.join(dir, 'bundle.js');
  try {
    await esbuild.build({
      entryPoints: [path.join(path.dirname(fileURLToPath(import.meta.url)), entry)],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      outfile,
      logLevel: 'warning',
    });
    return readFileSync(outfile);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Escapes a value for an HTML attribute. */
export function escapeAttr(s) {
  return String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}
