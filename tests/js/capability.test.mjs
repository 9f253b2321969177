// The product page's capability check (web/demo/capability.js) without a browser: a stub
// navigator.gpu stands in for an adapter. The verdict says "GPU" only where the engine can use it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkCapabilities, SUMMARIES } from '../../web/demo/capability.js';

function withGpu(adapter, fn) {
  const had = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', {
    configurable: true,
    value: { hardwareConcurrency: 2, gpu: { requestAdapter: async () => adapter } },
  });
  return fn().finally(() => {
    if (had) Object.defineProperty(globalThis, 'navigator', had);
    else delete globalThis.navigator;
  });
}

const adapter = (features = [], fallback = false) => ({ features: new Set(features), isFallbackAdapter: fallback, info: { vendor: 'test' } });

test('a usable GPU is "Runs on your GPU" only when the engine has a WebGPU backend', async () => {
  await withGpu(adapter(['shader-f16']), async () => {
    const on = await checkCapabilities({ gpuEngine: true });
    assert.equal(on.verdict, 'gpu');
    assert.equal(on.summary, SUMMARIES.gpu);
    const off = await checkCapabilities({ gpuEngine: false });
    assert.equal(off.verdict, 'cpu');
    assert.equal(off.summary, SUMMARIES.cpu);
    assert.ok(off.gpu.available, 'the GPU is still reported');
    assert.ok(off.notes.some((n) => /runs the model on the CPU/.test(n)), JSON.stringify(off.notes));
  });
});

test('no adapter, or a software fallback adapter, means the CPU', async () => {
  await withGpu(null, async () => {
    const c = await checkCapabilities({ gpuEngine: true });
    assert.equal(c.verdict, 'cpu');
    assert.ok(c.notes.some((n) => /^No GPU: /.test(n)), JSON.stringify(c.notes));
  });
  await withGpu(adapter([], true), async () => {
    assert.equal((await checkCapabilities({ gpuEngine: true })).verdict, 'cpu');
  });
});

test('a GPU without shader-f16 says it runs in 32-bit', async () => {
  await withGpu(adapter([]), async () => {
    const c = await checkCapabilities({ gpuEngine: true });
    assert.equal(c.verdict, 'gpu');
    assert.ok(c.notes.some((n) => /shader-f16/.test(n)), JSON.stringify(c.notes));
  });
});
