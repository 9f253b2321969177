// The WebAssembly core: loads the single- or multi-threaded build of the C library (web/dist/,
// written by `make wasm`) and wraps its flat C API (src/wasm_api.c) in a small class. No model
// logic lives here: only bytes in, JSON and numbers out. Used by web/worker.js, by the in-page
// engine, and directly by the node tests.

const IS_NODE = typeof process === 'object' && !!process.versions?.node && typeof window === 'undefined';
const DEFAULT_DIST = new URL('./dist/', import.meta.url);

/** True when the threaded build can run here: SharedArrayBuffer plus, in a browser, a
 * cross-origin isolated page (COOP/COEP), which is what makes SharedArrayBuffer available. */
export function threadsAvailable() {
  if (typeof SharedArrayBuffer === 'undefined' || typeof WebAssembly?.Memory !== 'function') return false;
  return IS_NODE || globalThis.crossOriginIsolated === true;
}

/** A module of one function, t(), that runs i32x4.relaxed_dot_i8x16_i7x16_add_s on constants
 * (lanes of 48 85 122 -97 times 4 9 14 3, plus 2 in the lane it returns). It validates wherever
 * relaxed SIMD's dot products are known; it returns 2376 only where they compute what the final
 * proposal says (an engine with an earlier draft validates it and answers otherwise). */
export const RELAXED_PROBE = Uint8Array.of(
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03,
  0x02, 0x01, 0x00, 0x07, 0x05, 0x01, 0x01, 0x74, 0x00, 0x00, 0x0a, 0x40, 0x01, 0x3e, 0x00, 0xfd,
  0x0c, 0x30, 0x55, 0x7a, 0x9f, 0x30, 0x55, 0x7a, 0x9f, 0x30, 0x55, 0x7a, 0x9f, 0x30, 0x55, 0x7a,
  0x9f, 0xfd, 0x0c, 0x04, 0x09, 0x0e, 0x03, 0x04, 0x09, 0x0e, 0x03, 0x04, 0x09, 0x0e, 0x03, 0x04,
  0x09, 0x0e, 0x03, 0xfd, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
  0x00, 0x04, 0x00, 0x00, 0x00, 0xfd, 0x93, 0x02, 0xfd, 0x1b, 0x01, 0x0b);

let relaxed;
/** True when this engine runs relaxed SIMD's 8-bit dot product as specified: the builds that use
 * it (nbl-st-rs, nbl-mt-rs) are then loaded instead of the baseline SIMD128 ones. */
export function relaxedSimdAvailable() {
  if (relaxed === undefined) {
    try {
      relaxed = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_PROBE)).exports.t() === 2376;
    } catch {
      relaxed = false;
    }
  }
  return relaxed;
}

/** Logical cores, as the platform reports them (1 when unknown). */
export function hardwareThreads() {
  const n = globalThis.navigator?.hardwareConcurrency;
  if (n > 0) return n;
  if (IS_NODE) return globalThis.process?.env?.NBL_THREADS ? Number(process.env.NBL_THREADS) : 4;
  return 1;
}

/** Thread count a session uses when the caller does not say: decode is bound by memory
 * bandwidth, which a few cores saturate, and beyond two cores one is left to the page. */
export function defaultThreads() {
  const n = hardwareThreads();
  return Math.max(1, Math.min(8, n <= 2 ? n : n - 1));
}

export const FINISH = Object.freeze({ NONE: 0, STOP: 1, LENGTH: 2 });
export const TOK_ADD_BOS = 1;
export const TOK_PARSE_SPECIAL = 2;

/** An error from the C library: `code` is the nbl_status name ('format', 'nomem', ...). */
export class CoreError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'CoreError';
    this.status = status;
    this.code = STATUS[status] ?? 'error';
  }
}
const STATUS = ['ok', 'arg', 'io', 'format', 'unsupported', 'nomem', 'context', 'state', 'device'];
/** nbl_status values by name (include/nbl.h), for JavaScript that answers C (the GPU forward pass). */
export const STATUS_CODE = Object.freeze(Object.fromEntries(STATUS.map((name, i) => [name, i])));

