// The Prometheus endpoint as a scraper sees it: anycable-rs --noauth --public_streams --norpc
// --metrics_http=/metrics --stats_refresh_interval=1, every scrape parsed by the reference
// parser (Python prometheus_client.parser.text_string_to_metric_families, via
// support/prom_parse.py; scripts/test.sh installs prometheus_client). A raw `ws` client
// connects, subscribes to a public stream and receives an HTTP publication; the metric
// values must move accordingly.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer, withServerLog } from './support/server.mjs';
import { RawClient, waitUntil } from './support/clients.mjs';
import { startBackend } from './rpc/support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.PYTHON || 'python3';
const PARSER = path.join(here, 'support', 'prom_parse.py');
const PREFIX = 'anycable_go_';

// Families this configuration must export, with their Prometheus type (docs/metrics.md).
const EXPECTED_TYPES = {
  client_msg_total: 'counter',
  failed_client_msg_total: 'counter',
  failed_auths_total: 'counter',
  disconnected_slow_clients_total: 'counter',
  publications_total: 'counter',
  broadcast_msg_total: 'counter',
  failed_broadcast_msg_total: 'counter',
  remote_commands_total: 'counter',
  server_msg_total: 'counter',
  data_sent_total: 'counter',
  data_rcvd_total: 'counter',
  clients_num: 'gauge',
  clients_uniq_num: 'gauge',
  broadcast_streams_num: 'gauge',
  disconnect_queue_size: 'gauge',
  goroutines_num: 'gauge',
  mem_sys_bytes: 'gauge',
};

let server;
const clients = [];

