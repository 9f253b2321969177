// Benchmark worker for bench/wasm.mjs: loads the engine's WebAssembly core in a Web Worker (as the
// engine runs it) and times a 128-token prompt (llama-bench's pp128) and decoding the way
// llama-bench's tgN does (N single-token evaluations of
// random tokens from an empty cache), and generation through the C decode loop (sample + eval per
// token, greedy), which is what wllama's predicted_per_second measures on its side.

import { loadCore } from '/web/core.js';

self.onmessage = async (e) => {
  const { model, threads, n, reps, relaxed = 'auto', dist } = e.data;
  try {
    const core = await loadCore({ threads, relaxed, ...(dist ? { dist } : {}) });
    const r = await fetch(model);
    const m = await core.openModel(r);
    const s = core.newSession(m, { nCtx: 512 });
    const V = m.info.n_vocab;
    let seed = 12345;
    const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % V; };
    const tg = [], gen = [], pp = [];
    for (let rep = 0; rep <= reps; rep++) { // rep 0 warms up
      // Prompt processing: one batch of 128 random tokens from an empty cache (llama-bench's pp128).
      s.truncate(0);
      const prompt = Array.from({ length: 128 }, rnd);
      let tp = performance.now();
      s.eval(prompt);
      if (rep > 0) pp.push(128 / ((performance.now() - tp) / 1000));
      s.truncate(0);
      let t0 = performance.now();
      for (let i = 0; i < n; i++) s.eval([rnd()]);
      const tgRate = n / ((performance.now() - t0) / 1000);
      s.truncate(0);
      s.startTokens([rnd(), rnd(), rnd(), rnd()], { temperature: 0, max_tokens: n + 1 });
      s.next(); // the first token comes from the prompt's logits
      t0 = performance.now();
      let k = 0;
      for (; k < n; k++) if (s.next().finish) break;
      const genRate = (k + 1) / ((performance.now() - t0) / 1000);
      if (rep > 0) { tg.push(tgRate); gen.push(genRate); }
    }
    postMessage({ ok: true, tg, gen, pp, threaded: core.threaded, threads: core.threads, kernels: m.info.kernels + (core.relaxed ? '+relaxed' : '') });
    s.dispose();
    m.dispose();
    core.terminate();
  } catch (err) {
    postMessage({ ok: false, error: String(err?.stack ?? err) });
  }
};
