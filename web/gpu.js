// gpu.js — a generic executor for the GPU plans that the C core writes (src/webgpu.c): creates the
// plan's buffers, uploads weights range by range from a readRange callback, compiles the plan's
// pipelines (shaders/*.wgsl through a tiny preprocessor), builds every bind group once, and runs
// lists of named programs: one uniform write, one compute pass, one submit and at most one
// readback per step. It knows nothing about transformers: which programs make a decode step, what
// the buffers mean and how big anything is all come from the plan.

const USAGE = () => ({
  uniform: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  input: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  output: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  storage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
});

const UPLOAD_CHUNK = 16 << 20; // bytes read and written at a time: bounds JS memory during load

/** An error whose message says why a plan cannot run here (thrown before any download). */
export class GpuPlanError extends Error {
  constructor(message) {
    super(message);
    this.name = 'GpuPlanError';
  }
}

/** The device was lost (driver reset, tab in background on some platforms, out of memory). */
export class GpuLostError extends Error {
  constructor(info) {
    super(`GPU device lost (${info?.reason ?? 'unknown'}): ${info?.message ?? ''}`);
    this.name = 'GpuLostError';
    this.info = info;
  }
}

/**
 * Requests an adapter and describes it: the options to plan with (the adapter's real limits) and
 * whether shader-f16 is available. `gpu` defaults to navigator.gpu (Node: the `webgpu` package).
 */
export async function requestAdapter({ gpu = globalThis.navigator?.gpu, powerPreference = 'high-performance' } = {}) {
  if (!gpu) throw new GpuPlanError('WebGPU is not available in this environment');
  const adapter = await gpu.requestAdapter({ powerPreference });
  if (!adapter) throw new GpuPlanError('no WebGPU adapter');
  return adapter;
}

/** Plan options (nbl_gpu_plan_opts field names) from an adapter's limits and features. */
export function planOptionsFor(adapter, { f16 = 'auto' } = {}) {
  const L = adapter.limits;
  return {
    max_binding_size: Number(L.maxStorageBufferBindingSize),
    max_buffer_size: Number(L.maxBufferSize),
    max_workgroup_storage: Number(L.maxComputeWorkgroupStorageSize),
    f16: f16 === 'auto' ? adapter.features.has('shader-f16') : !!f16,
    subgroups: adapter.features.has('subgroups'),
  };
}

/**
 * Throws GpuPlanError naming the first requirement the adapter does not meet, or when the plan's
 * buffers exceed memoryBudget bytes (when given). Call before downloading the model.
 */
export function checkPlan(plan, adapter, { memoryBudget } = {}) {
  if (plan?.format !== 'nbl-gpu-plan' || plan.version !== 1) throw new GpuPlanError('not a version 1 GPU plan');
  for (const f of plan.requires.features) {
    if (!adapter.features.has(f)) throw new GpuPlanError(`the plan needs the adapter feature '${f}'`);
  }
  for (const [k, v] of Object.entries(plan.requires.limits)) {
    const have = Number(adapter.limits[k]);
    if (!(have >= v)) {
      throw new GpuPlanError(`the model needs ${k} >= ${v}, the adapter offers ${have}` +
        (k.includes('Size') ? ` (${mib(v)} vs ${mib(have)})` : ''));
    }
  }
  if (memoryBudget !== undefined && plan.bytes.total > memoryBudget) {
    throw new GpuPlanError(`the model needs ${mib(plan.bytes.total)} of GPU memory (weights ${mib(plan.bytes.weights)}, ` +
      `cache ${mib(plan.bytes.cache)}), more than the ${mib(memoryBudget)} available`);
  }
}

function mib(n) { return `${(n / 1048576).toFixed(1)} MiB`; }

/**
 * The WGSL preprocessor: #include "file", #ifdef / #ifndef / #else / #endif on the pipeline's
 * defines. Defines with a value other than true also become `const NAME = value;` declarations,
 * placed after any `enable` directive.
 */
