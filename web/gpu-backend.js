// The WebGPU backend: the GPU build of the C core (web/dist/nbl-gpu.*) keeps the model, the
// tokenizer, the chat template, sampling, grammars and tasks, exactly as on the CPU; only the
// forward pass runs on the GPU, through the model's plan (src/webgpu.c) and the generic executor
// (web/gpu.js). C calls Module.nblForward for each evaluation and waits (Asyncify) for the logits.
//
// Weights: the core opens the model from its metadata alone (tokenizer, template, shapes, the
// small norm and bias vectors), and the executor uploads the matrices tensor by tensor straight
// from the source (the store's Blob, backed by storage), so the file is never whole in JS or wasm
// memory while the GPU runs it.
//
// Device loss: when the GPU fails (device.lost, a driver reset, any error of a step), the weights
// are read from the source into wasm memory, the forward pass reports NBL_E_DEVICE, and each
// session moves to the CPU inside the same core: it rebuilds its KV cache there from the tokens it
// holds and the generation goes on where it was. onFallback(info) reports the switch.
//
// One GPU KV cache serves every session of the core (the chat's and the tasks'): the executor
// remembers which tokens it holds and re-evaluates only what differs from the caller's context.

import { loadCore, STATUS_CODE, bytesView } from './core.js';
import { WasmBackend } from './wasm-backend.js';
import { requestAdapter, planOptionsFor, checkPlan, loadPlan, GpuLostError, GpuPlanError } from './gpu.js';

const TASK_CTX = 2048; // web/tasks.js's default context of a task session

const isSoftware = (adapter) => !!(adapter.isFallbackAdapter ?? adapter.info?.isFallbackAdapter);

/**
 * A model source that can be read at random, { size, read(offset, length) -> Promise<Uint8Array> },
 * or null: bytes the caller already holds (read as views, no copy), or a Blob (the store's is
 * backed by storage). A Response becomes a Blob, which the browser keeps on disk when it is large.
 * A { size, stream } cannot be read at random: it goes into wasm memory whole, as on the CPU.
 */
async function randomAccess(src) {
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
    const u8 = bytesView(src);
    return { size: u8.length, read: async (off, len) => u8.subarray(off, off + len) };
  }
  if (typeof Blob !== 'undefined' && src instanceof Blob) {
    return { size: src.size, read: async (off, len) => new Uint8Array(await src.slice(off, off + len).arrayBuffer()) };
  }
  if (typeof Response !== 'undefined' && src instanceof Response) return randomAccess(await src.blob());
  return null;
}

export class GpuBackend extends WasmBackend {
  /**
   * Options: those of WasmBackend.create (threads is ignored: this build is single-threaded),
   * plus gpu (navigator.gpu or Node's `webgpu` GPU object), adapter, f16 ('auto' | boolean),
   * maxTokens (tokens per GPU prefill step, default 256), loadShader(file) -> Promise<string>,
   * memoryBudget (bytes of GPU memory the plan may use), subgroups (false: plan without them),
   * allowSoftwareGpu (use a software adapter, e.g. SwiftShader in tests), onFallback({ from, to,
   * reason }).
   * Progress: { phase: 'gpu' } while the weights go to the GPU ({ phase: 'load' } before, for a
   * stream source, which is read into wasm memory whole).
   */
  static async create(opts = {}) {
    const adapter = opts.adapter ?? await requestAdapter({ gpu: opts.gpu });
    if (isSoftware(adapter) && !opts.allowSoftwareGpu) {
      // A CPU rasterizer posing as a GPU (SwiftShader, WARP): the WebAssembly build is faster.
      throw new GpuPlanError('the only WebGPU adapter is a software one; the CPU build is faster (allowSoftwareGpu: true uses it anyway)');
    }
    const core = await loadCore({ gpu: true, dist: opts.dist });
    const b = new GpuBackend(core);
    b.onFallback = opts.onFallback ?? null;
    await b.open(opts, { external: true });
    try {
      await b.attach(adapter, opts);
    } catch (e) {
      b.dispose();
      throw e;
    }
    return b;
  }

