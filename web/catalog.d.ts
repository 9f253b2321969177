// Type declarations for web/catalog.js: the model catalog (web/models.json) and its validator.
import type { CatalogEntry } from './store.js';

export interface CatalogModel extends CatalogEntry {
  name: string;
  /** What the model is good (and not good) for, for people choosing one. */
  description: string;
  size: number | null;
  sha256: string | null;
  /** GGUF general.architecture, e.g. 'qwen2' or 'llama'. */
  architecture: string;
  parameters?: string;
  quantization: string;
  /** Trained context length, tokens. */
  context: number;
  /** The publisher's recommended sampling; null where the publisher gives none. */
  sampling: { temperature: number | null; top_p: number | null; top_k: number | null; repeat_penalty: number | null };
  sampling_source?: string;
  license: string;
  license_url?: string;
  /** Attribution the license requires to be shown. */
  notice?: string;
  source?: string;
  /** Repository commit the size and hash were published for. */
  revision?: string;
}

export interface ModelCatalog {
  version: 1;
  /** Id of the model used when the user picked none. */
  default: string;
  models: CatalogModel[];
}

export const QUANTIZATIONS: readonly string[];
/** Never throws; each error names the field at fault, e.g. 'models[1] ("id").sha256: ...'. */
export function validateCatalog(json: unknown): { valid: boolean; errors: string[] };
/** Throws one Error listing every problem; returns the catalog typed. */
export function assertCatalog(json: unknown): ModelCatalog;
export function findModel(catalog: ModelCatalog, id?: string): CatalogModel | null;
