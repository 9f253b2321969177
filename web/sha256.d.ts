// Type declarations for web/sha256.js: incremental SHA-256 with a state that survives JSON.
export interface Sha256State { h: string; length: number; tail: string }

export class Sha256 {
  /** Total bytes fed so far. */
  length: number;
  update(data: ArrayBufferView | ArrayBuffer): this;
  /** Digest of everything fed so far; updating may continue afterwards. */
  digest(): Uint8Array;
  hex(): string;
  save(): Sha256State;
  static restore(state: Sha256State): Sha256;
}
export function sha256Hex(data: ArrayBufferView | ArrayBuffer): string;
export function toHex(bytes: Uint8Array): string;
