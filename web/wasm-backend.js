// The WebAssembly CPU backend: one model and one session (KV cache) in a wasm core, driven token
// by token. Runs wherever it is created: inside web/worker.js (the default, so inference never
// blocks the page) or in the page itself. It implements the backend interface that web/engine.js
// builds the OpenAI-compatible API on (see Backend in engine.d.ts), so a WebGPU or remote backend
// can take its place.

import { loadCore, FINISH } from './core.js';

const FINISH_NAME = { [FINISH.STOP]: 'stop', [FINISH.LENGTH]: 'length' };

/** An AbortError, as fetch and the DOM raise it. */
export function abortError(reason) {
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const e = new Error(typeof reason === 'string' ? reason : 'the request was aborted');
  e.name = 'AbortError';
  if (reason !== undefined) e.cause = reason;
  return e;
}

// Returns to the event loop between tokens, so abort messages and page events get through. A
// timer would be clamped to 4 ms after a few nested calls; a message round trip is not.
const yieldNow = (() => {
  if (typeof setImmediate === 'function') return () => new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === 'function') {
    const ch = new MessageChannel();
    const waiting = [];
    ch.port1.onmessage = () => waiting.shift()?.();
    return () => new Promise((r) => { waiting.push(r); ch.port2.postMessage(0); });
  }
  return () => new Promise((r) => setTimeout(r, 0));
})();

/** Reads a model source given as a URL into something core.openModel takes. */
async function resolveSource(model, { signal, fetch: fetchImpl = globalThis.fetch } = {}) {
  if (typeof model === 'string' || model instanceof URL) {
    const r = await fetchImpl(String(model), { signal });
    if (!r.ok) throw new Error(`model: ${model}: HTTP ${r.status}`);
    return r;
  }
  if (model && typeof model === 'object' && 'url' in model && !(typeof Blob !== 'undefined' && model instanceof Blob)) {
    return resolveSource(model.url, { signal, fetch: fetchImpl });
  }
  return model;
}

export class WasmBackend {
  /**
   * Options: model (bytes, Blob, Response, URL string, { size, stream }), threads ('auto' |
   * number), nCtx (context tokens; 0 = the model's, at most 4096), nBatch, dist (URL of the wasm
   * builds), onProgress({ phase: 'load', loaded, total }), signal.
   */
  static async create(opts = {}) {
    const core = await loadCore({ threads: opts.threads ?? 'auto', dist: opts.dist });
    const b = new WasmBackend(core);
    await b.open(opts);
    return b;
  }

  // Reads the model into the core and makes the session (sessionOptions go to newSession);
  // disposes everything on failure.
  async open(opts, sessionOptions = {}) {
    const core = this.core;
    try {
      this.model = await this.loadModel(await resolveSource(opts.model, opts), opts);
      this.session = core.newSession(this.model, { nCtx: opts.nCtx ?? 0, nBatch: opts.nBatch ?? 0, ...sessionOptions });
    } catch (e) {
      this.dispose();
      throw e;
    }
    this.info = {
      ...this.model.info,
      backend: this.name,
      threaded: core.threaded,
      threads: core.threads,
      simd: core.simd,
      n_ctx: this.session.nCtx,
    };
  }

  // The model, whole in wasm memory: the CPU runs it.
  loadModel(src, opts) {
    const onProgress = opts.onProgress && ((p) => opts.onProgress({ phase: 'load', ...p }));
    return this.core.openModel(src, { onProgress, signal: opts.signal });
  }

  constructor(core) {
    this.name = 'wasm';
    this.core = core;
    this.model = null;
    this.session = null;
    this.info = null;
    this.tail = Promise.resolve(); // requests run one at a time, in order
  }

  // Runs fn after every request queued before it.
  serial(fn) {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => {});
    return run;
  }

  /**
   * Answers messages with params (the C parameter names: max_tokens, temperature, top_p, top_k,
   * min_p, repeat_penalty, seed, stop, max_sentences, response_format, template). Calls
   * onDelta(text, token) for each piece of final text. Resolves to { finish: 'stop' | 'length' |
   * 'abort', usage }. An abort takes effect between tokens and leaves the session usable: the
   * next conversation reuses whatever prefix of it is still in the cache.
   */
  generate({ messages, params = {} }, { onDelta, signal } = {}) {
    return this.serial(async () => {
      if (!this.session) throw new Error('the engine was disposed');
      const s = this.session;
      if (signal?.aborted) return { finish: 'abort', usage: null };
      await s.startChatAsync(messages, params);
      let finish = 'abort';
      for (;;) {
        await yieldNow();
        if (signal?.aborted) break;
        const r = await s.nextAsync();
        if (r.text) onDelta?.(r.text, r.token);
        if (r.finish) {
          finish = FINISH_NAME[r.finish] ?? 'stop';
          break;
        }
      }
      return { finish, usage: s.usage() };
    });
  }

  /** Token ids of text (plain text: control-token spellings stay text). */
  tokenize(text, opts = {}) {
    return this.serial(() => Array.from(this.model.tokenize(text, opts)));
  }

  /** The prompt the chat template makes of messages. */
  renderChat(messages, opts = {}) {
    return this.serial(() => this.model.renderChat(messages, opts));
  }

  /** Empties the KV cache (the next request evaluates its whole prompt). */
  reset() {
    return this.serial(() => this.session?.truncate(0));
  }

  dispose() {
    this.session?.dispose();
    this.model?.dispose();
    this.core?.terminate();
    this.session = this.model = null;
  }
}
