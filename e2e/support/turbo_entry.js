// Browser entry bundled by esbuild in turbo_browser.test.mjs: exactly what a
// Hotwire app ships (Turbo + turbo-rails' <turbo-cable-stream-source>, which
// creates an @rails/actioncable consumer from <meta name="action-cable-url">).
import "@hotwired/turbo-rails";

window.__e2eBundleLoaded = true;
