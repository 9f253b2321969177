// End to end in headless Chromium: tests/browser/pages/store.html installs a fixture GGUF through
// web/store.js from a second (cross-origin) test server into real OPFS / Cache Storage. Bytes are
// compared with node:crypto's SHA-256 of the fixture file; request logs show what was re-fetched.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, FIXTURES_DIR } from '../server/server.mjs';
import { launchBrowser } from '../browser/browser.mjs';

const CS = 128 * 1024;
const FILE = path.join(FIXTURES_DIR, 'models/qwen2-k256-q8_0.gguf');
const BYTES = fs.readFileSync(FILE);
const SHA = createHash('sha256').update(BYTES).digest('hex');
const ID = 'qwen2-k256-q8_0';

let browser, page, site, models;
const entry = (extra = {}) => ({ id: ID, url: `${models.url}/fixtures/models/qwen2-k256-q8_0.gguf`, size: BYTES.length, sha256: SHA, ...extra });
const served = () => models.modelRequests().reduce((n, e) => n + e.sent, 0);

async function open(query = '') {
  await page.goto(`${site.url}/tests/browser/pages/store.html${query}`);
  await page.waitForFunction(() => window.nblReady === true, null, { timeout: 15000 });
}
const call = (fn, ...args) => page.evaluate(fn, ...args);

before(async () => {
  site = await startServer({ coopCoep: true }); // pages are cross-origin isolated, as the threaded wasm build needs
  models = await startServer();
  browser = await launchBrowser();
  page = await browser.newPage();
});
after(async () => {
  await browser?.close();
  await site?.close();
  await models?.close();
});

test('install shows progress; a dropped connection and a page reload resume without re-downloading', async () => {
  await open();
  assert.equal(await call(() => nbl.kind()), 'opfs');
  assert.equal(await call(() => self.crossOriginIsolated), true);
  assert.equal(await call((id) => nbl.status(id), ID), 'not-installed');
  models.set({ throttle: 500_000 });
  await call((e) => nbl.start(e), entry());
  await page.waitForFunction((n) => (nbl.events.at(-1)?.bytes ?? 0) >= n, 5 * CS, { timeout: 20000 });
  const shown = await page.$eval('#bar', (b) => b.value);
  assert.ok(shown > 0.2 && shown < 1, `progress bar at ${shown}`);
  assert.match(await page.textContent('#text'), /download: [\d.]+ \/ 1\.57 MiB/);
  // The connection drops and the server keeps failing, then the tab is reloaded mid-retry.
  models.set({ fail: { status: 503, times: 1000 } });
  assert.equal(models.dropConnections(), 1);
  await new Promise((r) => setTimeout(r, 200));
  await open();
  assert.equal(await call((id) => nbl.status(id), ID), 'partial');
  const kept = (await call(() => nbl.list()))[0].bytes;
  assert.ok(kept >= 5 * CS && kept % CS === 0 && kept < BYTES.length, `kept ${kept}`);
  models.reset();
  const res = await call((e) => nbl.install(e), entry());
  assert.equal(res.error, undefined, JSON.stringify(res));
  assert.equal(res.verified, true);
  assert.equal(res.backend, 'opfs');
  assert.equal(models.modelRequests()[0].start, kept, 'resumed at the first missing chunk');
  assert.equal(served(), BYTES.length - kept, 'stored chunks were not downloaded again');
  assert.equal(await call((id) => nbl.status(id), ID), 'installed');
  assert.equal(await call((id) => nbl.hash(id), ID), SHA);
  assert.match(await page.textContent('#text'), /installed qwen2-k256-q8_0 \(catalog\)/);
});