/**
 * Loads a build. Options: threads ('auto' | number; 1 picks the single-threaded build, more
 * the threaded one when threadsAvailable()), gpu (the build whose sessions can run their forward
 * pass in JavaScript, on WebGPU: single-threaded, and its calls that evaluate return promises),
 * relaxed ('auto' | boolean: builds whose CPU kernels use relaxed SIMD's dot product, by default
 * where relaxedSimdAvailable(); the GPU build's serve a session after the GPU is lost), dist (URL of the folder holding the builds). Resolves to a Core.
 */
export async function loadCore({ threads = 'auto', gpu = false, relaxed = 'auto', dist = DEFAULT_DIST } = {}) {
  let n = threads === 'auto' || threads == null ? defaultThreads() : Math.floor(Number(threads));
  if (!(n >= 1)) throw new RangeError(`threads must be 'auto' or a positive number, got ${threads}`);
  if (relaxed !== 'auto' && typeof relaxed !== 'boolean') throw new RangeError(`relaxed must be 'auto' or a boolean, got ${relaxed}`);
  const threaded = !gpu && n > 1 && threadsAvailable();
  if (!threaded) n = 1;
  const base = dist instanceof URL ? dist : new URL(dist, globalThis.location?.href ?? DEFAULT_DIST);
  if (relaxed === true && !relaxedSimdAvailable()) throw new CoreError('relaxed SIMD dot products are not available in this engine', 4);
  const rs = relaxed === 'auto' ? relaxedSimdAvailable() : relaxed;
  const build = (gpu ? 'nbl-gpu' : threaded ? 'nbl-mt' : 'nbl-st') + (rs ? '-rs' : '');
  const script = new URL(`${build}.mjs`, base);
  if (IS_NODE) {
    // Emscripten's node support predates ES modules: its glue expects CommonJS globals.
    const { createRequire } = await import('node:module');
    globalThis.require ??= createRequire(import.meta.url);
    globalThis.__dirname ??= decodeURIComponent(base.pathname);
  }
  const { default: factory } = await import(script.href);
  // Node has fetch but not for file paths: hand the binary over instead.
  const wasmBinary = IS_NODE
    ? (await import('node:fs')).readFileSync(new URL(`${build}.wasm`, base))
    : undefined;
  const mod = await factory({
    wasmBinary,
    nblPoolSize: n - 1,
    // Emscripten asks for the .wasm (and the pthread worker) by name; node reads them by path.
    locateFile: (name) => (IS_NODE ? decodeURIComponent(new URL(name, base).pathname) : new URL(name, base).href),
    mainScriptUrlOrBlob: script.href,
    print: (s) => console.log(s),
    printErr: (s) => console.warn(s),
  });
  // Node keeps a process alive while any worker is referenced; the pool should not.
  if (IS_NODE) for (const w of mod.PThread?.unusedWorkers ?? []) w.unref?.();
  return new Core(mod, { threaded, threads: n, async: gpu, relaxed: rs });
}

/** An ArrayBuffer or any typed array as a Uint8Array over the same memory (no copy). */
export const bytesView = (b) => (b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength));

/** The C API over one module instance. Pointers are unsigned: memory may exceed 2 GiB. */
export class Core {
  constructor(mod, { threaded, threads, async = false, relaxed = false }) {
    this.mod = mod;
    this.threaded = threaded;
    this.threads = threads;
    this.simd = true;
    /** True on the builds whose kernels use relaxed SIMD's 8-bit dot product. */
    this.relaxed = relaxed;
    // The GPU build (Asyncify): a call that evaluates may suspend while JavaScript runs the
    // forward pass, so it goes through ccall and resolves later. One such call at a time.
    this.async = async;
  }

  /** Calls C function name (without the leading underscore) with numeric args; resolves to its
   * numeric result. On the GPU build the call may wait for the GPU. */
  callAsync(name, args) {
    const m = this.mod;
    if (!this.async) return Promise.resolve().then(() => m[`_${name}`](...args));
    return Promise.resolve(m.ccall(name, 'number', args.map(() => 'number'), args, { async: true }));
  }

  // Sync calls that may evaluate cannot work on the GPU build: say which method to use instead.
  needSync(method) {
    if (this.async) throw new CoreError(`this build evaluates asynchronously: use ${method}Async()`, 7);
  }

  get heapU8() { return this.mod.HEAPU8; }

  error(status) {
    const m = this.mod;
    return new CoreError(m.UTF8ToString(m._nblw_error() >>> 0) || `error ${status}`, status ?? m._nblw_error_code());
  }

  check(status) {
    if (status !== 0) throw this.error(status);
  }

