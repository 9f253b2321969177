// The WebGPU path on llama fixtures (adjacent-pair rope, 8 heads over 2 KV heads, separate output head): Q6_K and Q3_K_M (Q3_K, Q4_K, Q5_K).
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['llama-k256-q6_k', 'fused'],
  ['llama-k256-q3_k_m', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
