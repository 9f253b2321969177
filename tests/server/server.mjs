// Local HTTP server for the JS and browser tests: serves files with Range support (206,
// Content-Range, ETag = quoted SHA-256) and misbehaves on request: cuts or stalls connections, corrupts bytes,
// ignores Range, throttles, fails with a status. Also serves the repo's static files for test pages.
//
//   const srv = await startServer({ files: { 'm.gguf': '/path/or/Buffer' } });
//   srv.set({ cutAfter: 300000 });   // or POST JSON to `${srv.url}/__control`
//   ... fetch(`${srv.url}/models/m.gguf`) ...; srv.log; await srv.close();
//
// Misbehaviour applies only to /models/* and /fixtures/* so test pages keep loading.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES_DIR = path.resolve(REPO_ROOT, process.env.NBL_FIXTURES ?? '../shared/fixtures');

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.css': 'text/css', '.wgsl': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream', '.txt': 'text/plain; charset=utf-8',
};

const DEFAULTS = {
  cutAfter: null, // body bytes sent before the connection is destroyed
  cutTimes: 1, // how many responses get cut
  cutMode: 'reset', // 'reset': destroy the connection; 'hang': stop sending but keep it open
  corrupt: null, // { start, end, times }: file bytes [start, end) are flipped in the next `times` responses
  ignoreRange: false, // answer 200 with the whole file
  throttle: 0, // bytes per second (0 = unlimited)
  etag: 'sha256', // 'sha256' (ETag), 'linked' (X-Linked-Etag as Hugging Face), 'none'
  fail: null, // { status, times }: answer the next `times` requests with `status`
  coopCoep: false, // Cross-Origin-Opener/Embedder-Policy for threaded wasm pages
};

/**
 * Starts a server on 127.0.0.1 at a free port. Options: files ({ name: path|Buffer } served at
 * /models/<name>), root (static files, default the repo), fixtures (served at /fixtures/), and any
 * of the misbehaviour settings above.
 */
