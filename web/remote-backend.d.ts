// TypeScript declarations for web/remote-backend.js: an OpenAI-compatible endpoint as the last
// link of the fallback chain (the conversation leaves the device; helper tasks are not offered).

import type { Backend, ChatMessage, GenerationParams, GenerationResult } from './engine.js';

export interface RemoteOptions {
  /** The API base, e.g. 'https://example.com/v1'; requests go to {url}/chat/completions. */
  url: string;
  /** Sent as the request's `model`. */
  model?: string;
  /** Extra request headers, e.g. { authorization: 'Bearer …' }. */
  headers?: Record<string, string>;
  /** A fetch implementation to use instead of globalThis.fetch. */
  fetch?: typeof fetch;
}

/** Errors of the remote backend carry code 'remote' and, for HTTP errors, the status. */
export interface RemoteError extends Error { code: 'remote'; status?: number }

export declare class RemoteBackend implements Backend {
  static create(options: { remote: RemoteOptions }): Promise<RemoteBackend>;
  readonly name: 'remote';
  readonly info: { backend: 'remote'; remote_url: string; remote_model: string; n_ctx: 0 } & Record<string, any>;
  generate(request: { messages: ChatMessage[]; params: GenerationParams },
    hooks?: { onDelta?: (text: string, token: number) => void; signal?: AbortSignal }): Promise<GenerationResult>;
  /** Always rejects: the remote tokenizer is unknown. */
  tokenize(text: string): Promise<number[]>;
  /** Always rejects: the remote chat template is unknown. */
  renderChat(messages: ChatMessage[]): Promise<string>;
  reset(): void;
  dispose(): void;
}
