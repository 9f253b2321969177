// web/models.json against web/catalog.js's validator, and the validator against broken catalogs:
// each mistake must be reported with the path of the field at fault.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { validateCatalog, assertCatalog, findModel } from '../../web/catalog.js';
import { createStore, memoryBackend } from '../../web/store.js';

const catalog = JSON.parse(fs.readFileSync(new URL('../../web/models.json', import.meta.url), 'utf8'));
const clone = () => structuredClone(catalog);

test('web/models.json is valid and its default is the official Qwen2.5-0.5B-Instruct Q4_0', () => {
  assert.deepEqual(validateCatalog(catalog), { valid: true, errors: [] });
  const def = findModel(catalog);
  assert.equal(def.id, 'qwen2.5-0.5b-instruct-q4_0');
  // The location the project names for the default model (Qwen's own GGUF repository).
  assert.ok(def.urls.includes('https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_0.gguf'));
  assert.equal(def.architecture, 'qwen2');
  assert.equal(def.quantization, 'Q4_0');
  for (const want of ['smollm2-360m', 'qwen2.5-1.5b', 'llama-3.2-1b']) {
    assert.ok(catalog.models.some((m) => m.id.startsWith(want)), `catalog lists ${want}`);
  }
  for (const m of catalog.models) {
    // Pinned and branch URLs must name the same file, and the file name the stated quantization.
    const names = new Set(m.urls.map((u) => u.split('/').pop()));
    assert.equal(names.size, 1, `${m.id}: all URLs name one file`);
    assert.match([...names][0].toLowerCase(), new RegExp(m.quantization.toLowerCase()));
    if (m.revision) assert.ok(m.urls[0].includes(`/resolve/${m.revision}/`), `${m.id}: first URL is pinned to the revision`);
  }
});

test('every catalog entry is accepted by the store (refused here only for quota)', async () => {
  const storage = { estimate: async () => ({ quota: 1000, usage: 0 }) };
  const store = createStore({ backend: memoryBackend(), storage, fetch: () => { throw new Error('no network in this test'); } });
  for (const m of catalog.models) {
    await assert.rejects(store.install(m), (e) => e.code === 'QUOTA' && e.needed === (m.size ?? e.needed), m.id);
  }
});

test('errors name the field at fault', () => {
  const cases = [
    [(c) => { c.models[0].sha256 = 'ABC'; }, /models\[0\] \("qwen2\.5-0\.5b-instruct-q4_0"\)\.sha256: expected 64 lowercase hex/],
    [(c) => { c.models[1].size = -5; }, /models\[1\] .*\.size: expected a positive integer/],
    [(c) => { c.models[1].id = c.models[0].id; }, /models\[1\].*\.id: duplicate id/],
    [(c) => { c.models[0].urls = []; }, /\.urls: expected a non-empty list/],
    [(c) => { c.models[0].urls = ['ftp://x/y.gguf']; }, /\.urls\[0\]: expected an http\(s\) URL/],
    [(c) => { c.models[0].url = 'https://x/y.gguf'; }, /\.url: give exactly one of/],
    [(c) => { delete c.models[0].license; }, /\.license: missing/],
    [(c) => { c.models[0].licence = 'MIT'; }, /\.licence: unknown field/],
    [(c) => { c.models[0].quantization = 'Q4'; }, /\.quantization: expected one of/],
    [(c) => { c.models[0].context = 0; }, /\.context: expected a positive integer/],
    [(c) => { c.models[0].sampling.top_p = 1.5; }, /\.sampling\.top_p: expected a number in \(0, 1\]/],
    [(c) => { c.models[0].sampling.top_k = 2.5; }, /\.sampling\.top_k: expected a non-negative integer/],
    [(c) => { delete c.models[0].sampling.repeat_penalty; }, /\.sampling\.repeat_penalty: missing/],
    [(c) => { c.models[0].chunk_size = 1024; }, /\.chunk_sha256: chunk_size and chunk_sha256 go together/],
    [(c) => { c.models[0].chunk_size = 1 << 20; c.models[0].chunk_sha256 = ['0'.repeat(64)]; }, /\.chunk_sha256: has 1 hashes, size\/chunk_size needs 409/],
    [(c) => { c.models[0].revision = 'main'; }, /\.revision: expected a 40-hex commit id/],
    [(c) => { c.default = 'nope'; }, /^default: expected the id of a listed model/],
    [(c) => { c.version = 2; }, /^version: expected 1/],
    [(c) => { c.models = []; }, /^models: expected a non-empty list/],
  ];
  for (const [mutate, re] of cases) {
    const c = clone();
    mutate(c);
    const { valid, errors } = validateCatalog(c);
    assert.equal(valid, false, String(re));
    assert.ok(errors.some((e) => re.test(e)), `${re} not in ${JSON.stringify(errors)}`);
  }
  assert.deepEqual(validateCatalog(null).valid, false);
  assert.deepEqual(validateCatalog([]).valid, false);
  // Nullable where a publisher states nothing: size, sha256, top_k, repeat_penalty.
  const c = clone();
  Object.assign(c.models[0], { size: null, sha256: null });
  Object.assign(c.models[0].sampling, { top_k: null, repeat_penalty: null });
  assert.deepEqual(validateCatalog(c).errors, []);
  assert.throws(() => assertCatalog({ version: 1 }), /invalid model catalog:\n {2}models: expected a non-empty list/);
});