/** GET /metrics and parse it; returns { body, contentType, families: Map(sampleName -> {type, value}) }. */
async function scrape() {
  const res = await fetch(server.httpUrl('/metrics'), { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const parsed = spawnSync(PYTHON, [PARSER], { input: body, encoding: 'utf8', timeout: 15000 });
  if (parsed.error) throw new Error(`could not run ${PYTHON} ${PARSER}: ${parsed.error.message}`);
  if (parsed.status !== 0) {
    throw new Error(`prometheus_client could not parse /metrics (exit ${parsed.status}): ${parsed.stderr}\n--- body ---\n${body}`);
  }
  const out = JSON.parse(parsed.stdout);
  // the whole body went through the parser: every TYPE line became a family, every sample line a sample
  assert.equal(out.families.length, out.type_lines, `families parsed vs # TYPE lines\n${body}`);
  assert.equal(out.families.reduce((n, f) => n + f.samples.length, 0), out.sample_lines, `samples parsed vs sample lines\n${body}`);
  const samples = new Map();
  for (const f of out.families) {
    for (const s of f.samples) samples.set(s.name, { family: f.name, type: f.type, labels: s.labels, value: s.value });
  }
  return { body, contentType: res.headers.get('content-type'), families: out.families, samples };
}

const value = (scraped, name) => {
  const s = scraped.samples.get(PREFIX + name);
  assert.ok(s, `${PREFIX}${name} missing from /metrics:\n${scraped.body}`);
  return s.value;
};

/** Scrape until `pred(scraped)` holds (gauges are sampled every second); bounded. */
async function scrapeUntil(pred, ms, what) {
  let last;
  try {
    return await waitUntil(async () => {
      last = await scrape();
      return pred(last) ? last : null;
    }, ms, what, 200);
  } catch (err) {
    throw new Error(`${err.message}\n--- last scrape ---\n${last?.body}`, { cause: err });
  }
}

describe('Prometheus /metrics parsed by prometheus_client', () => {
  before(async () => {
    server = await startServer({
      args: ['--noauth', '--public_streams', '--norpc', '--metrics_http=/metrics', '--stats_refresh_interval=1'],
      label: 'metrics',
    });
  });

  after(async () => {
    for (const c of clients) await c.close();
    await server?.stop();
  });

  it('the whole body parses, names and types are AnyCable-Go\'s', withServerLog(() => server, async () => {
    const s = await scrape();
    assert.match(s.contentType, /^text\/plain/);
    for (const f of s.families) {
      assert.ok(f.name.startsWith(PREFIX), `family ${f.name} lacks the ${PREFIX} prefix`);
      assert.ok(['counter', 'gauge'].includes(f.type), `family ${f.name} has type ${f.type}`);
      assert.ok(f.documentation.length > 0, `family ${f.name} has a HELP text`);
      assert.equal(f.samples.length, 1, `${f.name}: one sample (no tags configured)`);
      for (const sample of f.samples) {
        assert.ok(sample.name.startsWith(PREFIX), `sample ${sample.name} lacks the prefix`);
        assert.deepEqual(sample.labels, {}, `${sample.name} has no labels without --metrics_tags`);
        assert.ok(Number.isFinite(sample.value) && sample.value >= 0, `${sample.name} = ${sample.value}`);
        // the parser strips `_total` from a counter family's name, never from its sample
        if (f.type === 'counter') assert.equal(sample.name, `${f.name}_total`);
        else assert.equal(sample.name, f.name);
      }
    }
    for (const [name, type] of Object.entries(EXPECTED_TYPES)) {
      const sample = s.samples.get(PREFIX + name);
      assert.ok(sample, `${PREFIX}${name} missing:\n${s.body}`);
      assert.equal(sample.type, type, `${PREFIX}${name} type`);
    }
    // --norpc: no RPC families
    assert.ok(![...s.samples.keys()].some((k) => k.startsWith(`${PREFIX}rpc_`)), 'no rpc_* metrics with --norpc');
  }));

  it('values move: clients_num, client_msg_total, broadcast_msg_total, server_msg_total', withServerLog(() => server, async () => {
    const base = await scrapeUntil((s) => value(s, 'clients_num') === 0, 5000, 'clients_num 0 before any client');
    const baseClientMsg = value(base, 'client_msg_total');

    const client = await RawClient.connect(server.wsUrl({}));
    clients.push(client);
    const welcome = await client.welcome();
    assert.equal(welcome.type, 'welcome');
    const connected = await scrapeUntil((s) => value(s, 'clients_num') === 1, 5000, 'clients_num 1 after connecting');
    assert.equal(value(connected, 'clients_uniq_num'), 1);
    assert.equal(value(connected, 'client_msg_total'), baseClientMsg, 'no client command yet');
    assert.ok(value(connected, 'server_msg_total') >= 1, 'the welcome counts as a server frame');

    const identifier = { channel: '$pubsub', stream_name: 'metrics-room' };
    assert.equal(await client.subscribe(identifier), 'confirm_subscription');
    const subscribed = await scrapeUntil((s) => value(s, 'broadcast_streams_num') === 1, 5000, 'broadcast_streams_num 1 after subscribing');
    assert.equal(value(subscribed, 'client_msg_total'), baseClientMsg + 1, 'the subscribe command is counted once');
    assert.ok(value(subscribed, 'data_rcvd_total') > value(base, 'data_rcvd_total'), 'data_rcvd_total counts the subscribe bytes');

    const before = await scrape();
    const res = await server.broadcast({ stream: 'metrics-room', data: JSON.stringify({ text: 'hello' }) });
    assert.equal(res.status, 201, res.body);
    await client.waitForData(identifier, (m) => m.text === 'hello', 5000, 'the publication');
    // counters are live (no refresh interval); bounded wait in case the frame counter is
    // bumped just after the write the client has already seen
    const after = await scrapeUntil((s) => value(s, 'broadcast_msg_total') > value(before, 'broadcast_msg_total') &&
      value(s, 'server_msg_total') > value(before, 'server_msg_total'), 5000, 'counters after the publication');
    assert.equal(value(after, 'publications_total'), value(before, 'publications_total') + 1, 'one publication');
    assert.equal(value(after, 'broadcast_msg_total'), value(before, 'broadcast_msg_total') + 1, 'one broadcast message');
    assert.ok(value(after, 'server_msg_total') > value(before, 'server_msg_total'), 'server_msg_total grows with the delivery');
    assert.ok(value(after, 'data_sent_total') > value(before, 'data_sent_total'), 'data_sent_total grows with the delivery');
    assert.equal(value(after, 'client_msg_total'), baseClientMsg + 1, 'receiving adds no client message');
    assert.equal(value(after, 'failed_broadcast_msg_total'), 0);

    await client.close();
    await scrapeUntil((s) => value(s, 'clients_num') === 0 && value(s, 'broadcast_streams_num') === 0, 5000,
      'clients_num 0 after the client left');
  }));
});

describe('grpc_active_conn_num with a gRPC backend', () => {
  let backend;
  const rpcClients = [];

  before(async () => {
    backend = await startBackend('grpc');
    server = await startServer({
      args: [`--rpc_host=${backend.rpcHost}`, '--metrics_http=/metrics', '--stats_refresh_interval=1'],
      label: 'metrics-grpc',
    });
  });

  after(async () => {
    for (const c of rpcClients) await c.close();
    await server?.stop();
    await backend?.stop();
  });

  it('counts the live connections to the gRPC server', withServerLog(() => server, async () => {
    const idle = await scrapeUntil((s) => value(s, 'grpc_active_conn_num') === 0, 5000, 'no connection before any call');
    assert.equal(idle.samples.get(`${PREFIX}grpc_active_conn_num`).type, 'gauge');
    const client = await RawClient.connect(server.wsUrl({}), { headers: { Cookie: 'user=alice' } });
    rpcClients.push(client);
    assert.equal((await client.welcome()).type, 'welcome', 'the backend accepted the connection');
    const connected = await scrapeUntil((s) => value(s, 'grpc_active_conn_num') === 1, 5000, 'one connection after the Connect call');
    assert.ok(value(connected, 'rpc_call_total') >= 1);
  }));
});