  constructor(core) {
    super(core);
    this.name = 'webgpu';
    this.exec = null;
    this.plan = null;
    this.gpuTokens = null; // the tokens whose keys and values the GPU cache holds
    this.gpuLen = 0;
    this.lostReason = null;
    this.source = null;     // where the weights are read from (randomAccess), null: wasm memory
    this.cpuWeights = null; // the weights' load into wasm memory for the CPU, once the GPU is gone
  }

  // The model from its metadata when the source can be read at random; else whole, as on the CPU.
  async loadModel(src, opts) {
    const ra = await randomAccess(src);
    if (!ra) return super.loadModel(src, opts);
    this.source = ra;
    return this.core.openModelMeta(ra.read, ra.size, { signal: opts.signal });
  }

  // Brings the weights into wasm memory so the CPU can run the model: once, from the source;
  // a failure (memory, an evicted file) is reported and the next call tries again.
  cpuReady() {
    if (!this.model || this.model.hasData) return Promise.resolve();
    this.cpuWeights ??= this.model.attachData(this.source.read).then(() => {
      this.info = { ...this.info, weights_in_memory: true };
    }, (e) => {
      this.cpuWeights = null;
      throw e;
    });
    return this.cpuWeights;
  }

  /** Called before the tasks' sessions are made: on the CPU they need the weights. */
  async prepareTasks() {
    if (!this.exec) await this.cpuReady();
  }

  async attach(adapter, opts) {
    const po = planOptionsFor(adapter, { f16: opts.f16 ?? 'auto' });
    // Software adapters emulate subgroup operations: on SwiftShader a step with them takes ten
    // times as long as without.
    if (opts.subgroups === false || isSoftware(adapter)) po.subgroups = false;
    const plan = this.core.gpuPlan(this.model, {
      // One cache serves the chat and the tasks, so it holds the longer of their contexts.
      ...po, nCtx: Math.max(this.session.nCtx, TASK_CTX), maxTokens: opts.maxTokens ?? 256, maxLogitRows: 32, topK: 40,
    });
    checkPlan(plan, adapter, { memoryBudget: opts.memoryBudget });
    const onProgress = opts.onProgress && ((p) => opts.onProgress({ phase: 'gpu', ...p }));
    this.exec = await loadPlan({
      adapter, plan, onProgress, loadShader: opts.loadShader, memoryBudget: opts.memoryBudget,
      // From the source, tensor by tensor; or straight from the model's bytes in wasm memory
      // (writeBuffer copies before anything else runs).
      readRange: this.source?.read ?? (async (off, len) => this.model.fileRange(off, len)),
      onLost: (info) => this.fail(new GpuLostError(info)),
    });
    this.plan = plan;
    this.gpuTokens = new Int32Array(plan.n_ctx);
    this.core.mod.nblForward = (...a) => this.forward(...a);
    const ai = adapter.info ?? {};
    this.info = {
      ...this.info,
      backend: 'webgpu',
      executor: 'webgpu',
      weights_in_memory: this.model.hasData,
      gpu: {
        adapter: [ai.vendor, ai.architecture, ai.description].filter(Boolean).join(' '),
        precision: plan.precision,
        f16: po.f16,
        bytes: plan.bytes.total,
        dispatches_per_token: plan.steps.decode.reduce((s, p) => s + plan.programs[p].length, 0),
      },
    };
  }

  /** Tasks run their forward passes on the GPU too. */
  tasksOptions() {
    return this.exec ? { external: true, nCtx: TASK_CTX } : {};
  }

