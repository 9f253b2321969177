// The WebGPU backend end to end in headless Chromium (SwiftShader, --enable-unsafe-webgpu):
// createEngine's chain picks WebGPU, the GPU build runs in the engine's Web Worker, and the same
// conversation gives the same greedy text as the WebAssembly CPU engine; helper tasks run on the
// GPU without disturbing the chat; a device loss mid-stream moves the worker's sessions to the CPU
// and the stream, and the conversation after it, go on with the CPU's text. The fixture's weights
// are a tiny story model's, so the text is no answer: the point is that both paths give the same.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT } from '../server/server.mjs';
import { launchBrowser } from '../browser/browser.mjs';

// A trained (tiny) F32 model: its greedy text is varied and its top logits decisive, and the GPU's
// f32 arithmetic agrees with the CPU's to ~1e-5, so whole conversations come out identical.
// (Quantized models are compared row by row, up to near-ties, in the gpu-*.test.mjs files.)
const MODEL = '/fixtures/models/stories260K.gguf';
const N_CTX = 512;
let browser, page, server;

before(async () => {
  assert.ok(fs.existsSync(path.join(REPO_ROOT, 'web/dist/nbl-gpu.mjs')), 'web/dist/nbl-gpu.mjs is missing: run make wasm');
  server = await startServer();
  browser = await launchBrowser({ args: ['--enable-unsafe-webgpu'] });
  page = await browser.newPage();
  await page.goto(`${server.url}/tests/browser/pages/engine.html`);
  await page.waitForFunction(() => window.nblReady === true, null, { timeout: 15000 });
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const call = (fn, ...args) => page.evaluate(fn, ...args);
const logs = () => `\n${browser.logs.slice(-20).join('\n')}`;

const TURN1 = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Name three colours of the rainbow and say why the sky is blue.' },
];
const GREEDY = { max_tokens: 24, temperature: 0 };
const ROUTES = [
  { id: 'code', description: 'programming questions', examples: ['fix my python loop'] },
  { id: 'chat', description: 'small talk', examples: ['how are you today'] },
  { id: 'math', description: 'arithmetic and algebra', examples: ['what is 12 times 7'] },
];

// The whole scenario on one engine: chat, tasks, the next turn (reusing the cache), and a
// stream during which the device is lost, then one more turn. Returns what each step gave.
async function scenario(load, loseAfter) {
  const info = await call((o) => nbl.load(o), load);
  const out = { info };
  const chat = (messages) => call((r) => nbl.chat(r), { messages, ...GREEDY });
  const r1 = await chat(TURN1);
  assert.ok(!r1.error, JSON.stringify(r1.error) + logs());
  out.turn1 = r1.choices[0].message.content;
  out.title = await call(([m]) => nbl.task('title', m), [TURN1]);
  out.route = await call(([m, routes]) => nbl.task('route', m, { routes }), ['how do I sort a list in javascript', ROUTES]);
  const turn2 = [...TURN1, { role: 'assistant', content: out.turn1 }, { role: 'user', content: 'And why are sunsets red?' }];
  const r2 = await chat(turn2);
  assert.ok(!r2.error, JSON.stringify(r2.error) + logs());
  out.turn2 = r2.choices[0].message.content;
  out.turn2Usage = r2.usage;
  const turn3 = [...turn2, { role: 'assistant', content: out.turn2 }, { role: 'user', content: 'Tell me more about light.' }];
  out.turn3 = await call(([r, after]) => nbl.streamLosingDevice(r, after), [{ messages: turn3, ...GREEDY }, loseAfter]);
  assert.equal(out.turn3.error, null, JSON.stringify(out.turn3.error) + logs());
  const turn4 = [...turn3, { role: 'assistant', content: out.turn3.text }, { role: 'user', content: 'Thanks!' }];
  const r4 = await chat(turn4);
  assert.ok(!r4.error, JSON.stringify(r4.error) + logs());
  out.turn4 = r4.choices[0].message.content;
  out.turn4Usage = r4.usage;
  out.titleAfter = await call(([m]) => nbl.task('title', m), [turn4]);
  out.after = await call(() => nbl.info());
  await call(() => nbl.dispose());
  return out;
}

let cpu;

test('the CPU engine gives the reference conversation', async () => {
  cpu = await scenario({ model: MODEL, backends: ['wasm'], nCtx: N_CTX }, 0);
  assert.equal(cpu.info.backend, 'wasm');
  // Enough distinct text that agreeing by chance is out of the question.
  for (const t of [cpu.turn1, cpu.turn3.text, cpu.title]) assert.ok(new Set(t).size >= 8, JSON.stringify(t));
});

test('on WebGPU in the worker: same chat, same tasks, the chat cache kept, and a device loss mid-stream carries on on the CPU', async () => {
  assert.ok(cpu, 'the CPU reference ran');
  const gpu = await scenario({ model: MODEL, nCtx: N_CTX, allowSoftwareGpu: true }, 4);
  // The default chain chose WebGPU, in the worker, on the GPU build.
  assert.equal(gpu.info.backend, 'webgpu', JSON.stringify(gpu.info.fallbacks));
  assert.equal(gpu.info.executor, 'webgpu');
  assert.equal(gpu.info.worker, true);
  assert.ok(gpu.info.gpu.dispatches_per_token > 0 && gpu.info.gpu.bytes > 0);
  // The weights went from the source to the GPU; wasm memory holds only the metadata.
  assert.equal(gpu.info.weights_in_memory, false);
  assert.equal(gpu.turn1, cpu.turn1, 'first turn: GPU and CPU greedy text');
  // Tasks ran on the GPU (task sessions share the executor) and agree with the CPU's.
  assert.equal(gpu.title, cpu.title);
  assert.equal(gpu.route.route, cpu.route.route);
  for (const id of Object.keys(cpu.route.scores)) {
    assert.ok(Math.abs(gpu.route.scores[id] - cpu.route.scores[id]) < 1e-3, `route score ${id}: ${gpu.route.scores[id]} vs ${cpu.route.scores[id]}`);
  }
  // The tasks did not disturb the chat: its next turn reuses the whole first turn from the cache.
  assert.equal(gpu.turn2, cpu.turn2, 'second turn after the tasks');
  assert.equal(gpu.turn2Usage.prompt_tokens_details.cached_tokens, cpu.turn2Usage.prompt_tokens_details.cached_tokens);
  assert.ok(gpu.turn2Usage.prompt_tokens_details.cached_tokens > 30, JSON.stringify(gpu.turn2Usage));
  // The device was lost after four chunks of the third turn: the stream finished on the CPU with
  // the text the CPU alone gives, and the conversation went on there.
  assert.equal(gpu.turn3.text, cpu.turn3.text, 'the stream that lost its device');
  assert.equal(gpu.turn3.info.executor, 'wasm');
  assert.equal(gpu.turn3.info.weights_in_memory, true, 'the CPU read the weights in when it took over');
  assert.match(gpu.turn3.info.fallback_reason, /GPU/);
  assert.equal(gpu.turn4, cpu.turn4, 'the turn after the loss');
  assert.ok(gpu.turn4Usage.prompt_tokens_details.cached_tokens > 0, 'the CPU rebuilt the cache and reuses it');
  assert.equal(gpu.titleAfter, cpu.titleAfter, 'a task after the loss');
  assert.equal(gpu.after.executor, 'wasm');
});

test('a device lost before any request: the first task and the chat run on the CPU, which reads the weights in', async () => {
  assert.ok(cpu, 'the CPU reference ran');
  const info = await call((o) => nbl.load(o), { model: MODEL, nCtx: N_CTX, allowSoftwareGpu: true });
  assert.equal(info.backend, 'webgpu', JSON.stringify(info.fallbacks));
  assert.equal(info.weights_in_memory, false);
  await call(() => nbl.loseDevice());
  const title = await call(([m]) => nbl.task('title', m), [TURN1]);
  assert.equal(title, cpu.title, 'a task made after the loss' + logs());
  const r1 = await call((r) => nbl.chat(r), { messages: TURN1, ...GREEDY });
  assert.ok(!r1.error, JSON.stringify(r1.error) + logs());
  assert.equal(r1.choices[0].message.content, cpu.turn1);
  const after = await call(() => nbl.info());
  assert.equal(after.executor, 'wasm');
  assert.equal(after.weights_in_memory, true);
  await call(() => nbl.dispose());
});

test('without allowSoftwareGpu the chain leaves a software adapter to the CPU build', async () => {
  const info = await call((o) => nbl.load(o), { model: MODEL, nCtx: 128 });
  assert.equal(info.backend, 'wasm');
  assert.match(info.fallbacks.join('\n'), /webgpu: .*software/);
  await call(() => nbl.dispose());
});
