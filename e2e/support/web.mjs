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