  /** Copies a JS string into wasm memory (NUL-terminated); free with this.free. */
  cstr(s) {
    const m = this.mod;
    const n = m.lengthBytesUTF8(s) + 1;
    const p = m._malloc(n) >>> 0;
    if (!p) throw new CoreError('out of WebAssembly memory for a string', 5);
    m.stringToUTF8(s, p, n);
    return p;
  }

  free(p) { if (p) this.mod._free(p); }

  /** Stops the threaded build's workers; the core is unusable afterwards. */
  terminate() {
    const P = this.mod.PThread;
    for (const w of [...(P?.unusedWorkers ?? []), ...(P?.runningWorkers ?? [])]) w.terminate();
  }

  /** Most bytes the module can address, and bytes below its heap top now. */
  memory() { return { max: this.mod._nblw_heap_max(), used: this.mod._nblw_heap_used() }; }

  // ---- models ------------------------------------------------------------------------------

  /** Allocates room for a model of `size` bytes, or throws (before any allocation) when it
   * cannot fit the memory limit. Returns the pointer; fill it, then openModelAt. */
  allocModel(size) {
    const p = this.mod._nblw_model_alloc(size) >>> 0;
    if (!p) throw this.error(5);
    return p;
  }

  /** Opens the GGUF at ptr (from allocModel; ownership passes to the model, also on failure). */
  openModelAt(ptr, size, { vocabOnly = false } = {}) {
    const h = this.mod._nblw_model_open(ptr, size, vocabOnly ? 1 : 0) >>> 0;
    if (!h) throw this.error();
    return new CoreModel(this, h, size);
  }

