// tasks-gpu.mjs — helper-task latency on WebGPU through Dawn in Node (npm `webgpu`), with the
// same code a page runs: the GPU build of the core (web/dist/nbl-gpu.*) in GpuBackend, the tasks
// of web/tasks.js. The tasks and inputs are bench/tasks_eval.jsonl's (what `nbl task_eval` runs
// natively, bench/tasks.sh); the same items also run on the WebAssembly CPU build in the same
// process for a ratio. With a random-weight model the outputs are noise that runs to each task's
// token budget, so the figures are upper bounds for the real model's.
//
//   node bench/tasks-gpu.mjs MODEL.gguf [--reps 3] [--no-cpu] [--lose] [--json OUT.json]
//
// It also prints how much wasm memory the GPU backend holds (the metadata only: the weights go
// from the file to the GPU), and with --lose destroys the device after the measurement and times
// the CPU taking over (reading the weights in) on the first task after it.
//
// On the device machine: carry [".gpu", "web/dist", "<dir with the model>"], then
// `source .gpu/enter.sh && node bench/tasks-gpu.mjs MODEL.gguf`.

import fs from 'node:fs';
import path from 'node:path';
import { benchArgs, ROOT } from './args.mjs';

const { args, opt, model } = benchArgs('node bench/tasks-gpu.mjs MODEL.gguf [--reps 3] [--no-cpu] [--lose] [--json OUT.json]');
const lose = args.includes('--lose');
const mib = (n) => (n / 1048576).toFixed(0);
const REPS = Number(opt('--reps', 3));
const software = args.includes('--allow-software');

const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const { GpuBackend } = await import('../web/gpu-backend.js');
const { WasmBackend } = await import('../web/wasm-backend.js');
const { runTask } = await import('../web/tasks.js');

// The evaluation set: each item becomes one task call.
const lines = fs.readFileSync(path.join(ROOT, 'bench/tasks_eval.jsonl'), 'utf8').split('\n')
  .filter((l) => l.trim() && !l.startsWith('#')).map((l) => JSON.parse(l));
const routes = lines.find((o) => o.task === 'routes');
const calls = [];
for (const o of lines) {
  if (o.task === 'title') calls.push({ task: 'title', args: [o.messages, { maxWords: o.max_words }] });
  else if (o.task === 'replies') calls.push({ task: 'quickReplies', args: [o.messages, { n: o.n ?? 3 }] });
  else if (o.task === 'memory') calls.push({ task: 'memory', args: [o.messages, { existing: o.existing ?? [] }] });
  else if (o.task === 'route') calls.push({ task: 'route', args: [o.message, { routes: routes.routes, threshold: routes.threshold, fallback: routes.fallback }] });
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Runs every call REPS times (the first pass warms the pipelines and caches up and is left out).
async function measure(backend) {
  const ms = {};
  for (let rep = 0; rep <= REPS; rep++) {
    for (const c of calls) {
      const t0 = performance.now();
      await runTask(backend, c.task, c.args);
      const dt = performance.now() - t0;
      if (rep > 0) (ms[c.task] ??= []).push(dt);
    }
  }
  return Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, median(v)]));
}

const bytes = fs.readFileSync(model);
const gpu = create([]);
let t0 = performance.now();
const g = await GpuBackend.create({
  model: bytes, gpu, nCtx: 2048, allowSoftwareGpu: software,
  onFallback: (ev) => {
    if (lose) return;
    console.error(`GPU lost: ${ev.reason}`);
    process.exitCode = 1;
  },
});
const gi = g.info.gpu;
console.log(`adapter: ${gi.adapter} | ${gi.precision} | GPU memory ${(gi.bytes / 1048576).toFixed(0)} MiB | ` +
  `${gi.dispatches_per_token} dispatches per decode step | load ${((performance.now() - t0) / 1000).toFixed(1)} s`);
console.log(`model: ${path.basename(model)} (${g.info.arch}, ${g.info.n_layer} layers, vocab ${g.info.n_vocab}) | ${calls.length} task calls x ${REPS}`);
console.log(`wasm memory: ${mib(g.core.memory().used)} MiB for a ${mib(bytes.length)} MiB file (weights in wasm memory: ${g.info.weights_in_memory})`);
const gpuMs = await measure(g);
if (g.info.executor !== 'webgpu') throw new Error(`the tasks ran on ${g.info.executor}: ${g.info.fallback_reason}`);
let lost = null;
if (lose) {
  g.loseDevice();
  t0 = performance.now();
  await runTask(g, calls[0].task, calls[0].args);
  lost = { first_task_ms: performance.now() - t0, wasm_mib: g.core.memory().used / 1048576, executor: g.info.executor };
  console.log(`device lost: the first ${calls[0].task} after it ran on ${g.info.executor} in ${lost.first_task_ms.toFixed(0)} ms ` +
    `(weights read in; wasm memory now ${mib(g.core.memory().used)} MiB)`);
  if (g.info.executor !== 'wasm' || !g.info.weights_in_memory) throw new Error('the CPU did not take over');
}
g.dispose();
console.log(`WebGPU medians (ms): ${JSON.stringify(Object.fromEntries(Object.entries(gpuMs).map(([k, v]) => [k, Math.round(v)])))}`);

let cpuMs = null;
if (!args.includes('--no-cpu')) {
  t0 = performance.now();
  const w = await WasmBackend.create({ model: bytes, nCtx: 2048, threads: 1 });
  cpuMs = await measure(w);
  w.dispose();
}

console.log('\n| task | WebGPU median ms | wasm CPU (1 thread) median ms | CPU / GPU |');
console.log('|---|---|---|---|');
for (const k of Object.keys(gpuMs)) {
  const c = cpuMs?.[k];
  console.log(`| ${k} | ${gpuMs[k].toFixed(1)} | ${c ? c.toFixed(1) : '-'} | ${c ? `${(c / gpuMs[k]).toFixed(1)}x` : '-'} |`);
}
const out = opt('--json');
if (out) fs.writeFileSync(out, JSON.stringify({ model: path.basename(model), gpu: gi, reps: REPS, webgpu_ms: gpuMs, wasm_ms: cpuMs, lost }, null, 2));
