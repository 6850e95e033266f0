// Presence on backend (RPC) channels: the channel sets its presence stream in the channel state
// (`$p`), clients join/leave it with the extended-protocol commands (gRPC and HTTP backends).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { RawClient } from './support/clients.mjs';
import { startBackend, broadcastTarget } from './rpc/support.mjs';

const SECRET = 'e2e-rpc-presence-secret';
const KINDS = (process.env.E2E_RPC_KINDS || 'grpc,http').split(',').map((s) => s.trim()).filter(Boolean);

for (const kind of KINDS) {
  describe(`presence on an RPC channel over ${kind}`, () => {
    let backend;
    let server;
    const raws = [];

    before(async () => {
      backend = await startBackend(kind, { appSecret: SECRET, label: `presence-${kind}-backend` });
      server = await startServer({
        args: [`--secret=${SECRET}`, `--rpc_host=${backend.rpcHost}`, '--headers=cookie', '--broker=memory'],
        label: `presence-${kind}`,
      });
      await backend.config(broadcastTarget(server));
    });
    after(async () => {
      await Promise.all(raws.map((c) => c.close().catch(() => {})));
      await server?.stop();
      await backend?.stop();
    });

    async function member(user, identifier) {
      const c = await RawClient.connect(server.wsUrl({}), {
        protocols: ['actioncable-v1-ext-json'],
        headers: { cookie: `user=${user}` },
      });
      raws.push(c);
      const w = await c.welcome();
      assert.equal(w.type, 'welcome', JSON.stringify(w));
      assert.equal(await c.subscribe(identifier), 'confirm_subscription');
      return c;
    }

    const presence = (identifier, type, id) => (m) =>
      m.type === 'presence' && m.identifier === identifier && m.message?.type === type && (id === undefined || m.message.id === id);

    it('join, info and leave through the $p channel state', withServerLog(() => [server], async () => {
      const identifier = JSON.stringify({ channel: 'PresenceChannel', room: `r-${process.pid}` });
      const alice = await member('alice', identifier);
      const bob = await member('bob', identifier);

      alice.send({ command: 'join', identifier, presence: { id: 'alice', info: { name: 'Alice' } } });
      const joined = await bob.waitFor(presence(identifier, 'join', 'alice'), 5000, 'bob sees alice join');
      assert.deepEqual(joined.message, { type: 'join', id: 'alice', info: { name: 'Alice' } });
      await alice.waitFor(presence(identifier, 'join', 'alice'), 5000, 'alice sees her own join');

      bob.send({ command: 'presence', identifier });
      const info = await bob.waitFor(presence(identifier, 'info'), 5000, 'info reply');
      assert.deepEqual(info.message, { type: 'info', total: 1, records: [{ id: 'alice', info: { name: 'Alice' } }] });

      alice.send({ command: 'unsubscribe', identifier });
      const left = await bob.waitFor(presence(identifier, 'leave', 'alice'), 5000, 'leave on unsubscribe');
      assert.deepEqual(left.message, { type: 'leave', id: 'alice' });
    }));

    it('a channel without $p has no presence: no reply', withServerLog(() => [server], async () => {
      const identifier = JSON.stringify({ channel: 'EchoChannel' });
      const c = await member('carol', identifier);
      c.send({ command: 'join', identifier, presence: { id: 'carol' } });
      c.send({ command: 'presence', identifier });
      // A command after them on the same connection: commands run in order, so its reply comes
      // after anything the two could have sent.
      c.send({ command: 'message', identifier, data: JSON.stringify({ action: 'echo', marker: true }) });
      await c.waitFor((m) => m.identifier === identifier && m.message?.echo?.marker === true, 5000, 'the echo sent after');
      assert.equal(c.messages.find((m) => m.type === 'presence'), undefined);
    }));
  });
}
