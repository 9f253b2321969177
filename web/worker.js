// The engine's Web Worker: hosts a WasmBackend, or a GpuBackend (WebGPU works in workers), so that
// loading and inference never block the page. web/engine.js talks to it with these messages
// (every request carries an id):
//   page → worker  { type: 'load', id, options }    options as WasmBackend.create takes them;
//                                                  options.kind 'webgpu' loads a GpuBackend
//                  { type: 'generate', id, messages, params }
//                  { type: 'tokenize' | 'renderChat', id, text | messages, options }
//                  { type: 'reset' | 'dispose', id }
//                  { type: 'task', id, name, args }  a helper task (web/tasks.js)
//                  { type: 'abort', id }             stops generate request id between tokens
//                  { type: 'loseDevice' }            test hook: loses the GPU device now
//   worker → page  { type: 'progress', id, progress }
//                  { type: 'fallback', info }        the GPU was lost; the CPU carries on
//                  { type: 'delta', id, text, token }
//                  { type: 'result', id, value }  or  { type: 'error', id, error }

import { WasmBackend } from './wasm-backend.js';
import { runTask } from './tasks.js';

let backend = null;
const controllers = new Map(); // generate id -> AbortController

function errorData(e) {
  return { name: e?.name ?? 'Error', message: e?.message ?? String(e), code: e?.code, status: e?.status };
}

async function handle(msg) {
  switch (msg.type) {
    case 'load': {
      if (backend) throw new Error('worker: a model is already loaded');
      const { kind, ...options } = msg.options ?? {};
      const Backend = kind === 'webgpu' ? (await import('./gpu-backend.js')).GpuBackend : WasmBackend;
      backend = await Backend.create({
        ...options,
        onProgress: (progress) => postMessage({ type: 'progress', id: msg.id, progress }),
        onFallback: (info) => postMessage({ type: 'fallback', info }),
      });
      return backend.info;
    }
    case 'generate': {
      const ctl = controllers.get(msg.id);
      try {
        return await need().generate({ messages: msg.messages, params: msg.params }, {
          signal: ctl.signal,
          onDelta: (text, token) => postMessage({ type: 'delta', id: msg.id, text, token }),
        });
      } finally {
        controllers.delete(msg.id);
      }
    }
    case 'tokenize': return need().tokenize(msg.text, msg.options);
    case 'renderChat': return need().renderChat(msg.messages, msg.options);
    case 'reset': return need().reset();
    case 'task': return runTask(need(), msg.name, msg.args);
    case 'dispose':
      backend?.dispose();
      backend = null;
      return null;
    default: throw new Error(`worker: unknown message type ${JSON.stringify(msg.type)}`);
  }
}

function need() {
  if (!backend) throw new Error('worker: no model is loaded');
  return backend;
}

self.onmessage = async (e) => {
  const msg = e.data;
  if (msg?.type === 'abort') {
    controllers.get(msg.id)?.abort();
    return;
  }
  if (msg?.type === 'loseDevice') { // not queued: it must be able to strike mid-generation
    backend?.loseDevice?.();
    return;
  }
  // The controller exists from arrival, so an abort for a request still queued is not lost.
  if (msg?.type === 'generate') controllers.set(msg.id, new AbortController());
  try {
    postMessage({ type: 'result', id: msg.id, value: await handle(msg) });
  } catch (err) {
    postMessage({ type: 'error', id: msg.id, error: errorData(err) });
  }
};