  /**
   * Opens a model from bytes (ArrayBuffer / typed array), a Blob, a Response, or
   * { size, stream } (a ReadableStream of Uint8Array), copying the bytes straight into wasm
   * memory: chunk by chunk, never through a second whole-file buffer. onProgress({ loaded, total }).
   */
  async openModel(src, { onProgress, signal, vocabOnly = false } = {}) {
    if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
      const bytes = bytesView(src);
      const p = this.allocModel(bytes.length);
      this.heapU8.set(bytes, p);
      onProgress?.({ loaded: bytes.length, total: bytes.length });
      return this.openModelAt(p, bytes.length, { vocabOnly });
    }
    let size, stream;
    if (typeof Blob !== 'undefined' && src instanceof Blob) {
      size = src.size;
      stream = src.stream();
    } else if (typeof Response !== 'undefined' && src instanceof Response) {
      size = Number(src.headers.get('content-length'));
      if (!(size > 0) || src.headers.get('content-encoding')) {
        // No usable length: the bytes have to be collected before their size is known.
        return this.openModel(new Uint8Array(await src.arrayBuffer()), { onProgress, vocabOnly });
      }
      stream = src.body;
    } else if (src && src.stream && Number.isSafeInteger(src.size)) {
      ({ size, stream } = src);
    } else {
      throw new TypeError('openModel: expected bytes, a Blob, a Response or { size, stream }');
    }
    const p = this.allocModel(size);
    let loaded = 0;
    const reader = stream.getReader();
    try {
      for (;;) {
        if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.length > size) throw new CoreError(`model: more than the announced ${size} bytes`, 3);
        this.heapU8.set(value, p + loaded); // heap views are re-read: memory may have grown
        loaded += value.length;
        onProgress?.({ loaded, total: size });
      }
      if (loaded !== size) throw new CoreError(`model: got ${loaded} of ${size} bytes`, 2);
    } catch (e) {
      this.mod._nblw_model_bytes_free(p);
      reader.cancel().catch(() => {});
      throw e;
    }
    return this.openModelAt(p, size, { vocabOnly });
  }

  /**
   * Opens a model from its metadata alone (tokenizer, template, shapes), for an executor that
   * reads the weights itself: read(offset, length) -> Promise<Uint8Array> gives bytes of the
   * file, size is its length. Only the file's first bytes (the metadata, a few MiB) and its small
   * tensors (norms, biases) come into wasm memory; model.attachData(read) brings in the rest when
   * the CPU has to run it. prefix: bytes read first (more follow where the metadata needs them).
   */
  async openModelMeta(read, size, { signal, prefix = META_PREFIX } = {}) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new CoreError(`model: invalid size ${size}`, 1);
    const m = this.mod;
    let have = Math.min(size, Math.max(16, prefix));
    let head = new Uint8Array(0); // the bytes read so far: a retry reads only what it adds
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
      const tail = await read(head.length, have - head.length);
      if (tail.length !== have - head.length) throw new CoreError(`model: read ${head.length + tail.length} of the first ${have} bytes`, 2);
      if (head.length) {
        const grown = new Uint8Array(have);
        grown.set(head);
        grown.set(tail, head.length);
        head = grown;
      } else {
        head = tail;
      }
      const p = this.allocModel(have);
      this.heapU8.set(head, p);
      const h = m._nblw_model_open_meta(p, have, size) >>> 0;
      if (h) {
        const model = new CoreModel(this, h, size);
        model.meta = true;
        try {
          await model.putMissing(read);
        } catch (e) {
          model.dispose();
          throw e;
        }
        return model;
      }
      const more = m._nblw_model_more();
      if (!more || have >= size) throw this.error();
      have = Math.min(size, Math.max(more, 2 * have));
    }
  }

  // ---- sessions -----------------------------------------------------------------------------

  /** A session (KV cache) on model. nCtx 0 = min(training context, 4096); threads at most
   * the count the core was loaded with. external (GPU build): the forward pass runs in
   * Module.nblForward (web/gpu-backend.js) until that reports its device lost, then on the CPU. */
  newSession(model, { nCtx = 0, nBatch = 0, threads = this.threads, external = false } = {}) {
    // Only the workers started with the module exist: a thread created later would not start
    // until this thread yields, while the kernels' pool waits for it.
    threads = Math.max(1, Math.min(threads, this.threads));
    const h = this.mod._nblw_session_new_ext(model.h, nCtx, nBatch, threads, external ? 1 : 0) >>> 0;
    if (!h) throw this.error();
    return new CoreSession(this, model, h);
  }

  /**
   * The model's WebGPU plan (src/webgpu.c) for an adapter: opts are web/gpu.js planOptionsFor's
   * plus nCtx, maxTokens (tokens per prefill step), maxLogitRows, topK. Throws a CoreError
   * saying which tensor or limit does not fit.
   */
  gpuPlan(model, { nCtx, maxTokens = 256, maxLogitRows = 32, topK = 40, f16 = false, subgroups = false,
    max_binding_size: maxBinding = 128 << 20, max_buffer_size: maxBuffer = 256 << 20, max_workgroup_storage: wgs = 16384 } = {}) {
    const m = this.mod;
    const p = m._nblw_gpu_plan(model.h, nCtx, maxTokens, maxLogitRows, topK, f16 ? 1 : 0, subgroups ? 1 : 0,
      maxBinding, maxBuffer, wgs) >>> 0;
    if (!p) throw this.error();
    try {
      return JSON.parse(m.UTF8ToString(p));
    } finally {
      m._nblw_free(p);
    }
  }
}

// A metadata open reads this much of the file first, more only when the reader asks (Qwen2.5's
// vocabulary and merges take about 6 MiB).
const META_PREFIX = 8 << 20;
// attachData reads the data section in pieces of this size.
const ATTACH_CHUNK = 16 << 20;

export class CoreModel {
  constructor(core, h, size) {
    this.core = core;
    this.h = h;
    this.size = size;
    this.meta = false; // opened by openModelMeta: only the metadata's bytes are in wasm memory
    this.info = JSON.parse(core.mod.UTF8ToString(core.mod._nblw_model_info(h) >>> 0));
  }

  /** Text to token ids (Int32Array). parseSpecial: control-token text becomes control tokens. */
  tokenize(text, { addBos = false, parseSpecial = false } = {}) {
    const c = this.core, m = c.mod;
    const p = c.cstr(text);
    try {
      const n = m._nblw_tokenize(this.h, p, m.lengthBytesUTF8(text), (addBos ? TOK_ADD_BOS : 0) | (parseSpecial ? TOK_PARSE_SPECIAL : 0));
      if (n < 0) throw c.error();
      const out = m._nblw_out() >>> 0;
      return new Int32Array(m.HEAPU8.buffer, out, n).slice();
    } finally {
      c.free(p);
    }
  }

