// The WebGPU path on the remaining weight types of the fixtures: Q2_K and Q5_K_M (Q2_K/Q3_K, Q5_K/Q6_K super-blocks) and BF16.
// With gpu-qwen2, gpu-llama, gpu-float, gpu-quant and gpu-unfused, make test covers every type the
// GPU path supports. Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['llama-k256-q2_k', 'fused'],
  ['qwen2-k256-q5_k_m', 'fused'],
  ['qwen2-k256-bf16', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
