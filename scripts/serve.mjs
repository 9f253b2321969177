// Serves the browser runtime (web/) for the product page: the demo at /demo/ (and / redirects
// there), with the headers that make the page cross-origin isolated (COOP/COEP, so the threaded
// WebAssembly build can run) and that let the demo's service worker cover all of web/.
//   node scripts/serve.mjs [--port 8080] [--host 127.0.0.1] [--root web]
// Static files only; no directory listings; paths never leave the root.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8', '.wasm': 'application/wasm', '.css': 'text/css; charset=utf-8',
  '.wgsl': 'text/plain; charset=utf-8', '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.webmanifest': 'application/manifest+json',
  '.gguf': 'application/octet-stream',
};

function parseArgs(argv) {
  const o = { port: Number(process.env.PORT ?? 8080), host: process.env.HOST ?? '127.0.0.1', root: path.join(REPO, 'web') };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], argv[i + 1]];
    const take = () => { if (!argv[i].includes('=')) i++; return v; };
    if (k === '--port') o.port = Number(take());
    else if (k === '--host') o.host = take();
    else if (k === '--root') o.root = path.resolve(take());
    else if (k === '--help' || k === '-h') {
      console.log('usage: node scripts/serve.mjs [--port 8080] [--host 127.0.0.1] [--root web]');
      process.exit(0);
    } else {
      console.error(`serve: unknown argument ${argv[i]}`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) {
    console.error(`serve: bad port ${o.port}`);
    process.exit(2);
  }
  return o;
}

/**
 * Creates the server (not listening yet). root: the folder served at /; isolate: send COOP/COEP
 * (default true; false serves the page as most static hosts do, single-threaded).
 */
export function createServer({ root, isolate = true }) {
  root = path.resolve(root);
  return http.createServer((req, res) => {
    if (isolate) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad request');
      return;
    }
    if (pathname === '/') {
      res.writeHead(302, { Location: '/demo/' }).end();
      return;
    }
    let file = path.resolve(root, `.${pathname}`);
    if (file !== root && !file.startsWith(root + path.sep)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    let st;
    try {
      st = fs.statSync(file);
      if (st.isDirectory()) {
        if (!pathname.endsWith('/')) {
          res.writeHead(301, { Location: `${pathname}/` }).end();
          return;
        }
        file = path.join(file, 'index.html');
        st = fs.statSync(file);
      }
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found');
      return;
    }
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers = {
      'Content-Type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': st.size,
      'Cache-Control': 'no-cache',
      ETag: etag,
    };
    // The demo's worker may control all of web/, so the engine's workers are served offline too.
    if (path.basename(file) === 'sw.js') headers['Service-Worker-Allowed'] = '/';
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { ETag: etag, 'Cache-Control': 'no-cache' }).end();
      return;
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') { res.end(); return; }
    fs.createReadStream(file).on('error', () => res.destroy()).pipe(res);
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const o = parseArgs(process.argv.slice(2));
  const server = createServer(o);
  server.on('error', (e) => {
    console.error(e.code === 'EADDRINUSE' ? `serve: port ${o.port} is in use (set --port or PORT)` : `serve: ${e.message}`);
    process.exit(1);
  });
  server.listen(o.port, o.host, () => {
    const { port } = server.address();
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    console.log(`Nano Browser LLM: open http://${host}:${port}/ (serving ${path.relative(REPO, o.root) || '.'}; Ctrl+C stops)`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