  /** The text of one token (special: control tokens give their text too). */
  tokenText(id, { special = false } = {}) {
    const m = this.core.mod;
    const n = m._nblw_token_bytes(this.h, id, special ? 1 : 0);
    if (n < 0) throw new CoreError(`token ${id} is outside the vocabulary`, 1);
    return new TextDecoder().decode(m.HEAPU8.slice(m._nblw_out() >>> 0, (m._nblw_out() >>> 0) + n));
  }

  /** The prompt text the chat template makes of messages. */
  renderChat(messages, { template = '', addGenerationPrompt = true } = {}) {
    const c = this.core, m = c.mod;
    const pm = c.cstr(JSON.stringify(messages)), pt = c.cstr(template);
    try {
      c.check(m._nblw_chat_render(this.h, pm, pt, addGenerationPrompt ? 1 : 0));
      return m.UTF8ToString(m._nblw_out() >>> 0, m._nblw_out_len());
    } finally {
      c.free(pm);
      c.free(pt);
    }
  }

  /** False for a model opened from its metadata (openModelMeta) until attachData. */
  get hasData() { return !!this.core.mod._nblw_model_has_data(this.h); }

  // Reads the small tensors a metadata open lacks (a few KiB each) and hands them to C.
  async putMissing(read) {
    const c = this.core, m = c.mod;
    const ranges = JSON.parse(m.UTF8ToString(m._nblw_model_missing(this.h) >>> 0));
    const parts = await Promise.all(ranges.map(([off, len]) => read(off, len)));
    for (let i = 0; i < ranges.length; i++) {
      const [off, len] = ranges[i], bytes = parts[i];
      if (bytes.length !== len) throw new CoreError(`model: read ${bytes.length} of ${len} bytes at ${off}`, 2);
      const p = m._malloc(len || 1) >>> 0;
      if (!p) throw new CoreError('out of WebAssembly memory for a tensor', 5);
      try {
        c.heapU8.set(bytes, p);
        c.check(m._nblw_model_put(this.h, off, p, len));
      } finally {
        c.free(p);
      }
    }
  }

  /**
   * Reads the tensor data of a model opened from its metadata into wasm memory, chunk by chunk,
   * so the CPU can run it: read(offset, length) -> Promise<Uint8Array> as for openModelMeta.
   * Throws, leaving the model as it was, when memory cannot hold it or a read fails.
   */
  async attachData(read, { onProgress, signal } = {}) {
    if (this.hasData) return;
    const c = this.core, m = c.mod;
    const { data_offset: d0, file_size: size } = this.info;
    const total = size - d0;
    const p = c.allocModel(total);
    let loaded = 0;
    try {
      while (loaded < total) {
        if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
        const n = Math.min(ATTACH_CHUNK, total - loaded);
        const bytes = await read(d0 + loaded, n);
        if (bytes.length !== n) throw new CoreError(`model: read ${bytes.length} of ${n} bytes at ${d0 + loaded}`, 2);
        c.heapU8.set(bytes, p + loaded); // heap views are re-read: memory may have grown
        loaded += n;
        onProgress?.({ loaded, total });
      }
    } catch (e) {
      m._nblw_model_bytes_free(p);
      throw e;
    }
    c.check(m._nblw_model_attach(this.h, p, total));
  }

  /** Bytes [offset, offset + length) of the GGUF file, as a view of wasm memory (valid until
   * the memory grows; copy or use at once). */
  fileRange(offset, length) {
    if (this.meta) throw new CoreError('model: opened from its metadata, its bytes are not in wasm memory', 7);
    const base = this.core.mod._nblw_model_bytes(this.h) >>> 0;
    if (!base || offset < 0 || offset + length > this.size) throw new CoreError(`model bytes ${offset}+${length} out of range`, 1);
    return this.core.heapU8.subarray(base + offset, base + offset + length);
  }

  dispose() {
    if (this.h) this.core.mod._nblw_model_free(this.h);
    this.h = 0;
  }
}

export class CoreSession {
  constructor(core, model, h) {
    this.core = core;
    this.model = model;
    this.h = h;
    this.nCtx = core.mod._nblw_session_n_ctx(h);
  }

  get pos() { return this.core.mod._nblw_session_pos(this.h); }

  truncate(nKeep) { this.core.check(this.core.mod._nblw_session_truncate(this.h, nKeep)); }

