// The test HTTP server itself (tests/server/server.mjs): Range semantics as RFC 9110 states them,
// and each misbehaviour the store tests rely on, checked with node's own fetch and raw sockets.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT } from '../server/server.mjs';

const DATA = Buffer.from(Array.from({ length: 100000 }, (_, i) => (i * 7 + 3) & 255));
const HEX = createHash('sha256').update(DATA).digest('hex');
let srv;
before(async () => { srv = await startServer({ files: { 'd.bin': DATA } }); });
after(async () => { await srv.close(); });
beforeEach(() => srv.reset());
const get = (p, headers = {}) => fetch(`${srv.url}${p}`, { headers });
const body = async (r) => Buffer.from(await r.arrayBuffer());

test('ranges: 206 with Content-Range, open and suffix ranges, 416 past the end, 200 without Range', async () => {
  let r = await get('/models/d.bin', { Range: 'bytes=10-19' });
  assert.equal(r.status, 206);
  assert.equal(r.headers.get('content-range'), `bytes 10-19/${DATA.length}`);
  assert.equal(r.headers.get('content-length'), '10');
  assert.equal(r.headers.get('accept-ranges'), 'bytes');
  assert.equal(r.headers.get('etag'), `"${HEX}"`);
  assert.deepEqual(await body(r), DATA.subarray(10, 20));
  r = await get('/models/d.bin', { Range: 'bytes=99990-' });
  assert.deepEqual(await body(r), DATA.subarray(99990));
  r = await get('/models/d.bin', { Range: 'bytes=-5' });
  assert.deepEqual(await body(r), DATA.subarray(DATA.length - 5));
  r = await get('/models/d.bin', { Range: `bytes=${DATA.length}-` });
  assert.equal(r.status, 416);
  assert.equal(r.headers.get('content-range'), `bytes */${DATA.length}`);
  r = await get('/models/d.bin');
  assert.equal(r.status, 200);
  assert.deepEqual(await body(r), DATA);
  assert.equal(srv.log.length, 5);
});

test('misbehaviour: ignore Range, corrupt once, fail with a status, linked ETag, COOP/COEP', async () => {
  srv.set({ ignoreRange: true });
  let r = await get('/models/d.bin', { Range: 'bytes=10-19' });
  assert.equal(r.status, 200);
  assert.equal((await body(r)).length, DATA.length);
  srv.reset();
  srv.set({ corrupt: { start: 50, end: 52 } });
  const bad = await body(await get('/models/d.bin', { Range: 'bytes=40-59' }));
  assert.equal(bad[10], DATA[50] ^ 0xff);
  assert.equal(bad[11], DATA[51] ^ 0xff);
  assert.equal(bad[12], DATA[52]);
  assert.deepEqual(await body(await get('/models/d.bin', { Range: 'bytes=40-59' })), DATA.subarray(40, 60), 'only once');
  srv.set({ fail: { status: 503, times: 2 } });
  assert.equal((await get('/models/d.bin')).status, 503);
  assert.equal((await get('/models/d.bin')).status, 503);
  assert.equal((await get('/models/d.bin')).status, 200);
  srv.set({ etag: 'linked', coopCoep: true });
  r = await get('/models/d.bin');
  await body(r);
  assert.equal(r.headers.get('x-linked-etag'), `"${HEX}"`);
  assert.equal(r.headers.get('x-linked-size'), String(DATA.length));
  assert.notEqual(r.headers.get('etag'), `"${HEX}"`);
  assert.equal(r.headers.get('cross-origin-embedder-policy'), 'require-corp');
  assert.equal(r.headers.get('cross-origin-opener-policy'), 'same-origin');
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
});

test('misbehaviour: connections cut after N bytes, throttled delivery', async () => {
  srv.set({ cutAfter: 30000 });
  const r = await get('/models/d.bin');
  const reader = r.body.getReader();
  let got = 0;
  await assert.rejects((async () => { for (;;) { const { done, value } = await reader.read(); if (done) return; got += value.length; } })());
  assert.equal(got, 30000);
  assert.equal(srv.log[0].cut, true);
  assert.equal((await body(await get('/models/d.bin'))).length, DATA.length, 'cutTimes defaults to one response');
  srv.set({ throttle: 200000 });
  const t0 = Date.now();
  await body(await get('/models/d.bin'));
  const dt = Date.now() - t0;
  assert.ok(dt >= 400 && dt < 2000, `100 kB at 200 kB/s took ${dt} ms`);
});

test('control endpoint, static files, fixtures, and no escape from the served tree', async () => {
  let r = await fetch(`${srv.url}/__control`, { method: 'POST', body: JSON.stringify({ ignoreRange: true }) });
  assert.equal((await r.json()).state.ignoreRange, true);
  r = await fetch(`${srv.url}/__control`, { method: 'POST', body: JSON.stringify({ reset: true }) });
  assert.equal((await r.json()).state.ignoreRange, false);
  r = await get('/web/store.js');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /javascript/);
  assert.deepEqual(await body(r), fs.readFileSync(path.join(REPO_ROOT, 'web/store.js')));
  r = await get('/fixtures/models/stories260K.gguf', { Range: 'bytes=0-3' });
  assert.equal(await r.text(), 'GGUF');
  for (const p of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/fixtures/..%2f..%2fetc/passwd', '/models/nope']) {
    r = await get(p);
    assert.equal(r.status, 404, p);
  }
  assert.equal((await fetch(`${srv.url}/web/store.js`, { method: 'PUT', body: 'x' })).status, 405);
  r = await fetch(`${srv.url}/models/d.bin`, { method: 'OPTIONS' });
  assert.equal(r.status, 204);
  assert.match(r.headers.get('access-control-allow-headers'), /Range/);
});
