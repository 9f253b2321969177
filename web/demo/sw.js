// The demo's service worker: keeps the page, its scripts, the engine and the WebAssembly builds
// in Cache Storage so that, once the model is installed (the model itself lives in the store's
// OPFS / Cache Storage, not here), the assistant works offline. Network first, so a deployed
// update shows up at once; the cache answers when the network cannot. Model downloads (Range
// requests, .gguf files) and other origins pass through untouched.

const CACHE = 'nbl-demo-v1';
const HERE = new URL('./', self.location.href);
const SHELL = [
  './', 'index.html', 'styles.css', 'app.js', 'config.js', 'util.js', 'perf.js', 'capability.js', 'install.js',
  'install-worker.js', 'settings.js', 'conversations.js', 'memory.js', 'router.js', 'remote.js', 'local.js', 'chat.js', 'engine-worker.js',
  '../engine.js', '../worker.js', '../wasm-backend.js', '../core.js', '../store.js', '../catalog.js', '../sha256.js',
  '../models.json', '../tasks.js', '../gpu.js', '../gpu-backend.js',
  '../dist/nbl-st.mjs', '../dist/nbl-st.wasm', '../dist/nbl-mt.mjs', '../dist/nbl-mt.wasm', '../dist/nbl-mt.worker.js',
  '../dist/nbl-st-rs.mjs', '../dist/nbl-st-rs.wasm', '../dist/nbl-mt-rs.mjs', '../dist/nbl-mt-rs.wasm', '../dist/nbl-mt-rs.worker.js',
  '../dist/nbl-gpu.mjs', '../dist/nbl-gpu.wasm', '../dist/nbl-gpu-rs.mjs', '../dist/nbl-gpu-rs.wasm',
].map((p) => new URL(p, HERE).href);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // One by one: a file this build does not have (no threaded build, no GPU module) is skipped.
    await Promise.allSettled(SHELL.map(async (url) => {
      const r = await fetch(url, { cache: 'no-cache' });
      if (r.ok) await cache.put(url, r);
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const k of await caches.keys()) if (k.startsWith('nbl-demo-') && k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

function passThrough(req, url) {
  return req.method !== 'GET' || url.origin !== self.location.origin || req.headers.has('range')
    || /\.gguf$/i.test(url.pathname) || url.pathname.startsWith('/__');
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (passThrough(req, url)) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const r = await fetch(req);
      if (r.ok && r.type === 'basic') cache.put(req, r.clone()).catch(() => {});
      return r;
    } catch (e) {
      const hit = await cache.match(req) ?? (req.mode === 'navigate' ? await cache.match(req, { ignoreSearch: true }) ?? await cache.match(new URL('index.html', HERE).href) : null);
      if (hit) return hit;
      throw e;
    }
  })());
});
