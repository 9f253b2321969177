// TypeScript declarations for web/engine.js: the engine, its OpenAI-compatible chat API and the
// backend interface a WebGPU or remote backend implements to join the fallback chain.

import type { ModelStore } from './store.js';
import type { EngineTasks } from './tasks.js';

export type Role = 'system' | 'user' | 'assistant' | 'tool' | (string & {});

export interface TextPart { type: 'text'; text: string }

export interface ChatMessage {
  role: Role;
  /** A string, OpenAI text parts (joined), or null (an assistant turn that only called tools). */
  content: string | TextPart[] | null;
}

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; schema: object | string; strict?: boolean } };

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** Tokens to generate at most; default: until the end of the turn or a full context. */
  max_tokens?: number;
  max_completion_tokens?: number;
  /** 0 = greedy. Defaults come from createEngine's sampling, the catalog entry, or OpenAI's. */
  temperature?: number;
  top_p?: number;
  /** Same seed, same request, same cache state: same output. Random when absent. */
  seed?: number;
  /** Up to 16 strings; the text ends before the first one. */
  stop?: string | string[];
  /** Cancels at once; the engine stays usable. */
  signal?: AbortSignal;
  /** Constrained output (needs the grammar engine in the core). */
  response_format?: ResponseFormat;
  /** Must be 1 (or absent). */
  n?: number;
  /** Extensions. */
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  repetition_penalty?: number;
  /** Stop after this many sentences. */
  max_sentences?: number;
  /** Chat template family to use instead of the model's ('qwen2.5', 'chatml', 'llama3', ...). */
  template?: string;
  /** Accepted and ignored, for compatibility. */
  model?: string;
  user?: string;
}

export type FinishReason = 'stop' | 'length';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens reused from the KV cache (the conversation's shared prefix). */
  prompt_tokens_details: { cached_tokens: number };
  /** Oldest turns left out so that the conversation fits the context (the system prompt stays). */
  dropped_messages: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: 0;
    message: { role: 'assistant'; content: string };
    logprobs: null;
    finish_reason: FinishReason;
  }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string;
  /** Empty in the final usage chunk (stream_options.include_usage). */
  choices: Array<{
    index: 0;
    delta: { role?: 'assistant'; content?: string };
    logprobs: null;
    finish_reason: FinishReason | null;
  }>;
  /** With stream_options.include_usage: null on every chunk but the last. */
  usage?: CompletionUsage | null;
}

export declare class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  /** abort() stops the generation; iteration then throws an AbortError. */
  readonly controller: AbortController;
  readonly signal: AbortSignal;
  /** Set once the stream has ended normally. */
  usage: CompletionUsage | null;
  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk>;
  finalContent(): Promise<string>;
}

export interface ModelInfo {
  arch: string;
  name: string;
  n_vocab: number;
  n_ctx_train: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_head_kv: number;
  head_dim: number;
  n_ff: number;
  bos: number;
  eos: number;
  eot: number;
  add_bos: number;
  n_params: number;
  weight_bytes: number;
  /** The GGUF's size, and where its tensor data starts. */
  file_size: number;
  data_offset: number;
  /** The chat template family in use. */
  chat_template: string;
  chat_template_recognised: boolean;
  [key: string]: unknown;
}

export interface EngineInfo extends ModelInfo {
  /** The catalog id, or the file name of a URL or File. */
  model: string;
  /** The backend that runs the model: 'wasm', 'webgpu', 'remote', ... */
  backend: string;
  /** wasm: the threaded build is in use (cross-origin isolated page) and with how many threads. */
  threaded?: boolean;
  threads?: number;
  /** wasm: the backend runs in a Web Worker. */
  worker?: boolean;
  /** The session's context window in tokens. */
  n_ctx: number;
  /** Where forward passes run now: 'webgpu', or 'wasm' (the CPU, also after a GPU loss). */
  executor?: 'webgpu' | 'wasm';
  /** Why the GPU was given up mid-conversation. */
  fallback_reason?: string;
  /** webgpu: the weights are in wasm memory too (false while the GPU runs a model read from a
   *  Blob or bytes; true once the CPU took over, or for a stream source). */
  weights_in_memory?: boolean;
  /** webgpu: the adapter, precision, GPU bytes and dispatches per decode step. */
  gpu?: { adapter: string; precision: 'f16' | 'f32'; f16: boolean; bytes: number; dispatches_per_token: number };
  /** Why each backend before this one in the chain did not run the model ('wasm: …'). */
  fallbacks: string[];
}

/** The GPU was lost and the CPU carries on with the same conversation. */
export interface FallbackEvent {
  from: 'webgpu';
  to: 'wasm';
  reason: string;
  /** The CPU read the weights in (false: that failed; requests fail until a retry succeeds). */
  weights_in_memory: boolean;
}

