// Presence with the AnyCable JS client: @anycable/core's `channel.presence` (join, info,
// leave) on the extended protocol against anycable-rs with the memory broker.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, withServerLog } from './support/server.mjs';
import { Inbox } from './support/clients.mjs';
import { extCable } from './support/anycable_client.mjs';

let server; // --broker=memory --presence_ttl=1
const cables = [];

function newCable() {
  const c = extCable(server.wsUrl({}));
  cables.push(c);
  return c;
}

/** A cable subscribed to the public stream `name`, with its presence events collected. */
async function member(name) {
  const c = newCable();
  const sub = c.stream(name);
  const presence = new Inbox();
  sub.channel.on('presence', (msg) => presence.push(msg));
  await sub.channel.ensureSubscribed();
  return { cable: c, channel: sub.channel, presence, messages: sub.messages };
}

/**
 * Publishes a marker on `room` and waits until `member` has it: presence events published on the
 * room before the marker have reached that member by then (one stream is delivered in order).
 */
async function marker(room, member, n) {
  const res = await server.broadcast({ stream: room, data: JSON.stringify({ marker: n }) });
  assert.equal(res.status, 201, `marker broadcast -> ${res.status} ${res.body}`);
  await member.messages.wait((m) => m.message?.marker === n, 5000, `marker #${n} on ${room}`);
}

const joinOf = (id) => (m) => m.type === 'join' && m.id === id;
const leaveOf = (id) => (m) => m.type === 'leave' && m.id === id;

describe('presence with @anycable/core', () => {
  before(async () => {
    server = await startServer({
      args: ['--noauth', '--public_streams', '--broker=memory', '--presence_ttl=1'],
      label: 'presence',
    });
  });

  after(async () => {
    for (const c of cables) { try { c.disconnect(); } catch { /* closed */ } }
    await server?.stop();
  });

  it('join, info and leave are seen by every member', withServerLog(() => [server], async () => {
    const a = await member('room-1');
    const b = await member('room-1');

    await a.channel.presence.join('42', { name: 'Jack' });
    const seenByA = await a.presence.wait(joinOf('42'), 5000, 'a sees its own join');
    const seenByB = await b.presence.wait(joinOf('42'), 5000, 'b sees the join');
    assert.deepEqual(seenByA.info, { name: 'Jack' });
    assert.deepEqual(seenByB.info, { name: 'Jack' });

    await b.channel.presence.join(13, { name: 'Mia' });
    await a.presence.wait(joinOf('13'), 5000, 'a sees b join');

    assert.deepEqual(await a.channel.presence.info(), { 42: { name: 'Jack' }, 13: { name: 'Mia' } });
    // b's state is built from the info reply and kept up to date by the events.
    assert.deepEqual(await b.channel.presence.info(), { 42: { name: 'Jack' }, 13: { name: 'Mia' } });

    await a.channel.presence.leave();
    await b.presence.wait(leaveOf('42'), 5000, 'b sees the leave');
    assert.deepEqual(await b.channel.presence.info(), { 13: { name: 'Mia' } });
  }));

  it('a second tab does not re-announce; the last one leaves after the TTL', withServerLog(() => [server], async () => {
    const watcher = await member('room-2');
    const tab1 = await member('room-2');
    const tab2 = await member('room-2');

    await tab1.channel.presence.join('7', { name: 'Ann' });
    await watcher.presence.wait(joinOf('7'), 5000, 'first tab joins');
    await tab2.channel.presence.join('7', { name: 'Ann' });
    // The info reply comes after the join on tab2's connection (commands run in order), so the
    // server has handled the join, and published whatever it announces, before the marker.
    await tab2.channel.presence.info();
    await marker('room-2', watcher, 1);
    assert.equal(watcher.presence.items.filter(joinOf('7')).length, 1, 'one join for two tabs');

    tab1.cable.disconnect();
    // A presence id held by a session that joins only now and goes at once: its record expires
    // (--presence_ttl=1) no earlier than tab1's, so once its leave is seen, the sweep that drops
    // tab1's record has run too.
    const late = await member('room-2');
    await late.channel.presence.join('late', {});
    await late.channel.presence.info();
    late.cable.disconnect();
    await watcher.presence.wait(leaveOf('late'), 5000, 'the leave of the session that went after tab1');
    assert.equal(watcher.presence.items.filter(leaveOf('7')).length, 0, 'the second tab still holds the id');

    const closedAt = Date.now();
    tab2.cable.disconnect();
    await watcher.presence.wait(leaveOf('7'), 5000, 'leave after the last tab is gone');
    assert.ok(Date.now() - closedAt >= 500, 'the record outlives the disconnect for about the TTL');
  }));
});