export async function preprocess(name, defines, loadShader) {
  const cache = new Map();
  const load = async (n) => {
    if (!cache.has(n)) cache.set(n, await loadShader(n));
    return cache.get(n);
  };
  const out = [];
  const enables = [];
  const expand = async (file, depth) => {
    if (depth > 8) throw new Error(`shader ${name}: #include nested too deeply at ${file}`);
    const lines = (await load(file)).split('\n');
    const stack = []; // each: { active, taken }
    const active = () => stack.every((s) => s.active);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const m = /^\s*#(\w+)\s*(.*?)\s*$/.exec(line);
      if (!m) {
        if (active()) (/^\s*enable\s/.test(line) ? enables : out).push(line);
        continue;
      }
      const [, dir, arg] = m;
      if (dir === 'ifdef' || dir === 'ifndef') {
        const has = Object.prototype.hasOwnProperty.call(defines, arg) && defines[arg] !== false;
        stack.push({ active: dir === 'ifdef' ? has : !has });
      } else if (dir === 'else') {
        if (!stack.length) throw new Error(`${file}:${i + 1}: #else without #ifdef`);
        stack[stack.length - 1].active = !stack[stack.length - 1].active;
      } else if (dir === 'endif') {
        if (!stack.pop()) throw new Error(`${file}:${i + 1}: #endif without #ifdef`);
      } else if (dir === 'include') {
        if (active()) await expand(arg.replace(/^"|"$/g, ''), depth + 1);
      } else {
        throw new Error(`${file}:${i + 1}: unknown directive #${dir}`);
      }
    }
    if (stack.length) throw new Error(`${file}: unterminated #ifdef`);
  };
  await expand(`${name}.wgsl`, 0);
  const consts = Object.entries(defines).filter(([, v]) => typeof v === 'string').map(([k, v]) => `const ${k} = ${v};`);
  return [...enables, ...consts, ...out].join('\n');
}

function defaultShaderLoader() {
  const base = new URL('../shaders/', import.meta.url);
  return async (file) => {
    const url = new URL(file, base);
    if (url.protocol === 'file:') { // Node: fetch does not read files
      const { readFile } = await import('node:fs/promises');
      return readFile(url, 'utf8');
    }
    const r = await fetch(url);
    if (!r.ok) throw new Error(`shader ${file}: HTTP ${r.status}`);
    return r.text();
  };
}

/**
 * Creates the device and everything the plan needs, uploading weights from
 * readRange(offset, length) -> Promise<ArrayBuffer | Uint8Array> (file offsets of the GGUF).
 * Options: adapter (required), plan (parsed JSON), readRange, loadShader(file) -> Promise<string>
 * (default: fetch ../shaders/ next to this module), onProgress({ loaded, total }), onLost(info),
 * memoryBudget (bytes; see checkPlan).
 */
export async function loadPlan({ adapter, plan, readRange, loadShader, onProgress, onLost, memoryBudget, label = 'nbl' }) {
  checkPlan(plan, adapter, { memoryBudget });
  const features = [...plan.requires.features];
  const timestamps = adapter.features.has('timestamp-query');
  if (timestamps) features.push('timestamp-query');
  const requiredLimits = {};
  for (const [k, v] of Object.entries(plan.requires.limits)) {
    // Ask for what the adapter offers (not just the plan's need): costs nothing, and default
    // limits are far below real hardware's.
    requiredLimits[k] = Math.max(v, Number(adapter.limits[k]));
  }
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits, label });
  const exec = new GpuExecutor(device, plan, { timestamps, onLost });
  try {
    await exec._init(readRange, loadShader ?? defaultShaderLoader(), onProgress);
  } catch (e) {
    exec.destroy();
    throw e;
  }
  return exec;
}

export class GpuExecutor {
  constructor(device, plan, { timestamps, onLost }) {
    this.device = device;
    this.plan = plan;
    this.timestamps = timestamps;
    this.lostInfo = null;
    this.lost = device.lost.then((info) => {
      this.lostInfo = info;
      if (info.reason !== 'destroyed' && onLost) onLost(info);
      return info;
    });
    this.buffers = [];
    this.pipelines = [];
    this.bindGroups = {};
    this.staging = [];
    this.paramsData = new Uint32Array(plan.params.fields.length);
    this.encodeMs = 0; // host time spent recording and submitting steps (benchmarks read it)
  }

