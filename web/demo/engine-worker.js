// The engine's worker, started from the demo's folder: a dedicated worker is controlled by the
// service worker whose scope holds its URL, so living here lets the page's cache serve the
// engine's scripts and WebAssembly offline. The worker itself is web/worker.js.
import '../worker.js';
