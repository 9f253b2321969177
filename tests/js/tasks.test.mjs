// Helper tasks through the public JS API (engine.tasks.*) in headless Chromium, on the
// WebAssembly engine in its Web Worker, with the fixture model that has the real Qwen2.5
// tokenizer and chat template (random weights: outputs are noise, so their shape is checked):
// every output keeps its documented form, routing scores are a distribution, an aborted task
// rejects, and a chat running alongside keeps its conversation (same answer, cache reused).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT } from '../server/server.mjs';
import { launchBrowser } from '../browser/browser.mjs';

const FILE = 'qwen2-tiny-realvocab-q8_0.gguf';
// The wasm builds to load (make wasm writes web/dist).
const DIST = process.env.NBL_WASM_DIST ?? 'web/dist';
let browser, page, site, isolated;

before(async () => {
  for (const f of ['nbl-st.mjs', 'nbl-st.wasm']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, DIST, f)), `${DIST}/${f} is missing: run make wasm`);
  }
  site = await startServer();
  isolated = await startServer({ coopCoep: true });
  browser = await launchBrowser();
  page = await browser.newPage();
  await page.goto(`${site.url}/tests/browser/pages/tasks.html`);
  await page.waitForFunction(() => window.nblReady === true, null, { timeout: 15000 });
});
after(async () => {
  await page?.evaluate(() => nbl.dispose()).catch(() => {});
  await browser?.close();
  await site?.close();
  await isolated?.close();
});

const call = (fn, ...args) => page.evaluate(fn, ...args);
const logs = () => browser.logs.slice(-20).join('\n');

const CONV = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: "I'm Sam, a teacher in Oslo. How do I bake bread?" },
  { role: 'assistant', content: 'Mix flour, water, salt and yeast, knead, let it rise, then bake at 230 C.' },
  { role: 'user', content: 'Can I use whole wheat flour?' },
];
const ROUTES = [
  { id: 'code', description: 'programming and debugging', examples: ['fix this python traceback'] },
  { id: 'math', description: 'calculations', examples: ['integrate x^2'] },
  { id: 'general', description: 'everything else' },
];
const SAMPLING = { temperature: 1, top_k: 40, maxTokens: 8 };