test('a corrupted chunk is detected and repaired', async () => {
  const chunk_sha256 = [];
  for (let o = 0; o < BYTES.length; o += CS) chunk_sha256.push(createHash('sha256').update(BYTES.subarray(o, o + CS)).digest('hex'));
  await call((id) => nbl.remove(id), ID);
  models.reset();
  models.set({ corrupt: { start: 5 * CS + 1000, end: 5 * CS + 1010 } });
  let res = await call((e) => nbl.install(e), entry({ chunk_size: CS, chunk_sha256 }));
  assert.equal(res.verified, true, JSON.stringify(res));
  assert.deepEqual(models.modelRequests().map((r) => r.range), [`bytes=0-${BYTES.length - 1}`, `bytes=${5 * CS}-${6 * CS - 1}`]);
  assert.equal(await call((id) => nbl.hash(id), ID), SHA);
  // Without chunk hashes the file hash catches it and the file is fetched again.
  await call((id) => nbl.remove(id), ID);
  models.reset();
  models.set({ corrupt: { start: 200, end: 201 } });
  res = await call((e) => nbl.install(e), entry());
  assert.equal(res.verified, true, JSON.stringify(res));
  assert.equal(models.modelRequests().length, 2);
  assert.equal(await call((id) => nbl.hash(id), ID), SHA);
});

test('two tabs installing the same model download it once', async () => {
  await call((id) => nbl.remove(id), ID);
  models.reset();
  models.set({ throttle: 1_000_000 });
  const other = await browser.context.newPage();
  try {
    await other.goto(page.url());
    await other.waitForFunction(() => window.nblReady === true);
    await call((e) => nbl.start(e), entry());
    await page.waitForFunction(() => nbl.events.length > 0);
    const second = await other.evaluate((e) => nbl.install(e), entry()); // waits for the first tab's lock
    const first = await call(() => nbl.running);
    assert.equal(first.verified, true, JSON.stringify(first));
    assert.equal(second.verified, true, JSON.stringify(second));
    assert.equal(models.modelRequests().length, 1);
    assert.equal(served(), BYTES.length);
    assert.equal(await other.evaluate((id) => nbl.hash(id), ID), SHA);
  } finally {
    await other.close();
  }
});

test('a module worker reads the same store; evicted data reads as not installed and is repaired', async () => {
  const w = await call((id) => nbl.inWorker(id), ID);
  assert.deepEqual(w, { status: 'installed', kind: 'opfs', size: BYTES.length, sha256: SHA });
  await call((id) => nbl.evictChunk(id, 3), ID);
  await open(); // a fresh page: nothing remembered in memory
  assert.equal(await call((id) => nbl.status(id), ID), 'not-installed');
  assert.equal((await call((id) => nbl.hash(id), ID)).error.code, 'NOT_INSTALLED');
  models.reset();
  const res = await call((e) => nbl.install(e), entry());
  assert.equal(res.verified, true, JSON.stringify(res));
  assert.deepEqual(models.modelRequests().map((r) => r.range), [`bytes=${3 * CS}-${4 * CS - 1}`]);
  assert.equal(await call((id) => nbl.hash(id), ID), SHA);
});

test('the Cache Storage backend installs, detects eviction and repairs', async () => {
  await open('?backend=cache');
  assert.equal(await call(() => nbl.kind()), 'cache');
  models.reset();
  const res = await call((e) => nbl.install(e), entry());
  assert.equal(res.backend, 'cache', JSON.stringify(res));
  assert.equal(await call((id) => nbl.hash(id), ID), SHA);
  await call((id) => nbl.evictChunk(id, 7), ID);
  await open('?backend=cache');
  assert.equal(await call((id) => nbl.status(id), ID), 'not-installed');
  models.reset();
  await call((e) => nbl.install(e), entry());
  assert.deepEqual(models.modelRequests().map((r) => r.range), [`bytes=${7 * CS}-${8 * CS - 1}`]);
  assert.equal(await call((id) => nbl.status(id), ID), 'installed');
});

test('offline (model server stopped): installed models still read back intact after a reload', async () => {
  await models.close();
  models = null;
  for (const q of ['', '?backend=cache']) {
    await open(q);
    assert.equal(await call((id) => nbl.status(id), ID), 'installed', q);
    assert.equal(await call((id) => nbl.hash(id), ID), SHA, q);
    assert.deepEqual(await call((id) => nbl.range(id, 0, 4), ID), [...Buffer.from('GGUF')], q);
    const tail = await call(([id, o, n]) => nbl.range(id, o, n), [ID, BYTES.length - 100, 100]);
    assert.deepEqual(tail, [...BYTES.subarray(BYTES.length - 100)], q);
  }
  const errors = browser.logs.filter((l) => l.startsWith('[pageerror]'));
  assert.deepEqual(errors, []);
});
