// TypeScript declarations for web/gpu-backend.js: the C core with its forward pass on WebGPU
// (the plan executor of web/gpu.js); falls back to the CPU inside the same core when the GPU is lost.

import type { EngineInfo, FallbackEvent } from './engine.js';
import { WasmBackend } from './wasm-backend.js';

export interface GpuInfo {
  /** Vendor, architecture and description of the adapter. */
  adapter: string;
  /** 'f16' with shader-f16, else 'f32'. */
  precision: 'f16' | 'f32';
  f16: boolean;
  /** GPU memory the plan takes (weights, cache, activations). */
  bytes: number;
  /** Compute dispatches of one decode step. */
  dispatches_per_token: number;
}

export declare class GpuBackend extends WasmBackend {
  static create(options: {
    model: string | URL | ArrayBuffer | ArrayBufferView | Blob | Response | { url: string };
    nCtx?: number;
    nBatch?: number;
    dist?: string | URL;
    /** navigator.gpu, or the GPU object of Node's `webgpu` package. */
    gpu?: GPU;
    adapter?: GPUAdapter;
    /** 'auto' (default): f16 arithmetic when the adapter has shader-f16. */
    f16?: 'auto' | boolean;
    /** Tokens per GPU prefill step (default 256). */
    maxTokens?: number;
    /** GPU bytes the model may take; a plan over it fails before any upload. */
    memoryBudget?: number;
    /** false: plan without subgroup operations. */
    subgroups?: boolean;
    /** Run on a software adapter (SwiftShader); otherwise refused, as the CPU build is faster. */
    allowSoftwareGpu?: boolean;
    loadShader?: (file: string) => Promise<string>;
    onProgress?: (p: { phase: 'load' | 'gpu'; loaded?: number; total?: number }) => void;
    onFallback?: (ev: FallbackEvent) => void;
    signal?: AbortSignal;
  }): Promise<GpuBackend>;
  readonly name: 'webgpu';
  readonly info: Omit<EngineInfo, 'model' | 'backend'> & { executor: 'webgpu' | 'wasm'; gpu: GpuInfo; fallback_reason?: string; weights_in_memory: boolean };
  onFallback: ((ev: FallbackEvent) => void) | null;
  /** Resolves once the weights are in wasm memory (read from the source on the first call). */
  cpuReady(): Promise<void>;
  /** Test hook: destroys the GPU device as a driver reset would. */
  loseDevice(): void;
}