  async _init(readRange, loadShader, onProgress) {
    const { device, plan } = this;
    const usage = USAGE();
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    for (const b of plan.buffers) {
      this.buffers.push(device.createBuffer({ label: b.name, size: b.size, usage: usage[b.usage] }));
    }
    const err = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (oom || err) throw new GpuPlanError(`cannot create the GPU buffers: ${(oom || err).message}`);
    const total = plan.buffers.reduce((s, b) => s + (b.upload ?? []).reduce((t, u) => t + u.size, 0), 0);
    let loaded = 0;
    const pipelinesReady = this._compile(loadShader);
    pipelinesReady.catch(() => {}); // reported below, after the uploads
    for (let i = 0; i < plan.buffers.length; i++) {
      const b = plan.buffers[i];
      if (b.data) {
        const bytes = base64Bytes(b.data);
        device.queue.writeBuffer(this.buffers[i], 0, bytes, 0, bytes.length);
      }
      for (const u of b.upload ?? []) {
        for (let off = 0; off < u.size; off += UPLOAD_CHUNK) {
          const n = Math.min(UPLOAD_CHUNK, u.size - off);
          let bytes = await readRange(u.offset + off, n);
          bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
          if (bytes.length !== n) throw new Error(`readRange(${u.offset + off}, ${n}) returned ${bytes.length} bytes`);
          if (n % 4) { // writeBuffer wants multiples of 4; the buffer is padded
            const padded = new Uint8Array((n + 3) & ~3);
            padded.set(bytes);
            bytes = padded;
          }
          device.queue.writeBuffer(this.buffers[i], u.at + off, bytes, 0, bytes.length);
          loaded += n;
          onProgress?.({ loaded, total });
          if (this.lostInfo) throw new GpuLostError(this.lostInfo);
        }
      }
      // Let the queue drain now and then so staging memory does not pile up.
      if (i % 16 === 15) await device.queue.onSubmittedWorkDone();
    }
    await pipelinesReady;
    this._bind();
    await device.queue.onSubmittedWorkDone();
    if (this.lostInfo) throw new GpuLostError(this.lostInfo);
  }

