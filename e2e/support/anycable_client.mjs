// @anycable/core (the AnyCable JS client) in Node, on the extended protocol, with
// every WebSocket it opens recorded: URL, frames received and commands sent.
import WebSocket from 'ws';
import { createCable, BaseLogger } from '@anycable/core';

import { Inbox } from './clients.mjs';

class CollectingLogger extends BaseLogger {
  constructor(level = 'debug') {
    super(level);
    this.lines = [];
  }
  writeLogEntry(level, msg, details) {
    let d = '';
    if (details !== undefined) {
      try { d = ` ${JSON.stringify(details)}`; } catch { d = ` ${String(details)}`; }
    }
    this.lines.push(`${new Date().toISOString().slice(11, 23)} ${level} ${msg}${d.slice(0, 300)}`);
    if (this.lines.length > 300) this.lines.shift();
  }
}

/** A `ws` subclass recording what one cable's sockets receive and send. */
function recordingWebSocket(sockets) {
  class RecordingWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      super(url, protocols, options);
      this.openedUrl = url;
      this.frames = new Inbox(); // parsed server → client frames
      this.sent = new Inbox(); // parsed client → server commands
      this.closeInfo = null;
      this.on('message', (data) => {
        const text = data.toString('utf8');
        try { this.frames.push(JSON.parse(text)); } catch { this.frames.push({ $unparsed: text }); }
      });
      this.on('close', (code, reason) => { this.closeInfo = { code, reason: reason.toString() }; });
      this.on('error', () => {});
      sockets.push(this);
    }
    send(data, ...rest) {
      try { this.sent.push(JSON.parse(String(data))); } catch { this.sent.push({ $unparsed: String(data) }); }
      return super.send(data, ...rest);
    }
  }
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
    Object.defineProperty(RecordingWebSocket, k, { value: WebSocket[k], enumerable: true });
  }
  return RecordingWebSocket;
}

/**
 * createCable(url, {protocol: 'actioncable-v1-ext-json', websocketImplementation: <recording ws>, ...opts}).
 * Returns { cable, sockets, events, logger, stream(name), disconnect() }:
 *  - events: cable-level Inbox of {event: 'connect'|'disconnect'|'close'|'info', data}
 *  - stream(name, {signed}) → { channel, messages: Inbox of {message, meta}, events: Inbox of channel events }
 */
export function extCable(url, opts = {}) {
  const sockets = [];
  const logger = new CollectingLogger(opts.logLevel || 'debug');
  const cable = createCable(url, {
    protocol: 'actioncable-v1-ext-json',
    websocketImplementation: recordingWebSocket(sockets),
    logger,
    // reconnect quickly (the default backoff starts at 3-9 s)
    reconnectStrategy: () => 200,
    ...opts,
  });
  const events = new Inbox();
  for (const ev of ['connect', 'disconnect', 'close', 'info']) {
    cable.on(ev, (data) => events.push({ event: ev, data, at: Date.now() }));
  }
  return {
    cable,
    sockets,
    events,
    logger,
    lastSocket() { return sockets.at(-1); },
    stream(name, { signed = false } = {}) {
      const channel = signed ? cable.streamFromSigned(name) : cable.streamFrom(name);
      const messages = new Inbox();
      const chEvents = new Inbox();
      channel.on('message', (message, meta) => messages.push({ message, meta, at: Date.now() }));
      for (const ev of ['connect', 'disconnect', 'close', 'info']) {
        channel.on(ev, (data) => chEvents.push({ event: ev, data, at: Date.now() }));
      }
      return { channel, messages, events: chEvents };
    },
    disconnect() { cable.disconnect(); },
    /** Client log and the frames of each socket, for failure messages. */
    diagnostics() {
      const socks = sockets.map((s, i) => `socket ${i + 1} ${s.openedUrl} close=${JSON.stringify(s.closeInfo)}\n` +
        `  received: ${JSON.stringify(s.frames.items.filter((f) => f.type !== 'ping')).slice(0, 1500)}\n` +
        `  sent: ${JSON.stringify(s.sent.items.filter((f) => f.command !== 'pong')).slice(0, 1000)}`);
      return `--- client sockets ---\n${socks.join('\n')}\n--- client log (tail) ---\n${logger.lines.slice(-40).join('\n')}`;
    },
  };
}
