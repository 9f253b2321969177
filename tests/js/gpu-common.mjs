// gpu-common.mjs — shared by the tests/js/gpu-*.test.mjs files: a headless Chromium page on
// SwiftShader driving web/gpu.js (tests/browser/pages/gpu.html) with plans written by the native
// `nbl gpu_plan`, CPU logits from `nbl run --logits-out`, and the fixture README's comparisons:
// teacher-forced rows compared by cosine, max|Δ|/std(row) and top-1 on decisive rows (golden
// top-1 minus top-2 >= 0.1 std); greedy tokens equal up to the first near-tie. Tolerances (an
// independent float64 forward pass passes with margin): F32/F16: cosine >= 0.99999,
// max|Δ|/std <= 0.01; BF16: 0.9999, 0.05; quantized: 0.999, 0.15.
// SwiftShader compiles and runs WGSL slowly, so models are spread over several files, each well
// inside run-one.mjs's two minutes; NBL_GPU_THOROUGH=1 (gpu-thorough.test.mjs) runs them all.

import { before, after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startServer, FIXTURES_DIR, REPO_ROOT } from '../server/server.mjs';
import { launchBrowser } from '../browser/browser.mjs';
import { compareFull, tolerance, stats, top2 } from './golden-check.mjs';

export const GOLDEN = path.join(FIXTURES_DIR, 'golden');
export const MODELS = path.join(FIXTURES_DIR, 'models');
export const NBL = path.resolve(REPO_ROOT, process.env.B ?? 'build', 'nbl');
export const THOROUGH = !!process.env.NBL_GPU_THOROUGH;

export { tolerance, stats, top2 } from './golden-check.mjs';

// Collects failures of one row against a reference row; returns { cos, rel, decisive }.
export const compareRow = (ours, ref, t, fails, label) => compareFull(ours, ref, t, fails, label, 'reference');

export const f32 = (b64) => { const b = Buffer.from(b64, 'base64'); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };
const readF32 = (file) => { const b = fs.readFileSync(file); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };

/** Starts the server, Chromium and the test page once per file; returns the shared context. */
export function setup() {
  const ctx = {};
  before(async () => {
    if (!fs.existsSync(NBL)) throw new Error(`${NBL} not found: build it first (make B=${process.env.B ?? 'build'})`);
    ctx.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nbl-gpu-'));
    ctx.server = await startServer();
    ctx.browser = await launchBrowser({ args: ['--enable-unsafe-webgpu'] });
    ctx.page = await ctx.browser.newPage();
    await ctx.page.goto(`${ctx.server.url}/tests/browser/pages/gpu.html`);
    await ctx.page.waitForFunction(() => window.gpuPageReady === true);
  });
  after(async () => {
    await ctx.browser?.close();
    await ctx.server?.close();
    if (ctx.tmp) fs.rmSync(ctx.tmp, { recursive: true, force: true });
  });
  return ctx;
}

/** Writes a plan with `nbl gpu_plan` and serves it; returns its URL. */
export function plan(ctx, model, extra, tag) {
  const file = path.join(ctx.tmp, `${model}.${tag}.json`);
  execFileSync(NBL, ['gpu_plan', '-m', path.join(MODELS, `${model}.gguf`), '-o', file, ...extra]);
  ctx.server.addFile(path.basename(file), file);
  return `/models/${path.basename(file)}`;
}

function cpuLogits(ctx, model, seq) {
  const file = path.join(ctx.tmp, `${model}.cpu.f32`);
  execFileSync(NBL, ['run', '-m', path.join(MODELS, `${model}.gguf`), '--tokens', seq.join(','),
    '-n', '0', '--logits-out', file, '-t', '1']);
  return readF32(file);
}

export function golden(model) {
  const g = JSON.parse(fs.readFileSync(path.join(GOLDEN, `${model}.json`), 'utf8'));
  g.logits = readF32(path.join(GOLDEN, g.logits_file));
  g.seq = [...g.prompt_tokens, ...g.greedy_tokens];
  return g;
}

