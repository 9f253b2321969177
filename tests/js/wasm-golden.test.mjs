// The WebAssembly build against llama.cpp's logits (fixtures/golden), as tests/test_golden.c does
// natively: teacher-forced rows compared by cosine, max|Δ|/std(row) and top-1 on decisive rows,
// then a free greedy run that must reproduce llama.cpp's tokens up to the first near-tie.
// Tolerances are the fixture README's (golden-check.mjs, shared with the Chromium tests).
// Every model runs on the single-threaded build; a few also on the threaded one (2 threads) and
// on the GPU build's CPU path.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES_DIR } from '../server/server.mjs';
import { loadCore } from '../../web/core.js';
import { checkGolden } from './golden-check.mjs';

const GOLDEN = path.join(FIXTURES_DIR, 'golden');
const MODELS = path.join(FIXTURES_DIR, 'models');
const names = fs.readdirSync(GOLDEN).filter((n) => n.endsWith('.json')).sort();

// Reads the file straight into wasm memory: the path the browser takes with a Blob stream.
function openFixture(core, file) {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const p = core.allocModel(size);
    for (let off = 0; off < size;) {
      const n = fs.readSync(fd, core.heapU8, p + off, Math.min(1 << 24, size - off), off);
      if (n <= 0) throw new Error(`${file}: short read`);
      off += n;
    }
    return core.openModelAt(p, size);
  } finally {
    fs.closeSync(fd);
  }
}

async function runGolden(core, jsonName) {
  const g = JSON.parse(fs.readFileSync(path.join(GOLDEN, jsonName), 'utf8'));
  let gold = null;
  if (g.logits_file) {
    const b = fs.readFileSync(path.join(GOLDEN, g.logits_file));
    gold = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  }
  return checkGolden(core, g, gold, openFixture(core, path.join(MODELS, g.model)));
}

let st, mt, gpu;
before(async () => {
  st = await loadCore({ threads: 1 });
  mt = await loadCore({ threads: 2 });
  gpu = await loadCore({ gpu: true });
});

test('29 goldens are present', () => assert.equal(names.length, 29));

for (const name of names) {
  test(`single-threaded wasm matches llama.cpp: ${name}`, async () => {
    const r = await runGolden(st, name);
    assert.deepEqual(r.fails.slice(0, 10), [], r.fails.length ? `${r.fails.length} failures` : '');
    console.log(`# ${name}: min cos ${r.worstCos.toFixed(7)} max|d|/std ${r.worstRel.toFixed(4)} greedy ${r.nDecisiveGreedy}`);
  });
}

for (const name of ['qwen2-k256-q4_0.json', 'llama-k256-q4_k_m.json', 'qwen2-k256-f16.json', 'qwen2-tiny-realvocab-q8_0.json']) {
  test(`threaded wasm (2 threads) matches llama.cpp: ${name}`, async () => {
    assert.equal(mt.threaded, true);
    const r = await runGolden(mt, name);
    assert.deepEqual(r.fails.slice(0, 10), [], r.fails.length ? `${r.fails.length} failures` : '');
  });
}

// The GPU build runs a session on its own CPU kernels once the GPU is lost (web/gpu-backend.js).
for (const name of ['qwen2-k256-q4_0.json', 'qwen2-tiny-realvocab-q8_0.json']) {
  test(`GPU build, session on the CPU, matches llama.cpp: ${name}`, async () => {
    assert.equal(gpu.async, true);
    const r = await runGolden(gpu, name);
    assert.deepEqual(r.fails.slice(0, 10), [], r.fails.length ? `${r.fails.length} failures` : '');
  });
}

test('stories260K: 200 greedy tokens after BOS spell llama.cpp\'s text', () => {
  const expected = fs.readFileSync(path.join(GOLDEN, 'stories260K.expected.txt'), 'utf8').replace(/\n+$/, '');
  const model = openFixture(st, path.join(MODELS, 'stories260K.gguf'));
  const s = st.newSession(model, { nCtx: 256 });
  try {
    s.startTokens([1], { temperature: 0, max_tokens: 200 });
    let text = '';
    for (let k = 0; k < 200; k++) {
      const r = s.next();
      text += r.text;
      if (r.finish) break;
    }
    assert.equal(text.replace(/\n+$/, ''), expected);
  } finally {
    s.dispose();
    model.dispose();
  }
});
