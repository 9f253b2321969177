// Every fixture model through the WebGPU path, fused and unfused, with every greedy step: run with
// NBL_GPU_THOROUGH=1 (SwiftShader needs many minutes for all of them; the default run covers one
// model of each weight type in gpu-qwen2, gpu-llama, gpu-float, gpu-quant, gpu-types-a/b and
// gpu-unfused). Without it this file skips.
// Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { setup, checkModel, GOLDEN, THOROUGH } from './gpu-common.mjs';

const ctx = THOROUGH ? setup() : null;
const models = fs.readdirSync(GOLDEN).filter((n) => n.endsWith('.logits.f32')).map((n) => n.replace('.logits.f32', '')).sort();

for (const model of models) {
  for (const mode of ['fused', 'unfused']) {
    test(`${model} (${mode}): GPU logits match llama.cpp and the CPU path; greedy tokens agree`, { skip: !THOROUGH }, async () => {
      const fails = await checkModel(ctx, model, mode);
      assert.deepEqual(fails.slice(0, 12), [], `${fails.length} failures`);
    });
  }
}
