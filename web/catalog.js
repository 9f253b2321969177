// Validation of the model catalog (web/models.json): a small, JSON-Schema-like check that names the
// offending field in every error, so a bad catalog edit fails in tests rather than in a user's tab.

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
const REV_RE = /^[0-9a-f]{40}$/;

/** GGUF file types the engine reads (DESIGN.md), as catalogs name them. */
export const QUANTIZATIONS = [
  'F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'IQ4_NL',
  'Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q4_K_S', 'Q4_K_M', 'Q5_K_S', 'Q5_K_M', 'Q6_K',
];

const MODEL_FIELDS = {
  id: 'required', name: 'required', description: 'required', url: 'optional', urls: 'optional',
  size: 'required', sha256: 'required', chunk_size: 'optional', chunk_sha256: 'optional',
  architecture: 'required', parameters: 'optional', quantization: 'required', context: 'required',
  sampling: 'required', sampling_source: 'optional', license: 'required', license_url: 'optional',
  notice: 'optional', source: 'optional', revision: 'optional',
};
const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k', 'repeat_penalty'];

const show = (v) => (v === undefined ? 'nothing' : JSON.stringify(v));
const isHttpUrl = (u) => {
  if (typeof u !== 'string') return false;
  try { const p = new URL(u); return p.protocol === 'https:' || p.protocol === 'http:'; } catch { return false; }
};

/**
 * Checks a parsed catalog. Returns { valid, errors } where each error reads
 * `models[1] ("id").sha256: expected ..., got ...`. Never throws.
 */
