// WebGPU limits: tensors split over several bindings, and plans refused before any download with a
// message that says why. Comparisons and tolerances: see gpu-common.mjs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { setup, plan, golden, compareRow, tolerance, f32, NBL, MODELS } from './gpu-common.mjs';

const ctx = setup();

test('tensors larger than one binding are split over several buffers and still match', async () => {
  // A 96 KiB binding limit splits the 1280-row embedding / output head (tied in qwen2) and the
  // feed-forward matrices by rows, and keeps q apart from k|v.
  const model = 'qwen2-k256-q8_0';
  const g = golden(model);
  const n = g.seq.length;
  const url = plan(ctx, model, ['--max-binding', String(96 << 10), '--max-tokens', String(n), '-c', String(n + 8)], 'split');
  const p = JSON.parse(fs.readFileSync(path.join(ctx.tmp, `${model}.split.json`), 'utf8'));
  assert.ok(p.buffers.filter((b) => b.name.startsWith('w.token_embd.')).length >= 4, 'embedding split into parts');
  assert.ok(p.buffers.every((b) => b.usage !== 'storage' || b.size <= 96 << 10), 'every binding within the limit');
  // The prompt in one prefill step, then four decode steps: rows nPrompt - 1 .. nPrompt + 3.
  const nPrompt = g.prompt_tokens.length, last = nPrompt + 4;
  const out = await ctx.page.evaluate((cfg) => window.gpuRun(cfg), {
    planUrl: url, modelUrl: `/fixtures/models/${model}.gguf`, seq: g.seq.slice(0, last), nPrompt, chunk: 64, nGreedy: 1,
    modes: ['decode'],
  });
  const fails = [];
  const dec = f32(out.decode), V = g.n_vocab;
  for (let r = nPrompt - 1; r < last; r++) {
    compareRow(dec.subarray((r - nPrompt + 1) * V, (r - nPrompt + 2) * V), g.logits.subarray(r * V, (r + 1) * V),
      tolerance(model), fails, `row ${r}`);
  }
  assert.deepEqual(fails.slice(0, 8), []);
});

test('a plan larger than the memory budget is refused before loading, saying why', async () => {
  const url = plan(ctx, 'qwen2-k256-q4_0', [], 'budget');
  const msg = await ctx.page.evaluate(([u]) => window.gpuCheck(u, 1 << 20), [url]);
  assert.match(msg ?? '', /GpuPlanError: the model needs [\d.]+ MiB of GPU memory \(weights/);
  assert.equal(await ctx.page.evaluate(([u]) => window.gpuCheck(u), [url]), null);
});

test('a plan needing more than the adapter offers is refused, naming the limit', async () => {
  const url = plan(ctx, 'qwen2-k256-q4_0', ['--max-binding', String(8 * 2 ** 30), '--max-buffer', String(8 * 2 ** 30),
    '-c', '3000000'], 'huge');
  const msg = await ctx.page.evaluate(([u]) => window.gpuCheck(u), [url]);
  assert.match(msg ?? '', /GpuPlanError: the model needs maxStorageBufferBindingSize >= \d+, the adapter offers/);
});

test('the planner refuses what cannot fit one binding, naming the buffer', () => {
  assert.throws(() => execFileSync(NBL, ['gpu_plan', '-m', path.join(MODELS, 'qwen2-k256-f16.gguf'), '--max-binding', '4096'],
    { stdio: 'pipe' }), (e) => /gpu plan: buffer '\w+' needs \d+ bytes, more than one binding can hold \(4096\)/.test(String(e.stderr)));
});
