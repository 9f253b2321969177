// Type declarations for web/store.js: model download, caching, integrity, eviction.

/** A catalog entry (web/models.json) as the store needs it; other catalog fields are ignored. */
export interface CatalogEntry {
  /** Letters, digits, '.', '_', '-'; 1-128 characters, starting with a letter or digit. */
  id: string;
  url?: string;
  /** Tried in order: the next is used when one answers with a 4xx status. */
  urls?: string[];
  /** Bytes; null when unknown (taken from the server's Content-Range / Content-Length). */
  size?: number | null;
  /** Lowercase hex SHA-256 of the whole file; null to use the server's ETag when it is one. */
  sha256?: string | null;
  /** Per-chunk SHA-256s: a bad chunk is then re-fetched alone. Requires chunk_size. */
  chunk_sha256?: string[] | null;
  /** Chunk size the chunk hashes were computed with (a multiple of 64). */
  chunk_size?: number | null;
  [field: string]: unknown;
}

export interface Progress {
  id: string;
  phase: 'download' | 'verify' | 'done';
  /** Bytes stored so far (whole chunks) plus the chunk being received. */
  bytes: number;
  /** File size, or null until the server states it. */
  total: number | null;
  /** Smoothed download rate, bytes per second (0 until measured). */
  rate: number;
  /** Seconds left at the current rate, or null when unknown. */
  eta: number | null;
}

export interface InstallResult {
  id: string;
  size: number;
  /** SHA-256 of the stored bytes, computed while downloading. */
  sha256: string;
  /** True when the bytes matched a published hash. */
  verified: boolean;
  /** Where the expected hash came from: the catalog or the server's ETag; null if unverified. */
  verifiedBy: 'catalog' | 'etag' | null;
  /** Whether the browser granted persistent storage (null when it cannot say). */
  persisted: boolean | null;
  backend: string;
}

export type ModelStatus = 'installed' | 'partial' | 'not-installed';

export interface ModelInfo {
  id: string;
  status: ModelStatus;
  size: number | null;
  /** Bytes stored. */
  bytes: number;
  sha256: string | null;
  verified: boolean;
  /** Last change, milliseconds since the epoch. */
  updated: number | null;
}

export type StoreErrorCode =
  | 'BAD_ID' | 'BAD_ENTRY' | 'BAD_OPTION' | 'BUSY' | 'QUOTA' | 'NETWORK' | 'HTTP' | 'SIZE_MISMATCH'
  | 'NO_SIZE' | 'INTEGRITY' | 'STORAGE' | 'CHANGED' | 'NOT_INSTALLED' | 'RANGE';

export class StoreError extends Error {
  name: 'StoreError';
  code: StoreErrorCode;
  /** QUOTA: bytes still to store, and bytes the origin may still use. */
  needed?: number;
  available?: number;
  quota?: number;
  usage?: number;
  /** HTTP: the response status. */
  status?: number;
  /** INTEGRITY: expected and computed SHA-256. */
  expected?: string;
  actual?: string;
}

/** Storage operations the store relies on; a chunk write must be all-or-nothing. */
export interface StorageBackend {
  kind: string;
  readManifest(id: string): Promise<object | null>;
  writeManifest(id: string, manifest: object): Promise<void>;
  writeChunk(id: string, index: number, bytes: Uint8Array): Promise<void>;
  /** Sizes of the chunks present, by index. */
  chunkSizes(id: string): Promise<Map<number, number>>;
  readChunk(id: string, index: number, offset: number, length: number): Promise<Uint8Array>;
  chunkBlob(id: string, index: number): Promise<Blob>;
  removeModel(id: string): Promise<void>;
  listModels(): Promise<string[]>;
}

export interface StoreOptions {
  /** OPFS folder / Cache Storage cache name. Default 'nbl-models'. */
  root?: string;
  /** Download and storage chunk, a multiple of 64. Default 8 MiB. */
  chunkSize?: number;
  fetch?: typeof fetch;
  /** Default: OPFS when usable, else Cache Storage, else memory. */
  backend?: 'opfs' | 'cache' | 'memory' | StorageBackend;
  /** Default navigator.storage (estimate, persist, persisted, getDirectory). */
  storage?: Pick<StorageManager, 'estimate'> & Partial<Pick<StorageManager, 'persist' | 'persisted' | 'getDirectory'>>;
  /** Default globalThis.caches. */
  caches?: CacheStorage;
  /** Consecutive failed attempts allowed without progress, and the backoff bounds. */
  retry?: { attempts?: number; baseMs?: number; maxMs?: number };
  /** A request receiving nothing for this long counts as dropped. Default 30000. */
  stallMs?: number;
  /** Whole-file re-downloads after a hash mismatch without chunk hashes. Default 1. */
  maxFullRetries?: number;
  /** Serialises installs of a model across tabs and workers. Default navigator.locks; null: off. */
  locks?: LockManager | null;
}

export interface InstallOptions {
  onProgress?: (p: Progress) => void;
  /** Aborting pauses: whole chunks stay stored and a later install resumes. */
  signal?: AbortSignal;
}

export interface ModelStore {
  /** The storage in use: 'opfs' | 'cache' | 'memory' (or a custom backend's kind). */
  kind(): Promise<string>;
  /** Downloads (or resumes) and verifies a model. Rejects with StoreError, or the abort reason. */
  install(entry: CatalogEntry, options?: InstallOptions): Promise<InstallResult>;
  /** Evicted or incomplete data reads as 'not-installed' / 'partial', never as installed. */
  status(id: string): Promise<ModelStatus>;
  list(): Promise<ModelInfo[]>;
  /** Aborts an install in progress, keeping what it stored. */
  pause(id: string): Promise<void>;
  /** Aborts any install (cancel) and deletes the model's data. */
  remove(id: string): Promise<void>;
  /** The whole file as a Blob backed by storage. Rejects with NOT_INSTALLED. */
  open(id: string): Promise<Blob>;
  /** Bytes [offset, offset + length), e.g. one tensor for a GPU upload. */
  readRange(id: string, offset: number, length: number): Promise<Uint8Array>;
}

export function createStore(options?: StoreOptions): ModelStore;
export function opfsBackend(root?: string, storage?: Pick<StorageManager, 'getDirectory'>): StorageBackend;
export function cacheBackend(root?: string, caches?: CacheStorage): StorageBackend;
export function memoryBackend(): StorageBackend;
/** The SHA-256 a response states: a quoted 64-hex X-Linked-Etag or ETag; null otherwise. */
export function etagSha256(headers: Headers): string | null;
