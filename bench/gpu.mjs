// gpu.mjs — WebGPU speed of a GGUF through Dawn in Node (npm `webgpu`): prefill and decode
// tokens/s, dispatches per token, and GPU time per kernel kind from timestamp queries. Uses the
// same plan (native `nbl gpu_plan`) and executor (web/gpu.js) as the browser.
//
//   node bench/gpu.mjs MODEL.gguf [--nbl build/nbl] [--prompt 512] [--gen 128] [--ctx N]
//                      [--reps 3] [--no-profile] [--json OUT.json] [--plan-arg ARG]... [--check-cpu N]
//
// On the device machine (see ../shared/gpu/README.md): carry [".gpu", "<build dir with nbl>"],
// then `source .gpu/enter.sh && nbl synth qwen2.5-0.5b-instruct -t q4_0 -o /tmp/q.gguf &&
// node bench/gpu.mjs /tmp/q.gguf --nbl <build dir>/nbl`.
//
// Decode is measured two ways: "sync" waits for each token before issuing the next step (what a
// host-side sampler costs: one submit + readback round trip per token), "pipelined" lets the GPU
// feed its argmax into the next step's embedding lookup and keeps a few steps in flight (greedy
// decoding on the GPU; each step still reads back its token).

import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { benchArgs, ROOT } from './args.mjs';

const { args, opt, model } = benchArgs('node bench/gpu.mjs MODEL.gguf [--nbl build/nbl] [--prompt 512] [--gen 128] [--reps 3] [--no-profile] [--json OUT]');
const NBL = path.resolve(opt('--nbl', path.join(ROOT, process.env.B ?? 'build', 'nbl')));
const PROMPT = Number(opt('--prompt', 512));
const GEN = Number(opt('--gen', 128));
const REPS = Number(opt('--reps', 3));
const CTX = Number(opt('--ctx', PROMPT + GEN + 16));
const profile = !args.includes('--no-profile');
const planArgs = args.flatMap((a, i) => (a === '--plan-arg' ? [args[i + 1]] : []));

const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const { requestAdapter, planOptionsFor, loadPlan } = await import('../web/gpu.js');

// Timestamps are quantized by default (a browser's defence against timing attacks); a benchmark
// wants them exact. DAWN_OPTS replaces these flags.
const gpu = create(process.env.DAWN_OPTS !== undefined ? process.env.DAWN_OPTS.split(' ').filter(Boolean)
  : ['disable-dawn-features=timestamp_quantization']);
const adapter = await requestAdapter({ gpu });
const po = planOptionsFor(adapter);
const info = adapter.info ?? {};
console.log(`adapter: ${info.vendor} ${info.architecture} ${info.description ?? ''} | shader-f16 ${po.f16} | ` +
  `subgroups ${adapter.features.has('subgroups')} | timestamp-query ${adapter.features.has('timestamp-query')}`);

const t0 = performance.now();
const planJson = execFileSync(NBL, ['gpu_plan', '-m', model, '-c', String(CTX), '--max-tokens', String(PROMPT),
  '--max-binding', String(po.max_binding_size), '--max-buffer', String(po.max_buffer_size),
  '--workgroup-storage', String(po.max_workgroup_storage), ...(po.f16 ? ['--f16'] : []),
  ...(po.subgroups && !process.env.NO_SUBGROUPS ? ['--subgroups'] : []), ...planArgs],
{ maxBuffer: 1 << 30 }).toString();
const plan = JSON.parse(planJson);
const fd = fs.openSync(model, 'r');
const readRange = async (off, len) => {
  const b = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) got += fs.readSync(fd, b, got, len - got, off + got);
  return new Uint8Array(b.buffer, b.byteOffset, len);
};
const loadShader = async (f) => fs.readFileSync(path.join(ROOT, 'shaders', f), 'utf8');
let lost = null;
const exec = await loadPlan({ adapter, plan, readRange, loadShader, onLost: (i) => { lost = i; } });
const loadMs = performance.now() - t0;
const m = plan.model;
console.log(`model: ${m.name || path.basename(model)} (${m.arch}, ${m.n_layer} layers, n_embd ${m.n_embd}, vocab ${m.n_vocab}) ` +
  `| GPU memory ${(plan.bytes.total / 1048576).toFixed(0)} MiB (weights ${(plan.bytes.weights / 1048576).toFixed(0)}) ` +
  `| plan + upload + compile ${(loadMs / 1000).toFixed(1)} s | ${plan.pipelines.length} pipelines`);

