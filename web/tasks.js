// Helper tasks in the browser: conversation titles, quick replies, memory facts and routing, run
// by the C library (src/tasks.c through src/wasm_tasks.c) on the engine's model, in task sessions
// of their own, so the chat's KV cache is never touched. Every output is constrained in C (title
// automaton, JSON Schema grammars, label likelihoods), so its shape holds whatever the model is.
//
//   CoreTasks            the C tasks context over a Core and CoreModel (web/core.js)
//   runTask(backend, …)  runs a task on a WasmBackend (in web/worker.js, or in the page)
//   mountTasks(engine)   fills engine.tasks.{title, quickReplies, memory, route}

import { CoreError } from './core.js';

const TASKS = Object.freeze(['title', 'quickReplies', 'memory', 'route']);

function abortError(reason) {
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const e = new Error(typeof reason === 'string' ? reason : 'the request was aborted');
  e.name = 'AbortError';
  if (reason !== undefined) e.cause = reason;
  return e;
}

function bad(msg) {
  const e = new TypeError(msg);
  e.code = 'invalid_request';
  return e;
}

// Only role and content cross to C; content may be a string, null or OpenAI text parts.
function messagesJson(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages must be a non-empty array');
  return JSON.stringify(messages.map((m, i) => {
    if (!m || typeof m.role !== 'string') throw bad(`messages[${i}] needs a string role`);
    return { role: m.role, content: m.content ?? '' };
  }));
}

const pick = (o, a, b) => (o[a] !== undefined ? o[a] : o[b]);

// Sampling and budget options in C's names (camelCase accepted too). Tasks default to greedy.
function samplingJson(o, extra = {}) {
  const out = {
    max_tokens: pick(o, 'maxTokens', 'max_tokens'),
    temperature: o.temperature,
    top_k: pick(o, 'topK', 'top_k'),
    top_p: pick(o, 'topP', 'top_p'),
    min_p: pick(o, 'minP', 'min_p'),
    seed: o.seed,
    ...extra,
  };
  for (const k of Object.keys(out)) if (out[k] === undefined || out[k] === null) delete out[k];
  return JSON.stringify(out);
}

/** The C tasks context for one model in one wasm core. */
export class CoreTasks {
  /**
   * Options: nCtx (context of each task session, default 2048), threads (sizes the model's
   * compute pool only if no session made it yet), shared (one session for every task: less
   * memory, less prompt caching).
   */
  constructor(core, model, { nCtx = 2048, threads = core.threads, shared = false, external = false } = {}) {
    this.core = core;
    const h = core.mod._nblw_tasks_new(model.h, nCtx, threads, shared ? 1 : 0, external ? 1 : 0) >>> 0;
    if (!h) throw this.error(core.mod._nblw_tasks_error_code());
    this.h = h;
  }

  error(status) {
    const m = this.core.mod;
    return new CoreError(m.UTF8ToString(m._nblw_tasks_error() >>> 0) || `task error ${status}`, status);
  }

  // Calls fn(handle, ...string pointers) and resolves to the result text. Asynchronous, since on
  // the GPU build the task's forward passes wait for the GPU.
  async call(fn, ...strings) {
    if (!this.h) throw new Error('the tasks context was disposed');
    const c = this.core, m = c.mod;
    const ptrs = [];
    try {
      for (const s of strings) ptrs.push(s == null ? 0 : c.cstr(s));
      const st = await c.callAsync(fn, [this.h, ...ptrs]);
      if (st !== 0) throw this.error(st);
      return m.UTF8ToString(m._nblw_tasks_out() >>> 0, m._nblw_tasks_out_len());
    } finally {
      for (const p of ptrs) c.free(p);
    }
  }

  /** A title of at most maxWords (default 6) words for the conversation's first turns. */
  title(messages, opts = {}) {
    return this.call('nblw_task_title', messagesJson(messages), samplingJson(opts, { max_words: pick(opts, 'maxWords', 'max_words') }));
  }

  /** Up to n (default 3) distinct short replies the user might send next. */
  async quickReplies(messages, opts = {}) {
    return JSON.parse(await this.call('nblw_task_replies', messagesJson(messages), samplingJson(opts, { n: opts.n })));
  }

