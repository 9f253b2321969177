// web/store.js against the local test server, with the real OPFS adapter over an in-memory OPFS.
// Bytes are checked with node:crypto's SHA-256 of the served file, an implementation independent of
// the store's own hash; request logs show what was (and was not) downloaded again.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, FIXTURES_DIR } from '../server/server.mjs';
import { fakeStorage } from './fake-opfs.mjs';
import { createStore, opfsBackend, memoryBackend, etagSha256 } from '../../web/store.js';

const CS = 64 * 1024;
const sha = (b) => createHash('sha256').update(b).digest('hex');

// Deterministic pseudo-random content whose size is not a multiple of the chunk size.
function makeData(n, seed) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; b[i] = x >>> 24; }
  return b;
}
const DATA = makeData(20 * CS + 12345, 1);
const DATA_B = makeData(DATA.length, 2);
const NCHUNK = Math.ceil(DATA.length / CS);

let srv;
before(async () => { srv = await startServer({ files: { 'a.gguf': DATA, 'b.gguf': DATA_B } }); });
after(async () => { await srv.close(); });
beforeEach(() => { srv.reset(); srv.addFile('a.gguf', DATA); });

function entry(extra = {}) {
  return { id: 'test-a', url: `${srv.url}/models/a.gguf`, size: DATA.length, sha256: sha(DATA), ...extra };
}
function makeStore(storage, opts = {}) {
  return createStore({
    backend: opfsBackend('nbl-models', storage), storage, chunkSize: CS,
    retry: { attempts: 4, baseMs: 2, maxMs: 10 }, stallMs: 3000, ...opts,
  });
}
async function storedSha(store, id) { return sha(Buffer.from(await (await store.open(id)).arrayBuffer())); }
const served = () => srv.modelRequests().reduce((n, e) => n + e.sent, 0);

test('full install reports progress, stores identical bytes and reads ranges', async () => {
  const storage = fakeStorage();
  const store = makeStore(storage);
  assert.equal(await store.status('test-a'), 'not-installed');
  srv.set({ throttle: 1_500_000 }); // ~0.9 s, long enough for several rate samples
  const events = [];
  const res = await store.install(entry(), { onProgress: (p) => events.push(p) });
  assert.equal(res.verified, true);
  assert.equal(res.verifiedBy, 'catalog');
  assert.equal(res.sha256, sha(DATA));
  assert.equal(res.persisted, true);
  assert.equal(storage.persistCalls, 1);
  assert.equal(await store.status('test-a'), 'installed');
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  for (const [off, len] of [[0, 10], [CS - 3, 7], [5 * CS + 17, 3 * CS], [DATA.length - 9, 9], [0, DATA.length]]) {
    assert.deepEqual(Buffer.from(await store.readRange('test-a', off, len)), DATA.subarray(off, off + len));
  }
  await assert.rejects(store.readRange('test-a', DATA.length - 2, 3), { code: 'RANGE' });
  // Progress: monotonic, ends at the total, rate near the server's throttle once measured.
  assert.ok(events.length >= NCHUNK, `${events.length} progress events`);
  for (let i = 1; i < events.length; i++) assert.ok(events[i].bytes >= events[i - 1].bytes);
  const last = events.at(-1);
  assert.equal(last.phase, 'done');
  assert.equal(last.bytes, DATA.length);
  assert.equal(last.total, DATA.length);
  const rated = events.filter((e) => e.rate > 0 && e.phase === 'download');
  assert.ok(rated.length > 0, 'some events carry a rate');
  const r = rated.at(-1).rate;
  assert.ok(r > 1_500_000 * 0.2 && r < 1_500_000 * 2, `rate ${r} vs throttle 1.5e6`);
  assert.ok(rated.every((e) => Number.isFinite(e.eta) && e.eta >= 0));
  assert.equal(srv.modelRequests().length, 1, 'one request for the whole file');
  assert.equal(srv.modelRequests()[0].range, `bytes=0-${DATA.length - 1}`);
  const list = await store.list();
  assert.deepEqual(list.map((m) => [m.id, m.status, m.bytes, m.size]), [['test-a', 'installed', DATA.length, DATA.length]]);
  // Installing again is a no-op.
  srv.reset();
  await store.install(entry());
  assert.equal(srv.modelRequests().length, 0);
});

