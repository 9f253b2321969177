// Decode speed of the WebAssembly build in headless Chromium against the native build (same
// machine, same run, same thread count) and against wllama (llama.cpp compiled to WebAssembly,
// npm @wllama/wllama) on the same GGUF in the same browser. Prints tokens/s and the ratios:
// targets are wasm >= 0.6x native and >= 1.5x wllama.
//   node bench/wasm.mjs --model M.gguf --nbl build/nbl [--threads 2] [-n 32] [--reps 3]
// `make bench-wasm` builds everything and writes the synthetic Qwen2.5-0.5B Q4_0 model first.
// Rates are the best of the repetitions: on a shared machine the best run is the one least
// disturbed by other work, and every engine gets the same treatment.

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { startServer, REPO_ROOT } from '../tests/server/server.mjs';
import { launchBrowser } from '../tests/browser/browser.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const model = path.resolve(opt('--model', '/tmp/q05.gguf'));
const nbl = path.resolve(opt('--nbl', path.join(REPO_ROOT, 'build/nbl')));
const threads = Number(opt('--threads', Math.min(4, os.availableParallelism?.() ?? os.cpus().length)));
const n = Number(opt('-n', 32));
const reps = Number(opt('--reps', 3));
const only = opt('--only', 'native,nbl,wllama').split(',');
for (const [f, what] of [[model, 'model (make bench-wasm writes it)'], [nbl, 'native binary (make all)']]) {
  if (!fs.existsSync(f)) { console.error(`bench/wasm: ${f} not found: the ${what}`); process.exit(1); }
}
const best = (xs) => (xs.length ? Math.max(...xs) : NaN);
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

// nbl bench's tgN (llama-bench's method), one timed run per call, best of reps calls.
// isa: NBL_ISA (e.g. 'ref', the portable scalar kernels the wasm build falls back to).
// test: 'tg' (decode, -n n) or 'pp' (a 128-token prompt).
function native(t, isa = '', test = 'tg') {
  const rates = [];
  for (let i = 0; i < reps; i++) {
    const a = test === 'pp' ? ['-p', '128', '-n', '0'] : ['-p', '0', '-n', String(n)];
    const r = spawnSync(nbl, ['bench', '-m', model, ...a, '-t', String(t), '-r', '1'],
      { encoding: 'utf8', env: { ...process.env, NBL_ISA: isa } });
    const m = new RegExp(`\\|\\s*${test}\\d+\\s*\\|\\s*([\\d.]+)`).exec(r.stdout ?? '');
    if (!m) throw new Error(`nbl bench failed: ${r.stderr || r.stdout}`);
    rates.push(Number(m[1]));
  }
  return best(rates);
}

const results = {};
const cfgs = [{ label: '1 thread', t: 1, isolated: false }, ...(threads > 1 ? [{ label: `${threads} threads`, t: threads, isolated: true }] : [])];
const plain = await startServer({ files: { 'bench.gguf': model } });
const iso = await startServer({ files: { 'bench.gguf': model }, coopCoep: true });
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  for (const c of cfgs) {
    const r = (results[c.label] = {});
    if (only.includes('native')) {
      r.native = native(c.t);
      r.nativeRef = native(c.t, 'ref');
      r.nativePp = native(c.t, '', 'pp');
    }
    await page.goto(`${(c.isolated ? iso : plain).url}/bench/pages/wasm.html`);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30000 });
    const o = { model: '/models/bench.gguf', threads: c.t, n, reps };
    if (only.includes('nbl')) {
      // The baseline SIMD128 build, then the one the browser gets by default (relaxed SIMD's dot
      // product where it validates, as in current Chromium).
      for (const relaxed of [false, 'auto']) {
        const x = await page.evaluate((a) => window.bench.nbl(a), { ...o, relaxed });
        if (!x.ok) throw new Error(`nbl wasm: ${x.error}\n${browser.logs.join('\n')}`);
        if (x.threads !== c.t) throw new Error(`nbl wasm ran ${x.threads} threads, wanted ${c.t}`);
        const k = relaxed === false ? 'base' : 'dflt';
        r[`tg_${k}`] = best(x.tg);
        r[`gen_${k}`] = best(x.gen);
        r[`pp_${k}`] = best(x.pp);
        r[`kernels_${k}`] = x.kernels;
      }
    }
    if (only.includes('wllama')) {
      const y = await page.evaluate((a) => window.bench.wllama(a), o);
      if (!y.ok) console.error(`wllama: ${y.error}`);
      r.wllama = y.ok ? best(y.gen) : NaN;
      r.wllamaPp = y.ok ? best(y.pp) : NaN;
      r.wllamaPromptN = y.promptN;
    }
  }
} finally {
  await browser.close();
  await plain.close();
  await iso.close();
}

console.log(`\ndecode tokens/s, ${path.basename(model)}, ${n} tokens, best of ${reps}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}`);
console.log('| threads | native tg | wasm tg, SIMD128 | wasm tg, default build (kernels) | wasm/native | native tg, scalar ref kernels | wasm/native-ref | wasm gen | wllama gen | wasm/wllama |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [label, r] of Object.entries(results)) {
  console.log(`| ${label} | ${fmt(r.native)} | ${fmt(r.tg_base)} | ${fmt(r.tg_dflt)} (${r.kernels_dflt ?? '?'}) | ${fmt(r.tg_dflt / r.native)}x | ` +
    `${fmt(r.nativeRef)} | ${fmt(r.tg_dflt / r.nativeRef)}x | ${fmt(r.gen_dflt)} | ${fmt(r.wllama)} | ${fmt(r.gen_dflt / r.wllama)}x |`);
}
console.log(`\nprompt tokens/s (pp128), ${path.basename(model)}, best of ${reps}`);
console.log('| threads | native pp | wasm pp, SIMD128 | wasm pp, default build | wasm/native | wllama pp (prompt tokens) | wasm/wllama |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [label, r] of Object.entries(results)) {
  console.log(`| ${label} | ${fmt(r.nativePp)} | ${fmt(r.pp_base)} | ${fmt(r.pp_dflt)} | ${fmt(r.pp_dflt / r.nativePp)}x | ` +
    `${fmt(r.wllamaPp)} (${r.wllamaPromptN ?? '?'}) | ${fmt(r.pp_dflt / r.wllamaPp)}x |`);
}
console.log('targets: wasm/native >= 0.6x (decode), wasm/wllama >= 1.5x');
