// gpu.d.ts — types of web/gpu.js, the generic executor of GPU plans written by the C core
// (src/webgpu.c, nbl_gpu_plan_json).

/** Why a plan cannot run on this adapter (thrown before any download). */
export class GpuPlanError extends Error {}

/** The device was lost; `info` is the GPUDeviceLostInfo. */
export class GpuLostError extends Error {
  info: GPUDeviceLostInfo;
}

/** A plan as nbl_gpu_plan_json writes it (format "nbl-gpu-plan", version 1). */
export interface GpuPlan {
  format: 'nbl-gpu-plan';
  version: 1;
  model: { arch: string; name: string; n_vocab: number; n_embd: number; n_layer: number; n_head: number;
    n_head_kv: number; head_dim: number; n_ff: number; file_bytes: number };
  precision: 'f32' | 'f16';
  n_ctx: number;
  max_tokens: number;
  max_logit_rows: number;
  top_k: number;
  fused: boolean;
  requires: { features: string[]; limits: Record<string, number> };
  bytes: { weights: number; cache: number; other: number; total: number };
  params: { buffer: number; fields: string[]; derived: Record<string, string[]> };
  inputs: Record<string, { buffer: number; type: 'u32'; max: number }>;
  max_tokens_per_program: Record<string, number>;
  outputs: Record<string, { buffer: number; type: 'f32' | 'u32'; row: number }>;
  buffers: Array<{ name: string; size: number; usage: 'uniform' | 'input' | 'output' | 'storage'; data?: string;
    upload?: Array<{ tensor: string | null; type: string; offset: number; size: number; at: number }> }>;
  pipelines: Array<{ shader: string; entry: string; defines: Record<string, true | string> }>;
  /** grid: per dimension [a, b, div, var?] = a + b * ceil(vars[var ?? 'n_tokens'] / div). */
  programs: Record<string, Array<{ pipeline: number; kind: string; label: string;
    grid: Array<[number, number, number] | [number, number, number, string]>;
    bind: Array<[number, 'u' | 'r' | 'w'] | [number, 'u' | 'r' | 'w', number, number]> }>>;
  /** Step kinds as lists of programs, e.g. decode = ['decode', 'head']. */
  steps: Record<string, string[]>;
}

/** Options for nbl_gpu_plan_json (nbl_gpu_plan_opts) from an adapter. */
export interface GpuPlanOptions {
  max_binding_size: number;
  max_buffer_size: number;
  max_workgroup_storage: number;
  f16: boolean;
  subgroups: boolean;
}

export function requestAdapter(opts?: { gpu?: GPU; powerPreference?: GPUPowerPreference }): Promise<GPUAdapter>;
export function planOptionsFor(adapter: GPUAdapter, opts?: { f16?: 'auto' | boolean }): GpuPlanOptions;
/** Throws GpuPlanError naming the first unmet requirement (or the memory budget, when given). */
export function checkPlan(plan: GpuPlan, adapter: GPUAdapter, opts?: { memoryBudget?: number }): void;
/** The shader preprocessor (#include, #ifdef/#ifndef/#else/#endif; string defines become consts). */
export function preprocess(name: string, defines: Record<string, true | string>,
  loadShader: (file: string) => Promise<string>): Promise<string>;

export interface LoadOptions {
  adapter: GPUAdapter;
  plan: GpuPlan;
  /** Bytes [offset, offset + length) of the GGUF file; called with at most 16 MiB at a time. */
  readRange: (offset: number, length: number) => Promise<ArrayBuffer | Uint8Array>;
  /** Text of a file in shaders/ (default: fetched next to this module). */
  loadShader?: (file: string) => Promise<string>;
  onProgress?: (p: { loaded: number; total: number }) => void;
  /** Called once when the device is lost (not on destroy()). */
  onLost?: (info: GPUDeviceLostInfo) => void;
  memoryBudget?: number;
  label?: string;
}

export function loadPlan(opts: LoadOptions): Promise<GpuExecutor>;

export interface RunOptions {
  /** Program names, recorded in order in one compute pass (e.g. plan.steps.decode + ['argmax']). */
  programs: string[];
  /** The plan's params fields by name (n_tokens, pos0); derived ones are computed. */
  vars: Record<string, number>;
  /** Host data for plan inputs (tokens); omitted inputs keep what the GPU left there. */
  inputs?: Record<string, ArrayLike<number>>;
  /** The output to read back (rows of its row size), or null. */
  read?: { output: string; rows?: number } | null;
  /** Every dispatch in its own pass between timestamps (needs timestamp-query). */
  profile?: boolean;
  /** Benchmarks only: leave out dispatches of these kinds (results are wrong). */
  skipKinds?: string[] | null;
}

export interface ProfileEntry { program: string; label: string; kind: string; ns: number }

export class GpuExecutor {
  readonly device: GPUDevice;
  readonly plan: GpuPlan;
  readonly timestamps: boolean;
  /** Resolves when the device is lost (also after destroy(), with reason 'destroyed'). */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** Host milliseconds spent recording and submitting steps so far. */
  encodeMs: number;
  run(opts: RunOptions & { profile: true }): Promise<{ value: Float32Array | Uint32Array | null; profile: ProfileEntry[] }>;
  run(opts: RunOptions): Promise<Float32Array | Uint32Array | null>;
  dispatchCounts(): Record<string, { total: number; kinds: Record<string, number> }>;
  readBuffer(name: string, bytes?: number): Promise<Float32Array>;
  destroy(): void;
}