const counts = exec.dispatchCounts();
const V = m.n_vocab;
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % V);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

async function prefill() {
  const t = performance.now();
  const r = await exec.run({ programs: ['prefill', 'head', 'argmax'], vars: { n_tokens: PROMPT, pos0: 0 },
    inputs: { tokens: prompt }, read: { output: 'token' } });
  return { ms: performance.now() - t, token: r[0] };
}

async function decodeSync(n) {
  const t = performance.now();
  for (let j = 0; j < n; j++) {
    await exec.run({ programs: ['decode', 'head', 'argmax'], vars: { n_tokens: 1, pos0: PROMPT + j }, read: { output: 'token' } });
  }
  return performance.now() - t;
}

let lastTokens = [];
async function decodePipelined(n, depth = 4, skipKinds = null) {
  const t = performance.now();
  const inflight = [];
  const toks = [];
  for (let j = 0; j < n; j++) {
    inflight.push(exec.run({ programs: ['decode', 'head', 'argmax'], vars: { n_tokens: 1, pos0: PROMPT + j }, read: { output: 'token' }, skipKinds }));
    if (inflight.length >= depth) toks.push((await inflight.shift())[0]);
  }
  for (const r of await Promise.all(inflight)) toks.push(r[0]);
  lastTokens = toks;
  return performance.now() - t;
}

// Warm up (first dispatches of each pipeline, driver-side allocations).
await prefill();
await decodeSync(4);

const pre = [];
for (let r = 0; r < REPS; r++) pre.push((await prefill()).ms);
const sync = [], piped = [];
for (let r = 0; r < REPS; r++) {
  await prefill();
  sync.push(await decodeSync(GEN));
  await prefill();
  piped.push(await decodePipelined(GEN));
}
// Greedy tokens against the CPU path on the same prompt (--check-cpu N: N tokens). Random
// weights give flat distributions, so a rounding difference may flip a near-tie late on.
let cpuCheck = null;
const nCheck = Number(opt('--check-cpu', 0));
if (nCheck > 0) {
  const first = (await prefill()).token;
  await decodePipelined(nCheck - 1);
  const gpuToks = [first, ...lastTokens];
  const out = execFileSync(NBL, ['run', '-m', model, '--tokens', prompt.join(','), '-n', String(nCheck), '--ids', '--ignore-eos'],
    { maxBuffer: 1 << 24 }).toString();
  const cpuToks = JSON.parse(out.trim().split('\n').pop());
  let agree = 0;
  while (agree < nCheck && cpuToks[agree] === gpuToks[agree]) agree++;
  cpuCheck = { gpu: gpuToks, cpu: cpuToks, agree };
  console.log(`greedy tokens, GPU vs CPU: first ${agree} of ${nCheck} agree | GPU ${gpuToks.slice(0, 8).join(',')} | CPU ${cpuToks.slice(0, 8).join(',')}`);
}
// Host time to record and submit a decode step, and what each kernel kind adds to a pipelined
// step (the step with that kind left out: wrong results, real timing in one compute pass).
let enc0 = exec.encodeMs;
await decodePipelined(GEN);
const encodeUs = (exec.encodeMs - enc0) / GEN * 1000;
const marginal = {};
const fullMs = median([await decodePipelined(GEN), await decodePipelined(GEN), await decodePipelined(GEN)]) / GEN;
for (const kind of ['matvec', 'attention', 'head', 'sample']) {
  await prefill();
  const ms = median([await decodePipelined(GEN, 4, [kind]), await decodePipelined(GEN, 4, [kind])]) / GEN;
  marginal[kind] = (fullMs - ms) * 1000;
}
const emptyMs = median([await decodePipelined(GEN, 4, ['embed', 'matvec', 'attention', 'head', 'sample'])]) / GEN;
console.log(`decode step: host records+submits in ${encodeUs.toFixed(0)} us; pipelined ${(fullMs * 1000).toFixed(0)} us, ` +
  `with no dispatches at all ${(emptyMs * 1000).toFixed(0)} us; each kind adds: ` +
  Object.entries(marginal).map(([k, v]) => `${k} ${v.toFixed(0)} us`).join(', '));
