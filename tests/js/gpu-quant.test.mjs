// The WebGPU path on qwen2 fixtures in Q8_0 and Q5_0 (blocks of 34 and 22 bytes: weights at 2-byte offsets).
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, checkModel } from './gpu-common.mjs';

const ctx = setup();

for (const [model, mode] of [
  ['qwen2-k256-q8_0', 'fused'],
  ['qwen2-k256-q5_0', 'fused'],
]) {
  test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, async () => {
    const fails = await checkModel(ctx, model, mode);
    assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
  });
}