test('a dropped connection is retried from where it stopped', async () => {
  const store = makeStore(fakeStorage());
  srv.set({ cutAfter: 5 * CS + 1000 });
  await store.install(entry());
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  const reqs = srv.modelRequests();
  assert.equal(reqs.length, 2);
  assert.equal(reqs[0].cut, true);
  assert.ok(reqs[1].start > 5 * CS, `retry starts at ${reqs[1].start}`);
  assert.ok(served() <= DATA.length + CS, `served ${served()} bytes for ${DATA.length}`);
  // A connection that stalls (open, silent) is given up after stallMs and resumed.
  await store.remove('test-a');
  srv.reset();
  srv.set({ cutAfter: 9 * CS + 7, cutMode: 'hang' });
  const stalling = makeStore(fakeStorage(), { stallMs: 300 });
  const t0 = Date.now();
  await stalling.install(entry());
  assert.ok(Date.now() - t0 >= 300, 'waited for the stall timeout');
  assert.equal(srv.modelRequests().length, 2);
  assert.ok(srv.modelRequests()[1].start >= 9 * CS);
  assert.equal(await storedSha(stalling, 'test-a'), sha(DATA));
  // More drops than retry attempts still finish, as long as each attempt makes progress.
  await store.remove('test-a');
  srv.reset();
  srv.set({ cutAfter: 2 * CS, cutTimes: 7 });
  await store.install(entry());
  assert.equal(srv.modelRequests().filter((r) => r.cut).length, 7);
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
});

test('a new store (page reload) resumes a partial download without fetching stored chunks again', async () => {
  const storage = fakeStorage();
  const first = makeStore(storage, { retry: { attempts: 0, baseMs: 1, maxMs: 1 } });
  srv.set({ cutAfter: 7 * CS + 500 });
  await assert.rejects(first.install(entry()), { code: 'NETWORK' });
  assert.equal(await first.status('test-a'), 'partial');
  const [{ bytes }] = await first.list();
  assert.equal(bytes, 7 * CS);
  srv.reset();
  const events = [];
  const second = makeStore(storage);
  await second.install(entry(), { onProgress: (p) => events.push(p) });
  assert.equal(events[0].bytes, 7 * CS, 'progress starts from what was stored');
  assert.equal(srv.modelRequests().length, 1);
  assert.equal(srv.modelRequests()[0].start, 7 * CS);
  assert.equal(served(), DATA.length - 7 * CS);
  assert.equal(await storedSha(second, 'test-a'), sha(DATA));
  assert.equal(await second.status('test-a'), 'installed');
});

test('a corrupted chunk is detected and only that chunk fetched again when chunk hashes are known', async () => {
  const chunk_sha256 = [];
  for (let i = 0; i < NCHUNK; i++) chunk_sha256.push(sha(DATA.subarray(i * CS, (i + 1) * CS)));
  const store = makeStore(fakeStorage());
  srv.set({ corrupt: { start: 3 * CS + 100, end: 3 * CS + 110 } });
  const res = await store.install(entry({ chunk_size: CS, chunk_sha256 }));
  assert.equal(res.verified, true);
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  const reqs = srv.modelRequests();
  assert.equal(reqs.length, 2);
  assert.equal(reqs[0].corrupted, true);
  assert.equal(reqs[1].range, `bytes=${3 * CS}-${4 * CS - 1}`);
});

test('a corrupted download without chunk hashes fails the file hash and is fetched whole again', async () => {
  const store = makeStore(fakeStorage());
  srv.set({ corrupt: { start: 9 * CS, end: 9 * CS + 1 } });
  await store.install(entry());
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  const reqs = srv.modelRequests();
  assert.equal(reqs.length, 2);
  assert.deepEqual(reqs.map((r) => [r.start, r.end]), [[0, DATA.length], [0, DATA.length]]);
});

test('persistent corruption ends in an INTEGRITY error and leaves nothing installed', async () => {
  const storage = fakeStorage();
  const store = makeStore(storage);
  srv.set({ corrupt: { start: 100, end: 101, times: 99 } });
  await assert.rejects(store.install(entry()), (e) => e.code === 'INTEGRITY' && e.expected === sha(DATA) && /mismatch/.test(e.message));
  assert.equal(await store.status('test-a'), 'not-installed');
  assert.equal(storage.usage(), 0, 'bad data was deleted');
});

test('a server that ignores Range gets a full GET, on a fresh install and on resume', async () => {
  const storage = fakeStorage();
  srv.set({ ignoreRange: true });
  const store = makeStore(storage);
  await store.install(entry());
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  assert.deepEqual(srv.modelRequests().map((r) => r.status), [200]);
  await store.remove('test-a');
  assert.equal(await store.status('test-a'), 'not-installed');
  // Resume: 4 chunks stored, then the server stops honouring Range.
  srv.reset();
  srv.set({ cutAfter: 4 * CS + 10 });
  await assert.rejects(makeStore(storage, { retry: { attempts: 0, baseMs: 1, maxMs: 1 } }).install(entry()), { code: 'NETWORK' });
  srv.reset();
  srv.set({ ignoreRange: true });
  const again = makeStore(storage);
  await again.install(entry());
  assert.equal(srv.modelRequests().length, 1);
  assert.equal(srv.modelRequests()[0].status, 200);
  assert.equal(await storedSha(again, 'test-a'), sha(DATA));
});

