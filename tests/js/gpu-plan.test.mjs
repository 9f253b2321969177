// GPU plans without a GPU: `nbl gpu_plan` on every fixture model, checked for what web/gpu.js
// relies on (bindings within the plan's buffers and the shaders' binding counts, uploads inside
// the GGUF and their buffers, grids, dispatch counts per decode step), every pipeline's WGSL
// through the preprocessor (the f16 variant included: `enable f16;` must come first), and plans
// refused with messages that name the reason. The WGSL itself compiles in the browser tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { NBL, MODELS } from './gpu-common.mjs';
import { preprocess } from '../../web/gpu.js';
import { REPO_ROOT } from '../server/server.mjs';

const models = fs.readdirSync(MODELS).filter((f) => f.endsWith('.gguf') && !f.includes('realvocab')).map((f) => f.replace('.gguf', '')).sort();
const loadShader = async (f) => fs.readFileSync(path.join(REPO_ROOT, 'shaders', f), 'utf8');

function gpuPlan(model, args = []) {
  return JSON.parse(execFileSync(NBL, ['gpu_plan', '-m', path.join(MODELS, `${model}.gguf`), ...args], { maxBuffer: 1 << 28 }).toString());
}

// The bindings a shader declares for a set of defines: @binding(n) lines that survive #ifdef.
async function declaredBindings(p) {
  const code = await preprocess(p.shader, p.defines, loadShader);
  return [...code.matchAll(/@binding\((\d+)\)\s*var<(\w+)(?:,\s*(\w+))?>/g)].map((m) => ({ n: Number(m[1]), space: m[2], access: m[3] }));
}

function checkPlan(plan, fileSize, fails, label) {
  const nb = plan.buffers.length;
  for (const b of plan.buffers) {
    if (b.size % 4) fails.push(`${label}: buffer ${b.name} size ${b.size} not a multiple of 4`);
    for (const u of b.upload ?? []) {
      if (u.offset + u.size > fileSize) fails.push(`${label}: ${b.name} upload past the end of the file`);
      if (u.at + u.size > b.size) fails.push(`${label}: ${b.name} upload past the end of the buffer`);
      if (u.at % 4) fails.push(`${label}: ${b.name} upload at unaligned offset ${u.at}`);
    }
  }
  for (const [name, prog] of Object.entries(plan.programs)) {
    for (const d of prog) {
      if (!(d.pipeline >= 0 && d.pipeline < plan.pipelines.length)) fails.push(`${label}: ${name} bad pipeline`);
      for (const b of d.bind) {
        if (!(b[0] >= 0 && b[0] < nb)) fails.push(`${label}: ${name}/${d.label} binds buffer ${b[0]}`);
        if (b.length === 4 && (b[2] % 256 || b[2] + b[3] > plan.buffers[b[0]].size)) fails.push(`${label}: ${name}/${d.label} bad range`);
      }
      for (const g of d.grid) if (!(g[0] >= 0 && g[1] >= 0 && (g[1] === 0 || g[2] > 0))) fails.push(`${label}: ${name}/${d.label} grid ${g}`);
    }
  }
}

test('every fixture model plans, fused and unfused; bindings, uploads and grids are consistent', async () => {
  const fails = [];
  for (const model of models) {
    const size = fs.statSync(path.join(MODELS, `${model}.gguf`)).size;
    for (const args of [[], ['--unfused'], ['--subgroups', '--max-tokens', '64']]) {
      const plan = gpuPlan(model, args);
      checkPlan(plan, size, fails, `${model} ${args.join(' ')}`);
      // Each pipeline's declared bindings match what its dispatches bind (count and access).
      const seen = new Set();
      for (const prog of Object.values(plan.programs)) {
        for (const d of prog) {
          if (seen.has(d.pipeline)) continue;
          seen.add(d.pipeline);
          const decl = await declaredBindings(plan.pipelines[d.pipeline]);
          if (decl.length !== d.bind.length) fails.push(`${model}: ${d.label} binds ${d.bind.length}, shader declares ${decl.length}`);
          decl.forEach((b, i) => {
            const want = b.space === 'uniform' ? 'u' : b.access === 'read' ? 'r' : 'w';
            if (d.bind[i]?.[1] !== want) fails.push(`${model}: ${d.label} binding ${i} is '${d.bind[i]?.[1]}', shader wants '${want}'`);
          });
        }
      }
    }
  }
  assert.deepEqual(fails.slice(0, 10), []);
});