const prefillTps = PROMPT / (median(pre) / 1000);
const syncTps = GEN / (median(sync) / 1000);
const pipedTps = GEN / (median(piped) / 1000);
const perTok = counts.decode.total + counts.head.total + counts.argmax.total;
console.log(`prefill ${PROMPT} tokens: ${median(pre).toFixed(1)} ms = ${prefillTps.toFixed(0)} tokens/s ` +
  `(${counts.prefill.total + counts.head.total + counts.argmax.total} dispatches)`);
console.log(`decode ${GEN} tokens after ${PROMPT}: sync ${syncTps.toFixed(0)} tokens/s (${(median(sync) / GEN).toFixed(3)} ms/token), ` +
  `pipelined ${pipedTps.toFixed(0)} tokens/s (${(median(piped) / GEN).toFixed(3)} ms/token) | ${perTok} dispatches per token`);

const result = {
  model: path.basename(model), adapter: info, plan: { pipelines: plan.pipelines.length, bytes: plan.bytes, precision: plan.precision },
  load_ms: loadMs, prompt: PROMPT, gen: GEN, prefill_ms: pre, prefill_tps: prefillTps,
  decode_sync_ms: sync, decode_sync_tps: syncTps, decode_pipelined_ms: piped, decode_pipelined_tps: pipedTps,
  dispatches: counts, dispatches_per_decode_token: perTok, cpu_check: cpuCheck, encode_us: encodeUs,
  decode_step_us: fullMs * 1000, empty_step_us: emptyMs * 1000, marginal_us: marginal, first_tokens: lastTokens.slice(0, 16),
};

// GPU time per kernel kind: every dispatch in its own pass between timestamps. Passes add their
// own overhead, so the sum exceeds the unprofiled step; the split is what matters.
async function profileStep(programs, vars, inputs) {
  const runs = [];
  for (let r = 0; r < 3; r++) runs.push((await exec.run({ programs, vars, inputs, read: { output: 'token' }, profile: true })).profile);
  const best = runs.map((p) => p.reduce((s, e) => s + e.ns, 0)).reduce((bi, s, i, a) => (s < a[bi] ? i : bi), 0);
  const byKind = {};
  for (const e of runs[best]) {
    const k = (byKind[e.kind] ??= { count: 0, us: 0 });
    k.count++;
    k.us += e.ns / 1000;
  }
  const top = [...runs[best]].sort((a, b) => b.ns - a.ns).slice(0, 8).map((e) => `${e.label} ${(e.ns / 1000).toFixed(1)}us`);
  return { byKind, totalUs: runs[best].reduce((s, e) => s + e.ns, 0) / 1000, top };
}
if (profile && exec.timestamps) {
  await prefill();
  const pd = await profileStep(['decode', 'head', 'argmax'], { n_tokens: 1, pos0: PROMPT }, {});
  const pp = await profileStep(['prefill', 'head', 'argmax'], { n_tokens: PROMPT, pos0: 0 }, { tokens: prompt });
  const show = (name, p) => {
    console.log(`${name}: GPU time ${(p.totalUs / 1000).toFixed(3)} ms in ${Object.values(p.byKind).reduce((s, k) => s + k.count, 0)} dispatches`);
    for (const [k, v] of Object.entries(p.byKind).sort((a, b) => b[1].us - a[1].us)) {
      console.log(`  ${k.padEnd(10)} ${String(v.count).padStart(4)} x  ${v.us.toFixed(1).padStart(9)} us  (${(v.us / v.count).toFixed(2)} us each)`);
    }
    console.log(`  slowest: ${p.top.join(', ')}`);
  };
  show('decode step profile', pd);
  show(`prefill ${PROMPT} profile`, pp);
  result.profile_decode = pd;
  result.profile_prefill = pp;
} else if (profile) {
  console.log('no timestamp-query on this adapter: no per-kernel times');
}
if (lost) console.log(`device lost: ${lost.reason} ${lost.message}`);
const out = opt('--json');
if (out) fs.writeFileSync(out, JSON.stringify(result, null, 1));
exec.destroy();
process.exit(0);