test('an install that the quota cannot hold is refused before downloading, with needed vs available', async () => {
  const storage = fakeStorage({ quota: DATA.length, extraUsage: DATA.length / 2 });
  const store = makeStore(storage);
  await assert.rejects(store.install(entry()), (e) => {
    assert.equal(e.code, 'QUOTA');
    assert.equal(e.needed, DATA.length);
    assert.equal(e.available, DATA.length - DATA.length / 2);
    assert.match(e.message, /needs .* more, only .* available/);
    return true;
  });
  assert.equal(srv.modelRequests().length, 0, 'nothing downloaded');
  // Size unknown to the catalog: refused as soon as the server states it.
  srv.set({ throttle: 1_000_000 });
  await assert.rejects(store.install(entry({ size: null })), { code: 'QUOTA' });
  assert.equal(srv.modelRequests().length, 1);
  assert.ok(srv.modelRequests()[0].sent < DATA.length);
  // A write failing with QuotaExceededError midway is reported the same way.
  const tight = fakeStorage();
  tight.failWrites = new DOMException('full', 'QuotaExceededError');
  await assert.rejects(makeStore(tight).install(entry()), { code: 'QUOTA' });
});

test('data evicted behind the store reads as not installed, and install repairs it', async () => {
  const storage = fakeStorage();
  const store = makeStore(storage);
  await store.install(entry());
  (await storage.at('nbl-models/test-a.chunks')).children.delete('000002');
  const fresh = makeStore(storage); // a new page: nothing cached in memory
  assert.equal(await fresh.status('test-a'), 'not-installed');
  await assert.rejects(fresh.open('test-a'), { code: 'NOT_INSTALLED' });
  await assert.rejects(fresh.readRange('test-a', 0, 4), { code: 'NOT_INSTALLED' });
  assert.equal((await fresh.list())[0].status, 'not-installed');
  srv.reset();
  await fresh.install(entry());
  assert.deepEqual(srv.modelRequests().map((r) => r.range), [`bytes=${2 * CS}-${3 * CS - 1}`]);
  assert.equal(await fresh.status('test-a'), 'installed');
  assert.equal(await storedSha(fresh, 'test-a'), sha(DATA));
  // A truncated chunk, and then the whole folder cleared (site data wiped).
  (await storage.at('nbl-models/test-a.chunks/000005')).data = new Uint8Array(10);
  assert.equal(await makeStore(storage).status('test-a'), 'not-installed');
  storage.root.children.clear();
  const wiped = makeStore(storage);
  assert.equal(await wiped.status('test-a'), 'not-installed');
  assert.deepEqual(await wiped.list(), []);
});

test('abort pauses keeping whole chunks; pause() and resume; remove() cancels', async () => {
  const storage = fakeStorage();
  const store = makeStore(storage);
  srv.set({ throttle: 2_000_000 });
  const ctl = new AbortController();
  let seen = 0;
  const p = store.install(entry(), {
    signal: ctl.signal,
    onProgress: (e) => { seen = e.bytes; if (e.bytes >= 6 * CS) ctl.abort(); },
  });
  await assert.rejects(p, { name: 'AbortError' });
  assert.ok(seen >= 6 * CS);
  assert.equal(await store.status('test-a'), 'partial');
  const kept = (await store.list())[0].bytes;
  assert.ok(kept >= 6 * CS && kept % CS === 0, `kept ${kept}`);
  // pause() through the store, then resume to the end.
  srv.reset();
  srv.set({ throttle: 2_000_000 });
  const p2 = store.install(entry());
  await assert.rejects(store.install(entry()), { code: 'BUSY' });
  await new Promise((r) => setTimeout(r, 150));
  await store.pause('test-a');
  await assert.rejects(p2, { name: 'AbortError' });
  assert.ok(srv.modelRequests()[0].start >= kept, 'resumed past the kept chunks');
  srv.reset();
  await store.install(entry());
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  // Cancel = remove during an install.
  await store.remove('test-a');
  srv.set({ throttle: 2_000_000 });
  const p3 = store.install(entry());
  await new Promise((r) => setTimeout(r, 150));
  await store.remove('test-a');
  await assert.rejects(p3, { name: 'AbortError' });
  assert.equal(await store.status('test-a'), 'not-installed');
  assert.equal(storage.usage(), 0);
});

