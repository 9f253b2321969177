// End to end in headless Chromium: tests/browser/pages/engine.html loads the fixture model with
// the real Qwen2.5 tokenizer and chat template (random weights: its text is noise, so shapes,
// streaming, usage and cancellation are checked, not content) through web/engine.js, with the
// WebAssembly backend in a Web Worker: streamed chat, abort midway then chat again, on the
// single-threaded build (plain page) and on the threaded one (cross-origin isolated page); then
// a model installed through the store from the catalog.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES_DIR, REPO_ROOT } from '../server/server.mjs';
import { browserSites } from '../browser/browser.mjs';

const FILE = 'qwen2-tiny-realvocab-q8_0.gguf';
const BYTES = fs.readFileSync(path.join(FIXTURES_DIR, 'models', FILE));
before(() => {
  for (const f of ['nbl-st.mjs', 'nbl-mt.mjs']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, 'web/dist', f)), `web/dist/${f} is missing: run make wasm`);
  }
});
const sites = browserSites();
const open = (site) => sites.open(site, '/tests/browser/pages/engine.html', 'nblReady');
const call = (fn, ...args) => sites.page.evaluate(fn, ...args);
const logs = () => sites.browser.logs.slice(-20).join('\n');

const MESSAGES = [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Tell me a long story about a dragon.' }];

async function streamAbortChat(expectThreaded) {
  const info = await call((m) => nbl.load({ model: m, nCtx: 1024 }), `/fixtures/models/${FILE}`);
  assert.equal(info.backend, 'wasm');
  assert.equal(info.worker, true, 'the engine runs in a worker');
  assert.equal(info.threaded, expectThreaded);
  if (expectThreaded) assert.ok(info.threads > 1);
  assert.equal(info.chat_template, 'qwen2.5');
  const prog = await call(() => nbl.progress);
  assert.ok(prog.length > 0 && prog.at(-1).loaded === BYTES.length && prog.at(-1).total === BYTES.length, JSON.stringify(prog.at(-1)));

  // A streamed completion: OpenAI chunks arriving over time, usage at the end.
  const s = await call((m) => nbl.stream({ messages: m, max_tokens: 48, temperature: 0.8, seed: 3, stream_options: { include_usage: true } }), MESSAGES);
  assert.equal(s.error, null, JSON.stringify(s.error) + logs());
  assert.equal(s.chunks[0].object, 'chat.completion.chunk');
  assert.deepEqual(s.chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const content = s.chunks.filter((c) => c.choices[0]?.delta?.content);
  assert.ok(content.length >= 5, `${content.length} content chunks`);
  assert.ok(s.times.at(-1) - s.times[1] > 0, 'chunks arrive one by one');
  const fin = s.chunks.at(-2), usage = s.chunks.at(-1).usage;
  assert.ok(['stop', 'length'].includes(fin.choices[0].finish_reason));
  assert.ok(usage.prompt_tokens > 20 && usage.completion_tokens >= 1 && usage.completion_tokens <= 48, JSON.stringify(usage));
  if (fin.choices[0].finish_reason === 'length') assert.equal(usage.completion_tokens, 48);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  // Reported, not asserted: on a loaded 2-core machine the page itself gets descheduled.
  console.log(`# longest gap of a 5 ms page timer while streaming: ${s.maxGap.toFixed(0)} ms`);

  // Abort after a few chunks: the iteration ends at once with an AbortError.
  const a = await call((m) => nbl.stream({ messages: m, max_tokens: 400, temperature: 0.8, seed: 4 }, 3), MESSAGES);
  assert.equal(a.error?.name, 'AbortError', JSON.stringify(a.error));
  assert.equal(a.chunks.filter((c) => c.choices[0]?.delta?.content !== undefined).length, 3);
  assert.ok(a.abortMs < 50, `abort took ${a.abortMs} ms`);

  // ... and the engine answers the next request, reusing the cached system prompt.
  const r = await call((m) => nbl.chat({ messages: m, max_tokens: 8, temperature: 0 }), [MESSAGES[0], { role: 'user', content: 'Hello again.' }]);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.usage.completion_tokens, r.choices[0].finish_reason === 'length' ? 8 : r.usage.completion_tokens);
  assert.ok(r.usage.prompt_tokens_details.cached_tokens >= 10, JSON.stringify(r.usage));
  await call(() => nbl.dispose());
}

test('worker engine on the single-threaded build: stream, abort midway, chat again', async () => {
  await open(sites.plain);
  assert.equal(await call(() => nbl.isolated()), false);
  await streamAbortChat(false);
});

test('the same engine in the page (worker: false) streams too', async () => {
  await open(sites.plain);
  const info = await call((m) => nbl.load({ model: m, nCtx: 256, worker: false }), `/fixtures/models/${FILE}`);
  assert.equal(info.worker, undefined);
  assert.equal(info.threaded, false);
  const s = await call(() => nbl.stream({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0 }));
  assert.equal(s.error, null, JSON.stringify(s.error));
  assert.ok(['stop', 'length'].includes(s.chunks.at(-1).choices[0].finish_reason));
  await call(() => nbl.dispose());
});

test('worker engine on the threaded build (COOP/COEP): stream, abort midway, chat again', async () => {
  await open(sites.isolated);
  assert.equal(await call(() => nbl.isolated()), true);
  await streamAbortChat(true);
});

test('a catalog model is installed through the store with progress, then chats; a second load does not download', async () => {
  await open(sites.isolated);
  const id = 'tiny-realvocab-test';
  const catalog = {
    version: 1, default: id,
    models: [{
      id, name: 'Tiny real-vocabulary test model', description: 'Fixture with random weights.',
      url: `${sites.isolated.url}/fixtures/models/${FILE}`, size: BYTES.length,
      sha256: createHash('sha256').update(BYTES).digest('hex'),
      architecture: 'qwen2', quantization: 'Q8_0', context: 4096,
      sampling: { temperature: 0.7, top_p: 0.8, top_k: 20, repeat_penalty: 1.1 }, license: 'MIT',
    }],
  };
  const before = sites.isolated.log.length;
  const info = await call((c) => nbl.load({ model: c.default, catalog: c, nCtx: 512 }), catalog);
  assert.equal(info.model, id);
  const prog = await call(() => nbl.progress);
  assert.ok(prog.some((p) => p.phase === 'download'), 'download progress');
  assert.ok(prog.some((p) => p.phase === 'load'), 'load progress');
  const fetched = sites.isolated.log.slice(before).filter((e) => e.path?.includes(FILE) || e.url?.includes(FILE));
  assert.ok(fetched.length >= 1, 'the model was downloaded');
  const r = await call(() => nbl.chat({ messages: [{ role: 'user', content: 'Hi!' }], max_tokens: 6 }));
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.model, id);
  assert.ok(r.usage.completion_tokens >= 1);
  // Installed now: loading again reads it from storage without a request for the model.
  const mark = sites.isolated.log.length;
  await call((c) => nbl.load({ model: c.default, catalog: c, nCtx: 512 }), catalog);
  assert.equal(sites.isolated.log.slice(mark).filter((e) => (e.path ?? e.url ?? '').includes(FILE)).length, 0);
  await call(() => nbl.dispose());
});
