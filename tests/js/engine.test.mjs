// The engine's OpenAI-compatible API on the WebAssembly build, in node (the backend in-process;
// the worker-hosted variant runs in tests/js/browser-engine.test.mjs). The fixture model has the
// real Qwen2.5 tokenizer and chat template but random weights, so its text is noise: the tests
// check shapes, token accounting against the tokenizer, prefix caching, dropping of old turns,
// stop strings, cancellation and memory limits, not what the model says.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES_DIR } from '../server/server.mjs';
import { createEngine, requestParams } from '../../web/engine.js';
import { loadCore } from '../../web/core.js';

const MODEL = path.join(FIXTURES_DIR, 'models/qwen2-tiny-realvocab-q8_0.gguf');
const BYTES = fs.readFileSync(MODEL);
const greedy = { temperature: 0, seed: 7 };
let engine;

before(async () => { engine = await createEngine({ model: BYTES, worker: false, threads: 1, nCtx: 512 }); });
after(async () => { await engine?.dispose(); });

// Prompt tokens as the tokenizer counts them for the chat-formatted text (an outside count: the
// template renders, the tokenizer parses control tokens in it; the fixture's user texts have none).
async function promptTokens(messages) {
  const text = await engine.renderChat(messages);
  return (await engine.tokenize(text, { parseSpecial: true })).length;
}

test('info describes the model and the backend', () => {
  assert.equal(engine.info.arch, 'qwen2');
  assert.equal(engine.info.n_vocab, 151936);
  assert.equal(engine.info.chat_template, 'qwen2.5');
  assert.equal(engine.info.backend, 'wasm');
  assert.equal(engine.info.threaded, false);
  assert.equal(engine.info.n_ctx, 512);
});

test('non-streaming completion has OpenAI\'s shape and counts tokens', async () => {
  await engine.resetChat();
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name three colours.' }];
  const r = await engine.chat.completions.create({ messages, max_tokens: 12, ...greedy });
  assert.match(r.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(r.object, 'chat.completion');
  assert.ok(Number.isInteger(r.created) && Math.abs(r.created - Date.now() / 1000) < 60);
  assert.equal(r.model, 'model');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.equal(r.usage.prompt_tokens, await promptTokens(messages));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 12);
  else assert.ok(r.usage.completion_tokens <= 12);
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(r.usage.dropped_messages, 0);
});

test('streaming yields chat.completion.chunk deltas that add up to the same text', async () => {
  const messages = [{ role: 'user', content: 'Count from one to ten.' }];
  await engine.resetChat();
  const whole = await engine.chat.completions.create({ messages, max_tokens: 16, ...greedy });
  await engine.resetChat();
  const stream = await engine.chat.completions.create({ messages, max_tokens: 16, ...greedy, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const content = chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? '').join('');
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id);
  }
  const last = chunks.at(-1), fin = chunks.at(-2);
  assert.deepEqual(last.choices, []);
  assert.equal(fin.choices[0].finish_reason, whole.choices[0].finish_reason);
  assert.ok(chunks.slice(0, -2).every((c) => c.choices[0].finish_reason === null));
  assert.equal(content, whole.choices[0].message.content);
  assert.deepEqual(last.usage, whole.usage);
  assert.deepEqual(stream.usage, whole.usage);
  assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
});

test('a follow-up turn reuses the cached conversation prefix', async () => {
  await engine.resetChat();
  const m1 = [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'What is a cat?' }];
  const r1 = await engine.chat.completions.create({ messages: m1, max_tokens: 8, ...greedy });
  const m2 = [...m1, r1.choices[0].message, { role: 'user', content: 'And a dog?' }];
  const r2 = await engine.chat.completions.create({ messages: m2, max_tokens: 8, ...greedy });
  assert.equal(r2.usage.prompt_tokens, await promptTokens(m2));
  // The cache holds turn one's prompt and reply: at least the tokens the two prompts share are
  // reused (the reply's tokens may re-tokenize differently once the template closes the turn).
  const tok = async (m) => engine.tokenize(await engine.renderChat(m), { parseSpecial: true });
  const [p1, p2] = [await tok(m1), await tok(m2)];
  let shared = 0;
  while (shared < p1.length && p1[shared] === p2[shared]) shared++;
  const cached = r2.usage.prompt_tokens_details.cached_tokens;
  assert.ok(shared >= p1.length - 2 && cached >= shared && cached < p2.length,
    `cached ${cached} of ${p2.length}; the prompts share ${shared}, turn one had ${p1.length}`);
});

