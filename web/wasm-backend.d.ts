// TypeScript declarations for web/wasm-backend.js: the WebAssembly CPU backend (see Backend).

import type { Backend, EngineInfo, GenerationParams, GenerationResult, ChatMessage } from './engine.js';

export declare function abortError(reason?: unknown): Error;

export declare class WasmBackend implements Backend {
  static create(options: {
    model: string | URL | ArrayBuffer | ArrayBufferView | Blob | Response | { url: string };
    threads?: 'auto' | number;
    nCtx?: number;
    nBatch?: number;
    dist?: string | URL;
    onProgress?: (p: { phase: 'load'; loaded: number; total: number }) => void;
    signal?: AbortSignal;
  }): Promise<WasmBackend>;
  /** 'webgpu' for the GpuBackend subclass. */
  readonly name: 'wasm' | 'webgpu';
  readonly info: Omit<EngineInfo, 'model' | 'backend'>;
  generate(request: { messages: ChatMessage[]; params: GenerationParams },
    hooks?: { onDelta?: (text: string, token: number) => void; signal?: AbortSignal }): Promise<GenerationResult>;
  tokenize(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  renderChat(messages: ChatMessage[], options?: { template?: string; addGenerationPrompt?: boolean }): Promise<string>;
  reset(): Promise<void>;
  dispose(): void;
}