  // Module.nblForward: see nbl_forward_fn in include/nbl.h. Pointers are into wasm memory.
  async forward(cached, pos, tokens, n, logitsAll, out, msg, cap) {
    const m = this.core.mod;
    try {
      if (!this.exec) throw new Error(this.lostReason ?? 'the GPU executor is gone');
      if (pos + n > this.plan.n_ctx) {
        m.stringToUTF8(`${pos + n} positions do not fit the GPU cache of ${this.plan.n_ctx}`, msg, cap);
        return STATUS_CODE.context;
      }
      const h32 = new Int32Array(m.HEAPU8.buffer);
      const ctx = h32.slice(cached >>> 2, (cached >>> 2) + pos);
      const toks = h32.slice(tokens >>> 2, (tokens >>> 2) + n);
      let keep = 0;
      const lim = Math.min(this.gpuLen, pos);
      while (keep < lim && this.gpuTokens[keep] === ctx[keep]) keep++;
      this.gpuLen = keep;
      const V = this.plan.model.n_vocab;
      const steps = [];
      // What the cache lacks of the context first (another session used it meanwhile), then the
      // new tokens; logits only where the caller wants them.
      this.chunks(steps, ctx.subarray(keep), keep, 'none');
      this.chunks(steps, toks, pos, logitsAll ? 'all' : 'last');
      const results = await Promise.all(steps.map((s) => this.exec.run(s)));
      let row = 0;
      for (const r of results) {
        if (!r) continue;
        new Float32Array(m.HEAPU8.buffer, out + row * V * 4, r.length).set(r);
        row += r.length / V;
      }
      this.gpuTokens.set(ctx.subarray(keep), keep);
      this.gpuTokens.set(toks, pos);
      this.gpuLen = pos + n;
      return STATUS_CODE.ok;
    } catch (e) {
      this.fail(e);
      try {
        await this.cpuReady();
      } catch (le) {
        // The session stays on the (gone) GPU executor, so a later request tries again.
        m.stringToUTF8(`${this.lostReason ?? e?.message ?? e}; the CPU cannot take over: ${le?.message ?? le}`, msg, cap);
        return le?.code === 'nomem' ? STATUS_CODE.nomem : STATUS_CODE.io;
      }
      m.stringToUTF8(this.lostReason ?? String(e?.message ?? e), msg, cap);
      return STATUS_CODE.device;
    }
  }

  // Appends the executor steps that evaluate seq at pos0: rows 'none', 'last' or 'all'.
  chunks(steps, seq, pos0, rows) {
    const p = this.plan;
    const max = rows === 'all' ? Math.min(p.max_tokens, p.max_logit_rows) : p.max_tokens;
    for (let i = 0; i < seq.length; i += max) {
      const part = seq.subarray(i, i + max), T = part.length, last = i + max >= seq.length;
      const vars = { n_tokens: T, pos0: pos0 + i };
      const read = rows === 'all' || (rows === 'last' && last);
      let programs;
      if (T === 1) programs = read ? p.steps.decode : ['decode'];
      else if (!read) programs = p.steps.prefill;
      else programs = rows === 'all' ? p.steps.prefill_all : p.steps.prefill_last;
      steps.push({ programs, vars, inputs: { tokens: part }, read: read ? { output: 'logits', rows: rows === 'all' ? T : 1 } : null });
    }
  }

  // The GPU is gone for good: free it; sessions move to the CPU on their next evaluation.
  fail(e) {
    if (!this.exec) return;
    this.lostReason = `GPU: ${e?.message ?? e}`;
    this.releaseExec();
    this.gpuLen = 0;
    this.info = { ...this.info, executor: 'wasm', fallback_reason: this.lostReason };
    // Reads the weights in now (the next evaluation waits for them), then reports the switch.
    const reason = this.lostReason;
    this.cpuReady().then(() => true, () => false).then((ok) => {
      this.onFallback?.({ from: 'webgpu', to: 'wasm', reason, weights_in_memory: ok });
    });
  }

  /** Test hook: loses the GPU device as a driver reset would. */
  loseDevice() {
    this.exec?.device.destroy();
  }

  // Frees the executor's GPU objects once; a lost device may refuse, which changes nothing.
  releaseExec() {
    const exec = this.exec;
    this.exec = null;
    try { exec?.destroy(); } catch { /* already lost */ }
  }

  dispose() {
    this.releaseExec();
    if (this.core?.mod) this.core.mod.nblForward = null;
    super.dispose();
  }
}