test('a conversation longer than the context drops its oldest turns and keeps the system prompt', async () => {
  const small = await createEngine({ model: BYTES, worker: false, threads: 1, nCtx: 160 });
  try {
    const messages = [{ role: 'system', content: 'You are a helpful assistant.' }];
    for (let i = 0; i < 12; i++) {
      messages.push({ role: 'user', content: `Question number ${i}: what is ${i} plus ${i}?` });
      messages.push({ role: 'assistant', content: `The answer to question ${i} is ${2 * i}.` });
    }
    messages.push({ role: 'user', content: 'Summarise our conversation.' });
    const r = await small.chat.completions.create({ messages, max_tokens: 16, ...greedy });
    const d = r.usage.dropped_messages;
    assert.ok(d > 0 && d % 2 === 0, `dropped ${d}`);
    const kept = [messages[0], ...messages.slice(1 + d)];
    const count = (await small.tokenize(await small.renderChat(kept), { parseSpecial: true })).length;
    assert.equal(r.usage.prompt_tokens, count, 'the prompt is the system prompt plus the newest turns');
    assert.ok(count + 16 <= 160, 'with room for the reply');
    const fewer = [messages[0], ...messages.slice(1 + d - 2)];
    const more = (await small.tokenize(await small.renderChat(fewer), { parseSpecial: true })).length;
    assert.ok(more > 160 - 16, 'no more turns were dropped than needed');
    // A last message that cannot fit even alone is an error naming the context.
    await assert.rejects(small.chat.completions.create({ messages: [{ role: 'user', content: 'word '.repeat(400) }], max_tokens: 16 }),
      (e) => e.code === 'context' && /context/.test(e.message));
    const ok = await small.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, ...greedy });
    assert.equal(ok.usage.dropped_messages, 0);
  } finally {
    await small.dispose();
  }
});

test('stop strings end the text before the first match', async () => {
  const messages = [{ role: 'user', content: 'Write a long sentence.' }];
  // Seeded sampling (greedy noise from random weights is mostly newlines) gives varied text.
  let free = '', stop = '', at = -1, sampling;
  for (let seed = 1; seed < 20 && at < 0; seed++) {
    sampling = { temperature: 1, seed };
    await engine.resetChat();
    free = (await engine.chat.completions.create({ messages, max_tokens: 40, ...sampling })).choices[0].message.content;
    for (let i = Math.floor(free.length / 3); i + 3 <= free.length && at < 0; i++) {
      const cand = free.slice(i, i + 3);
      if (cand.trim().length === 3) { stop = cand; at = free.indexOf(cand); }
    }
  }
  assert.ok(at > 0, `no printable text to stop on: ${JSON.stringify(free)}`);
  await engine.resetChat();
  const r = await engine.chat.completions.create({ messages, max_tokens: 40, ...sampling, stop: [stop, 'never-there'] });
  assert.equal(r.choices[0].message.content, free.slice(0, at));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('abort stops a stream at once and leaves the engine usable', async () => {
  const ac = new AbortController();
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 200, stream: true, signal: ac.signal, temperature: 0.9, seed: 1,
  });
  let n = 0;
  await assert.rejects((async () => {
    for await (const ch of stream) {
      if (ch.choices[0]?.delta?.content !== undefined && ++n === 4) ac.abort();
    }
  })(), { name: 'AbortError' });
  assert.equal(n, 4);
  // A non-streaming request aborted before it starts rejects too.
  await assert.rejects(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], signal: AbortSignal.abort() }), { name: 'AbortError' });
  const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Again?' }], max_tokens: 5, ...greedy });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
  // Leaving a stream early (break) also stops its generation.
  const s2 = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'More.' }], max_tokens: 200, stream: true });
  for await (const ch of s2) if (ch.choices[0]?.delta?.content) break;
  assert.equal(s2.signal.aborted, true);
  const r3 = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Once more.' }], max_tokens: 3, ...greedy });
  assert.equal(r3.usage.completion_tokens, 3);
});

test('seeded sampling is reproducible; requests are validated', async () => {
  const req = { messages: [{ role: 'user', content: 'Pick a word.' }], max_tokens: 10, temperature: 1, top_p: 0.95, seed: 1234 };
  await engine.resetChat();
  const a = (await engine.chat.completions.create(req)).choices[0].message.content;
  await engine.resetChat();
  const b = (await engine.chat.completions.create(req)).choices[0].message.content;
  assert.equal(a, b);
  const bad = (extra) => assert.rejects(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], ...extra }), TypeError);
  await bad({ n: 2 });
  await bad({ temperature: -1 });
  await bad({ max_tokens: 0 });
  await bad({ stop: [''] });
  await bad({ messages: [] });
  await bad({ messages: [{ content: 'no role' }] });
  await bad({ frequency_penalty: 0.5 });
  assert.deepEqual(requestParams({ max_completion_tokens: 5, seed: 3, stop: 'x', repetition_penalty: 1.1 }, { temperature: 0.7, top_k: null }),
    { temperature: 0.7, max_tokens: 5, repeat_penalty: 1.1, seed: 3, stop: ['x'] });
  // Content given as OpenAI text parts is joined.
  await engine.resetChat();
  const parts = await engine.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Pick ' }, { type: 'text', text: 'a word.' }] }], max_tokens: 10, temperature: 1, top_p: 0.95, seed: 1234 });
  assert.equal(parts.choices[0].message.content, a);
});

