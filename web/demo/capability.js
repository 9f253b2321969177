// What this device can do with the model, checked on arrival without downloading anything:
// WebGPU (and 16-bit shader support), WebAssembly SIMD (the CPU build needs it), threads (a
// cross-origin isolated page), and the storage the origin may still use. The verdict drives the
// page's honest summary: GPU, CPU (slower), or the server model.

import { formatBytes } from './util.js';
import { hasBackend } from '../engine.js';

// The smallest module using a v128 instruction; validates only where SIMD128 is supported.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

function withTimeout(promise, ms, fallback) {
  return Promise.race([promise, new Promise((r) => setTimeout(() => r(fallback), ms))]);
}

async function checkGpu() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu?.requestAdapter) return { available: false, f16: false, why: 'this browser has no WebGPU' };
  try {
    // Some drivers never answer; a page that waits forever is worse than a CPU fallback.
    const adapter = await withTimeout(gpu.requestAdapter({ powerPreference: 'high-performance' }), 4000, null);
    if (!adapter) return { available: false, f16: false, why: 'WebGPU is present but no GPU adapter is available' };
    let name = '';
    try { name = adapter.info?.description || adapter.info?.vendor || ''; } catch { /* older browsers */ }
    return { available: true, f16: adapter.features.has('shader-f16'), name, fallback: !!adapter.isFallbackAdapter };
  } catch (e) {
    return { available: false, f16: false, why: `WebGPU failed: ${e?.message ?? e}` };
  }
}

function checkWasm() {
  if (typeof WebAssembly !== 'object') return { available: false, simd: false };
  let simd = false;
  try { simd = WebAssembly.validate(SIMD_PROBE); } catch { /* no */ }
  return { available: true, simd };
}

async function checkStorage(needBytes) {
  const s = globalThis.navigator?.storage;
  if (!s?.estimate) return { known: false, enough: true };
  try {
    const { quota = 0, usage = 0 } = await s.estimate();
    const available = Math.max(0, quota - usage);
    let persisted = null;
    try { persisted = (await s.persisted?.()) ?? null; } catch { /* unknown */ }
    return { known: true, quota, usage, available, enough: needBytes == null || available >= needBytes, persisted };
  } catch {
    return { known: false, enough: true };
  }
}

export const SUMMARIES = Object.freeze({
  gpu: 'Runs on your GPU.',
  cpu: 'Runs on your CPU, slower.',
  server: 'This device cannot run it: using the server model.',
  none: 'This device cannot run it, and no server model is set up.',
});

/**
 * Runs every check. needBytes: what the install still has to store. endpoint: whether a server
 * model is configured. gpuEngine: whether the engine can run the model on WebGPU (a registered
 * 'webgpu' backend); without one a usable GPU is reported but the verdict stays 'cpu'. Resolves
 * to { gpu, wasm, threads, cores, storage, verdict, summary, notes } where verdict is 'gpu' |
 * 'cpu' | 'server' | 'none'.
 */
export async function checkCapabilities({ needBytes = null, endpoint = false, gpuEngine = hasBackend('webgpu') } = {}) {
  const [gpu, storage] = await Promise.all([checkGpu(), checkStorage(needBytes)]);
  const wasm = checkWasm();
  const threads = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  const canRunCore = wasm.available && wasm.simd; // the core (tokenizer, sampling) is wasm even on the GPU
  const notes = [];
  let verdict;
  if (canRunCore && gpu.available && !gpu.fallback && gpuEngine) verdict = 'gpu';
  else if (canRunCore) verdict = 'cpu';
  else verdict = endpoint ? 'server' : 'none';
  if (verdict !== 'server' && verdict !== 'none' && !storage.enough) {
    notes.push(`Not enough storage: the model needs ${formatBytes(needBytes)}, this site may use ${formatBytes(storage.available)} more.`);
    verdict = endpoint ? 'server' : 'none';
  }
  const summary = SUMMARIES[verdict];
  if (verdict === 'gpu' && !gpu.f16) notes.push('Your GPU lacks 16-bit shaders (shader-f16): it runs in 32-bit, a little slower.');
  if (verdict === 'cpu' && gpu.why) notes.push(`No GPU: ${gpu.why}.`);
  else if (verdict === 'cpu' && gpu.available && !gpu.fallback && !gpuEngine) {
    notes.push('This browser has WebGPU, but this build of the engine runs the model on the CPU.');
  }
  if ((verdict === 'cpu' || verdict === 'gpu') && !threads) {
    notes.push('This page is not cross-origin isolated, so the CPU work uses one thread.');
  }
  if (!wasm.available) notes.push('This browser has no WebAssembly.');
  else if (!wasm.simd) notes.push('This browser\'s WebAssembly lacks SIMD, which the model needs.');
  return { gpu, wasm, threads, cores, storage, verdict, summary, notes };
}
