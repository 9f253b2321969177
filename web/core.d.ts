// TypeScript declarations for web/core.js: the WebAssembly build of the C library, wrapped.

export declare function threadsAvailable(): boolean;
/** True when this engine runs relaxed SIMD's 8-bit dot product as specified (then the CPU builds
 * that use it, nbl-st-rs / nbl-mt-rs, load by default). */
export declare function relaxedSimdAvailable(): boolean;
/** The probe module relaxedSimdAvailable() runs: one export t() that returns 2376 where the
 * instruction computes what the final proposal says. */
export declare const RELAXED_PROBE: Uint8Array;
export declare function hardwareThreads(): number;
export declare function defaultThreads(): number;

export declare const FINISH: Readonly<{ NONE: 0; STOP: 1; LENGTH: 2 }>;
export declare const TOK_ADD_BOS: 1;
export declare const TOK_PARSE_SPECIAL: 2;

/** nbl_status values by name (include/nbl.h). */
/** An ArrayBuffer or any typed array as a Uint8Array over the same memory (no copy). */
export declare function bytesView(bytes: ArrayBuffer | ArrayBufferView): Uint8Array;
export declare const STATUS_CODE: Readonly<{ ok: 0; arg: 1; io: 2; format: 3; unsupported: 4; nomem: 5; context: 6; state: 7; device: 8 }>;

export declare class CoreError extends Error {
  /** The nbl_status number. */
  status: number;
  /** Its name: 'arg' | 'io' | 'format' | 'unsupported' | 'nomem' | 'context' | 'state' | 'device'. */
  code: string;
}

export interface LoadCoreOptions {
  /** 'auto' or a count; 1 picks the single-threaded build, more the threaded one when available. */
  threads?: 'auto' | number;
  /** The GPU build (nbl-gpu.mjs): single-threaded, sessions may run their forward pass on WebGPU;
   * calls that evaluate must use the *Async methods. */
  gpu?: boolean;
  /** The builds whose CPU kernels use relaxed SIMD's dot product (the GPU build's run a session
   * after the GPU is lost): 'auto' (default: where relaxedSimdAvailable()), true (fails with
   * CoreError 'unsupported' where not) or false. */
  relaxed?: 'auto' | boolean;
  /** Folder holding nbl-st.mjs / nbl-mt.mjs / nbl-gpu.mjs (and the -rs builds) (default: web/dist/ next to core.js). */
  dist?: string | URL;
}

export declare function loadCore(options?: LoadCoreOptions): Promise<Core>;

export type ModelSource = ArrayBuffer | ArrayBufferView | Blob | Response | { size: number; stream: ReadableStream<Uint8Array> };

export declare class Core {
  readonly threaded: boolean;
  readonly threads: number;
  readonly simd: boolean;
  /** The build's kernels use relaxed SIMD's 8-bit dot product. */
  readonly relaxed: boolean;
  /** The GPU build: evaluating calls return promises. */
  readonly async: boolean;
  /** Calls a C export (name without the underscore) with numeric arguments. */
  callAsync(name: string, args: number[]): Promise<number>;
  /** The Emscripten module (for tests and tools). */
  readonly mod: any;
  readonly heapU8: Uint8Array;
  /** Bytes the module may address, and bytes below its heap top. */
  memory(): { max: number; used: number };
  /** Room for a model of size bytes; throws before allocating when it cannot fit. */
  allocModel(size: number): number;
  openModelAt(ptr: number, size: number, options?: { vocabOnly?: boolean }): CoreModel;
  /** Streams the bytes straight into wasm memory (no second whole-file copy). */
  openModel(source: ModelSource, options?: {
    onProgress?: (p: { loaded: number; total: number }) => void;
    signal?: AbortSignal;
    vocabOnly?: boolean;
  }): Promise<CoreModel>;
  /** Opens a model from its metadata alone (tokenizer, template, shapes, small vectors); the
   *  matrices stay wherever read takes them from until CoreModel.attachData. */
  openModelMeta(read: (offset: number, length: number) => Promise<Uint8Array>, size: number, options?: {
    signal?: AbortSignal;
    /** Bytes read first (default 8 MiB); more follow where the metadata needs them. */
    prefix?: number;
  }): Promise<CoreModel>;
  newSession(model: CoreModel, options?: { nCtx?: number; nBatch?: number; threads?: number; external?: boolean }): CoreSession;
  /** The model's WebGPU plan for an adapter (options from web/gpu.js planOptionsFor, plus sizes). */
  gpuPlan(model: CoreModel, options: {
    nCtx: number; maxTokens?: number; maxLogitRows?: number; topK?: number;
    f16?: boolean; subgroups?: boolean; max_binding_size?: number; max_buffer_size?: number; max_workgroup_storage?: number;
  }): import('./gpu.js').GpuPlan;
  /** Stops the threaded build's workers. */
  terminate(): void;
}

export declare class CoreModel {
  readonly info: import('./engine.js').ModelInfo;
  /** The GGUF file's size in bytes. */
  readonly size: number;
  /** Opened by openModelMeta: only the metadata's bytes are in wasm memory. */
  readonly meta: boolean;
  /** Every tensor's data is in wasm memory (the CPU can run the model). */
  readonly hasData: boolean;
  /** Reads the tensor data of a metadata open into wasm memory; throws, changing nothing, when
   *  it cannot fit or a read fails. */
  attachData(read: (offset: number, length: number) => Promise<Uint8Array>, options?: {
    onProgress?: (p: { loaded: number; total: number }) => void;
    signal?: AbortSignal;
  }): Promise<void>;
  /** Bytes of the file, as a view of wasm memory (copy or use at once); not for a metadata open. */
  fileRange(offset: number, length: number): Uint8Array;
  tokenize(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): Int32Array;
  tokenText(id: number, options?: { special?: boolean }): string;
  renderChat(messages: Array<{ role: string; content: unknown }>, options?: { template?: string; addGenerationPrompt?: boolean }): string;
  dispose(): void;
}

export declare class CoreSession {
  readonly nCtx: number;
  readonly pos: number;
  truncate(nKeep: number): void;
  /** True while the forward pass runs on the GPU (external session of the GPU build). */
  readonly external: boolean;
  /** The synchronous forms throw on the GPU build; the *Async forms work on every build. */
  eval(tokens: ArrayLike<number>, options?: { logitsAll?: boolean }): void;
  evalAsync(tokens: ArrayLike<number>, options?: { logitsAll?: boolean }): Promise<void>;
  logits(row?: number): Float32Array | null;
  startChat(messages: Array<{ role: string; content: unknown }>, params?: object): void;
  startChatAsync(messages: Array<{ role: string; content: unknown }>, params?: object): Promise<void>;
  startTokens(tokens: ArrayLike<number>, params?: object): void;
  startTokensAsync(tokens: ArrayLike<number>, params?: object): Promise<void>;
  next(): { text: string; finish: 0 | 1 | 2; token: number };
  nextAsync(): Promise<{ text: string; finish: 0 | 1 | 2; token: number }>;
  usage(): { prompt_tokens: number; cached_tokens: number; completion_tokens: number; dropped_messages: number };
  dispose(): void;
}
