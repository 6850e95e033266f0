#!/usr/bin/env node
// gRPC RPC backend for anycable-rs: service anycable.RPC (proto/rpc.proto) with @grpc/grpc-js,
// running the test application of app.mjs.
//
//   node e2e/rpc/grpc_backend.mjs [--host=127.0.0.1] [--port=50051] [--control-port=50052]
//        [--broadcast-url=http://127.0.0.1:8080/_broadcast] [--broadcast-key=KEY]
//
// anycable-rs: --rpc_host=127.0.0.1:50051
// Control/inspection HTTP server on --control-port (0 = any free port): /_test/* (see app.mjs).
// When ready, prints one JSON line to stdout: {"ready":true,"transport":"grpc","port":..,"control_port":..}.
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import './register.mjs';

// Dynamic import: the module hook of register.mjs must be in place before serverless-js loads.
const { runCall, handleControl, parseArgs, configure } = await import('./app.mjs');

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO = process.env.ANYCABLE_PROTO || path.resolve(here, '..', '..', 'proto', 'rpc.proto');

const opts = parseArgs(process.argv.slice(2));
const host = opts.host || '127.0.0.1';
const port = Number(opts.port ?? process.env.PORT ?? 50051);
const controlPort = Number(opts['control-port'] ?? (port ? port + 1 : 0));
if (opts['broadcast-url']) configure({ broadcast_url: opts['broadcast-url'] });
if (opts['broadcast-key']) configure({ broadcast_key: opts['broadcast-key'] });

const definition = protoLoader.loadSync(PROTO, {
  keepCase: true, // snake_case field names, the same shape as HTTP RPC JSON
  enums: Number, // status as 0/1/2
  longs: String,
  defaults: false, // absent fields stay absent (as in HTTP RPC JSON)
  oneofs: true,
});
const proto = grpc.loadPackageDefinition(definition).anycable;

const ERRORS = {
  exhausted: { code: grpc.status.RESOURCE_EXHAUSTED, details: 'backend is at its concurrency limit (test backend)' },
  unavailable: { code: grpc.status.UNAVAILABLE, details: 'backend unavailable (test backend)' },
  failed: { code: grpc.status.INTERNAL, details: 'injected internal error (test backend)' },
};

function unary(method) {
  return async (call, callback) => {
    const first = (k) => {
      const v = call.metadata.get(k);
      return v.length ? String(v[0]) : null;
    };
    const meta = { sid: first('sid'), protov: first('protov'), transport: 'grpc' };
    try {
      const { outcome, response } = await runCall(method, call.request, meta);
      if (outcome !== 'ok') {
        callback(ERRORS[outcome]);
        return;
      }
      callback(null, response);
    } catch (err) {
      callback({ code: grpc.status.UNKNOWN, details: String(err?.message || err) });
    }
  };
}

const server = new grpc.Server();
server.addService(proto.RPC.service, {
  Connect: unary('connect'),
  Command: unary('command'),
  Disconnect: unary('disconnect'),
});

const control = http.createServer(async (req, res) => {
  if (!(await handleControl(req, res))) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: gRPC backend control server only serves /_test/*\n');
  }
});

const boundPort = await new Promise((resolve, reject) => {
  server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
});
const boundControl = await new Promise((resolve, reject) => {
  control.once('error', reject);
  control.listen(controlPort, host, () => resolve(control.address().port));
});

process.stdout.write(`${JSON.stringify({ ready: true, transport: 'grpc', host, port: boundPort, control_port: boundControl, proto: PROTO })}\n`);
process.stderr.write(`gRPC RPC backend on ${host}:${boundPort} (anycable-rs --rpc_host=${host}:${boundPort}); control http://${host}:${boundControl}/_test/state\n`);

function shutdown() {
  control.close();
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
