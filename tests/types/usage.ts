// Type-checks the public API's declarations (web/*.d.ts) the way a site would use them; compiled
// with `tsc --noEmit` by tests/js/types.test.mjs, never run. A declaration that drifts from this
// use (a renamed option, a wrong return type) fails the test.

import { createEngine, registerBackend, hasBackend, type Engine, type ChatCompletionChunk, type FallbackEvent } from '../../web/engine.js';
import { createStore } from '../../web/store.js';
import { GpuBackend } from '../../web/gpu-backend.js';
import { RemoteBackend } from '../../web/remote-backend.js';
import { WasmBackend } from '../../web/wasm-backend.js';
import { findModel, assertCatalog } from '../../web/catalog.js';

export async function site(): Promise<string> {
  const store = createStore();
  const lost: FallbackEvent[] = [];
  const engine: Engine = await createEngine({
    model: 'qwen2.5-0.5b-instruct-q4_0',
    store,
    onProgress: (p) => { if (p.phase === 'gpu' || p.phase === 'download') void p.loaded; },
    backends: ['webgpu', 'wasm', 'remote'],
    remote: { url: 'https://example.com/v1', model: 'big', headers: { authorization: 'Bearer x' } },
    onFallback: (ev) => { lost.push(ev); },
    f16: 'auto',
    subgroups: false,
    threads: 'auto',
    nCtx: 2048,
  });
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'Hi' }], stream: true, max_tokens: 32, stop: ['\n'],
    response_format: { type: 'json_schema', json_schema: { schema: { type: 'object' } } },
  });
  let text = '';
  for await (const c of stream) {
    const chunk: ChatCompletionChunk = c;
    text += chunk.choices[0]?.delta.content ?? '';
  }
  const done = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }] });
  text += done.choices[0].message.content + done.usage.prompt_tokens_details.cached_tokens;
  const executor: 'webgpu' | 'wasm' | undefined = engine.info.executor;
  const why: string[] = engine.info.fallbacks;
  const dispatches: number | undefined = engine.info.gpu?.dispatches_per_token;
  void executor; void why; void dispatches;
  const title = await engine.tasks.title?.([{ role: 'user', content: 'Trip to Rome' }]);
  void title;
  await engine.dispose();
  return text;
}

export async function backends(bytes: ArrayBuffer, gpu: GPU): Promise<void> {
  const g = await GpuBackend.create({ model: bytes, gpu, allowSoftwareGpu: true, onFallback: (ev) => void ev.reason });
  const d: number = g.info.gpu.dispatches_per_token;
  void d;
  g.loseDevice();
  const w = await WasmBackend.create({ model: bytes, threads: 2 });
  const toks: number[] = await w.tokenize('hello');
  void toks;
  const r = await RemoteBackend.create({ remote: { url: 'https://example.com/v1' } });
  await r.generate({ messages: [{ role: 'user', content: 'x' }], params: { seed: 1 } }, { onDelta: (t) => void t });
  const ok: boolean = hasBackend('webgpu');
  void ok;
  registerBackend('mine', { available: () => true, create: async () => r });
  const cat = assertCatalog({});
  void findModel(cat, 'x');
}

export async function tasks(engine: Engine): Promise<void> {
  const t = engine.tasks;
  if (!t.title || !t.quickReplies || !t.memory || !t.route) return;
  const msgs = [{ role: 'user', content: 'I moved to Lyon and I am vegetarian.' }];
  const title: string = await t.title(msgs);
  const replies: string[] = await t.quickReplies(msgs, { n: 3 });
  const facts = await t.memory(msgs, { existing: ['Lives in Paris'] });
  const r = await t.route('Prove this lemma', { routes: [{ id: 'math', description: 'Mathematics' }, { id: 'chat', description: 'Small talk' }] });
  void title; void replies; void facts.map((f) => f.fact + f.category + f.confidence); void r.route;
}