  /**
   * Facts about the user worth remembering: [{ fact, category, confidence }], none equal to one
   * in existing (strings or { fact } objects).
   */
  async memory(messages, opts = {}) {
    const existing = opts.existing == null ? '' : JSON.stringify(opts.existing);
    if (opts.existing != null && !Array.isArray(opts.existing)) throw bad('memory: existing must be an array');
    return JSON.parse(await this.call('nblw_task_memory', messagesJson(messages), existing,
      samplingJson(opts, { max_items: pick(opts, 'maxItems', 'max_items') })));
  }

  /**
   * Classifies message among routes ([{ id, description?, examples? }]) by each label's
   * likelihood: { route, best, chosen, confidence, scores, loglik, fallback }. Under threshold
   * the route is opts.fallback (or null) and fallback is true.
   */
  async route(message, opts = {}) {
    if (typeof message !== 'string') throw bad('route: message must be a string');
    if (!Array.isArray(opts.routes) || opts.routes.length === 0) throw bad('route: routes must be a non-empty array');
    const routes = opts.routes.map((r, i) => {
      if (!r || typeof r.id !== 'string' || !r.id) throw bad(`routes[${i}] needs a string id`);
      return { id: r.id, description: r.description ?? undefined, examples: Array.isArray(r.examples) ? r.examples.filter((x) => typeof x === 'string') : undefined };
    });
    const o = {
      threshold: opts.threshold ?? undefined,
      fallback: opts.fallback ?? undefined,
      max_examples: pick(opts, 'maxExamples', 'max_examples'),
      per_token: pick(opts, 'perToken', 'per_token') ? true : undefined,
    };
    const r = JSON.parse(await this.call('nblw_task_route', message, JSON.stringify(routes), JSON.stringify(o)));
    return { ...r, fallback: r.chosen < 0 };
  }

  dispose() {
    if (this.h) this.core.mod._nblw_tasks_free(this.h);
    this.h = 0;
  }
}

/**
 * Runs task name with args on a WasmBackend (one that has core and model), after the requests
 * queued before it. The tasks context is made on first use and freed with the backend.
 */
export function runTask(backend, name, args = []) {
  if (!TASKS.includes(name)) return Promise.reject(bad(`unknown task ${JSON.stringify(name)}`));
  const go = async () => {
    if (!backend.core || !backend.model) throw new Error('the engine was disposed');
    if (!backend.nblTasks) {
      await backend.prepareTasks?.();
      backend.nblTasks = new CoreTasks(backend.core, backend.model, { threads: backend.core.threads, ...backend.tasksOptions?.() });
      const dispose = backend.dispose.bind(backend);
      backend.dispose = () => {
        backend.nblTasks?.dispose();
        backend.nblTasks = null;
        return dispose();
      };
    }
    return backend.nblTasks[name](...args);
  };
  return typeof backend.serial === 'function' ? backend.serial(go) : Promise.resolve().then(go);
}

// Options without what structured cloning cannot carry (the signal).
function plain(opts) {
  if (opts == null) return {};
  if (typeof opts !== 'object') throw bad('options must be an object');
  const { signal, ...rest } = opts;
  return rest;
}

/**
 * Adds engine.tasks.title(messages, opts), quickReplies(messages, { n }), memory(messages,
 * { existing }) and route(message, { routes, threshold, fallback }) when the engine's backend can
 * run them (the WebAssembly backend, in a worker or in the page). Each takes opts.signal.
 */
export function mountTasks(engine) {
  const b = engine?.backend;
  let exec = null;
  if (b && b.worker && typeof b.call === 'function') {
    exec = (name, args, signal) => b.call('task', { name, args }, { signal });
  } else if (b && b.core && b.model) {
    exec = async (name, args, signal) => {
      if (signal?.aborted) throw abortError(signal.reason);
      const v = await runTask(b, name, args);
      if (signal?.aborted) throw abortError(signal.reason);
      return v;
    };
  }
  if (!exec) return engine?.tasks;
  const t = engine.tasks ?? (engine.tasks = {});
  t.title = (messages, opts) => exec('title', [messages, plain(opts)], opts?.signal);
  t.quickReplies = (messages, opts) => exec('quickReplies', [messages, plain(opts)], opts?.signal);
  t.memory = (messages, opts) => exec('memory', [messages, plain(opts)], opts?.signal);
  t.route = (message, opts) => exec('route', [message, plain(opts)], opts?.signal);
  return t;
}