export function validateCatalog(json) {
  const errors = [];
  const err = (where, msg) => errors.push(`${where}: ${msg}`);
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    return { valid: false, errors: [`catalog: expected an object, got ${show(json)}`] };
  }
  for (const k of Object.keys(json)) {
    if (!['version', 'default', 'models'].includes(k)) err('catalog', `unknown field "${k}"`);
  }
  if (json.version !== 1) err('version', `expected 1, got ${show(json.version)}`);
  if (!Array.isArray(json.models) || json.models.length === 0) {
    err('models', `expected a non-empty list, got ${show(json.models)}`);
    return { valid: false, errors };
  }
  const ids = new Set();
  json.models.forEach((m, i) => {
    let where = `models[${i}]`;
    if (!m || typeof m !== 'object' || Array.isArray(m)) { err(where, `expected an object, got ${show(m)}`); return; }
    if (typeof m.id === 'string') where += ` ("${m.id}")`;
    const f = (name, msg) => err(`${where}.${name}`, msg);
    for (const k of Object.keys(m)) if (!(k in MODEL_FIELDS)) f(k, 'unknown field (typo?)');
    for (const [k, need] of Object.entries(MODEL_FIELDS)) {
      if (need === 'required' && !(k in m)) f(k, 'missing (use null where a value is unknown and nullable)');
    }
    if (typeof m.id !== 'string' || !ID_RE.test(m.id)) {
      f('id', `expected letters, digits, '.', '_' or '-' (1-128, starting with a letter or digit), got ${show(m.id)}`);
    } else if (ids.has(m.id)) {
      f('id', 'duplicate id');
    } else {
      ids.add(m.id);
    }
    for (const k of ['name', 'description', 'license']) {
      if (k in m && (typeof m[k] !== 'string' || m[k].trim() === '')) f(k, `expected a non-empty string, got ${show(m[k])}`);
    }
    if (('url' in m) === ('urls' in m)) {
      f('url', 'give exactly one of "url" (a string) or "urls" (a list tried in order)');
    } else if ('url' in m) {
      if (!isHttpUrl(m.url)) f('url', `expected an http(s) URL, got ${show(m.url)}`);
    } else if (!Array.isArray(m.urls) || m.urls.length === 0) {
      f('urls', `expected a non-empty list of URLs, got ${show(m.urls)}`);
    } else {
      m.urls.forEach((u, j) => { if (!isHttpUrl(u)) f(`urls[${j}]`, `expected an http(s) URL, got ${show(u)}`); });
    }
    if ('size' in m && m.size !== null && !(Number.isSafeInteger(m.size) && m.size > 0)) {
      f('size', `expected a positive integer (bytes) or null, got ${show(m.size)}`);
    }
    if ('sha256' in m && m.sha256 !== null && !(typeof m.sha256 === 'string' && HEX64_RE.test(m.sha256))) {
      f('sha256', `expected 64 lowercase hex characters or null, got ${show(m.sha256)}`);
    }
    const hasCs = m.chunk_size !== undefined && m.chunk_size !== null;
    const hasCh = m.chunk_sha256 !== undefined && m.chunk_sha256 !== null;
    if (hasCs !== hasCh) f(hasCs ? 'chunk_sha256' : 'chunk_size', 'chunk_size and chunk_sha256 go together');
    if (hasCs && !(Number.isSafeInteger(m.chunk_size) && m.chunk_size > 0 && m.chunk_size % 64 === 0)) {
      f('chunk_size', `expected a positive multiple of 64, got ${show(m.chunk_size)}`);
    }
    if (hasCh) {
      if (!Array.isArray(m.chunk_sha256) || !m.chunk_sha256.every((h) => typeof h === 'string' && HEX64_RE.test(h))) {
        f('chunk_sha256', 'expected a list of 64-lowercase-hex strings');
      } else if (Number.isSafeInteger(m.size) && Number.isSafeInteger(m.chunk_size) && m.chunk_size > 0 &&
                 m.chunk_sha256.length !== Math.ceil(m.size / m.chunk_size)) {
        f('chunk_sha256', `has ${m.chunk_sha256.length} hashes, size/chunk_size needs ${Math.ceil(m.size / m.chunk_size)}`);
      } else if (m.size === null) {
        f('chunk_sha256', 'needs a known size');
      }
    }
    if ('architecture' in m && !(typeof m.architecture === 'string' && /^[a-z][a-z0-9_]*$/.test(m.architecture))) {
      f('architecture', `expected a GGUF architecture name such as "qwen2" or "llama", got ${show(m.architecture)}`);
    }
    if ('quantization' in m && !QUANTIZATIONS.includes(m.quantization)) {
      f('quantization', `expected one of ${QUANTIZATIONS.join(', ')}, got ${show(m.quantization)}`);
    }
    if ('context' in m && !(Number.isSafeInteger(m.context) && m.context > 0)) {
      f('context', `expected a positive integer (tokens), got ${show(m.context)}`);
    }
    if ('parameters' in m && (typeof m.parameters !== 'string' || !/^\d+(\.\d+)?[MB]$/.test(m.parameters))) {
      f('parameters', `expected a count such as "494M" or "1.5B", got ${show(m.parameters)}`);
    }
    if ('sampling' in m) {
      const s = m.sampling;
      if (!s || typeof s !== 'object' || Array.isArray(s)) {
        f('sampling', `expected an object with ${SAMPLING_FIELDS.join(', ')}, got ${show(s)}`);
      } else {
        for (const k of Object.keys(s)) if (!SAMPLING_FIELDS.includes(k)) f(`sampling.${k}`, 'unknown field (typo?)');
        for (const k of SAMPLING_FIELDS) if (!(k in s)) f(`sampling.${k}`, 'missing (null when the publisher gives none)');
        const num = (k, ok, what) => {
          if (k in s && s[k] !== null && !(typeof s[k] === 'number' && Number.isFinite(s[k]) && ok(s[k]))) {
            f(`sampling.${k}`, `expected ${what} or null, got ${show(s[k])}`);
          }
        };
        num('temperature', (v) => v >= 0 && v <= 2, 'a number in [0, 2]');
        num('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
        num('top_k', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
        num('repeat_penalty', (v) => v >= 1 && v <= 2, 'a number in [1, 2]');
      }
    }
    for (const k of ['license_url', 'source', 'sampling_source']) {
      if (k in m && !isHttpUrl(m[k])) f(k, `expected an http(s) URL, got ${show(m[k])}`);
    }
    if ('notice' in m && (typeof m.notice !== 'string' || m.notice.trim() === '')) f('notice', 'expected a non-empty string');
    if ('revision' in m && !(typeof m.revision === 'string' && REV_RE.test(m.revision))) {
      f('revision', `expected a 40-hex commit id, got ${show(m.revision)}`);
    }
  });
  if (typeof json.default !== 'string' || !ids.has(json.default)) {
    err('default', `expected the id of a listed model, got ${show(json.default)}`);
  }
  return { valid: errors.length === 0, errors };
}

/** Like validateCatalog but throws one Error listing every problem; returns the catalog. */
export function assertCatalog(json) {
  const { valid, errors } = validateCatalog(json);
  if (!valid) throw new Error(`invalid model catalog:\n  ${errors.join('\n  ')}`);
  return json;
}

/** The catalog entry with this id, or the default entry when id is omitted; null if absent. */
export function findModel(catalog, id = catalog.default) {
  return catalog.models.find((m) => m.id === id) ?? null;
}