/**
 * The full check of one model: every row's logits from one prefill step and from chunked prefill
 * + decode steps, against llama.cpp and the CPU path; greedy tokens with argmax and the token
 * feedback on the GPU; top-k against the logits row. Returns the list of failures.
 */
export async function checkModel(ctx, model, mode, { nGreedy, maxRows, planArgs = [] } = {}) {
  const g = golden(model);
  // The default run checks at most 40 rows (stories260K has 201), all of them when thorough.
  const rows = Math.min(g.logits_rows, maxRows ?? (THOROUGH ? Infinity : 40));
  g.logits_rows = rows;
  g.seq = g.seq.slice(0, rows);
  const V = g.n_vocab, seq = g.seq, n = seq.length;
  const extra = ['--max-tokens', String(n), '--logit-rows', String(n), '--top-k', '8', '-c', String(n + 8)];
  if (mode === 'unfused') extra.push('--unfused');
  if (mode === 'subgroups') extra.push('--subgroups');
  extra.push(...planArgs);
  const planUrl = plan(ctx, model, extra, mode);
  const nPrompt = g.prompt_tokens.length;
  const greedySteps = Math.min(g.greedy_tokens.length, nGreedy ?? (THOROUGH ? Infinity : 6));
  const out = await ctx.page.evaluate((cfg) => window.gpuRun(cfg), {
    planUrl, modelUrl: `/fixtures/models/${model}.gguf`, seq, nPrompt, chunk: 10,
    nGreedy: greedySteps, modes: ['all', 'decode', 'greedy', 'topk'],
  });
  const t = tolerance(model);
  const cpu = cpuLogits(ctx, model, seq);
  const fails = [];
  const all = f32(out.all), dec = f32(out.decode);
  let worstCos = 1, worstRel = 0;
  const note = (c) => { worstCos = Math.min(worstCos, c.cos); worstRel = Math.max(worstRel, c.rel); };
  for (let r = 0; r < g.logits_rows; r++) {
    const ref = g.logits.subarray(r * V, (r + 1) * V), cref = cpu.subarray(r * V, (r + 1) * V);
    const a = all.subarray(r * V, (r + 1) * V);
    note(compareRow(a, ref, t, fails, `prefill row ${r} vs llama.cpp`));
    compareRow(a, cref, t, fails, `prefill row ${r} vs CPU`);
    if (r >= nPrompt - 1) {
      const d = dec.subarray((r - nPrompt + 1) * V, (r - nPrompt + 2) * V);
      note(compareRow(d, ref, t, fails, `decode row ${r} vs llama.cpp`));
      compareRow(d, cref, t, fails, `decode row ${r} vs CPU`);
    }
  }
  for (let j = 0; j < greedySteps; j++) {
    const ref = g.logits.subarray((nPrompt - 1 + j) * V, (nPrompt + j) * V);
    if (top2(ref).gap < 0.1 * stats(ref).std) break; // past a near-tie the sequences may part
    if (out.greedy[j] !== g.greedy_tokens[j]) {
      fails.push(`greedy step ${j}: token ${out.greedy[j]}, llama.cpp ${g.greedy_tokens[j]}`);
      break;
    }
  }
  const row = f32(out.topkLogits);
  const want = [...row].map((v, i) => [i, v]).sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, out.topk.length);
  for (let i = 0; i < want.length; i++) {
    if (out.topk[i][0] !== want[i][0] || out.topk[i][1] !== want[i][1]) {
      fails.push(`topk[${i}] = ${out.topk[i]}, want ${want[i]}`);
      break;
    }
  }
  if (out.maxRange > 16 << 20) fails.push(`a single read of ${out.maxRange} bytes`);
  console.log(`# ${model} ${mode}: worst cosine ${worstCos.toFixed(7)}, worst max|d|/std ${worstRel.toFixed(4)}, ` +
    `${out.counts.decode.total + out.counts.head.total} dispatches per decode step, load ${out.loadMs.toFixed(0)} ms`);
  return fails;
}