  async _compile(loadShader) {
    const { device, plan } = this;
    // Every pipeline's bindings, from its first use (the plan binds a pipeline the same way always).
    const access = new Array(plan.pipelines.length);
    for (const prog of Object.values(plan.programs)) {
      for (const d of prog) access[d.pipeline] ??= d.bind.map((b) => b[1]);
    }
    const modules = new Map();
    const texts = new Map();
    const shaderCache = new Map();
    const cachedLoad = async (f) => {
      if (!shaderCache.has(f)) shaderCache.set(f, loadShader(f));
      return shaderCache.get(f);
    };
    this.layouts = [];
    const jobs = plan.pipelines.map(async (p, i) => {
      const key = `${p.shader}|${JSON.stringify(p.defines)}`;
      if (!modules.has(key)) {
        const code = await preprocess(p.shader, p.defines, cachedLoad);
        texts.set(key, code);
        modules.set(key, device.createShaderModule({ label: p.shader, code }));
      }
      const module = modules.get(key);
      const acc = access[i] ?? [];
      const bgl = device.createBindGroupLayout({
        label: p.shader,
        entries: acc.map((a, b) => ({
          binding: b,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: a === 'u' ? 'uniform' : a === 'r' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts[i] = bgl;
      const layout = device.createPipelineLayout({ bindGroupLayouts: [bgl] });
      try {
        return await device.createComputePipelineAsync({ label: p.shader, layout, compute: { module, entryPoint: p.entry } });
      } catch (e) {
        const info = await module.getCompilationInfo?.();
        const msgs = (info?.messages ?? []).filter((m) => m.type === 'error')
          .map((m) => `  line ${m.lineNum}: ${m.message}\n    ${texts.get(key).split('\n')[m.lineNum - 1] ?? ''}`);
        throw new Error(`pipeline ${i} (${p.shader} ${JSON.stringify(p.defines)}): ${e.message}\n${msgs.join('\n')}`);
      }
    });
    this.pipelines = await Promise.all(jobs);
  }

  _bind() {
    const { device, plan } = this;
    for (const [name, prog] of Object.entries(plan.programs)) {
      this.bindGroups[name] = prog.map((d, j) => device.createBindGroup({
        label: `${name}.${j}.${d.label}`,
        layout: this.layouts[d.pipeline],
        entries: d.bind.map((b, k) => ({ binding: k, resource: b[3] ? { buffer: this.buffers[b[0]], offset: b[2], size: b[3] } : { buffer: this.buffers[b[0]] } })),
      }));
    }
  }

  /** Dispatches per program, by kind: { program: { total, kinds: { kind: count } } }. */
  dispatchCounts() {
    const r = {};
    for (const [name, prog] of Object.entries(this.plan.programs)) {
      const kinds = {};
      for (const d of prog) kinds[d.kind] = (kinds[d.kind] ?? 0) + 1;
      r[name] = { total: prog.length, kinds };
    }
    return r;
  }

  _vars(vars) {
    const { plan } = this;
    const v = { ...vars };
    for (const [k, parts] of Object.entries(plan.params.derived ?? {})) v[k] = parts.reduce((s, p) => s + (v[p] ?? 0), 0);
    return v;
  }

  _staging(size) {
    const i = this.staging.findIndex((s) => !s.busy && s.buffer.size >= size);
    if (i >= 0) {
      this.staging[i].busy = true;
      return this.staging[i];
    }
    const s = { buffer: this.device.createBuffer({ size: Math.max(256, (size + 255) & ~255), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }), busy: true };
    this.staging.push(s);
    return s;
  }

  /**
   * Runs a step: writes the parameters (vars: the plan's params fields by name) and inputs
   * ({ name: array }), records the named programs in one compute pass, submits once, and
   * resolves with the requested output: read = { output, rows } (rows of the output's row size,
   * default 1), or null for nothing. Steps may be issued before earlier ones resolve; the queue
   * keeps them in order. With profile = true (and timestamp-query) every dispatch gets its own pass
   * and the result carries { value, profile: [{ program, label, kind, ns }] }. skipKinds (a
   * benchmark's tool: results are wrong) leaves out the dispatches of those kinds.
   */
  async run({ programs, vars, inputs = {}, read = null, profile = false, skipKinds = null }) {
    if (this.lostInfo) throw new GpuLostError(this.lostInfo);
    const tEnc = performance.now();
    const { device, plan } = this;
    const v = this._vars(vars);
    const nTok = v.n_tokens;
    for (const p of programs) {
      if (!plan.programs[p]) throw new Error(`unknown program '${p}'`);
      const max = plan.max_tokens_per_program?.[p];
      if (max !== undefined && nTok > max) throw new Error(`program '${p}' takes at most ${max} tokens, got ${nTok}`);
    }
    if (plan.n_ctx !== undefined && v.n_kv > plan.n_ctx) throw new Error(`step ends at position ${v.n_kv}, past the ${plan.n_ctx}-token cache`);
    plan.params.fields.forEach((f, i) => { this.paramsData[i] = v[f] ?? 0; });
    device.queue.writeBuffer(this.buffers[plan.params.buffer], 0, this.paramsData);
    for (const [name, data] of Object.entries(inputs)) {
      const inp = plan.inputs[name];
      if (!inp) throw new Error(`unknown input '${name}'`);
      if (data.length > inp.max) throw new Error(`input '${name}' takes at most ${inp.max} values`);
      const arr = data instanceof Uint32Array ? data : Uint32Array.from(data);
      device.queue.writeBuffer(this.buffers[inp.buffer], 0, arr, 0, arr.length);
    }
    const enc = device.createCommandEncoder();
    const prof = profile && this.timestamps ? [] : null;
    let qs = null;
    if (prof) {
      const n = programs.reduce((s, p) => s + plan.programs[p].length, 0);
      qs = device.createQuerySet({ type: 'timestamp', count: 2 * n });
    }
    const grid = (g) => g[0] + (g[1] ? g[1] * Math.ceil(v[g[3] ?? 'n_tokens'] / g[2]) : 0);
    let pass = prof ? null : enc.beginComputePass();
    let last = null;
    for (const p of programs) {
      const prog = plan.programs[p];
      const bgs = this.bindGroups[p];
      for (let j = 0; j < prog.length; j++) {
        const d = prog[j];
        const x = grid(d.grid[0]), y = grid(d.grid[1]), z = grid(d.grid[2]);
        if (!x || !y || !z || skipKinds?.includes(d.kind)) continue;
        if (prof) {
          const k = prof.length;
          pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 } });
          prof.push({ program: p, label: d.label, kind: d.kind });
          last = null;
        }
        if (last !== d.pipeline) {
          pass.setPipeline(this.pipelines[d.pipeline]);
          last = d.pipeline;
        }
        pass.setBindGroup(0, bgs[j]);
        pass.dispatchWorkgroups(x, y, z);
        if (prof) pass.end();
      }
    }
    if (!prof) pass.end();
    let st = null, size = 0, profBuf = null, profStage = null;
    if (read) {
      const out = plan.outputs[read.output];
      if (!out) throw new Error(`unknown output '${read.output}'`);
      size = out.row * 4 * (read.rows ?? 1);
      st = this._staging(size);
      enc.copyBufferToBuffer(this.buffers[out.buffer], 0, st.buffer, 0, size);
    }
    if (prof && prof.length) {
      profBuf = device.createBuffer({ size: prof.length * 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      profStage = device.createBuffer({ size: prof.length * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      enc.resolveQuerySet(qs, 0, prof.length * 2, profBuf, 0);
      enc.copyBufferToBuffer(profBuf, 0, profStage, 0, prof.length * 16);
    }
    device.queue.submit([enc.finish()]);
    this.encodeMs += performance.now() - tEnc;
    let value = null;
    if (st) {
      try {
        await st.buffer.mapAsync(GPUMapMode.READ, 0, size);
      } catch (e) {
        st.busy = false;
        throw this.lostInfo ? new GpuLostError(this.lostInfo) : e;
      }
      const out = plan.outputs[read.output];
      const copy = st.buffer.getMappedRange(0, size).slice(0);
      st.buffer.unmap();
      st.busy = false;
      value = out.type === 'f32' ? new Float32Array(copy) : new Uint32Array(copy);
    } else if (!prof) {
      await device.queue.onSubmittedWorkDone();
    }
    if (!prof) return value;
    let profileOut = [];
    if (profStage) {
      await profStage.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(profStage.getMappedRange().slice(0));
      profStage.unmap();
      profileOut = prof.map((e, k) => ({ ...e, ns: Number(t[2 * k + 1] - t[2 * k]) }));
      profBuf.destroy();
      profStage.destroy();
      qs.destroy();
    }
    return { value, profile: profileOut };
  }

  /** Reads a plan buffer by name (debugging and tests): Float32Array of its first `bytes`. */
  async readBuffer(name, bytes) {
    const i = this.plan.buffers.findIndex((b) => b.name === name);
    if (i < 0) throw new Error(`no buffer '${name}'`);
    const size = bytes ?? this.plan.buffers[i].size;
    const st = this._staging(size);
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.buffers[i], 0, st.buffer, 0, size);
    this.device.queue.submit([enc.finish()]);
    await st.buffer.mapAsync(GPUMapMode.READ, 0, size);
    const copy = st.buffer.getMappedRange(0, size).slice(0);
    st.buffer.unmap();
    st.busy = false;
    return new Float32Array(copy);
  }

  destroy() {
    for (const b of this.buffers) b.destroy();
    for (const s of this.staging) s.buffer.destroy();
    this.buffers = [];
    this.staging = [];
    this.device.destroy();
  }
}

function base64Bytes(s) {
  if (typeof atob === 'function') {
    const bin = atob(s);
    const out = new Uint8Array((bin.length + 3) & ~3);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const b = Buffer.from(s, 'base64');
  const out = new Uint8Array((b.length + 3) & ~3);
  out.set(b);
  return out;
}