test('with no catalog hash the ETag SHA-256 (plain or Hugging Face X-Linked-Etag) verifies the file', async () => {
  for (const etag of ['sha256', 'linked']) {
    srv.reset();
    srv.set({ etag });
    const store = makeStore(fakeStorage());
    const res = await store.install(entry({ sha256: null, size: null }));
    assert.equal(res.verifiedBy, 'etag', etag);
    assert.equal(res.size, DATA.length);
    assert.equal(res.sha256, sha(DATA));
    // Corruption is caught against the ETag hash as well.
    await store.remove('test-a');
    srv.set({ corrupt: { start: 5, end: 6 } });
    await store.install(entry({ sha256: null, size: null }));
    assert.equal(await storedSha(store, 'test-a'), sha(DATA));
    assert.equal(srv.modelRequests().filter((r) => r.corrupted).length, 1);
  }
  const h = new Headers({ etag: `"${'A'.repeat(64)}"` });
  assert.equal(etagSha256(h), 'a'.repeat(64));
  assert.equal(etagSha256(new Headers({ etag: 'W/"abc"' })), null);
  // No hash anywhere: installed, but says it is unverified.
  srv.reset();
  srv.set({ etag: 'none' });
  const res = await makeStore(fakeStorage()).install(entry({ sha256: null }));
  assert.equal(res.verified, false);
  assert.equal(res.verifiedBy, null);
});

test('a file that changes on the server between sessions is downloaded afresh (ETag changed)', async () => {
  const storage = fakeStorage();
  srv.set({ cutAfter: 3 * CS });
  await assert.rejects(makeStore(storage, { retry: { attempts: 0, baseMs: 1, maxMs: 1 } })
    .install(entry({ sha256: null })), { code: 'NETWORK' });
  srv.reset();
  srv.addFile('a.gguf', DATA_B);
  const store = makeStore(storage);
  const res = await store.install(entry({ sha256: null }));
  assert.equal(res.sha256, sha(DATA_B));
  assert.equal(await storedSha(store, 'test-a'), sha(DATA_B));
});

test('errors: HTTP status, size mismatch, transient failures, URL fallback, bad entries', async () => {
  const store = makeStore(fakeStorage());
  await assert.rejects(store.install(entry({ url: `${srv.url}/models/missing.gguf` })), { code: 'HTTP', status: 404 });
  await assert.rejects(store.install(entry({ size: DATA.length + 1 })), { code: 'SIZE_MISMATCH' });
  srv.reset();
  srv.set({ fail: { status: 503, times: 2 } });
  await store.install(entry());
  assert.deepEqual(srv.modelRequests().map((r) => r.status), [503, 503, 206]);
  await store.remove('test-a');
  srv.reset();
  await store.install(entry({ url: undefined, urls: [`${srv.url}/models/missing.gguf`, `${srv.url}/models/a.gguf`] }));
  assert.equal(await storedSha(store, 'test-a'), sha(DATA));
  await assert.rejects(store.install({ ...entry(), id: '../x' }), { code: 'BAD_ID' });
  await assert.rejects(store.install(entry({ sha256: 'abc' })), { code: 'BAD_ENTRY' });
  await assert.rejects(store.install(entry({ chunk_sha256: ['0'.repeat(64)] })), { code: 'BAD_ENTRY' });
  await assert.rejects(store.status('a/b'), { code: 'BAD_ID' });
  srv.set({ fail: { status: 500, times: 99 } });
  await store.remove('test-a');
  await assert.rejects(makeStore(fakeStorage(), { retry: { attempts: 2, baseMs: 1, maxMs: 1 } }).install(entry()), { code: 'NETWORK' });
});

test('a real GGUF fixture installs through the memory backend too', async () => {
  const file = path.join(FIXTURES_DIR, 'models/qwen2-k256-q8_0.gguf');
  const bytes = fs.readFileSync(file);
  const store = createStore({ backend: memoryBackend(), chunkSize: 256 * 1024 });
  const res = await store.install({ id: 'qwen2-k256-q8_0', url: `${srv.url}/fixtures/models/qwen2-k256-q8_0.gguf`, size: bytes.length, sha256: sha(bytes) });
  assert.equal(res.backend, 'memory');
  const blob = await store.open('qwen2-k256-q8_0');
  assert.equal(blob.size, bytes.length);
  assert.equal(sha(Buffer.from(await blob.arrayBuffer())), sha(bytes));
  assert.equal(Buffer.from(await store.readRange('qwen2-k256-q8_0', 0, 4)).toString('latin1'), 'GGUF');
});