test('a fused decode step is 6 dispatches per layer plus embedding, output head and argmax', () => {
  for (const model of ['qwen2-k256-q4_0', 'llama-k256-q8_0', 'stories260K']) {
    const plan = gpuPlan(model);
    const layers = plan.model.n_layer;
    const n = plan.programs.decode.length + plan.programs.head.length + plan.programs.argmax.length;
    assert.equal(n, 1 + 6 * layers + 1 + 2, model);
    const unfused = gpuPlan(model, ['--unfused']);
    assert.ok(unfused.programs.decode.length > plan.programs.decode.length, `${model}: unfused has more dispatches`);
  }
});

test('layers share pipelines: the count does not grow with the layer count', () => {
  const a = gpuPlan('stories260K'); // 5 layers
  const b = gpuPlan('qwen2-k256-q8_0'); // 2 layers
  assert.ok(a.pipelines.length <= 30 && b.pipelines.length <= 30, `${a.pipelines.length}, ${b.pipelines.length}`);
});

test('the f16 plan needs shader-f16 and every variant puts `enable f16;` before any declaration', async () => {
  const plan = gpuPlan('qwen2-k256-q4_k_m', ['--f16', '--subgroups']);
  assert.deepEqual(plan.requires.features.sort(), ['shader-f16', 'subgroups']);
  assert.equal(plan.precision, 'f16');
  for (const p of plan.pipelines) {
    const code = await preprocess(p.shader, p.defines, loadShader);
    const lines = code.split('\n').filter((l) => l.trim() && !l.trim().startsWith('//'));
    const firstDecl = lines.findIndex((l) => !/^\s*enable\s/.test(l));
    assert.ok(lines.slice(0, firstDecl).some((l) => /enable f16;/.test(l)), `${p.shader}: enable f16 first`);
    assert.ok(!lines.slice(firstDecl).some((l) => /^\s*enable\s/.test(l)), `${p.shader}: no enable after declarations`);
    assert.ok(code.includes('alias AT = f16;'), `${p.shader}: f16 arithmetic type`);
  }
});

test('weights upload straight from the file: every matrix byte once, in ranges of the GGUF', () => {
  const plan = gpuPlan('llama-k256-q4_k_m');
  const ranges = plan.buffers.flatMap((b) => b.upload ?? []).map((u) => [u.offset, u.offset + u.size]).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i][0] >= ranges[i - 1][1], 'no tensor uploaded twice');
  const tensors = new Set(plan.buffers.flatMap((b) => b.upload ?? []).map((u) => u.tensor));
  assert.equal(tensors.size, 2 * 7 + 2, 'seven matrices per layer, the embedding and the output head');
});

test('refusals name the reason', () => {
  const fail = (model, args) => {
    try {
      execFileSync(NBL, ['gpu_plan', '-m', path.join(MODELS, `${model}.gguf`), ...args], { stdio: 'pipe' });
    } catch (e) {
      return String(e.stderr);
    }
    return '';
  };
  assert.match(fail('qwen2-k256-q4_0', ['--max-binding', '4096']), /gpu plan: buffer '\w+' needs \d+ bytes, more than one binding can hold \(4096\)/);
  assert.match(fail('qwen2-k256-q4_0', ['--workgroup-storage', '8192']), /gpu plan: the kernels need 16 KiB of workgroup memory, the adapter has 8192 bytes/);
  assert.match(fail('qwen2-k256-q4_0', ['--top-k', '300']), /bad argument|top_k/);
});