function checkTitle(t, maxWords) {
  assert.equal(typeof t, 'string');
  assert.ok(t.length > 0 && new TextEncoder().encode(t).length <= 80, JSON.stringify(t));
  assert.ok(!/^\s|\s$|\s\s|[\n\r\t"`*#<>{}[\]|\\~^\u201c\u201d\u2018\u2019\u00ab\u00bb]/.test(t), JSON.stringify(t));
  assert.ok(t.split(' ').length <= maxWords, `${JSON.stringify(t)}: more than ${maxWords} words`);
  assert.ok(!/[.,;:\-']$/.test(t), `${JSON.stringify(t)} ends in punctuation`);
}

const norm = (s) => s.toLowerCase().replace(/[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]/g, '');

test('engine.tasks: outputs keep their documented shape', async () => {
  const r = await call((a) => nbl.load({ model: a.model, nCtx: 1024, dist: a.dist }).catch((e) => ({ error: e.message })),
    { model: `/fixtures/models/${FILE}`, dist: `/${DIST}/` });
  assert.equal(r.error, undefined, r.error + logs());
  assert.equal(r.info.worker, true, 'the engine runs in a worker');
  assert.deepEqual(r.tasks, ['memory', 'quickReplies', 'route', 'title']);

  for (let seed = 1; seed <= 4; seed++) {
    const maxWords = 1 + (seed % 5);
    const t = await call((a) => nbl.task('title', a.c, { ...a.s, seed: a.seed, maxWords: a.w }), { c: CONV, s: SAMPLING, seed, w: maxWords });
    assert.equal(t.error, undefined, JSON.stringify(t.error) + logs());
    checkTitle(t.value, maxWords);

    const q = await call((a) => nbl.task('quickReplies', a.c, { ...a.s, seed: a.seed, n: a.n }), { c: CONV, s: SAMPLING, seed, n: 1 + (seed % 3) });
    assert.equal(q.error, undefined, JSON.stringify(q.error));
    assert.ok(Array.isArray(q.value) && q.value.length <= 1 + (seed % 3), JSON.stringify(q.value));
    for (const s of q.value) {
      assert.equal(typeof s, 'string');
      assert.ok([...s].length >= 1 && [...s].length <= 60 && s === s.trim() && !/[\x00-\x1f]/.test(s), JSON.stringify(s));
    }
    assert.equal(new Set(q.value.map(norm)).size, q.value.length, 'distinct replies');

    const existing = ['Lives in Oslo', { fact: 'Is a teacher' }];
    const m = await call((a) => nbl.task('memory', a.c, { ...a.s, seed: a.seed, existing: a.e, maxItems: 2 }), { c: CONV, s: SAMPLING, seed, e: existing });
    assert.equal(m.error, undefined, JSON.stringify(m.error));
    assert.ok(Array.isArray(m.value) && m.value.length <= 2, JSON.stringify(m.value));
    const cats = ['identity', 'preference', 'work', 'location', 'relationship', 'health', 'goal', 'other'];
    for (const f of m.value) {
      assert.deepEqual(Object.keys(f), ['fact', 'category', 'confidence']);
      assert.ok([...f.fact].length >= 3 && [...f.fact].length <= 120, JSON.stringify(f));
      assert.ok(cats.includes(f.category) && f.confidence >= 0 && f.confidence <= 1, JSON.stringify(f));
      assert.ok(!['livesinoslo', 'isateacher'].includes(norm(f.fact)), 'an existing fact came back');
    }
  }

  const ro = await call((a) => nbl.task('route', 'how do I reverse a linked list in C?', { routes: a }), ROUTES);
  assert.equal(ro.error, undefined, JSON.stringify(ro.error));
  const { route, scores, best, confidence } = ro.value;
  assert.equal(scores.length, 3);
  assert.ok(Math.abs(scores.reduce((a, b) => a + b, 0) - 1) < 1e-4, JSON.stringify(scores));
  assert.equal(route, ROUTES[best].id);
  assert.equal(confidence, Math.max(...scores));
  // Deterministic: the same question gets the same scores.
  const again = await call((a) => nbl.task('route', 'how do I reverse a linked list in C?', { routes: a }), ROUTES);
  assert.deepEqual(again.value.scores.map((x) => x.toFixed(4)), scores.map((x) => x.toFixed(4)));
  // Under the threshold, the fallback.
  const fb = await call((a) => nbl.task('route', 'hello', { routes: a, threshold: 1, fallback: 'server' }), ROUTES.concat([{ id: 'code' }]));
  assert.equal(fb.error, undefined, JSON.stringify(fb.error));
  assert.equal(fb.value.route, 'server');
  assert.equal(fb.value.fallback, true);

  // Errors come back as errors; an aborted task rejects with AbortError.
  const bad = await call((c) => nbl.task('quickReplies', c, { n: 9 }), CONV);
  assert.match(bad.error?.message ?? '', /n 9 is outside/);
  const ab = await call((c) => nbl.aborted('title', c, {}), CONV);
  assert.equal(ab.error?.name, 'AbortError');
});

test('engine.tasks: a chat alongside keeps its conversation', async () => {
  const req = { messages: CONV, max_tokens: 12, temperature: 0 };
  const first = await call((q) => nbl.chat(q), req);
  assert.equal(first.error, undefined, JSON.stringify(first.error) + logs());
  const answer = first.value.choices[0].message.content;

  // Tasks in between, and tasks started while the same chat streams.
  const tasks = [
    ['title', CONV, SAMPLING],
    ['quickReplies', CONV, { ...SAMPLING, n: 2 }],
    ['memory', CONV, { ...SAMPLING, existing: [] }],
    ['route', 'integrate x^2 from 0 to 1', { routes: ROUTES }],
  ];
  const both = await call((a) => nbl.interleaved(a.req, a.tasks), { req, tasks });
  assert.equal(both.stream.error, undefined, JSON.stringify(both.stream.error));
  for (const r of both.results) assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(both.stream.value.text, answer, 'the streamed answer equals the first one');

  // The chat's KV cache survived the tasks: the follow-up reuses the whole earlier prompt.
  const follow = { messages: [...CONV, { role: 'assistant', content: answer }, { role: 'user', content: 'Thanks!' }], max_tokens: 4, temperature: 0 };
  for (const [name, ...args] of tasks) await call((a) => nbl.task(a.name, ...a.args), { name, args });
  const f = await call((q) => nbl.chat(q), follow);
  assert.equal(f.error, undefined, JSON.stringify(f.error));
  const cached = f.value.usage.prompt_tokens_details.cached_tokens;
  // (The answer's first token may merge with the template's newline when re-tokenized.)
  assert.ok(cached >= first.value.usage.prompt_tokens - 1, `only ${cached} of the chat's ${first.value.usage.prompt_tokens} prompt tokens were still cached`);
  const again = await call((q) => nbl.chat(q), req);
  assert.equal(again.value.choices[0].message.content, answer, 'same question, same answer');
  assert.ok(again.value.usage.prompt_tokens > 20);
});

test('engine.tasks: on the threaded build (cross-origin isolated page)', async () => {
  await page.evaluate(() => nbl.dispose());
  await page.goto(`${isolated.url}/tests/browser/pages/tasks.html`);
  await page.waitForFunction(() => window.nblReady === true, null, { timeout: 15000 });
  const r = await call((a) => nbl.load({ model: a.model, nCtx: 1024, dist: a.dist, threads: 2 }).catch((e) => ({ error: e.message })),
    { model: `/fixtures/models/${FILE}`, dist: `/${DIST}/` });
  assert.equal(r.error, undefined, r.error + logs());
  assert.equal(r.info.threaded, true);
  const req = { messages: CONV, max_tokens: 8, temperature: 0 };
  const first = await call((q) => nbl.chat(q), req);
  const t = await call((c) => nbl.task('title', c, { maxTokens: 6 }), CONV);
  assert.equal(t.error, undefined, JSON.stringify(t.error));
  checkTitle(t.value, 6);
  const ro = await call((a) => nbl.task('route', 'what is 2+2?', { routes: a }), ROUTES);
  assert.equal(ro.error, undefined, JSON.stringify(ro.error));
  const again = await call((q) => nbl.chat(q), req);
  assert.equal(again.value.choices[0].message.content, first.value.choices[0].message.content);
});
