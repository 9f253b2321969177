// Model store: downloads GGUF files in chunks with HTTP Range requests into persistent browser
// storage (OPFS, else Cache Storage), resumes across reloads and dropped connections, verifies
// SHA-256, and hands the bytes to the engine as a Blob or by range without copying the whole file.

import { Sha256, toHex } from './sha256.js';

const MiB = 1024 * 1024;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX64_RE = /^[0-9a-fA-F]{64}$/;
const MANIFEST_VERSION = 1;

/** Every failure the store reports carries a stable `code` and a message naming what went wrong. */
export class StoreError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return '?';
  if (n < 1024) return `${n} B`;
  if (n < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / 1024 / MiB).toFixed(2)} GiB`;
}

function abortReason(signal) {
  return signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

function isNotFound(e) {
  return e && (e.name === 'NotFoundError' || e.name === 'TypeMismatchError' || e.code === 'ENOENT');
}

function isQuotaError(e) {
  return e && (e.name === 'QuotaExceededError' || e.code === 22 || e.code === 'QUOTA');
}

function checkId(id) {
  if (typeof id !== 'string' || !ID_RE.test(id)) {
    throw new StoreError('BAD_ID', `model id ${JSON.stringify(id)} is not valid: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)`);
  }
}

const chunkName = (i) => String(i).padStart(6, '0');

// ---------------------------------------------------------------------------------------------
// Storage adapters. The store needs only these operations, so a page, a worker and node tests can
// each plug in what they have: real OPFS, Cache Storage, or memory (and a fake OPFS in tests).
//   readManifest(id) -> object|null          writeManifest(id, obj)
//   writeChunk(id, i, Uint8Array)            chunkSizes(id) -> Map<index, byteLength>
//   readChunk(id, i, offset, length) -> Uint8Array   chunkBlob(id, i) -> Blob
//   removeModel(id)                          listModels() -> [id]
// A chunk write must be all-or-nothing: the manifest only marks a chunk done after it returns.

/** Adapter over the Origin Private File System: `<root>/<id>.json` and `<root>/<id>.chunks/NNNNNN`. */
export function opfsBackend(root = 'nbl-models', storage = globalThis.navigator?.storage) {
  let dirP = null;
  const dir = () => {
    if (!dirP) {
      dirP = Promise.resolve().then(() => storage.getDirectory())
        .then((d) => d.getDirectoryHandle(root, { create: true }));
      dirP.catch(() => { dirP = null; });
    }
    return dirP;
  };
  const chunkDir = async (id, create) => (await dir()).getDirectoryHandle(`${id}.chunks`, { create });
  async function writeFile(d, name, data) {
    const fh = await d.getFileHandle(name, { create: true });
    if (typeof fh.createWritable === 'function') {
      const w = await fh.createWritable(); // starts empty; close() swaps it in atomically
      try {
        await w.write(data);
        await w.close();
      } catch (e) {
        try { await w.abort(); } catch { /* already closed */ }
        throw e;
      }
      return;
    }
    // Safari before createWritable: synchronous access handles exist only in workers.
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const h = await fh.createSyncAccessHandle();
    try {
      h.truncate(0);
      h.write(bytes, { at: 0 });
      h.flush();
    } finally {
      h.close();
    }
  }
  async function getFile(id, i) {
    return (await (await chunkDir(id, false)).getFileHandle(chunkName(i))).getFile();
  }
  return {
    kind: 'opfs',
    async readManifest(id) {
      let text;
      try {
        text = await (await (await (await dir()).getFileHandle(`${id}.json`)).getFile()).text();
      } catch (e) {
        if (isNotFound(e)) return null;
        throw e;
      }
      try { return JSON.parse(text); } catch { return null; } // torn write: start over
    },
    async writeManifest(id, m) { await writeFile(await dir(), `${id}.json`, JSON.stringify(m)); },
    async writeChunk(id, i, bytes) { await writeFile(await chunkDir(id, true), chunkName(i), bytes); },
    async chunkSizes(id) {
      const sizes = new Map();
      let d;
      try { d = await chunkDir(id, false); } catch (e) { if (isNotFound(e)) return sizes; throw e; }
      for await (const [name, h] of d.entries()) {
        if (h.kind !== 'file' || !/^\d{6}$/.test(name)) continue;
        try { sizes.set(Number(name), (await h.getFile()).size); } catch (e) { if (!isNotFound(e)) throw e; }
      }
      return sizes;
    },
    async readChunk(id, i, offset, length) {
      const f = await getFile(id, i);
      return new Uint8Array(await f.slice(offset, offset + length).arrayBuffer());
    },
    chunkBlob: getFile,
    async removeModel(id) {
      const d = await dir();
      for (const [name, opt] of [[`${id}.chunks`, { recursive: true }], [`${id}.json`, {}]]) {
        try { await d.removeEntry(name, opt); } catch (e) { if (!isNotFound(e)) throw e; }
      }
    },
    async listModels() {
      const ids = [];
      for await (const [name, h] of (await dir()).entries()) {
        if (h.kind === 'file' && name.endsWith('.json')) ids.push(name.slice(0, -5));
      }
      return ids.sort();
    },
  };
}

/** Adapter over Cache Storage (one cache named `root`), for browsers without OPFS. */
export function cacheBackend(root = 'nbl-models', caches = globalThis.caches) {
  // Cache keys must be http(s) URLs; this host never resolves, so nothing is ever fetched from it.
  const base = `https://nbl-store.invalid/${encodeURIComponent(root)}/`;
  const key = (id, name) => `${base}${id}/${name}`;
  let cacheP = null;
  const cache = () => {
    if (!cacheP) {
      cacheP = Promise.resolve().then(() => caches.open(root));
      cacheP.catch(() => { cacheP = null; });
    }
    return cacheP;
  };
  const chunkRe = (id) => new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${id.replace(/\./g, '\\.')}/c(\\d{6})$`);
  async function blob(id, i) {
    const r = await (await cache()).match(key(id, `c${chunkName(i)}`));
    if (!r) throw new DOMException(`chunk ${i} of ${id} is missing`, 'NotFoundError');
    return r.blob();
  }
  return {
    kind: 'cache',
    async readManifest(id) {
      const r = await (await cache()).match(key(id, 'manifest.json'));
      if (!r) return null;
      try { return JSON.parse(await r.text()); } catch { return null; }
    },
    async writeManifest(id, m) {
      await (await cache()).put(key(id, 'manifest.json'),
        new Response(JSON.stringify(m), { headers: { 'content-type': 'application/json' } }));
    },
    async writeChunk(id, i, bytes) {
      await (await cache()).put(key(id, `c${chunkName(i)}`),
        new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
    },
    async chunkSizes(id) {
      const c = await cache();
      const re = chunkRe(id);
      const sizes = new Map();
      for (const req of await c.keys()) {
        const m = re.exec(req.url);
        if (!m) continue;
        const r = await c.match(req);
        if (r) sizes.set(Number(m[1]), (await r.blob()).size);
      }
      return sizes;
    },
    async readChunk(id, i, offset, length) {
      return new Uint8Array(await (await blob(id, i)).slice(offset, offset + length).arrayBuffer());
    },
    chunkBlob: blob,
    async removeModel(id) {
      const c = await cache();
      const prefix = `${base}${id}/`;
      for (const req of await c.keys()) if (req.url.startsWith(prefix)) await c.delete(req);
    },
    async listModels() {
      const ids = [];
      for (const req of await (await cache()).keys()) {
        if (req.url.startsWith(base) && req.url.endsWith('/manifest.json')) {
          ids.push(req.url.slice(base.length, -'/manifest.json'.length));
        }
      }
      return ids.sort();
    },
  };
}

/** Adapter in memory: the last resort when a browser offers no persistent storage, and for tests. */
export function memoryBackend() {
  const models = new Map(); // id -> { manifest: string|null, chunks: Map<index, Uint8Array> }
  const get = (id) => {
    if (!models.has(id)) models.set(id, { manifest: null, chunks: new Map() });
    return models.get(id);
  };
  const chunk = (id, i) => {
    const c = models.get(id)?.chunks.get(i);
    if (!c) throw new DOMException(`chunk ${i} of ${id} is missing`, 'NotFoundError');
    return c;
  };
  return {
    kind: 'memory',
    models,
    async readManifest(id) { const s = models.get(id)?.manifest; return s ? JSON.parse(s) : null; },
    async writeManifest(id, m) { get(id).manifest = JSON.stringify(m); },
    async writeChunk(id, i, bytes) { get(id).chunks.set(i, bytes.slice()); },
    async chunkSizes(id) {
      return new Map([...(models.get(id)?.chunks ?? [])].map(([i, b]) => [i, b.length]));
    },
    async readChunk(id, i, offset, length) { return chunk(id, i).slice(offset, offset + length); },
    async chunkBlob(id, i) { return new Blob([chunk(id, i)]); },
    async removeModel(id) { models.delete(id); },
    async listModels() { return [...models].filter(([, v]) => v.manifest).map(([k]) => k).sort(); },
  };
}

// ---------------------------------------------------------------------------------------------
// Catalog entries and manifests.

function normalizeEntry(entry) {
  if (!entry || typeof entry !== 'object') throw new StoreError('BAD_ENTRY', 'install: expected a catalog entry object');
  checkId(entry.id);
  const urls = Array.isArray(entry.urls) ? entry.urls : entry.url != null ? [entry.url] : [];
  if (urls.length === 0 || !urls.every((u) => typeof u === 'string' && u.length > 0)) {
    throw new StoreError('BAD_ENTRY', `model "${entry.id}": needs "url" or a non-empty "urls" list of strings`);
  }
  const size = entry.size ?? null;
  if (size !== null && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new StoreError('BAD_ENTRY', `model "${entry.id}": "size" must be a non-negative integer or null, got ${JSON.stringify(entry.size)}`);
  }
  const sha256 = entry.sha256 ?? null;
  if (sha256 !== null && !(typeof sha256 === 'string' && HEX64_RE.test(sha256))) {
    throw new StoreError('BAD_ENTRY', `model "${entry.id}": "sha256" must be 64 hex characters or null`);
  }
  let chunkSha = entry.chunk_sha256 ?? null;
  let chunkSize = entry.chunk_size ?? null;
  if (chunkSha !== null) {
    if (!Array.isArray(chunkSha) || !chunkSha.every((h) => typeof h === 'string' && HEX64_RE.test(h))) {
      throw new StoreError('BAD_ENTRY', `model "${entry.id}": "chunk_sha256" must be a list of 64-hex strings`);
    }
    if (!(Number.isSafeInteger(chunkSize) && chunkSize > 0 && chunkSize % 64 === 0)) {
      throw new StoreError('BAD_ENTRY', `model "${entry.id}": "chunk_sha256" needs "chunk_size", a positive multiple of 64`);
    }
    if (size !== null && chunkSha.length !== Math.ceil(size / chunkSize)) {
      throw new StoreError('BAD_ENTRY', `model "${entry.id}": ${chunkSha.length} chunk hashes but size ${size} / chunk_size ${chunkSize} makes ${Math.ceil(size / chunkSize)} chunks`);
    }
    chunkSha = chunkSha.map((h) => h.toLowerCase());
  } else {
    chunkSize = null; // a chunk size alone means nothing to verify against
  }
  return { id: entry.id, urls, size, sha256: sha256 && sha256.toLowerCase(), chunkSha, chunkSize };
}

function freshManifest(e, chunkSize) {
  const m = {
    v: MANIFEST_VERSION, id: e.id, urls: e.urls, size: e.size, chunkSize,
    sha256: e.sha256, shaSource: e.sha256 ? 'catalog' : null, chunkSha: e.chunkSha,
    etag: null, done: '', hash: { next: 0, state: null },
    complete: false, verified: false, evicted: false, updated: Date.now(),
  };
  if (m.size !== null) m.done = '0'.repeat(Math.ceil(m.size / chunkSize));
  return m;
}

function manifestUsable(m, e, chunkSize) {
  if (!m || m.v !== MANIFEST_VERSION || m.chunkSize !== chunkSize) return false;
  if (e.size !== null && m.size !== null && m.size !== e.size) return false;
  if (e.sha256 && m.sha256 && m.sha256 !== e.sha256) return false;
  if (m.size !== null && (typeof m.done !== 'string' || m.done.length !== Math.ceil(m.size / chunkSize))) return false;
  if (e.chunkSha && JSON.stringify(m.chunkSha) !== JSON.stringify(e.chunkSha)) return false;
  return true;
}

const chunkCount = (m) => (m.size === null ? 0 : Math.ceil(m.size / m.chunkSize));
const chunkLen = (m, i) => Math.min(m.chunkSize, m.size - i * m.chunkSize);
function storedBytes(m) {
  let n = 0;
  for (let i = 0; i < m.done.length; i++) if (m.done[i] === '1') n += chunkLen(m, i);
  return n;
}
const setDone = (m, i, v) => { m.done = m.done.slice(0, i) + (v ? '1' : '0') + m.done.slice(i + 1); };

/** Drops done marks whose data is missing or short; true when everything marked done is present. */
async function reconcile(backend, m) {
  const sizes = await backend.chunkSizes(m.id);
  let intact = true;
  for (let i = 0; i < m.done.length; i++) {
    if (m.done[i] === '1' && sizes.get(i) !== chunkLen(m, i)) {
      setDone(m, i, false);
      intact = false;
      if (i < m.hash.next) m.hash = { next: 0, state: null };
    }
  }
  return intact;
}

/** The SHA-256 a server states for the body: Hugging Face's X-Linked-Etag, else a plain ETag. */
export function etagSha256(headers) {
  for (const name of ['x-linked-etag', 'etag']) {
    const v = headers.get(name);
    const m = v && /^"([0-9a-fA-F]{64})"$/.exec(v.trim());
    if (m) return m[1].toLowerCase();
  }
  return null;
}

function strongEtag(headers) {
  const v = (headers.get('x-linked-etag') ?? headers.get('etag'))?.trim();
  return v && !v.startsWith('W/') ? v : null;
}

async function chunkDigest(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (subtle) return toHex(new Uint8Array(await subtle.digest('SHA-256', bytes)));
  return new Sha256().update(bytes).hex();
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) { reject(abortReason(signal)); return; }
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(abortReason(signal)); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Smoothed throughput: an exponential moving average over samples at least 200 ms apart. */
function makeMeter() {
  let rate = 0, lastT = null, acc = 0;
  return {
    add(n, now) {
      if (lastT === null) { lastT = now; return; }
      acc += n;
      const dt = now - lastT;
      if (dt >= 200) {
        const inst = (acc * 1000) / dt;
        rate = rate === 0 ? inst : 0.3 * inst + 0.7 * rate;
        acc = 0;
        lastT = now;
      }
    },
    get rate() { return rate; },
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Creates a model store. Options: root (storage folder/cache name), chunkSize (bytes, multiple of
 * 64), fetch, backend ('opfs' | 'cache' | 'memory' | adapter object; default: OPFS when available,
 * else Cache Storage, else memory), storage (a StorageManager: estimate/persist/getDirectory),
 * caches (a CacheStorage), retry { attempts, baseMs, maxMs }, stallMs (idle time before a request
 * counts as dropped), maxFullRetries (whole-file re-downloads after a hash mismatch), locks (a
 * LockManager, default navigator.locks; null to disable).
 */
export function createStore(opts = {}) {
  const root = opts.root ?? 'nbl-models';
  const defaultChunk = opts.chunkSize ?? 8 * MiB;
  if (!(Number.isSafeInteger(defaultChunk) && defaultChunk > 0 && defaultChunk % 64 === 0)) {
    throw new StoreError('BAD_OPTION', `createStore: chunkSize must be a positive multiple of 64, got ${opts.chunkSize}`);
  }
  const fetchImpl = opts.fetch ?? ((...a) => globalThis.fetch(...a));
  const storage = opts.storage ?? globalThis.navigator?.storage ?? null;
  const retry = { attempts: 8, baseMs: 500, maxMs: 15000, ...(opts.retry ?? {}) };
  const stallMs = opts.stallMs ?? 30000;
  const maxFullRetries = opts.maxFullRetries ?? 1;
  // Web Locks serialise installs of one model across tabs and workers of the origin: a second tab
  // waits, then finds the model installed instead of downloading it a second time.
  const locks = opts.locks === undefined ? globalThis.navigator?.locks ?? null : opts.locks;
  const inflight = new Map(); // id -> { promise, controller }
  const openOk = new Set(); // ids whose chunks were checked present since the last change

  const ready = (async () => {
    const b = opts.backend;
    if (b && typeof b === 'object') return b;
    if (b === 'memory') return memoryBackend();
    if (b === 'cache') return cacheBackend(root, opts.caches ?? globalThis.caches);
    if (b === 'opfs') return opfsBackend(root, storage);
    if (b !== undefined) throw new StoreError('BAD_OPTION', `createStore: unknown backend ${JSON.stringify(b)}`);
    // Probe rather than feature-test: OPFS exists but throws in some private-browsing modes.
    if (storage?.getDirectory) {
      try { await storage.getDirectory(); return opfsBackend(root, storage); } catch { /* next */ }
    }
    const caches = opts.caches ?? globalThis.caches;
    if (caches) {
      try { await caches.open(root); return cacheBackend(root, caches); } catch { /* next */ }
    }
    return memoryBackend();
  })();
  ready.catch(() => {});

  async function checkQuota(id, need) {
    if (need <= 0 || !storage?.estimate) return;
    let est;
    try { est = await storage.estimate(); } catch { return; }
    if (!est || typeof est.quota !== 'number') return;
    const usage = est.usage ?? 0;
    const available = Math.max(0, est.quota - usage);
    if (need > available) {
      throw new StoreError('QUOTA',
        `not enough storage to install "${id}": needs ${fmtBytes(need)} more, only ${fmtBytes(available)} available ` +
        `(quota ${fmtBytes(est.quota)}, ${fmtBytes(usage)} in use); free space or remove other models`,
        { needed: need, available, quota: est.quota, usage });
    }
  }

  async function askPersist() {
    try {
      if (await storage?.persisted?.()) return true;
      return (await storage?.persist?.()) ?? null;
    } catch { return null; }
  }

  async function runInstall(e, onProgress, signal) {
    const backend = await ready;
    const id = e.id;
    openOk.delete(id);
    let m = await backend.readManifest(id);
    const cs = e.chunkSize ?? (m && m.v === MANIFEST_VERSION && Number.isSafeInteger(m.chunkSize) ? m.chunkSize : defaultChunk);
    if (!manifestUsable(m, e, cs)) {
      if (m) await backend.removeModel(id);
      m = freshManifest(e, cs);
    } else {
      m.urls = e.urls;
      if (e.sha256 && !m.sha256) { m.sha256 = e.sha256; m.shaSource = 'catalog'; }
      if (m.size === null && e.size !== null) { m.size = e.size; m.done = '0'.repeat(Math.ceil(e.size / cs)); }
      const hashed = m.size === null ? 0 : Math.min((m.hash?.next ?? 0) * cs, m.size);
      if (!m.hash || (m.hash.state ? m.hash.state.length !== hashed : m.hash.next !== 0)) m.hash = { next: 0, state: null };
      if (m.size !== null) await reconcile(backend, m);
    }
    m.evicted = false;
    const persisted = await askPersist();
    const finish = () => ({
      id, size: m.size, sha256: m.digest ?? null, verified: m.verified,
      verifiedBy: m.verified ? m.shaSource : null, persisted, backend: backend.kind,
    });
    if (m.complete && m.size !== null && m.done.indexOf('0') === -1) {
      openOk.add(id);
      return finish();
    }
    m.complete = false;
    m.verified = false;

    let sha;
    try { sha = m.hash.state ? Sha256.restore(m.hash.state) : new Sha256(); } catch { sha = new Sha256(); m.hash = { next: 0, state: null }; }
    const meter = makeMeter();
    let lastEmit = 0, inFlightBytes = 0, phase = 'download';
    const emit = (force) => {
      if (!onProgress) return;
      const now = Date.now();
      if (!force && now - lastEmit < 100) return;
      lastEmit = now;
      const total = m.size;
      const bytes = m.size === null ? inFlightBytes : storedBytes(m) + inFlightBytes;
      const rate = meter.rate;
      const eta = total !== null && rate > 0 ? Math.max(0, (total - bytes) / rate) : null;
      try { onProgress({ id, phase, bytes, total, rate, eta }); } catch { /* a UI error must not kill the download */ }
    };
    let quotaChecked = false;
    const ensureQuota = async () => {
      if (quotaChecked || m.size === null) return;
      quotaChecked = true;
      await checkQuota(id, m.size - storedBytes(m));
    };
    await ensureQuota(); // before writing anything, so a refusal leaves storage as it was
    await backend.writeManifest(id, m);
    emit(true);

    const badChunks = new Map();
    const advanceHash = async (i, bytes) => {
      const n = chunkCount(m);
      while (m.hash.next < n && m.done[m.hash.next] === '1') {
        const k = m.hash.next;
        sha.update(k === i ? bytes : await backend.readChunk(id, k, 0, chunkLen(m, k)));
        m.hash.next = k + 1;
      }
      m.hash.state = sha.save();
    };
    const finishChunk = async (i, bytes) => {
      if (m.chunkSha) {
        const got = await chunkDigest(bytes);
        if (got !== m.chunkSha[i]) {
          const n = (badChunks.get(i) ?? 0) + 1;
          badChunks.set(i, n);
          if (n > 2) {
            throw new StoreError('INTEGRITY', `model "${id}": chunk ${i} failed SHA-256 verification ${n} times (expected ${m.chunkSha[i]}, got ${got})`);
          }
          return; // left undone: the next pass fetches exactly this chunk again
        }
      }
      try {
        await backend.writeChunk(id, i, bytes);
        setDone(m, i, true);
        await advanceHash(i, bytes);
        m.updated = Date.now();
        await backend.writeManifest(id, m);
      } catch (err) {
        if (isQuotaError(err)) {
          throw new StoreError('QUOTA', `storage is full while installing "${id}" (chunk ${i}): ${err.message}`, { cause: err });
        }
        // Storage failures are not network failures: retrying the download would not help.
        throw new StoreError('STORAGE', `model "${id}": cannot store chunk ${i} (${backend.kind}): ${err?.message ?? err}`, { cause: err });
      }
      emit(true);
    };
    const reset = async () => {
      await backend.removeModel(id);
      const keepEtag = m.etag;
      m = freshManifest(e, cs);
      m.etag = keepEtag;
      sha = new Sha256();
      await backend.writeManifest(id, m);
    };

    // One request per run of missing chunks; a 200 answer (Range ignored) is consumed as a full GET.
    let urlIndex = 0, changedRestarts = 0;
    const fetchRun = async (first) => {
      let pos = first * cs; // next byte wanted
      let ci = first, buf = null, fill = 0, failures = 0;
      for (;;) {
        const n = chunkCount(m);
        let runEnd = null; // exclusive byte end of this request, null while the size is unknown
        if (m.size !== null) {
          if (ci >= n) return;
          let j = ci;
          while (j < n && m.done[j] === '0') j++;
          runEnd = Math.min(j * cs, m.size);
          if (pos >= runEnd) return;
        }
        const url = m.urls[urlIndex];
        const reqCtl = new AbortController();
        const onAbort = () => reqCtl.abort(abortReason(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        let stallTimer = null;
        const arm = () => {
          clearTimeout(stallTimer);
          stallTimer = setTimeout(() => reqCtl.abort(new StoreError('STALLED', `no data for ${stallMs} ms`)), stallMs);
        };
        let progressed = false;
        try {
          arm();
          const headers = { Range: `bytes=${pos}-${runEnd === null ? '' : runEnd - 1}` };
          const res = await fetchImpl(url, { headers, signal: reqCtl.signal, cache: 'no-store' });
          let skip = 0, total = null, expectEnd;
          if (res.status === 206) {
            const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
            if (!cr || Number(cr[1]) !== pos) {
              throw new StoreError('BAD_RANGE', `server answered range ${res.headers.get('content-range')} to a request for bytes ${pos}-`);
            }
            total = cr[3] === '*' ? null : Number(cr[3]);
            expectEnd = Number(cr[2]) + 1;
          } else if (res.status === 200) {
            skip = pos; // the body starts at byte 0
            const cl = res.headers.get('content-length');
            total = cl !== null && /^\d+$/.test(cl) ? Number(cl) : null;
          } else if (res.status === 408 || res.status === 429 || res.status >= 500) {
            throw new StoreError('HTTP_RETRY', `HTTP ${res.status} from ${url}`);
          } else {
            try { await res.body?.cancel(); } catch { /* ignore */ }
            if (urlIndex + 1 < m.urls.length) { urlIndex++; continue; }
            throw new StoreError('HTTP', `model "${id}": HTTP ${res.status} ${res.statusText ?? ''} from ${url}`.trim(), { status: res.status });
          }
          if (total === null) {
            const linked = res.headers.get('x-linked-size');
            if (linked && /^\d+$/.test(linked)) total = Number(linked);
          }
          const tag = strongEtag(res.headers);
          // With no catalog hash the ETag defines the file, so a new ETag means a new file. With one,
          // mirrors may tag the same bytes differently and the final hash check decides.
          if (tag && m.etag && tag !== m.etag && !e.sha256) {
            try { await res.body?.cancel(); } catch { /* ignore */ }
            throw new StoreError('CHANGED', `model "${id}": the file at ${url} changed during the download (ETag ${m.etag} -> ${tag})`);
          }
          if (tag) m.etag = tag;
          const esha = etagSha256(res.headers);
          if (esha && !m.sha256) { m.sha256 = esha; m.shaSource = 'etag'; }
          if (total !== null && m.size !== null && total !== m.size) {
            try { await res.body?.cancel(); } catch { /* ignore */ }
            throw new StoreError('SIZE_MISMATCH', `model "${id}": the catalog says ${m.size} bytes but ${url} serves ${total}`);
          }
          if (m.size === null) {
            if (total === null) throw new StoreError('NO_SIZE', `model "${id}": neither the catalog nor ${url} states the file size`);
            m.size = total;
            m.done = '0'.repeat(Math.ceil(total / cs));
            await backend.writeManifest(id, m);
            runEnd = m.size;
          }
          if (res.status === 200) expectEnd = m.size;
          await ensureQuota();
          emit(true);
          if (!res.body) throw new StoreError('SHORT', 'empty response body');
          const reader = res.body.getReader();
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              arm();
              meter.add(value.length, Date.now());
              let v = value;
              if (skip > 0) {
                if (v.length <= skip) { skip -= v.length; continue; }
                v = v.subarray(skip);
                skip = 0;
              }
              while (v.length > 0 && pos < m.size) {
                const clen = chunkLen(m, ci);
                const chunkEnd = ci * cs + clen;
                const take = Math.min(chunkEnd - pos, v.length);
                if (m.done[ci] === '1') {
                  // Only a full GET runs over chunks already stored: let their bytes pass.
                  buf = null; fill = 0;
                } else {
                  if (!buf) { buf = new Uint8Array(clen); fill = 0; }
                  buf.set(v.subarray(0, take), fill);
                  fill += take;
                  inFlightBytes = fill;
                  progressed = true;
                }
                pos += take;
                v = v.subarray(take);
                if (pos === chunkEnd) {
                  if (buf) {
                    const full = buf;
                    buf = null; fill = 0; inFlightBytes = 0;
                    await finishChunk(ci, full);
                  }
                  ci++;
                }
              }
              emit(false);
            }
          } finally {
            try { reader.releaseLock(); } catch { /* ignore */ }
          }
          if (pos < expectEnd) throw new StoreError('SHORT', `connection closed at byte ${pos} of ${expectEnd}`);
          failures = 0;
          if (res.status === 200) return; // the whole file went by
        } catch (err) {
          if (signal.aborted) throw abortReason(signal);
          if (err instanceof StoreError && !['HTTP_RETRY', 'BAD_RANGE', 'SHORT', 'STALLED'].includes(err.code)) throw err;
          if (progressed) failures = 0;
          failures++;
          if (failures > retry.attempts) {
            throw new StoreError('NETWORK', `model "${id}": download failed ${failures} times in a row at byte ${pos}: ${err?.message ?? err}`, { cause: err });
          }
          const delay = Math.min(retry.maxMs, retry.baseMs * 2 ** (failures - 1)) * (0.75 + Math.random() * 0.5);
          await sleep(delay, signal);
        } finally {
          clearTimeout(stallTimer);
          signal.removeEventListener('abort', onAbort);
          reqCtl.abort(); // drops a body left unread after an error; a no-op once fully read
        }
      }
    };

    for (let fullRetries = 0; ;) {
      const first = m.size === null ? 0 : m.done.indexOf('0');
      if (first !== -1) {
        try {
          await fetchRun(first);
        } catch (err) {
          if (err instanceof StoreError && err.code === 'CHANGED' && changedRestarts++ < 1) {
            await reset();
            m.etag = null;
            continue;
          }
          throw err;
        }
        continue;
      }
      phase = 'verify';
      emit(true);
      await advanceHash(-1, null);
      const digest = sha.hex();
      if (m.sha256 && digest !== m.sha256) {
        if (fullRetries++ < maxFullRetries) {
          // Without chunk hashes the bad bytes cannot be located: fetch everything again.
          await reset();
          phase = 'download';
          continue;
        }
        const expected = m.sha256, source = m.shaSource;
        await backend.removeModel(id);
        throw new StoreError('INTEGRITY',
          `model "${id}": SHA-256 mismatch after ${fullRetries} download(s): expected ${expected} (from the ${source}), got ${digest}`,
          { expected, actual: digest });
      }
      m.digest = digest;
      m.complete = true;
      m.verified = !!m.sha256;
      m.updated = Date.now();
      await backend.writeManifest(id, m);
      phase = 'done';
      inFlightBytes = 0;
      emit(true);
      openOk.add(id);
      return finish();
    }
  }

  /** Reads the manifest and, for a complete one, checks the data is still there (eviction). */
  async function check(id) {
    const backend = await ready;
    const m = await backend.readManifest(id);
    if (!m || m.v !== MANIFEST_VERSION) return { m: null, state: 'not-installed' };
    if (m.complete) {
      if (openOk.has(id)) return { m, state: 'installed' };
      if (await reconcile(backend, m)) { openOk.add(id); return { m, state: 'installed' }; }
      // The browser dropped data behind our back: record that so nothing later trusts the manifest.
      m.complete = false;
      m.verified = false;
      m.evicted = true;
      if (!inflight.has(id)) { try { await backend.writeManifest(id, m); } catch { /* read-only is fine */ } }
      return { m, state: 'not-installed' };
    }
    if (m.evicted) return { m, state: 'not-installed' };
    return { m, state: typeof m.done === 'string' && m.done.includes('1') ? 'partial' : 'not-installed' };
  }

  async function requireInstalled(id) {
    checkId(id);
    const { m, state } = await check(id);
    if (state !== 'installed') {
      throw new StoreError('NOT_INSTALLED', m?.evicted
        ? `model "${id}" is not installed: the browser evicted its data; install it again`
        : `model "${id}" is not installed (${state})`);
    }
    return m;
  }

  const store = {
    /** The storage kind in use: 'opfs' | 'cache' | 'memory' (or an adapter's kind). */
    async kind() { return (await ready).kind; },

    install(entry, { onProgress, signal } = {}) {
      let e;
      try { e = normalizeEntry(entry); } catch (err) { return Promise.reject(err); }
      if (inflight.has(e.id)) {
        return Promise.reject(new StoreError('BUSY', `model "${e.id}" is already being installed`));
      }
      const controller = new AbortController();
      const forward = () => controller.abort(abortReason(signal));
      if (signal) {
        if (signal.aborted) return Promise.reject(abortReason(signal));
        signal.addEventListener('abort', forward, { once: true });
      }
      const run = () => runInstall(e, onProgress, controller.signal);
      const locked = locks
        ? locks.request(`nbl-store:${root}:${e.id}`, { signal: controller.signal }, run)
        : run();
      const promise = locked.catch((err) => {
        if (isQuotaError(err) && !(err instanceof StoreError)) {
          throw new StoreError('QUOTA', `storage is full while installing "${e.id}": ${err.message}`, { cause: err });
        }
        throw err;
      }).finally(() => {
        signal?.removeEventListener('abort', forward);
        if (inflight.get(e.id)?.promise === promise) inflight.delete(e.id);
      });
      inflight.set(e.id, { promise, controller });
      return promise;
    },

    async status(id) {
      checkId(id);
      return (await check(id)).state;
    },

    async list() {
      const backend = await ready;
      const out = [];
      for (const id of await backend.listModels()) {
        if (!ID_RE.test(id)) continue;
        const { m, state } = await check(id);
        if (!m) continue;
        out.push({
          id, status: state, size: m.size, bytes: m.size === null ? 0 : storedBytes(m),
          sha256: m.digest ?? m.sha256 ?? null, verified: !!m.verified && state === 'installed', updated: m.updated ?? null,
        });
      }
      return out;
    },

    /** Aborts an install in progress and keeps what it stored, so a later install resumes. */
    async pause(id) {
      checkId(id);
      const job = inflight.get(id);
      if (!job) return;
      job.controller.abort(new DOMException('paused', 'AbortError'));
      await job.promise.catch(() => {});
    },

    /** Aborts any install of the model and deletes everything stored for it. */
    async remove(id) {
      checkId(id);
      const job = inflight.get(id);
      if (job) {
        job.controller.abort(new DOMException('removed', 'AbortError'));
        await job.promise.catch(() => {});
      }
      openOk.delete(id);
      await (await ready).removeModel(id);
    },

    /** The whole file as a Blob backed by storage (not by JS memory). Throws NOT_INSTALLED. */
    async open(id) {
      const m = await requireInstalled(id);
      const backend = await ready;
      const parts = [];
      for (let i = 0; i < chunkCount(m); i++) parts.push(await backend.chunkBlob(id, i));
      const blob = new Blob(parts, { type: 'application/octet-stream' });
      if (blob.size !== m.size) {
        openOk.delete(id);
        throw new StoreError('NOT_INSTALLED', `model "${id}": stored data is ${blob.size} bytes, expected ${m.size}; install it again`);
      }
      return blob;
    },

    /** Bytes [offset, offset+length) of an installed model, e.g. one tensor for a GPU upload. */
    async readRange(id, offset, length) {
      const m = await requireInstalled(id);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > m.size) {
        throw new StoreError('RANGE', `model "${id}": range ${offset}+${length} is outside the file (${m.size} bytes)`);
      }
      const backend = await ready;
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const p = offset + done;
        const i = Math.floor(p / m.chunkSize);
        const off = p - i * m.chunkSize;
        const n = Math.min(length - done, chunkLen(m, i) - off);
        let part;
        try {
          part = await backend.readChunk(id, i, off, n);
        } catch (err) {
          if (!isNotFound(err)) throw err;
          openOk.delete(id);
          throw new StoreError('NOT_INSTALLED', `model "${id}": chunk ${i} is gone (evicted?); install it again`);
        }
        if (part.length !== n) {
          openOk.delete(id);
          throw new StoreError('NOT_INSTALLED', `model "${id}": chunk ${i} is short; install it again`);
        }
        out.set(part, done);
        done += n;
      }
      return out;
    },
  };
  return store;
}