export interface LoadProgress {
  /** 'download': the store is installing the model; 'load': bytes going into the backend;
   *  'gpu': weights going to the GPU. */
  phase: 'download' | 'load' | 'gpu';
  loaded?: number;
  total?: number;
  [key: string]: unknown;
}

export interface Sampling {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repeat_penalty?: number | null;
}

/** What the engine needs of a backend. Parameters use the C core's names (see requestParams). */
export interface GenerationParams {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  seed: number;
  stop?: string[];
  max_sentences?: number;
  template?: string;
  response_format?: { type: 'json_object' } | { type: 'json_schema'; schema_text: string };
}

export interface GenerationResult {
  finish: FinishReason | 'abort';
  /** C core usage counters; null when aborted before starting. */
  usage: { prompt_tokens: number; cached_tokens: number; completion_tokens: number; dropped_messages: number } | null;
}

export interface Backend {
  readonly name: string;
  readonly info: Omit<EngineInfo, 'model' | 'backend'>;
  /** Requests run one at a time in arrival order. An abort resolves with finish 'abort' at once. */
  generate(
    request: { messages: ChatMessage[]; params: GenerationParams },
    hooks: { onDelta?: (text: string, token: number) => void; signal?: AbortSignal },
  ): Promise<GenerationResult>;
  tokenize(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): Promise<number[]> | number[];
  renderChat(messages: ChatMessage[], options?: { template?: string; addGenerationPrompt?: boolean }): Promise<string> | string;
  reset(): Promise<void> | void;
  dispose(): Promise<void> | void;
  /** webgpu: called when the GPU is lost and the CPU takes over. */
  onFallback?: ((ev: FallbackEvent) => void) | null;
  /** webgpu: test hook that loses the device. */
  loseDevice?(): void | Promise<void>;
}

export interface BackendFactory {
  available?(options: EngineOptions): boolean | Promise<boolean>;
  create(options: EngineOptions & { model: string | ArrayBuffer | ArrayBufferView | Blob }): Promise<Backend>;
}

export interface EngineOptions {
  /** A catalog id (installed through the store), a URL, bytes or a Blob. */
  model: string | URL | ArrayBuffer | ArrayBufferView | Blob;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Order of the fallback chain; default ['webgpu', 'wasm', 'remote'] (unregistered ones skipped). */
  backends?: string[];
  /** The chain's last resort: an OpenAI-compatible endpoint (the conversation then leaves the device). */
  remote?: { url: string; model?: string; headers?: Record<string, string>; fetch?: typeof fetch };
  /** The GPU was lost mid-conversation and the CPU carries on. */
  onFallback?: (ev: FallbackEvent) => void;
  /** WebGPU: 'auto' (default) uses shader-f16 where the adapter has it. */
  f16?: 'auto' | boolean;
  /** WebGPU: GPU bytes the model may take. */
  memoryBudget?: number;
  /** WebGPU: false plans without subgroup operations. */
  subgroups?: boolean;
  /** WebGPU: use a software adapter (SwiftShader); by default left to the faster CPU build. */
  allowSoftwareGpu?: boolean;
  /** WebGPU: a GPU object to use instead of navigator.gpu (Node's `webgpu` package). */
  gpu?: GPU;
  /** Run the backend in a Web Worker (default when Worker exists). */
  worker?: boolean;
  /** 'auto' (default) or a count; > 1 uses the threaded build when the page is cross-origin isolated. */
  threads?: 'auto' | number;
  /** Context window in tokens (default: the model's, at most 4096). */
  nCtx?: number;
  nBatch?: number;
  sampling?: Sampling;
  store?: ModelStore;
  /** The catalog as an object or a URL (default web/models.json). */
  catalog?: object | string | URL;
  /** Folder of the wasm builds (default web/dist/). */
  dist?: string | URL;
  workerUrl?: string | URL;
}

export declare class Engine {
  readonly backend: Backend;
  readonly model: string;
  readonly info: EngineInfo;
  readonly chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<ChatCompletionStream>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest): Promise<ChatCompletion | ChatCompletionStream>;
    };
  };
  /** Helper tasks on the device (titles, quick replies, memory, routing); absent on a remote backend. */
  readonly tasks: Partial<EngineTasks>;
  tokenize(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  renderChat(messages: ChatMessage[], options?: { template?: string; addGenerationPrompt?: boolean }): Promise<string>;
  /** Forgets the cached conversation. */
  resetChat(): Promise<void>;
  dispose(): Promise<void>;
}

export declare function createEngine(options: EngineOptions): Promise<Engine>;
export declare function registerBackend(name: string, factory: BackendFactory): void;
/** Whether a backend of that name is registered (e.g. 'webgpu': can this build use the GPU?). */
export declare function hasBackend(name: string): boolean;
export declare const DEFAULT_BACKENDS: readonly string[];
export declare function requestParams(request: ChatCompletionRequest, defaults?: Sampling): GenerationParams;
export declare function abortError(reason?: unknown): Error;
