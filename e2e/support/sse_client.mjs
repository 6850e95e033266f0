// The `eventsource` npm client (v5, WHATWG EventSource over fetch) with every event recorded.
import { EventSource } from 'eventsource';

import { Inbox } from './clients.mjs';

export const SSE_TYPED_EVENTS = ['welcome', 'confirm_subscription', 'reject_subscription', 'confirm_history',
  'reject_history', 'ping', 'disconnect', 'presence'];

/**
 * new EventSource(url, init) recording into one Inbox:
 *   {event: 'open'|'error'|'message'|<typed>, data, lastEventId, code, message, at}
 * Typed events' data is parsed JSON; `message` events keep the raw data string.
 */
export function recordedEventSource(url, init) {
  const es = new EventSource(url, init);
  const events = new Inbox();
  es.addEventListener('open', () => events.push({ event: 'open', at: Date.now() }));
  es.addEventListener('error', (e) => events.push({ event: 'error', code: e.code, message: e.message, at: Date.now() }));
  es.addEventListener('message', (e) => events.push({ event: 'message', data: e.data, lastEventId: e.lastEventId, at: Date.now() }));
  for (const type of SSE_TYPED_EVENTS) {
    es.addEventListener(type, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch { data = { $unparsed: e.data }; }
      events.push({ event: type, data, lastEventId: e.lastEventId, at: Date.now() });
    });
  }
  return {
    es,
    events,
    messages() { return events.items.filter((e) => e.event === 'message'); },
    waitFor(event, pred = () => true, ms = 5000, what = `'${event}' event`) {
      return events.wait((e) => e.event === event && pred(e), ms, what);
    },
    count(event, pred = () => true) { return events.items.filter((e) => e.event === event && pred(e)).length; },
    close() { es.close(); },
    diagnostics() {
      return `--- EventSource ${url} (readyState ${es.readyState}) ---\n` +
        JSON.stringify(events.items.filter((e) => e.event !== 'ping')).slice(0, 3000);
    },
  };
}