export async function startServer(opts = {}) {
  const root = path.resolve(opts.root ?? REPO_ROOT);
  const fixtures = path.resolve(opts.fixtures ?? FIXTURES_DIR);
  const files = new Map();
  const hashes = new Map();
  const state = { ...DEFAULTS };
  const log = [];
  const sockets = new Set();
  const active = new Set(); // model responses still sending

  const set = (o) => {
    for (const [k, v] of Object.entries(o ?? {})) {
      if (!(k in DEFAULTS)) throw new Error(`server: unknown setting ${k}`);
      state[k] = k === 'corrupt' && v ? { times: 1, ...v } : k === 'fail' && v ? { times: 1, ...v } : v;
    }
  };
  set(Object.fromEntries(Object.entries(opts).filter(([k]) => k in DEFAULTS)));
  const addFile = (name, src) => {
    files.set(name, Buffer.isBuffer(src) || src instanceof Uint8Array ? { data: Buffer.from(src) } : { file: path.resolve(src) });
    hashes.delete(`m:${name}`);
  };
  for (const [name, src] of Object.entries(opts.files ?? {})) addFile(name, src);

  function resolveTarget(urlPath) {
    if (urlPath.startsWith('/models/')) {
      const name = decodeURIComponent(urlPath.slice(8));
      const f = files.get(name);
      return f ? { ...f, key: `m:${name}`, misbehave: true } : null;
    }
    const [base, rel, misbehave] = urlPath.startsWith('/fixtures/')
      ? [fixtures, urlPath.slice(10), true] : [root, urlPath.slice(1), false];
    const p = path.resolve(base, decodeURIComponent(rel));
    if (p !== base && !p.startsWith(base + path.sep)) return null; // no escaping the served tree
    try {
      if (!fs.statSync(p).isFile()) return null;
    } catch { return null; }
    return { file: p, key: `f:${p}`, misbehave };
  }

  function bytesOf(t) { return t.data ?? fs.readFileSync(t.file); }
  function sha256Of(t, bytes) {
    const mtime = t.file ? fs.statSync(t.file).mtimeMs : 0;
    const c = hashes.get(t.key);
    if (c && c.mtime === mtime) return c.hex;
    const hex = createHash('sha256').update(bytes).digest('hex');
    hashes.set(t.key, { mtime, hex });
    return hex;
  }

  function common(res) {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, Accept-Ranges, ETag, X-Linked-Etag, X-Linked-Size');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    if (state.coopCoep) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
  }

  async function send(req, res, body, entry) {
    const misbehave = entry.misbehave;
    const cut = misbehave && state.cutAfter !== null && state.cutTimes > 0 ? state.cutAfter : null;
    if (cut !== null) state.cutTimes--;
    let data = body.bytes;
    const cor = state.corrupt;
    if (misbehave && cor && cor.times > 0 && cor.start < body.end && cor.end > body.start) {
      cor.times--;
      data = Buffer.from(data);
      for (let o = Math.max(cor.start, body.start); o < Math.min(cor.end, body.end); o++) data[o - body.start] ^= 0xff;
      entry.corrupted = true;
    }
    const rate = misbehave ? state.throttle : 0;
    const slice = rate > 0 ? Math.max(1024, Math.floor(rate / 20)) : 256 * 1024;
    let sent = 0;
    const t0 = Date.now();
    while (sent < data.length) {
      if (res.destroyed) return;
      let n = Math.min(slice, data.length - sent);
      if (cut !== null && sent + n >= cut) n = cut - sent;
      if (n > 0) {
        const ok = res.write(data.subarray(sent, sent + n));
        sent += n;
        entry.sent = sent;
        if (!ok) {
          await new Promise((r) => {
            const done = () => { res.off('drain', done); res.off('close', done); r(); };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      if (cut !== null && sent >= cut) {
        entry.cut = true;
        if (state.cutMode === 'hang') {
          // A stalled connection: nothing more arrives until the client gives up.
          if (!res.destroyed) await new Promise((r) => res.once('close', r));
          return;
        }
        // Give the bytes a moment to leave before the reset, like a connection dropping mid-stream.
        await new Promise((r) => setTimeout(r, 20));
        res.destroy();
        return;
      }
      if (rate > 0) {
        const due = t0 + (sent / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    res.end();
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    common(res);
    try {
      if (url.pathname === '/__control') {
        if (req.method === 'POST') {
          let text = '';
          for await (const c of req) text += c;
          const o = text ? JSON.parse(text) : {};
          if (o.reset) { Object.assign(state, DEFAULTS); log.length = 0; }
          set(Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'reset')));
        }
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ state, log }));
        return;
      }
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Headers', 'Range, If-Range, Content-Type');
        res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, POST, OPTIONS');
        res.writeHead(204).end();
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return; }
      const t = resolveTarget(url.pathname);
      const entry = { method: req.method, path: url.pathname, range: req.headers.range ?? null, status: 0, start: 0, end: 0, sent: 0, cut: false, corrupted: false };
      if (!t) { entry.status = 404; log.push(entry); res.writeHead(404).end('not found'); return; }
      entry.misbehave = t.misbehave;
      log.push(entry);
      if (t.misbehave && state.fail && state.fail.times > 0) {
        state.fail.times--;
        entry.status = state.fail.status;
        res.writeHead(state.fail.status).end(`failing on purpose (${state.fail.status})`);
        return;
      }
      const all = bytesOf(t);
      const size = all.length;
      res.setHeader('Content-Type', TYPES[path.extname(t.file ?? url.pathname)] ?? 'application/octet-stream');
      res.setHeader('Cache-Control', t.misbehave ? 'no-store' : 'no-cache');
      res.setHeader('Accept-Ranges', 'bytes');
      if (t.misbehave && state.etag !== 'none') {
        const hex = sha256Of(t, all);
        if (state.etag === 'linked') {
          res.setHeader('X-Linked-Etag', `"${hex}"`);
          res.setHeader('X-Linked-Size', String(size));
          res.setHeader('ETag', `"${hex.slice(0, 40)}"`); // a git-style tag that is not the content hash
        } else {
          res.setHeader('ETag', `"${hex}"`);
        }
      }
      let start = 0, end = size, status = 200;
      const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
      if (m && !(t.misbehave && state.ignoreRange) && (m[1] !== '' || m[2] !== '')) {
        if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size; }
        else { start = Number(m[1]); end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1); }
        if (start >= size || start >= end) {
          entry.status = 416;
          res.setHeader('Content-Range', `bytes */${size}`);
          res.writeHead(416).end();
          return;
        }
        status = 206;
        res.setHeader('Content-Range', `bytes ${start}-${end - 1}/${size}`);
      }
      Object.assign(entry, { status, start, end });
      res.setHeader('Content-Length', String(end - start));
      res.writeHead(status);
      if (req.method === 'HEAD') { res.end(); return; }
      if (t.misbehave) { active.add(res); res.on('close', () => active.delete(res)); }
      await send(req, res, { bytes: all.subarray(start, end), start, end }, entry);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500).end(String(e?.message ?? e));
      else res.destroy();
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, log, state,
    set, addFile,
    reset() { Object.assign(state, DEFAULTS); log.length = 0; },
    /** Destroys every model response still in flight (a connection dropping now); returns how many. */
    dropConnections() {
      const n = active.size;
      for (const res of active) { res.destroy(); }
      active.clear();
      return n;
    },
    /** Log entries of model requests (the ones misbehaviour applies to). */
    modelRequests() { return log.filter((e) => e.misbehave); },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

// `node tests/server/server.mjs [port-file]` serves until killed, printing its URL (manual testing).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srv = await startServer();
  console.log(srv.url);
  if (process.argv[2]) fs.writeFileSync(process.argv[2], srv.url);
  const stop = async () => { await srv.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
