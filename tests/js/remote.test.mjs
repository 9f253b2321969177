// The remote backend, the fallback chain's last link: against a local OpenAI-compatible stand-in
// server (127.0.0.1, server-sent events) it streams deltas, forwards the request's parameters,
// passes usage through, cancels at once and stays usable, and reports HTTP errors clearly; and
// createEngine reaches it only when the local backends cannot run the model (and not at all when
// the site configures none).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createEngine } from '../../web/engine.js';
import { RemoteBackend } from '../../web/remote-backend.js';

let server, base;
const requests = []; // bodies of POST /v1/chat/completions, in order
let closedEarly = 0; // streams the client closed before the end

// Modes, chosen by the request's model: 'ok' streams "Hel", "lo", " there" and usage; 'slow'
// streams a delta every 20 ms until the client goes; 'fail' answers 503 with an OpenAI error.
function handle(req, res) {
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404).end();
    return;
  }
  let raw = '';
  req.on('data', (d) => { raw += d; });
  req.on('end', () => {
    const body = JSON.parse(raw);
    requests.push({ body, headers: req.headers });
    if (body.model === 'fail') {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'overloaded, try later' } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (o) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    const delta = (content, finish = null) => send({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: finish }] });
    if (body.model === 'slow') {
      let n = 0;
      const t = setInterval(() => delta(`w${n++} `), 20);
      res.on('close', () => { clearInterval(t); if (!res.writableEnded) closedEarly++; });
      return;
    }
    send({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    delta('Hel');
    // An event split across two writes, and CRLF line ends, as proxies produce.
    const ev = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'lo' }, finish_reason: null }] })}\r\n\r\n`;
    res.write(ev.slice(0, 9));
    setTimeout(() => {
      res.write(ev.slice(9));
      delta(' there', body.max_tokens === 3 ? 'length' : 'stop');
      send({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, prompt_tokens_details: { cached_tokens: 4 } } });
      res.end('data: [DONE]\n\n');
    }, 10);
  });
}

before(async () => {
  server = http.createServer(handle);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(async () => {
  server.closeAllConnections?.();
  await new Promise((r) => server.close(r));
});

const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
// A model URL that 404s: the wasm backend cannot load it, so the chain moves on.
const missing = () => `${base}/models/absent.gguf`;

test('the chain falls through to the remote endpoint when no local backend can load the model', async () => {
  const engine = await createEngine({
    model: missing(), worker: false, backends: ['webgpu', 'wasm', 'remote'],
    remote: { url: `${base}/v1/`, model: 'ok', headers: { authorization: 'Bearer k1' } },
  });
  try {
    assert.equal(engine.info.backend, 'remote');
    assert.equal(engine.info.fallbacks.length, 1, 'webgpu is unavailable in node, so only wasm failed');
    assert.match(engine.info.fallbacks[0], /^wasm: .*404/);

    const stream = await engine.chat.completions.create({
      messages, stream: true, stream_options: { include_usage: true }, max_tokens: 20, temperature: 0.3, seed: 5, stop: ['END'],
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Hello there');
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
    assert.deepEqual(chunks.at(-1).usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, prompt_tokens_details: { cached_tokens: 4 }, dropped_messages: 0 });

    const sent = requests.at(-1);
    assert.equal(sent.headers.authorization, 'Bearer k1');
    assert.equal(sent.body.model, 'ok');
    assert.equal(sent.body.stream, true);
    assert.deepEqual(sent.body.messages, messages);
    assert.equal(sent.body.max_tokens, 20);
    assert.equal(sent.body.temperature, 0.3);
    assert.equal(sent.body.seed, 5);
    assert.deepEqual(sent.body.stop, ['END']);

    const done = await engine.chat.completions.create({ messages, max_tokens: 3 });
    assert.equal(done.choices[0].message.content, 'Hello there');
    assert.equal(done.choices[0].finish_reason, 'length');
    assert.equal(done.usage.prompt_tokens, 11);
    assert.equal(engine.tasks.title, undefined, 'helper tasks stay on the device: none on a remote backend');
    await assert.rejects(engine.tokenize('x'), /not available on a remote backend/);
  } finally {
    await engine.dispose();
  }
});

test('response_format is forwarded', async () => {
  const b = await RemoteBackend.create({ remote: { url: `${base}/v1`, model: 'ok' } });
  const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] };
  await b.generate({ messages, params: { seed: 1, response_format: { type: 'json_schema', schema_text: JSON.stringify(schema) } } }, {});
  assert.deepEqual(requests.at(-1).body.response_format, { type: 'json_schema', json_schema: { name: 'output', schema } });
  await b.generate({ messages, params: { seed: 1, response_format: { type: 'json_object' } } }, {});
  assert.deepEqual(requests.at(-1).body.response_format, { type: 'json_object' });
});

test('abort stops the stream at once, closes the connection, and the engine stays usable', async () => {
  const engine = await createEngine({ model: missing(), worker: false, remote: { url: `${base}/v1`, model: 'slow' } });
  try {
    const closedBefore = closedEarly;
    const stream = await engine.chat.completions.create({ messages, stream: true });
    let got = '';
    const t0 = Date.now();
    await assert.rejects(async () => {
      for await (const c of stream) {
        got += c.choices[0]?.delta?.content ?? '';
        if (got.includes('w2')) stream.controller.abort();
      }
    }, (e) => e.name === 'AbortError');
    assert.ok(Date.now() - t0 < 5000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closedEarly, closedBefore + 1, 'the server saw the client go');

    engine.backend.model = 'ok';
    const again = await engine.chat.completions.create({ messages });
    assert.equal(again.choices[0].message.content, 'Hello there');
  } finally {
    await engine.dispose();
  }
});

test('an HTTP error rejects with the status and the server\'s message', async () => {
  const engine = await createEngine({ model: missing(), worker: false, remote: { url: `${base}/v1`, model: 'fail' } });
  try {
    await assert.rejects(engine.chat.completions.create({ messages }), (e) => e.code === 'remote' && e.status === 503 && /HTTP 503: overloaded, try later/.test(e.message));
    const down = await RemoteBackend.create({ remote: { url: 'http://127.0.0.1:1/v1', model: 'ok' } });
    await assert.rejects(down.generate({ messages, params: {} }, {}), (e) => e.code === 'remote' && /127\.0\.0\.1:1/.test(e.message));
  } finally {
    await engine.dispose();
  }
});

test('without a configured endpoint the chain fails with every reason', async () => {
  await assert.rejects(createEngine({ model: missing(), worker: false }), (e) => /wasm: .*404/.test(e.message));
  await assert.rejects(RemoteBackend.create({}), /remote: \{ url \} is required/);
});
