// A model opened from its metadata alone in the WebAssembly core (the GPU backend's path, here on
// the CPU build, which has the same C API): from a small first read the core asks for more until
// the metadata is in, never reading a byte twice; the model's info and GPU plan equal those of
// the whole file; a CPU session is refused until the data section is attached, and then the
// logits equal the whole file's exactly. Reads that fail or come up short are reported.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES_DIR } from '../server/server.mjs';
import { loadCore } from '../../web/core.js';

const MODELS = ['stories260K.gguf', 'qwen2-tiny-realvocab-q4_0.gguf', 'llama-k256-q4_k_m.gguf'];
const TOKENS = new Int32Array([1, 7, 42, 3, 11]);
let core;

before(async () => {
  core = await loadCore({ threads: 1 });
});

// A reader over bytes that records every range it serves.
function reader(bytes) {
  const ranges = [];
  const read = async (off, len) => {
    ranges.push([off, len]);
    return bytes.subarray(off, off + len);
  };
  return { read, ranges };
}

function logitsOf(model) {
  const s = core.newSession(model, { nCtx: 32 });
  try {
    s.eval(TOKENS);
    return s.logits();
  } finally {
    s.dispose();
  }
}

for (const name of MODELS) {
  test(`${name}: metadata open from a 4 KiB first read, then the data section`, async () => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES_DIR, 'models', name)));
    const full = await core.openModel(bytes);
    const { read, ranges } = reader(bytes);
    const meta = await core.openModelMeta(read, bytes.length, { prefix: 4096 });
    try {
      assert.equal(meta.meta, true);
      assert.equal(meta.hasData, false);
      // The first reads grow one prefix without overlap; the rest are the small vectors, inside
      // the data section.
      const d0 = full.info.data_offset;
      let end = 0, prefixReads = 0;
      for (const [off, len] of ranges) {
        if (off < d0) {
          assert.equal(off, end, `prefix reads are contiguous (${JSON.stringify(ranges.slice(0, 8))})`);
          end = off + len;
          prefixReads++;
        } else {
          assert.ok(off + len <= bytes.length && len < 65536, `a small-vector read ${off}+${len}`);
        }
      }
      assert.ok(prefixReads >= 2, `the 4 KiB prefix grew (${prefixReads} reads)`);
      assert.ok(end < bytes.length, 'the prefix stopped short of the file');
      assert.deepEqual(meta.info, full.info);
      const plan = (m) => JSON.stringify(core.gpuPlan(m, { nCtx: 64 }));
      assert.equal(plan(meta), plan(full), 'the same GPU plan');
      assert.throws(() => meta.fileRange(0, 4), /metadata/);
      assert.throws(() => core.newSession(meta, { nCtx: 32 }), /not in memory/);
      await meta.attachData(read);
      assert.equal(meta.hasData, true);
      assert.deepEqual(logitsOf(meta), logitsOf(full), 'logits after attaching the data section');
    } finally {
      meta.dispose();
      full.dispose();
    }
  });
}

test('a read that fails or comes up short is reported, and the model stays as it was', async () => {
  const bytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES_DIR, 'models', MODELS[0])));
  const short = async (off, len) => bytes.subarray(off, off + Math.max(0, len - 1));
  await assert.rejects(core.openModelMeta(short, bytes.length, { prefix: 4096 }), /read/);
  const meta = await core.openModelMeta(reader(bytes).read, bytes.length);
  try {
    await assert.rejects(meta.attachData(async () => { throw new Error('the file was evicted'); }), /evicted/);
    assert.equal(meta.hasData, false);
    await assert.rejects(meta.attachData(short), /read/);
    assert.equal(meta.hasData, false);
    await meta.attachData(reader(bytes).read);
    assert.equal(meta.hasData, true);
  } finally {
    meta.dispose();
  }
  const notGguf = new Uint8Array(64 * 1024);
  await assert.rejects(core.openModelMeta(reader(notGguf).read, notGguf.length), /magic/);
});
