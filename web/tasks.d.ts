// TypeScript declarations for web/tasks.js: helper tasks on the engine's model.

import type { Core, CoreModel } from './core.js';

export interface TaskMessage {
  role: string;
  content: string | null | Array<{ type: 'text'; text: string }>;
}

/** Sampling and budget; tasks are greedy unless a temperature is given. */
export interface TaskSampling {
  /** Token budget: the title's hard limit; soft for JSON tasks (closing tokens preferred past it). */
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  signal?: AbortSignal;
}

export interface MemoryFact {
  fact: string;
  category: 'identity' | 'preference' | 'work' | 'location' | 'relationship' | 'health' | 'goal' | 'other';
  /** 0..1 */
  confidence: number;
}

export interface Route {
  /** The label the model is scored on. */
  id: string;
  description?: string;
  examples?: string[];
}

export interface RouteOptions {
  routes: Route[];
  /** Under this top score the fallback is reported (0 = never). */
  threshold?: number;
  fallback?: string;
  /** Few-shot examples taken round-robin over routes (default 8, -1 = none). */
  maxExamples?: number;
  /** Score by mean log-likelihood per label token instead of the total. */
  perToken?: boolean;
  signal?: AbortSignal;
}

export interface RouteResult {
  /** The chosen route's id, or the fallback (null when none was given). */
  route: string | null;
  /** Index of the top route (ties: the earliest). */
  best: number;
  /** best, or -1 under the threshold. */
  chosen: number;
  confidence: number;
  /** Softmax over routes, in route order. */
  scores: number[];
  /** Natural-log likelihood of each label continuation. */
  loglik: number[];
  fallback: boolean;
}

export interface EngineTasks {
  /** At most maxWords (default 6) words, no quotes, no trailing period, one line. */
  title(messages: TaskMessage[], options?: TaskSampling & { maxWords?: number }): Promise<string>;
  /** Up to n (default 3, at most 8) distinct replies of at most 60 characters. */
  quickReplies(messages: TaskMessage[], options?: TaskSampling & { n?: number }): Promise<string[]>;
  /** New facts about the user (none equal to an existing one); [] when there is nothing. */
  memory(messages: TaskMessage[], options?: TaskSampling & { existing?: Array<string | { fact: string }>; maxItems?: number }): Promise<MemoryFact[]>;
  /** Classification by label likelihood: no generation, deterministic. */
  route(message: string, options: RouteOptions): Promise<RouteResult>;
}

export declare class CoreTasks {
  /** external: task sessions run their forward pass on the GPU executor (GPU build). */
  constructor(core: Core, model: CoreModel, options?: { nCtx?: number; threads?: number; shared?: boolean; external?: boolean });
  title(messages: TaskMessage[], options?: TaskSampling & { maxWords?: number }): Promise<string>;
  quickReplies(messages: TaskMessage[], options?: TaskSampling & { n?: number }): Promise<string[]>;
  memory(messages: TaskMessage[], options?: TaskSampling & { existing?: Array<string | { fact: string }>; maxItems?: number }): Promise<MemoryFact[]>;
  route(message: string, options: RouteOptions): Promise<RouteResult>;
  dispose(): void;
}

export declare function runTask(backend: unknown, name: 'title' | 'quickReplies' | 'memory' | 'route', args: unknown[]): Promise<unknown>;
export declare function mountTasks(engine: { backend: unknown; tasks: Record<string, unknown> }): EngineTasks | undefined;
