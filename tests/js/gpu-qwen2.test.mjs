// The WebGPU path on qwen2 fixtures (NEOX rope, q/k/v biases, tied output head): Q4_0, and Q4_K_M (Q4_K, Q6_K).
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['qwen2-k256-q4_0', 'fused'],
  ['qwen2-k256-q4_k_m', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
