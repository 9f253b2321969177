// The public API of the browser runtime: createEngine() loads a model (a catalog id installed
// through web/store.js, a URL, or bytes) on the first backend of a fallback chain that can run it,
// and answers OpenAI-compatible chat completions (engine.chat.completions.create), streaming or
// not, cancellable with an AbortSignal. Backends are swappable (registerBackend); the WebAssembly
// CPU backend runs in a Web Worker by default (web/worker.js), or in the page.

import { WasmBackend, abortError } from './wasm-backend.js';
import { mountTasks } from './tasks.js';

export { abortError };

// ---------------------------------------------------------------------------------------------
// Backends. A backend loads one model and generates from a conversation (see Backend in
// engine.d.ts). createEngine tries them in order: WebGPU, then the WebAssembly CPU build, then a
// remote endpoint; a backend that is not registered or not available here is skipped.

const registry = new Map();

/**
 * Registers a backend factory: { available?(options) -> boolean | Promise<boolean>,
 * create(options) -> Promise<Backend> }. options are createEngine's, with `model` resolved to a
 * URL string, bytes or a Blob. A later registration under the same name replaces the earlier.
 */
export function registerBackend(name, factory) {
  if (typeof name !== 'string' || !factory || typeof factory.create !== 'function') {
    throw new TypeError('registerBackend(name, { create, available? })');
  }
  registry.set(name, factory);
}

/** Whether a backend of that name is registered (e.g. 'webgpu': can this build use the GPU?). */
export function hasBackend(name) {
  return registry.has(name);
}

/** The default order of the fallback chain. */
export const DEFAULT_BACKENDS = Object.freeze(['webgpu', 'wasm', 'remote']);

const inWorker = (o) => o.worker ?? (typeof Worker === 'function');

registerBackend('webgpu', {
  // The adapter itself is requested where the backend runs (the worker, by default); no adapter
  // there makes create fail and the chain move on.
  available: (o) => !!(o.gpu ?? globalThis.navigator?.gpu) && typeof WebAssembly === 'object',
  create: async (o) => (inWorker(o) && !o.gpu ? WorkerBackend.create(o, 'webgpu')
    : (await import('./gpu-backend.js')).GpuBackend.create(o)),
});

registerBackend('wasm', {
  available: () => typeof WebAssembly === 'object',
  create: (o) => (inWorker(o) ? WorkerBackend.create(o, 'wasm') : WasmBackend.create(o)),
});

registerBackend('remote', {
  available: (o) => !!o.remote,
  create: async (o) => (await import('./remote-backend.js')).RemoteBackend.create(o),
});

// ---------------------------------------------------------------------------------------------
// The worker proxy: the same interface as WasmBackend, with the backend living in web/worker.js.

function fromErrorData(d) {
  const e = new Error(d?.message ?? 'worker error');
  e.name = d?.name ?? 'Error';
  if (d?.code !== undefined) e.code = d.code;
  if (d?.status !== undefined) e.status = d.status;
  return e;
}

class WorkerBackend {
  static async create(o, kind = 'wasm') {
    const url = o.workerUrl ?? new URL('./worker.js', import.meta.url);
    const worker = new Worker(url, { type: 'module', name: 'nbl-engine' });
    const b = new WorkerBackend(worker, kind);
    b.onFallback = o.onFallback ?? null;
    // Only what structured cloning can carry: no callbacks, signals or store objects.
    const here = globalThis.location?.href;
    const model = typeof o.model === 'string' && here ? new URL(o.model, here).href : o.model;
    const dist = o.dist ? new URL(String(o.dist), here ?? import.meta.url).href : undefined;
    const options = { kind, model, threads: o.threads, nCtx: o.nCtx, nBatch: o.nBatch, dist, f16: o.f16, memoryBudget: o.memoryBudget,
      subgroups: o.subgroups, allowSoftwareGpu: o.allowSoftwareGpu };
    try {
      b.info = await b.call('load', { options }, { onProgress: o.onProgress, signal: o.signal });
    } catch (e) {
      worker.terminate();
      throw e;
    }
    b.info = { ...b.info, worker: true };
    return b;
  }

