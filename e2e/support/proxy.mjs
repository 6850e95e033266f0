// A TCP proxy between a client and the server, so tests can cut "the network"
// without the client's or the server's cooperation:
//
//   const proxy = await TcpProxy.start(server.port);
//   ... client connects to 127.0.0.1:proxy.port ...
//   proxy.cut();       // destroy every open connection (both sides) and reset new ones
//   proxy.restore();   // accept and forward again
//   await proxy.close();
//
// While cut, the listening socket stays bound (so no other process can take the port)
// but every new connection is reset at once (ECONNRESET): to a client that is a
// network error, not an HTTP answer, so WebSocket clients and EventSource keep retrying.
// Every forwarded connection records the bytes in both directions (capped), so tests
// can read the HTTP requests a client sent (e.g. its Last-Event-ID header) and the raw
// bytes the server answered.
import net from 'node:net';

const RECORD_LIMIT = 256 * 1024; // bytes kept per direction and connection

export class TcpProxy {
  static async start(targetPort, { targetHost = '127.0.0.1', host = '127.0.0.1' } = {}) {
    const proxy = new TcpProxy(targetPort, targetHost);
    await new Promise((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, host, () => {
        proxy.server.off('error', reject);
        resolve();
      });
    });
    proxy.host = host;
    proxy.port = proxy.server.address().port;
    return proxy;
  }

  constructor(targetPort, targetHost) {
    this.targetPort = targetPort;
    this.targetHost = targetHost;
    this.refusing = false;
    this.open = new Set(); // live { client, upstream } pairs
    this.connections = []; // every forwarded connection, in accept order: { id, up, down, closed }
    this.resets = 0; // connections reset while cut
    this.server = net.createServer((client) => this.#accept(client));
    this.server.on('error', () => {});
  }

  #accept(client) {
    client.on('error', () => {});
    if (this.refusing) {
      this.resets++;
      client.resetAndDestroy();
      return;
    }
    const record = { id: this.connections.length + 1, up: [], upBytes: 0, down: [], downBytes: 0, closed: false };
    this.connections.push(record);
    const upstream = net.connect(this.targetPort, this.targetHost);
    upstream.on('error', () => {});
    const pair = { client, upstream, record };
    this.open.add(pair);
    const keep = (dir, chunk) => {
      const key = `${dir}Bytes`;
      if (record[key] < RECORD_LIMIT) {
        record[dir].push(chunk);
        record[key] += chunk.length;
      }
    };
    client.on('data', (chunk) => { keep('up', chunk); upstream.write(chunk); });
    upstream.on('data', (chunk) => { keep('down', chunk); client.write(chunk); });
    const end = () => {
      if (record.closed) return;
      record.closed = true;
      this.open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }

  /** Text a connection sent to the server (client → server). */
  upText(record) { return Buffer.concat(record.up).toString('utf8'); }
  /** Text the server sent back on a connection (server → client). */
  downText(record) { return Buffer.concat(record.down).toString('utf8'); }

  /** Destroy every open connection on both sides; with refuse (default) reset new ones until restore(). */
  cut({ refuse = true } = {}) {
    this.refusing = refuse;
    for (const { client, upstream, record } of [...this.open]) {
      record.closed = true;
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.open.clear();
  }

  restore() { this.refusing = false; }

  get openCount() { return this.open.size; }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}
