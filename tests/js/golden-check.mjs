// The comparison with llama.cpp's logits (fixtures/golden) that the WebAssembly tests run, in
// node (wasm-golden.test.mjs) and in Chromium (wasm-relaxed.test.mjs): pure functions over a
// loaded core, so the same code checks both. Tolerances are the fixture README's (an independent
// float64 forward pass passes with margin):
//   F32/F16: cosine >= 0.99999, max|Δ|/std <= 0.01; BF16: 0.9999, 0.05; quantized: 0.999, 0.15.

export function tolerance(name) {
  if (/-f16|-f32|stories260K/.test(name)) return { cos: 0.99999, rel: 0.01 };
  if (/-bf16/.test(name)) return { cos: 0.9999, rel: 0.05 };
  return { cos: 0.999, rel: 0.15 };
}

export function stats(r) {
  let s = 0;
  for (const v of r) s += v;
  const mean = s / r.length;
  let ss = 0;
  for (const v of r) ss += (v - mean) * (v - mean);
  return { mean, std: Math.sqrt(ss / r.length) };
}

export function top2(r) {
  let a = 0, b = -1;
  for (let i = 1; i < r.length; i++) {
    if (r[i] > r[a]) { b = a; a = i; } else if (b < 0 || r[i] > r[b]) b = i;
  }
  return { top: a, gap: r[a] - r[b] };
}

// Returns { cos, rel, decisive, ok }; failures are collected, not thrown, to report all rows.
export function compareFull(ours, gold, t, fails, label, refName = 'llama.cpp') {
  let dot = 0, na = 0, nb = 0, maxd = 0;
  for (let i = 0; i < gold.length; i++) {
    dot += ours[i] * gold[i]; na += ours[i] * ours[i]; nb += gold[i] * gold[i];
    maxd = Math.max(maxd, Math.abs(ours[i] - gold[i]));
  }
  const gs = stats(gold).std, cos = dot / Math.sqrt(na * nb), rel = maxd / gs;
  if (!(cos >= t.cos)) fails.push(`${label}: cosine ${cos.toFixed(7)} < ${t.cos}`);
  if (!(rel <= t.rel)) fails.push(`${label}: max|d|/std ${rel.toFixed(4)} > ${t.rel}`);
  const g = top2(gold), decisive = g.gap >= 0.1 * gs;
  if (decisive && top2(ours).top !== g.top) fails.push(`${label}: top-1 ${top2(ours).top}, ${refName} ${g.top}`);
  return { cos, rel, decisive };
}

// Real-vocabulary goldens keep the top 32 logits per row plus logsumexp, mean and std.
export function compareTopk(ours, tk, t, fails, label) {
  const { mean } = stats(ours), ownStd = stats(ours).std;
  let dot = 0, na = 0, nb = 0, maxd = 0;
  tk.top_ids.forEach((id, k) => {
    const a = ours[id] - mean, b = tk.top_logits[k] - tk.mean;
    dot += a * b; na += a * a; nb += b * b;
    maxd = Math.max(maxd, Math.abs(ours[id] - tk.top_logits[k]));
  });
  let mx = -Infinity;
  for (const v of ours) mx = Math.max(mx, v);
  let se = 0;
  for (const v of ours) se += Math.exp(v - mx);
  const lse = mx + Math.log(se), cos = dot / Math.sqrt(na * nb), rel = maxd / tk.std;
  if (!(cos >= t.cos)) fails.push(`${label}: top-k cosine ${cos.toFixed(7)} < ${t.cos}`);
  if (!(rel <= t.rel)) fails.push(`${label}: top-k max|d|/std ${rel.toFixed(4)} > ${t.rel}`);
  if (!(Math.abs(lse - tk.logsumexp) / tk.std <= t.rel)) fails.push(`${label}: logsumexp ${lse} vs ${tk.logsumexp}`);
  if (!(Math.abs(ownStd - tk.std) / tk.std <= 0.01 + t.rel / 10)) fails.push(`${label}: std ${ownStd} vs ${tk.std}`);
  const decisive = tk.top_logits[0] - tk.top_logits[1] >= 0.1 * tk.std;
  if (decisive && top2(ours).top !== tk.top_ids[0]) fails.push(`${label}: top-1 ${top2(ours).top}, llama.cpp ${tk.top_ids[0]}`);
  return { cos, rel, decisive };
}

/**
 * Teacher-forced rows compared by cosine, max|Δ|/std(row) and top-1 on decisive rows, then a free
 * greedy run that must reproduce llama.cpp's tokens up to the first near-tie. g: the golden's
 * JSON; gold: its full logits (Float32Array) or null for top-k goldens; model: opened by the
 * caller on core, disposed here. Resolves to { fails, worstCos, worstRel, nDecisiveGreedy }; on
 * the GPU build (core.async, its sessions on the CPU) through the asynchronous calls.
 */
export async function checkGolden(core, g, gold, model) {
  const t = tolerance(g.model);
  const seq = [...g.prompt_tokens, ...g.greedy_tokens];
  const rows = seq.length, V = g.n_vocab, nP = g.prompt_tokens.length;
  const s = core.newSession(model, { nCtx: rows + 8 });
  const evalAll = (tokens) => (core.async ? s.evalAsync(tokens, { logitsAll: true }) : s.eval(tokens, { logitsAll: true }));
  const fails = [];
  let worstCos = 1, worstRel = 0, nDecisiveGreedy = 0, still = true;
  try {
    if (model.info.n_vocab !== V) fails.push(`${g.model}: n_vocab ${model.info.n_vocab}, golden ${V}`);
    if (gold && gold.length !== rows * V) fails.push(`${g.model}: ${gold.length} golden logits, want ${rows * V}`);
    if (fails.length) return { fails, worstCos, worstRel, nDecisiveGreedy };
    for (let r = 0; r < rows; r++) {
      if (r === 0) await evalAll(g.prompt_tokens);
      else if (r >= nP) await evalAll([seq[r]]);
      const ours = s.logits(r < nP ? r : 0);
      const label = `${g.model} row ${r}`;
      const c = gold ? compareFull(ours, gold.subarray(r * V, (r + 1) * V), t, fails, label)
        : compareTopk(ours, g.topk[r], t, fails, label);
      worstCos = Math.min(worstCos, c.cos);
      worstRel = Math.max(worstRel, c.rel);
      if (r >= nP - 1 && r < rows - 1 && still) {
        if (c.decisive) nDecisiveGreedy++; else still = false;
      }
    }
    // Free-running greedy decoding through the generation API (temperature 0).
    s.truncate(0);
    const params = { temperature: 0, max_tokens: Math.max(1, nDecisiveGreedy) };
    await (core.async ? s.startTokensAsync(g.prompt_tokens, params) : s.startTokens(g.prompt_tokens, params));
    const got = [];
    for (let k = 0; k < nDecisiveGreedy; k++) {
      const r = core.async ? await s.nextAsync() : s.next();
      got.push(r.token);
      if (r.finish) break;
    }
    // An end-of-generation token ends the run early; compare what was produced.
    const want = g.greedy_tokens.slice(0, got.length);
    if (JSON.stringify(got) !== JSON.stringify(want)) fails.push(`${g.model}: greedy ${got} vs llama.cpp ${want}`);
  } finally {
    s.dispose();
    model.dispose();
  }
  return { fails, worstCos, worstRel, nDecisiveGreedy };
}