test('a model larger than WebAssembly memory fails with a clear message before allocating', async () => {
  const core = await loadCore({ threads: 1 });
  const before = core.memory().used;
  assert.throws(() => core.allocModel(5 * 2 ** 30), /does not fit in WebAssembly memory: the limit is 4096 MiB/);
  assert.throws(() => core.allocModel(core.memory().max - before), /does not fit/);
  assert.equal(core.memory().used, before, 'nothing was allocated');
  // Through openModel with a stream: refused before a single byte is read.
  let pulled = 0;
  const stream = new ReadableStream({ pull(c) { pulled++; c.enqueue(new Uint8Array(1 << 20)); } }, { highWaterMark: 0 });
  await assert.rejects(core.openModel({ size: 4 * 2 ** 30, stream }), /does not fit/);
  assert.equal(pulled, 0);
  // A model that fits loads from a Blob stream straight into wasm memory.
  const m = await core.openModel(new Blob([BYTES]));
  assert.equal(m.info.n_vocab, 151936);
  m.dispose();
  // Malformed bytes are a format error that names the problem.
  await assert.rejects(core.openModel(new Uint8Array(64)), (e) => e.code === 'format' && /gguf|magic/i.test(e.message));
});

test('buffers beyond 2 GiB: a model region larger than malloc allows, and pointers above 2^31', async () => {
  const core = await loadCore({ threads: 1 });
  const size = 2.5 * 2 ** 30; // dlmalloc alone cannot allocate 2 GiB or more
  const p = core.allocModel(size);
  core.heapU8[p + size - 1] = 42;
  assert.equal(core.heapU8[p + size - 1], 42);
  core.mod._nblw_model_bytes_free(p);
  assert.equal(core.allocModel(2 * 2 ** 30), p, 'the region is reused for the next big model');
  // Larger allocations now sit above 2^31: the model's bytes, the KV cache, the logits.
  const high = await core.openModel(BYTES);
  const s = high.core.newSession(high, { nCtx: 64 });
  const ids = high.tokenize('The quick brown fox');
  s.eval(ids);
  assert.ok((core.mod._nblw_logits(s.h, -1) >>> 0) > 2 ** 31, 'the logits live above 2 GiB');
  const hiLogits = s.logits();
  // The same evaluation in a fresh core at low addresses gives the same logits, bit for bit.
  const low = await loadCore({ threads: 1 });
  const lm = await low.openModel(BYTES);
  const ls = low.newSession(lm, { nCtx: 64 });
  ls.eval(ids);
  assert.deepEqual(hiLogits, ls.logits());
  s.startTokens(ids, { temperature: 0, max_tokens: 3 });
  ls.startTokens(ids, { temperature: 0, max_tokens: 3 });
  for (let k = 0; k < 3; k++) assert.deepEqual(s.next(), ls.next());
  assert.deepEqual(s.usage(), ls.usage());
  s.dispose(); high.dispose(); ls.dispose(); lm.dispose();
});

test('response_format reaches the grammar engine: the output parses and fits the schema', async () => {
  const messages = [{ role: 'user', content: 'Give me JSON.' }];
  for (const seed of [1, 2, 3]) {
    const o = await engine.chat.completions.create({ messages, max_tokens: 64, temperature: 1, seed, response_format: { type: 'json_object' } });
    const v = JSON.parse(o.choices[0].message.content);
    assert.equal(typeof v, 'object');
    assert.ok(v !== null && !Array.isArray(v));
    const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 9 }, ok: { type: 'boolean' } }, required: ['n', 'ok'] };
    const r = await engine.chat.completions.create({ messages, max_tokens: 64, temperature: 1, seed, response_format: { type: 'json_schema', json_schema: { name: 't', schema } } });
    const w = JSON.parse(r.choices[0].message.content);
    assert.deepEqual(Object.keys(w), ['n', 'ok']);
    assert.ok(Number.isInteger(w.n) && w.n >= 0 && w.n <= 9 && typeof w.ok === 'boolean', JSON.stringify(w));
    assert.equal(r.choices[0].finish_reason, 'stop');
  }
  await assert.rejects(engine.chat.completions.create({ messages, response_format: { type: 'json_schema', json_schema: { name: 't', schema: { type: 'string', pattern: 'x' } } } }),
    (e) => /pattern/.test(e.message));
});
