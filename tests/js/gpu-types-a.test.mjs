// The WebGPU path on the remaining weight types of the fixtures: Q4_1, Q5_1 and IQ4_NL (blocks of 20, 24 and 18 bytes; IQ4_NL's non-linear 16-value grid).
// With gpu-qwen2, gpu-llama, gpu-float, gpu-quant and gpu-unfused, make test covers every type the
// GPU path supports. Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['qwen2-k256-q4_1', 'fused'],
  ['llama-k256-q5_1', 'fused'],
  ['qwen2-k256-iq4_nl', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