  // Runs C function name on args made by prep() (pointers it allocated, freed afterwards by
  // cleanup), synchronously or, when async, as a promise (the GPU build). done(result) maps the
  // result. Both forms share the marshalling so that they cannot drift apart.
  _call(async, method, name, prep, done) {
    const c = this.core;
    if (!async) c.needSync(method);
    const { args, cleanup } = prep();
    if (!async) {
      try {
        return done(c.mod[`_${name}`](...args));
      } finally {
        cleanup();
      }
    }
    return c.callAsync(name, args).then(done).finally(cleanup);
  }

  _tokens(tokens) {
    const m = this.core.mod;
    const p = m._malloc(Math.max(4, tokens.length * 4)) >>> 0;
    if (!p) throw new CoreError('out of WebAssembly memory', 5);
    new Int32Array(m.HEAPU8.buffer, p, tokens.length).set(tokens);
    return p;
  }

  _eval(async, tokens, { logitsAll = false } = {}) {
    return this._call(async, 'eval', 'nblw_eval', () => {
      const p = this._tokens(tokens);
      return { args: [this.h, p, tokens.length, logitsAll ? 1 : 0], cleanup: () => this.core.free(p) };
    }, (st) => this.core.check(st));
  }

  /** Evaluates tokens at the current position; logits via logits(). */
  eval(tokens, opts) { return this._eval(false, tokens, opts); }
  evalAsync(tokens, opts) { return this._eval(true, tokens, opts); }

  /** A copy of the logits of row i of the last eval (-1: the last row), or null. */
  logits(i = -1) {
    const m = this.core.mod;
    const p = m._nblw_logits(this.h, i) >>> 0;
    if (!p) return null;
    return new Float32Array(m.HEAPU8.buffer, p, this.model.info.n_vocab).slice();
  }

  _startChat(async, messages, params = {}) {
    return this._call(async, 'startChat', 'nblw_chat_start', () => {
      const c = this.core;
      const pm = c.cstr(JSON.stringify(messages)), pp = c.cstr(JSON.stringify(params));
      return { args: [this.h, pm, pp], cleanup: () => { c.free(pm); c.free(pp); } };
    }, (st) => this.core.check(st));
  }

  /** Starts answering messages ([{ role, content }]) with params (see wasm_api.c). */
  startChat(messages, params) { return this._startChat(false, messages, params); }
  startChatAsync(messages, params) { return this._startChat(true, messages, params); }

  _startTokens(async, tokens, params = {}) {
    return this._call(async, 'startTokens', 'nblw_gen_start_tokens', () => {
      const c = this.core;
      const p = this._tokens(tokens), pp = c.cstr(JSON.stringify(params));
      return { args: [this.h, p, tokens.length, pp], cleanup: () => { c.free(p); c.free(pp); } };
    }, (st) => this.core.check(st));
  }

  /** Starts generating after raw token ids. */
  startTokens(tokens, params) { return this._startTokens(false, tokens, params); }
  startTokensAsync(tokens, params) { return this._startTokens(true, tokens, params); }

  _next(async) {
    return this._call(async, 'next', 'nblw_gen_next', () => ({ args: [this.h], cleanup: () => {} }), (ptr) => {
      const c = this.core, m = c.mod;
      const r = (ptr >>> 0) >>> 2;
      const heap = new Int32Array(m.HEAPU8.buffer);
      const status = heap[r], len = heap[r + 1], finish = heap[r + 2], token = heap[r + 3];
      if (status !== 0) throw c.error(status);
      const text = len ? m.UTF8ToString(m._nblw_gen_text(this.h) >>> 0, len) : '';
      return { text, finish, token };
    });
  }

  /** One token: { text (newly final), finish (FINISH.*), token }. */
  next() { return this._next(false); }
  nextAsync() { return this._next(true); }

  /** True while the session's forward pass runs on the GPU (GPU build, external session). */
  get external() { return this.core.mod._nblw_session_external(this.h) === 1; }

  /** { prompt_tokens, cached_tokens, completion_tokens, dropped_messages } of the generation. */
  usage() {
    const m = this.core.mod;
    const r = (m._nblw_gen_usage(this.h) >>> 0) >>> 2;
    const heap = new Int32Array(m.HEAPU8.buffer);
    return { prompt_tokens: heap[r], cached_tokens: heap[r + 1], completion_tokens: heap[r + 2], dropped_messages: heap[r + 3] };
  }

  dispose() {
    if (this.h) this.core.mod._nblw_session_free(this.h);
    this.h = 0;
  }
}
