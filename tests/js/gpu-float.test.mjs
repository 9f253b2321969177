// The WebGPU path on float weights: llama F16, and stories260K (a real trained model: F32, head_dim 8, n_ff 172).
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['llama-k256-f16', 'fused'],
  ['stories260K', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