  constructor(worker, kind = 'wasm') {
    this.name = kind;
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map(); // id -> { resolve, reject, onDelta, onProgress }
    worker.onmessage = (e) => this.receive(e.data);
    const fail = (why) => {
      const err = new Error(`engine worker failed: ${why}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.dead = err;
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      fail(e.message || 'could not start (is web/dist built and served?)');
    };
    worker.onmessageerror = () => fail('a message could not be decoded');
  }

  receive(msg) {
    if (msg.type === 'fallback') { // the worker's GPU was lost: its CPU carries on
      this.info = { ...this.info, executor: 'wasm', fallback_reason: msg.info?.reason, weights_in_memory: msg.info?.weights_in_memory };
      this.onFallback?.(msg.info);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return; // a request already settled (aborted) still reports; nobody listens
    if (msg.type === 'delta') p.onDelta?.(msg.text, msg.token);
    else if (msg.type === 'progress') p.onProgress?.(msg.progress);
    else if (msg.type === 'result') { this.pending.delete(msg.id); p.resolve(msg.value); }
    else if (msg.type === 'error') { this.pending.delete(msg.id); p.reject(fromErrorData(msg.error)); }
  }

  call(type, fields = {}, { onDelta, onProgress, signal } = {}) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, onDelta, onProgress };
      this.pending.set(id, entry);
      if (signal) {
        // Settle at once on the page; the worker stops at its next token and the request's late
        // messages are dropped, so a new request can be sent right away.
        const onAbort = () => {
          if (!this.pending.has(id)) return;
          this.pending.delete(id);
          this.worker.postMessage({ type: 'abort', id });
          if (type === 'generate') resolve({ finish: 'abort', usage: null });
          else reject(abortError(signal.reason));
        };
        if (signal.aborted) queueMicrotask(onAbort);
        else signal.addEventListener('abort', onAbort, { once: true });
        const done = () => signal.removeEventListener('abort', onAbort);
        entry.resolve = (v) => { done(); resolve(v); };
        entry.reject = (e) => { done(); reject(e); };
      }
      this.worker.postMessage({ type, id, ...fields });
    });
  }

  generate({ messages, params }, { onDelta, signal } = {}) {
    return this.call('generate', { messages, params }, { onDelta, signal });
  }

  /** Test hook: makes the worker's GPU device lost (at once, even mid-generation). */
  loseDevice() { this.worker.postMessage({ type: 'loseDevice' }); }

  tokenize(text, options) { return this.call('tokenize', { text, options }); }
  renderChat(messages, options) { return this.call('renderChat', { messages, options }); }
  reset() { return this.call('reset'); }

  async dispose() {
    try {
      if (!this.dead) await this.call('dispose');
    } finally {
      this.worker.terminate();
      this.dead = new Error('the engine was disposed');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Model sources: a catalog id goes through the store (install with progress, then a Blob backed
// by storage); a URL or bytes go to the backend as they are.

const looksLikeUrl = (s) => /^[a-z][a-z0-9+.-]*:|^\.{0,2}\/|\.gguf(\?|#|$)/i.test(s);

async function resolveModel(o) {
  const m = o.model;
  if (m == null) throw new TypeError('createEngine: `model` is required (a catalog id, a URL, bytes or a Blob)');
  if (typeof m === 'string' && !looksLikeUrl(m)) {
    const [{ findModel, assertCatalog }, storeMod] = await Promise.all([import('./catalog.js'), import('./store.js')]);
    let catalog = o.catalog ?? new URL('./models.json', import.meta.url);
    if (typeof catalog === 'string' || catalog instanceof URL) {
      const r = await fetch(catalog, { signal: o.signal });
      if (!r.ok) throw new Error(`catalog ${catalog}: HTTP ${r.status}`);
      catalog = await r.json();
    }
    assertCatalog(catalog);
    const entry = findModel(catalog, m);
    if (!entry) throw new Error(`model "${m}" is not in the catalog (${catalog.models.map((e) => e.id).join(', ')})`);
    const store = o.store ?? storeMod.createStore();
    if ((await store.status(entry.id)) !== 'installed') {
      await store.install(entry, {
        signal: o.signal,
        onProgress: o.onProgress && ((p) => o.onProgress({ ...p, phase: 'download' })),
      });
    }
    return { source: await store.open(entry.id), id: entry.id, sampling: entry.sampling ?? null };
  }
  const id = typeof m === 'string' ? decodeURIComponent(m.split(/[?#]/)[0].split('/').pop()) || 'model'
    : (typeof File !== 'undefined' && m instanceof File) ? m.name : 'model';
  return { source: m, id, sampling: null };
}

/**
 * Creates an engine. Options:
 *   model       catalog id, URL, ArrayBuffer / typed array, or Blob (required)
 *   onProgress  ({ phase: 'download' | 'load' | 'gpu', loaded?, total?, ... }) => void
 *   signal      AbortSignal for the load
 *   backends    order of the fallback chain (default ['webgpu', 'wasm', 'remote']): the first
 *               that is available and loads the model runs it; info.fallbacks lists why the
 *               ones before it did not
 *   remote      { url, model, headers }: an OpenAI-compatible endpoint, the chain's last resort
 *               (the conversation then leaves the device)
 *   onFallback  ({ from, to, reason }) => void: the GPU was lost and the CPU carries on
 *   f16, memoryBudget, subgroups, allowSoftwareGpu   WebGPU: 'auto' | boolean for shader-f16;
 *               GPU bytes the model may take; false plans without subgroups; true runs on a
 *               software adapter (SwiftShader), which is otherwise left to the CPU build
 *   worker      run the backend in a Web Worker (default: when Worker exists)
 *   threads     'auto' or a count; more than 1 uses the threaded build when the page is
 *               cross-origin isolated
 *   nCtx        context window in tokens (default: the model's, at most 4096)
 *   sampling    default sampling { temperature, top_p, top_k, min_p, repeat_penalty }; else
 *               the catalog entry's, else OpenAI's defaults (temperature 1, top_p 1)
 *   store, catalog, dist, workerUrl   overrides for the model store, the catalog (object or
 *               URL), the folder of the wasm builds and the worker script
 */
export async function createEngine(options = {}) {
  const order = options.backends ?? DEFAULT_BACKENDS;
  const errors = [];
  let resolved;
  try {
    resolved = await resolveModel(options);
  } catch (e) {
    // No local model (the download failed, the quota is too small): a configured remote endpoint
    // can still answer.
    if (e?.name === 'AbortError' || options.signal?.aborted || !options.remote || !order.includes('remote')) throw e;
    errors.push(`model: ${e?.message ?? e}`);
    const backend = await registry.get('remote').create({ ...options, onFallback: undefined });
    return new Engine(backend, { id: options.remote.model || 'remote', sampling: options.sampling, fallbacks: errors, onFallback: options.onFallback });
  }
  const { source, id, sampling } = resolved;
  let backend = null;
  for (const name of order) {
    const f = registry.get(name);
    if (!f) continue;
    try {
      if (f.available && !(await f.available(options))) continue;
      backend = await f.create({ ...options, model: source, onFallback: undefined });
      break;
    } catch (e) {
      if (e?.name === 'AbortError' || options.signal?.aborted) throw e;
      errors.push(`${name}: ${e?.message ?? e}`);
      if (order.length === 1) throw e;
    }
  }
  if (!backend) {
    throw new Error(`no backend could run the model (${errors.length ? errors.join('; ') : `none of ${order.join(', ')} is available`})`);
  }
  return new Engine(backend, { id, sampling: options.sampling ?? sampling, fallbacks: errors, onFallback: options.onFallback });
}

// ---------------------------------------------------------------------------------------------
// The OpenAI-compatible layer, shared by every backend.

const SAMPLING_KEYS = ['temperature', 'top_p', 'top_k', 'min_p', 'repeat_penalty'];
const MAX_STOP = 16;

function randomId() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function randomSeed() {
  const b = new Uint32Array(1);
  globalThis.crypto.getRandomValues(b);
  return b[0];
}

function bad(msg) {
  const e = new TypeError(msg);
  e.code = 'invalid_request';
  return e;
}

function checkNumber(req, key, lo, hi, { integer = false } = {}) {
  const v = req[key];
  if (v == null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    throw bad(`${key} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages must be a non-empty array');
  return messages.map((m, i) => {
    if (!m || typeof m !== 'object' || typeof m.role !== 'string' || !m.role) throw bad(`messages[${i}] needs a string role`);
    const c = m.content;
    if (!(c == null || typeof c === 'string' || Array.isArray(c))) throw bad(`messages[${i}].content must be a string or an array of parts`);
    return { role: m.role, content: c ?? '' };
  });
}

/** OpenAI request fields → the C generation parameters (wasm_api.c's names). */
export function requestParams(req, defaults = {}) {
  if (req.n != null && req.n !== 1) throw bad('n: only one choice per request is supported');
  if (req.logprobs) throw bad('logprobs are not supported');
  if (Array.isArray(req.tools) && req.tools.length) throw bad('tools are not supported');
  for (const k of ['frequency_penalty', 'presence_penalty']) {
    if (req[k]) throw bad(`${k} is not supported; use repeat_penalty`);
  }
  const p = {};
  for (const k of SAMPLING_KEYS) if (defaults?.[k] != null) p[k] = defaults[k];
  const maxTokens = checkNumber(req, 'max_tokens', 1, 2 ** 30, { integer: true })
    ?? checkNumber(req, 'max_completion_tokens', 1, 2 ** 30, { integer: true });
  if (maxTokens !== undefined) p.max_tokens = maxTokens;
  const set = (k, v) => { if (v !== undefined) p[k] = v; };
  set('temperature', checkNumber(req, 'temperature', 0, 2));
  set('top_p', checkNumber(req, 'top_p', 0, 1));
  set('top_k', checkNumber(req, 'top_k', 0, 2 ** 30, { integer: true }));
  set('min_p', checkNumber(req, 'min_p', 0, 1));
  set('repeat_penalty', checkNumber(req, 'repetition_penalty', 0, 100) ?? checkNumber(req, 'repeat_penalty', 0, 100));
  set('max_sentences', checkNumber(req, 'max_sentences', 1, 2 ** 30, { integer: true }));
  const seed = checkNumber(req, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, { integer: true });
  p.seed = seed === undefined ? randomSeed() : seed < 0 ? seed + Number.MAX_SAFE_INTEGER + 1 : seed;
  if (req.stop != null) {
    const stop = typeof req.stop === 'string' ? [req.stop] : req.stop;
    if (!Array.isArray(stop) || stop.length > MAX_STOP || !stop.every((s) => typeof s === 'string' && s.length)) {
      throw bad(`stop must be a non-empty string or an array of at most ${MAX_STOP} of them`);
    }
    if (stop.length) p.stop = stop;
  }
  if (req.template != null) p.template = String(req.template);
  const rf = req.response_format;
  if (rf != null && rf.type !== 'text') {
    // Hook for constrained decoding (src/grammar.c): the schema travels as the user's JSON text.
    if (rf.type === 'json_object') p.response_format = { type: 'json_object' };
    else if (rf.type === 'json_schema') {
      const schema = rf.json_schema?.schema ?? rf.schema;
      if (schema == null) throw bad('response_format json_schema needs json_schema.schema');
      p.response_format = { type: 'json_schema', schema_text: typeof schema === 'string' ? schema : JSON.stringify(schema) };
    } else throw bad(`response_format type ${JSON.stringify(rf.type)} is not supported`);
  }
  return p;
}

function usageOf(u) {
  if (!u) return null;
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
    prompt_tokens_details: { cached_tokens: u.cached_tokens },
    dropped_messages: u.dropped_messages,
  };
}

/** One signal that fires when any of the given ones does. */
function anySignal(signals) {
  const list = signals.filter(Boolean);
  if (list.length === 1) return list[0];
  const c = new AbortController();
  for (const s of list) {
    if (s.aborted) { c.abort(s.reason); break; }
    s.addEventListener('abort', () => c.abort(s.reason), { once: true });
  }
  return c.signal;
}

/**
 * A streamed completion: an async iterable of chat.completion.chunk objects. controller.abort()
 * (or the request's signal, or leaving a for-await loop early) stops the generation at once.
 * After the last chunk, `usage` holds the token counts.
 */
export class ChatCompletionStream {
  constructor(run, { signal }) {
    this.controller = new AbortController();
    this.usage = null;
    this.queue = [];
    this.waiter = null;
    this.done = false;
    this.error = null;
    const sig = anySignal([this.controller.signal, signal]);
    this.signal = sig;
    const wake = () => { const w = this.waiter; this.waiter = null; w?.(); };
    sig.addEventListener('abort', () => {
      if (!this.done) { this.error = abortError(sig.reason); this.done = true; wake(); }
    }, { once: true });
    run(sig, (chunk) => { if (!this.done) { this.queue.push(chunk); wake(); } })
      .then(() => { this.done = true; wake(); }, (e) => { if (!this.done) { this.error = e; this.done = true; wake(); } });
  }

  async *[Symbol.asyncIterator]() {
    try {
      for (;;) {
        if (this.queue.length) { yield this.queue.shift(); continue; }
        if (this.error) throw this.error;
        if (this.done) return;
        await new Promise((r) => { this.waiter = r; });
      }
    } finally {
      if (!this.done) this.controller.abort(); // the consumer left early
    }
  }

  /** The whole text once the stream ends (consumes the stream). */
  async finalContent() {
    let s = '';
    for await (const c of this) s += c.choices[0]?.delta?.content ?? '';
    return s;
  }
}

export class Engine {
  constructor(backend, { id, sampling, fallbacks = [], onFallback = null }) {
    this.backend = backend;
    this.model = id;
    this.info = { ...backend.info, model: id, backend: backend.name, fallbacks };
    // A GPU lost mid-conversation: the backend's CPU carries on; info says so from then on.
    const prev = backend.onFallback;
    backend.onFallback = (ev) => {
      this.info.executor = ev?.to ?? 'wasm';
      this.info.fallback_reason = ev?.reason;
      this.info.weights_in_memory = ev?.weights_in_memory;
      prev?.(ev);
      onFallback?.(ev);
    };
    this.sampling = sampling ?? {};
    this.chat = { completions: { create: (req) => this.createChatCompletion(req) } };
    // Hook for helper tasks (titles, quick replies, ...): modules attach functions here.
    this.tasks = {};
    mountTasks(this);
  }

  /**
   * OpenAI's chat.completions.create: { messages, stream, max_tokens, temperature, top_p, seed,
   * stop, signal, stream_options: { include_usage }, response_format, ... }. Without stream,
   * resolves to a chat.completion object; with stream, to a ChatCompletionStream.
   */
  async createChatCompletion(req) {
    if (!req || typeof req !== 'object') throw bad('create(request): request must be an object');
    const messages = checkMessages(req.messages);
    const params = requestParams(req, this.sampling);
    const id = `chatcmpl-${randomId()}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: this.model, system_fingerprint: `nbl-${this.backend.name}` };
    if (req.signal?.aborted) throw abortError(req.signal.reason);
    if (!req.stream) {
      let content = '';
      const r = await this.backend.generate({ messages, params }, { signal: req.signal, onDelta: (t) => { content += t; } });
      if (r.finish === 'abort') throw abortError(req.signal?.reason);
      return {
        ...base,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: r.finish }],
        usage: usageOf(r.usage),
      };
    }
    const includeUsage = !!req.stream_options?.include_usage;
    const chunk = (delta, finish = null) => ({
      ...base, object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
    });
    const stream = new ChatCompletionStream(async (signal, push) => {
      push(chunk({ role: 'assistant', content: '' }));
      const r = await this.backend.generate({ messages, params }, { signal, onDelta: (t) => push(chunk({ content: t })) });
      if (r.finish === 'abort') throw abortError(signal.reason);
      stream.usage = usageOf(r.usage);
      push(chunk({}, r.finish));
      if (includeUsage) push({ ...base, object: 'chat.completion.chunk', choices: [], usage: stream.usage });
    }, { signal: req.signal });
    return stream;
  }

  /** Token ids of text under the model's tokenizer. */
  tokenize(text, options) { return this.backend.tokenize(text, options); }

  /** The prompt text the model's chat template makes of messages. */
  renderChat(messages, options) { return this.backend.renderChat(messages, options); }

  /** Forgets the cached conversation (the KV cache). */
  resetChat() { return this.backend.reset(); }

  /** Frees the model and stops the worker. */
  dispose() { return this.backend.dispose(); }
}
