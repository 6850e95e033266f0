// Browser entry bundled by esbuild in turbo_presence_browser.test.mjs: the AnyCable way of
// running Hotwire (no @hotwired/turbo-rails, whose own <turbo-cable-stream-source> would
// clash): Turbo itself, an @anycable/web cable on the extended protocol (createCable's
// default is the base `actioncable-v1-json`, which has no presence keep-alive), and
// @anycable/turbo-stream's elements with presence enabled, i.e.
// <turbo-cable-presence-source signed-stream-name presence-id> with a join <template>.
import '@hotwired/turbo';
import { createCable } from '@anycable/web';
import { start } from '@anycable/turbo-stream';

// URL (with ?jid=) from <meta name="action-cable-url">.
const cable = createCable({ protocol: 'actioncable-v1-ext-json', logLevel: 'debug' });
start(cable, { presence: true });

window.__e2eCable = cable;
window.__e2eBundleLoaded = true;
