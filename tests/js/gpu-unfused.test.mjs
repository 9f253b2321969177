// The WebGPU path with one dispatch per graph op (no fusion), which exercises every single-op kernel: rmsnorm, rope, kv_store, swiglu, add, select_rows.
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['llama-k256-q4_0', 'unfused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
