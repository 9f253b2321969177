// End to end in headless Chromium: the product page (web/demo/) against a fixture model served by
// the test server (the real Qwen2.5 tokenizer and chat template with random weights: its text is
// noise, so shapes, streaming, state and persistence are checked, not content). Walks the whole
// product: capability check, install with progress, cancel, pause/resume, a reload mid-install
// that resumes, setup, streamed chat with Stop, titles, quick replies, memory accepted and kept
// across a reload, routing badges (with a mock OpenAI-compatible server), offline use, eviction
// and Remove. A long-task observer in the page must see no main-thread task over 50 ms during
// any generation. Screenshots of each state go to build/screenshots/demo-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, FIXTURES_DIR, REPO_ROOT } from '../server/server.mjs';
import { launchBrowser } from '../browser/browser.mjs';
import { createServer as createAppServer } from '../../scripts/serve.mjs';

const FIXTURE = path.join(FIXTURES_DIR, 'models', 'qwen2-tiny-realvocab-q8_0.gguf');
const BYTES = fs.readFileSync(FIXTURE);
const ID = 'tiny-realvocab';
const SHOTS = path.join(REPO_ROOT, 'build', 'screenshots');
const WORK = path.join(REPO_ROOT, 'build', 'demo-test');
const MiB = 1 << 20;
const THROTTLE = 3_000_000; // bytes/s: the 16 MB install takes a few seconds, long enough to watch
// The page comes from scripts/serve.mjs, as `bash scripts/start.sh` serves it: cross-origin
// isolated (threaded build). NBL_DEMO_ISOLATED=0 serves it without COOP/COEP (single-threaded
// build) to tell the two apart. The catalog and the model come from the test server, another
// origin, as a model host would be.
const ISOLATED = process.env.NBL_DEMO_ISOLATED !== '0';

let browser, page, app, site, mock;
let blocked = null; // why the helper-task tests cannot run, when they cannot
const mockRequests = [];

// The page's configuration, as a web developer would set it (window.NBL_CONFIG before app.js).
const CONFIG = {
  catalog: null, // the test server's /build/demo-test/catalog.json, set once it listens
  store: { chunkSize: MiB },
  engine: { nCtx: 2048 },
  maxTokens: 48,
};

function writeCatalog() {
  fs.mkdirSync(WORK, { recursive: true });
  const catalog = {
    version: 1, default: ID,
    models: [{
      id: ID, name: 'Tiny test model (random weights)',
      description: 'A test fixture with the real Qwen2.5 vocabulary and random weights: its answers are noise.',
      url: '/models/tiny.gguf', // relative to the catalog: the page resolves it
      size: BYTES.length, sha256: createHash('sha256').update(BYTES).digest('hex'),
      architecture: 'qwen2', quantization: 'Q8_0', context: 4096, parameters: '10M',
      // Greedy: sampling at a temperature sorts the 152k-token vocabulary per token in the
      // reference sampler, which would make this test slow without testing anything of the page.
      sampling: { temperature: 0, top_p: null, top_k: null, repeat_penalty: 1.1 },
      license: 'MIT',
    }],
  };
  fs.writeFileSync(path.join(WORK, 'catalog.json'), JSON.stringify(catalog));
}

/** A minimal OpenAI-compatible server: streams a fixed answer as server-sent events. */
async function startMock() {
  const server = http.createServer(async (req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'content-type, authorization');
    if (req.method === 'OPTIONS') { res.writeHead(204).end(); return; }
    let body = '';
    for await (const c of req) body += c;
    mockRequests.push({ url: req.url, auth: req.headers.authorization ?? null, body: JSON.parse(body || '{}') });
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    for (const piece of ['Hello ', 'from ', 'the ', 'server ', 'model.']) {
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] })}\n\n`);
      await new Promise((r) => setTimeout(r, 20));
    }
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/v1`, close: () => new Promise((r) => server.close(r)) };
}

const call = (fn, ...args) => page.evaluate(fn, ...args);
const logs = () => `\n--- page log ---\n${browser.logs.slice(-25).join('\n')}`;
const shot = (name) => page.screenshot({ path: path.join(SHOTS, `demo-${name}.png`) });
const waitFor = (fn, arg, timeout = 20000) => page.waitForFunction(fn, arg, { timeout, polling: 50 });
const phase = () => call(() => nblDemo.installer.state.phase);

async function startApp() {
  const server = createAppServer({ root: path.join(REPO_ROOT, 'web'), isolate: ISOLATED });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }),
  };
}

async function open() {
  await page.goto(`${app.url}/demo/`);
  await waitFor(() => window.nblDemo?.state === 'ready' || window.nblDemo?.state === 'error', null, 15000);
  assert.equal(await call(() => nblDemo.state), 'ready', `${await call(() => nblDemo.error)}${logs()}`);
}

async function localReady() {
  await waitFor(() => nblDemo.local.state.phase === 'ready' || nblDemo.local.state.phase === 'error', null, 30000);
  assert.equal(await call(() => nblDemo.local.state.phase), 'ready', `${await call(() => nblDemo.local.state.message)}${logs()}`);
}

async function send(text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

const answers = () => call(() => [...document.querySelectorAll('#messages .msg.assistant')].map((m) => ({
  text: m.querySelector('.content').textContent, streaming: m.classList.contains('streaming'),
  stopped: !!m.querySelector('.badge.stopped'), via: m.querySelector('.badge.via')?.textContent,
})));
const idle = () => waitFor(() => document.querySelector('#chat').dataset.busy === 'false', null, 30000);
const hasTask = (name) => call((n) => nblDemo.local.hasTask(n), name);
const needTask = async (name) => assert.ok(await hasTask(name), `engine.tasks.${name} is missing: the helper tasks (web/tasks.js) are not attached to the engine`);

before(async () => {
  writeCatalog();
  fs.mkdirSync(SHOTS, { recursive: true });
  for (const f of ['nbl-st.mjs', 'nbl-mt.mjs']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, 'web/dist', f)), `web/dist/${f} is missing: run make wasm`);
  }
  site = await startServer({ files: { 'tiny.gguf': FIXTURE } });
  app = await startApp();
  CONFIG.catalog = `${site.url}/build/demo-test/catalog.json`;
  mock = await startMock();
  browser = await launchBrowser();
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: app.url });
  await browser.context.addInitScript((c) => { window.NBL_CONFIG = c; }, CONFIG);
  page = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
});

after(async () => {
  await browser?.close();
  await app?.close();
  await site?.close();
  await mock?.close();
});

test('arrival: an honest capability summary, and nothing downloaded', async () => {
  await open();
  const cap = await call(() => nblDemo.capability);
  assert.ok(['gpu', 'cpu'].includes(cap.verdict), JSON.stringify(cap));
  const summary = await page.textContent('#capability [data-slot="summary"]');
  assert.equal(summary, cap.verdict === 'gpu' ? 'Runs on your GPU.' : 'Runs on your CPU, slower.');
  const checks = await call(() => Object.fromEntries([...document.querySelectorAll('#capability [data-check]')].map((li) => [li.dataset.check, li.dataset.ok])));
  assert.deepEqual(Object.keys(checks).sort(), ['shader-f16', 'storage', 'threads', 'wasm', 'webgpu']);
  assert.equal(checks.threads, ISOLATED ? 'yes' : 'no', 'threads exactly when the server sends COOP/COEP');
  assert.equal(checks.wasm, 'yes');
  assert.equal(checks.storage, 'yes');
  assert.equal(await call(() => nblDemo.view), 'onboarding');
  assert.match(await page.textContent('#install'), /16 MB/);
  assert.ok(await page.isVisible('[data-action="install"]'));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(site.modelRequests().length, 0, 'no download before the user presses Install');
  await shot('01-capability');
});

test('install: progress with MB, MB/s and time left; cancel deletes; pause and resume', async () => {
  site.set({ throttle: THROTTLE });
  // Cancel a first attempt: the bytes are deleted.
  await page.click('[data-action="install"]');
  await waitFor(() => nblDemo.installer.state.bytes > 1 << 20);
  await page.click('[data-action="cancel"]');
  await waitFor(() => nblDemo.installer.state.phase === 'not-installed');
  assert.equal(await call((id) => nblDemo.installer.store.status(id), ID), 'not-installed');
  assert.equal(await call(() => nblDemo.installer.storedBytes()), 0);

  await page.click('[data-action="install"]');
  await waitFor(() => { const s = document.querySelector('#install [data-slot="stats"]'); return !s.hidden && /MB\/s/.test(s.textContent); });
  const stats = await page.textContent('#install [data-slot="stats"]');
  assert.match(stats, /^[\d.]+ of 16\.3 MB · [\d.]+ MB\/s · (\d+ s|\d+ min \d+ s) left$/, stats);
  const bar = await call(() => { const p = document.querySelector('#install-progress'); return { value: p.value, max: p.max, hidden: p.hidden }; });
  assert.equal(bar.hidden, false);
  assert.equal(bar.max, BYTES.length);
  assert.ok(bar.value > 0 && bar.value < bar.max, JSON.stringify(bar));
  assert.match(await page.textContent('#model-status'), /Downloading the model: \d+%/);
  await shot('02-install-progress');

  // Pause keeps whole stored chunks only (a chunk is written all or nothing): wait for the first
  // one, which on a loaded machine can come well after the first progress report.
  for (let i = 0; i < 600 && !(await call(() => nblDemo.installer.storedBytes())); i++) await new Promise((r) => setTimeout(r, 50));
  await page.click('[data-action="pause"]');
  await waitFor(() => nblDemo.installer.state.phase === 'paused');
  const paused = await call(() => nblDemo.installer.state.bytes);
  assert.ok(paused > 0 && paused < BYTES.length);
  assert.ok(await page.isVisible('[data-action="resume"]'));
  await page.click('[data-action="resume"]');
  await waitFor(() => nblDemo.installer.state.phase === 'downloading');
});

test('a reload mid-install resumes where the download stopped', async () => {
  await waitFor((n) => nblDemo.installer.state.bytes > n, Math.floor(BYTES.length * 0.4), 30000);
  const mark = site.log.length;
  await page.reload();
  await waitFor(() => window.nblDemo?.state === 'ready', null, 15000);
  await waitFor(() => nblDemo.installer.state.phase === 'downloading' && nblDemo.installer.state.bytes > 0);
  // The resumed download runs in a worker, whose first request may take a moment to leave.
  for (let i = 0; i < 100 && !site.log.slice(mark).some((e) => e.misbehave); i++) await new Promise((r) => setTimeout(r, 50));
  const s = await call(() => nblDemo.installer.state);
  assert.equal(s.resumed, true);
  assert.ok(s.startBytes >= 4 * MiB, `resumed from ${s.startBytes} bytes`);
  await waitFor(() => document.querySelector('#install [data-slot="status"]').textContent.includes('resumed'));
  await shot('03-install-resumed');
  const after = site.log.slice(mark).filter((e) => e.misbehave);
  assert.ok(after.length > 0, 'the download continued after the reload');
  assert.ok(after[0].start >= 4 * MiB, `the first request after the reload starts at byte ${after[0].start}`);
  assert.equal(after.reduce((n, e) => n + (e.sent ?? 0), 0) < BYTES.length, true, 'not downloaded again from the start');
  site.set({ throttle: 0 });
});

test('installed: setup picks the features, kept in local storage', async () => {
  await waitFor(() => nblDemo.view === 'setup', null, 30000);
  assert.equal(await call((id) => nblDemo.installer.store.status(id), ID), 'installed');
  const toggles = await call(() => [...document.querySelectorAll('#setup input[role="switch"]')].map((i) => [i.dataset.feature, i.checked, !!document.querySelector(`label[for="${i.id}"]`)]));
  assert.deepEqual(toggles.map((t) => t[0]), ['chat', 'titles', 'quickReplies', 'memory', 'routing']);
  assert.ok(toggles.every((t) => t[1] && t[2]), 'all on by default, each labelled');
  await page.click('label[for="setup-memory"]');
  assert.equal(await call(() => JSON.parse(localStorage.getItem('nbl-demo:settings')).features.memory), false);
  await page.click('label[for="setup-memory"]');
  assert.equal(await call(() => JSON.parse(localStorage.getItem('nbl-demo:settings')).features.memory), true);
  await shot('04-setup');
  await page.click('[data-action="finish-setup"]');
  await waitFor(() => nblDemo.view === 'workspace');
  await localReady();
  assert.match(await page.textContent('#model-status'), /on your (CPU|GPU)/);
  assert.equal(await call(() => document.activeElement.id), 'composer-input');
  assert.equal(await page.locator('#empty-state .example').count(), 3);
  await shot('05-empty-chat');
});

// The helper tasks run in the engine's worker; one that never answers would hold every later
// request. So they are probed first: if they do not answer, the tests that need them are
// skipped (this one fails, naming the cause) and the rest run on a fresh worker without them.
test('helper tasks answer on this page\'s build', async () => {
  const r = await call(async () => {
    const e = nblDemo.local.engine;
    if (typeof e.tasks?.route !== 'function') return { ok: 'engine.tasks.route is missing', info: e.info };
    const t0 = performance.now();
    const ok = await Promise.race([
      e.tasks.route('Hello there', { routes: [{ id: 'a', description: 'greetings' }, { id: 'b', description: 'code' }] }).then(() => true, (x) => String(x?.message ?? x)),
      new Promise((res) => setTimeout(() => res('no answer within 15 s'), 15000)),
    ]);
    return { ok, ms: performance.now() - t0, info: e.info };
  });
  if (r.ok === true) return;
  blocked = `engine.tasks does not work on the ${r.info.threaded ? `threaded build (${r.info.threads} threads, cross-origin isolated page)` : 'single-threaded build'}: ${r.ok}`;
  // A fresh page and worker, with the features that need tasks off and messages sent to the device.
  await call(() => {
    Object.assign(nblDemo.settings.features, { titles: false, quickReplies: false, memory: false, routing: false });
    nblDemo.settings.mode = 'local';
    nblDemo.settings.save();
  });
  await page.reload();
  await waitFor(() => window.nblDemo?.state === 'ready', null, 15000);
  await localReady();
  assert.fail(blocked);
});

test('chat streams into the page and Stop (Esc) ends it at once', async () => {
  await call(() => { nblDemo.config.maxTokens = 600; });
  await send('Tell me a long story about a dragon who learns to bake bread.');
  await waitFor(() => (document.querySelector('#messages .msg.assistant.streaming .content')?.textContent.length ?? 0) > 30, null, 30000);
  const a = (await answers()).at(-1);
  assert.equal(a.streaming, true);
  assert.equal(await page.getAttribute('#messages .msg.assistant.streaming', 'aria-busy'), 'true');
  assert.ok(await page.isVisible('[data-action="stop"]'));
  await shot('06-streaming');
  // More text arrives frame by frame while we watch.
  const len0 = a.text.length;
  await waitFor((n) => document.querySelector('#messages .msg.assistant .content').textContent.length > n + 10, len0);
  const t0 = Date.now();
  await page.keyboard.press('Escape');
  await waitFor(() => document.querySelector('#chat').dataset.busy === 'false', null, 2000);
  const stopMs = Date.now() - t0;
  assert.ok(stopMs < 1000, `Stop took ${stopMs} ms`);
  const b = (await answers()).at(-1);
  assert.equal(b.stopped, true);
  assert.equal(b.streaming, false);
  assert.ok(b.text.length > len0);
  assert.ok(await page.isVisible('[data-action="send"]'));
  await shot('07-stopped');
  await call(() => { nblDemo.config.maxTokens = 48; });
});

test('the local model titles the conversation in the list', async (t) => {
  if (blocked) return t.skip(blocked);
  await needTask('title');
  await waitFor(() => !!document.querySelector('#conversations .conv-open[data-title-source="local"]'), null, 15000);
  const title = await page.textContent('#conversations .conv-open[data-title-source="local"] .conv-title');
  assert.ok(title.trim().length > 0);
  await shot('08-title');
});

test('quick replies appear under the last answer and send when clicked', async (t) => {
  if (blocked) return t.skip(blocked);
  await needTask('quickReplies');
  await send('My name is Ada, I live in Lisbon and I love hiking with my dog.');
  await idle();
  await waitFor(() => document.querySelectorAll('#quick-replies .chip').length > 0, null, 15000);
  const chips = await call(() => [...document.querySelectorAll('#quick-replies .chip')].map((c) => c.textContent));
  assert.ok(chips.length >= 1 && chips.every((c) => c.trim()), JSON.stringify(chips));
  await shot('09-quick-replies');
  const before = await page.locator('#messages .msg.user').count();
  await page.click('#quick-replies .chip');
  await waitFor((n) => document.querySelectorAll('#messages .msg.user').length === n + 1, before);
  assert.equal((await page.locator('#messages .msg.user .content').last().textContent()).trim(), chips[0].trim());
  await idle();
});

test('memory: a proposed fact is accepted and still there after a reload', async (t) => {
  if (blocked) return t.skip(blocked);
  await needTask('memory');
  const facts = [
    'Please remember that I am allergic to peanuts and I work as a nurse.',
    'I have two children, Maya and Leo, and my favourite colour is green.',
    'I was born in 1990 in Porto and I speak Portuguese and English.',
  ];
  for (const f of facts) {
    if (await call(() => nblDemo.memory.suggestions.length > 0)) break;
    await send(f);
    await idle();
    await waitFor(() => !nblDemo.chat.tasksController, null, 15000);
  }
  const n = await call(() => nblDemo.memory.suggestions.length);
  assert.ok(n > 0, 'the local model proposed at least one fact');
  const panel = await page.isVisible('#memory');
  if (!panel) await page.click('#toggle-memory');
  const fact = await page.textContent('#memory [data-slot="suggestions"] li:first-child .fact');
  await page.click('#memory [data-slot="suggestions"] li:first-child [data-action="accept"]');
  await waitFor(() => nblDemo.memory.facts.length === 1);
  // A reject removes the next suggestion for good.
  if (n > 1) {
    await page.click('#memory [data-slot="suggestions"] li:first-child [data-action="reject"]');
    assert.equal(await call(() => nblDemo.memory.rejected.length), 1);
  }
  await page.reload();
  await waitFor(() => window.nblDemo?.state === 'ready', null, 15000);
  await localReady();
  const kept = await call(() => [...document.querySelectorAll('#memory [data-slot="facts"] .fact')].map((f) => f.textContent));
  assert.equal(kept.length, 1);
  assert.equal(kept[0], fact);
  // Conversations persist too.
  assert.ok(await page.locator('#messages .msg').count() >= 4);
  await shot('10-memory');
});

test('Settings: features switched off, the server model set up; "Server" messages go to it', async () => {
  // Quick replies and memory off from here on (they are tested; each costs seconds of the model
  // per answer), and the server model set up.
  await page.click('#open-settings');
  if (!blocked) {
    await page.click('label[for="settings-quickReplies"]');
    await page.click('label[for="settings-memory"]');
  }
  assert.deepEqual(await call(() => JSON.parse(localStorage.getItem('nbl-demo:settings')).features),
    { chat: true, titles: !blocked, quickReplies: false, memory: false, routing: !blocked });
  await page.fill('#endpoint-url', mock.url);
  await page.fill('#endpoint-model', 'big-model');
  await page.fill('#endpoint-key', 'sk-test');
  await page.click('#endpoint-form button[type="submit"]');
  assert.match(await page.textContent('#endpoint-status'), /Saved/);
  await page.keyboard.press('Escape');
  assert.equal(await call(() => document.querySelector('#settings').open), false);
  // "Server" sends to the endpoint, with the conversation and without the remembered facts.
  const before = mockRequests.length;
  await page.selectOption('#route-mode', 'server');
  await send('What is the capital of Australia?');
  await idle();
  const last = (await answers()).at(-1);
  assert.equal(last.text, 'Hello from the server model.');
  assert.equal(last.via, 'Server model');
  const req = mockRequests.at(-1);
  assert.equal(mockRequests.length, before + 1);
  assert.equal(req.url, '/v1/chat/completions');
  assert.equal(req.auth, 'Bearer sk-test');
  assert.equal(req.body.model, 'big-model');
  assert.equal(req.body.stream, true);
  assert.equal(req.body.messages.at(-1).content, 'What is the capital of Australia?');
  assert.ok(!req.body.messages[0].content.includes('remember'), 'remembered facts stay on the device');
  await page.selectOption('#route-mode', blocked ? 'local' : 'auto');
});

test('routing: Auto messages get a badge with the route the local classifier chose', async (t) => {
  if (blocked) return t.skip(blocked);
  await needTask('route');
  await page.selectOption('#route-mode', 'auto');
  const seen = [];
  for (const text of ['Write a Python function that parses ISO 8601 dates.', 'Give me three names for a cat.']) {
    await send(text);
    await waitFor(() => !![...document.querySelectorAll('#messages .msg.user')].at(-1)?.querySelector('.route-badge'), null, 15000);
    const badge = await call(() => { const b = [...document.querySelectorAll('#messages .msg.user')].at(-1).querySelector('.route-badge'); return { ...b.dataset, text: b.textContent }; });
    assert.equal(badge.mode, 'auto');
    assert.ok(['local', 'server'].includes(badge.route), JSON.stringify(badge));
    assert.match(badge.text, /^Auto → (On device|Server)/);
    assert.equal(badge.via, badge.route, 'a server is set up, so the message goes where the classifier said');
    await idle();
    const last = (await answers()).at(-1);
    assert.equal(last.via, badge.route === 'server' ? 'Server model' : 'On device');
    if (badge.route === 'server') assert.equal(last.text, 'Hello from the server model.');
    seen.push(badge.route);
  }
  const classified = await call(() => nblDemo.convs.current.messages.filter((m) => m.routing?.mode === 'auto' && m.routing.route).length);
  assert.ok(classified >= 2, 'each Auto message keeps its route');
  await shot('11-routing');
});

test('copy and regenerate the last answer', async () => {
  await page.selectOption('#route-mode', 'local');
  await send('Say hello.');
  await idle();
  await page.locator('#messages .msg.assistant [data-action="copy"]').last().click();
  await waitFor(() => [...document.querySelectorAll('#messages .msg.assistant [data-action="copy"]')].at(-1)?.textContent === 'Copied', null, 3000);
  const copied = await call(() => navigator.clipboard.readText());
  assert.equal(copied, (await answers()).at(-1).text);
  const count = (await answers()).length;
  await page.locator('#messages .msg.assistant [data-action="regenerate"]').last().click();
  await idle();
  assert.equal((await answers()).length, count, 'the answer is replaced, not added');
  assert.equal(await page.locator('[data-action="regenerate"]').count(), 1, 'only the last answer can be regenerated');
  await page.selectOption('#route-mode', 'auto');
});

// The page's long-task observer measures wall time, which includes time the OS gave other
// processes: on an oversubscribed machine (load above the core count, e.g. parallel builds) a
// 5 ms task can read as 60 ms. So one generation also runs under a Chrome trace, whose per-task
// thread CPU time shows what the page itself spent; the observer's verdict is binding whenever
// the machine is not oversubscribed.
test('no main-thread task over 50 ms during a generation', async () => {
  await page.selectOption('#route-mode', 'local');
  const cdp = await browser.context.newCDPSession(page);
  const events = [];
  cdp.on('Tracing.dataCollected', (d) => events.push(...d.value));
  const complete = new Promise((r) => cdp.once('Tracing.tracingComplete', r));
  await cdp.send('Tracing.start', { categories: 'toplevel,disabled-by-default-devtools.timeline', transferMode: 'ReportEvents' });
  const load0 = os.loadavg()[0];
  await call(() => { nblDemo.config.maxTokens = 200; });
  await send('Write a long poem about the sea, the wind and the lighthouse keeper.');
  await waitFor(() => document.querySelector('#chat').dataset.busy === 'true', null, 5000).catch(() => {});
  await idle();
  await cdp.send('Tracing.end');
  await complete;
  await cdp.detach();
  await call(() => { nblDemo.config.maxTokens = 48; });
  const load = Math.max(load0, os.loadavg()[0]);
  const r = await call(() => {
    const gens = nblPerf.spans.filter((s) => s.kind === 'generation');
    const last = gens.at(-1);
    const overlaps = (t, s) => t.start < (s.end ?? Infinity) && t.start + t.duration > s.start;
    return {
      supported: nblPerf.supported,
      generations: gens.length,
      long: nblPerf.during('generation'),
      lastLong: nblPerf.tasks.filter((t) => overlaps(t, last)),
      lastMs: last.end - last.start,
    };
  });
  assert.equal(r.supported, true, 'Chromium reports longtask entries');
  assert.ok(r.generations >= 5, `${r.generations} generations observed`);
  // The renderer's main thread: the CrRendererMain thread with the most top-level tasks.
  const names = new Map(events.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [`${e.pid}:${e.tid}`, e.args.name]));
  const byThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || e.name !== 'ThreadControllerImpl::RunTask') continue;
    const k = `${e.pid}:${e.tid}`;
    if (names.get(k) !== 'CrRendererMain') continue;
    if (!byThread.has(k)) byThread.set(k, []);
    byThread.get(k).push(e);
  }
  const all = [...byThread.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  // Some tasks come without a thread CPU time: those cut by the start or end of tracing, and
  // Chrome leaves it off tasks of a microsecond or so, which on a busy machine can be 6 % of
  // them. For those the wall time stands in, since CPU time never exceeds it, so no task
  // escapes the bound below.
  const timed = all.filter((t) => t.tdur !== undefined);
  assert.ok(all.length > 50, `the trace holds the page's tasks (${all.length})`);
  assert.ok(timed.length >= 0.5 * all.length, `the trace has thread CPU times (${timed.length} of ${all.length} tasks)`);
  const maxCpu = Math.max(...all.map((t) => t.tdur ?? t.dur)) / 1000;
  const maxWall = Math.max(...all.map((t) => t.dur)) / 1000;
  console.log(`# generation of ${r.lastMs.toFixed(0)} ms: ${all.length} main-thread tasks (${timed.length} with CPU times), longest ${maxWall.toFixed(1)} ms wall / ${maxCpu.toFixed(1)} ms CPU; ` +
    `the page's observer saw ${r.lastLong.length} over 50 ms (${r.long.length} in all ${r.generations} generations); load ${load.toFixed(1)} on ${os.cpus().length} cores`);
  assert.ok(maxCpu < 50, `a main-thread task used ${maxCpu.toFixed(1)} ms of CPU during generation`);
  if (load <= os.cpus().length) {
    assert.deepEqual(r.long, [], `long tasks during generation: ${JSON.stringify(r.long)}`);
  }
});

test('a phone-sized screen keeps the chat readable', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(100);
  const widths = await call(() => ({ doc: document.documentElement.scrollWidth, composer: document.querySelector('#composer').getBoundingClientRect().width }));
  assert.ok(widths.doc <= 390, `no horizontal scrolling (${widths.doc} px wide)`);
  assert.ok(widths.composer > 300);
  assert.ok(await page.isVisible('#toggle-convs'));
  await shot('12-phone');
  await page.click('#toggle-convs');
  await waitFor(() => document.querySelector('#conversations').classList.contains('open'));
  await page.waitForTimeout(250);
  await shot('13-phone-conversations');
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('works offline once installed (service worker)', async () => {
  await waitFor(() => navigator.serviceWorker.controller !== null || nblDemo.sw?.active, null, 10000);
  await page.reload(); // now under the service worker's control
  await waitFor(() => window.nblDemo?.state === 'ready', null, 15000);
  assert.ok(await call(() => !!navigator.serviceWorker.controller), 'the page is controlled by the service worker');
  await localReady();
  await browser.context.setOffline(true);
  try {
    await page.reload();
    await waitFor(() => window.nblDemo?.state === 'ready' || window.nblDemo?.state === 'error', null, 15000);
    assert.equal(await call(() => nblDemo.state), 'ready', logs());
    await localReady();
    await page.selectOption('#route-mode', 'local');
    await send('Are you there?');
    await idle();
    const last = (await answers()).at(-1);
    assert.ok(last.text.length > 0 && last.via === 'On device', JSON.stringify(last));
  } finally {
    await browser.context.setOffline(false);
  }
});

test('eviction by the browser is detected and explained', async () => {
  await call(async () => {
    await nblDemo.local.unload();
    const root = await navigator.storage.getDirectory();
    await root.removeEntry('nbl-models', { recursive: true });
  });
  await page.reload();
  await waitFor(() => window.nblDemo?.state === 'ready', null, 15000);
  assert.equal(await call(() => nblDemo.view), 'onboarding');
  assert.equal(await phase(), 'not-installed');
  assert.match(await page.textContent('#install [data-slot="notice"]'), /browser removed the downloaded model/);
  await shot('14-evicted');
  // Install again (full speed now) for the last step.
  await page.click('[data-action="install"]');
  await waitFor(() => nblDemo.view === 'workspace', null, 30000);
  await localReady();
});

test('Remove deletes the model and returns to the install card', async () => {
  await page.click('#open-settings');
  assert.match(await page.textContent('#model-storage [data-slot="storage-line"]'), /16 MB stored on this device/);
  await shot('15-settings');
  await page.click('#model-storage [data-action="remove"]');
  await page.click('#model-storage [data-action="confirm-remove"]');
  await waitFor(() => nblDemo.installer.state.phase === 'not-installed');
  await page.keyboard.press('Escape');
  assert.equal(await call((id) => nblDemo.installer.store.status(id), ID), 'not-installed');
  assert.equal(await call(() => nblDemo.installer.storedBytes()), 0);
  assert.equal(await call(() => nblDemo.view), 'onboarding');
  assert.equal(await call(() => nblDemo.local.state.phase), 'off');
  assert.ok(await page.isVisible('[data-action="install"]'));
  assert.equal(await call(() => JSON.parse(localStorage.getItem('nbl-demo:install'))), null);
  await shot('16-removed');
});

test('a device that cannot run the model says so and uses the server model', async () => {
  const other = await browser.context.newPage();
  try {
    // No WebAssembly, no WebGPU: nothing here can run the model. The server set up earlier stays.
    await other.addInitScript(() => { delete globalThis.WebAssembly; Object.defineProperty(navigator, 'gpu', { value: undefined }); });
    await other.goto(`${app.url}/demo/`);
    await other.waitForFunction(() => window.nblDemo?.state === 'ready', null, { timeout: 15000 });
    assert.equal(await other.textContent('#capability [data-slot="summary"]'), 'This device cannot run it: using the server model.');
    assert.equal(await other.isVisible('[data-action="install"]'), false, 'no Install where the model cannot run');
    await other.screenshot({ path: path.join(SHOTS, 'demo-17-cannot-run.png') });
    await other.click('[data-action="use-server"]');
    await other.waitForFunction(() => nblDemo.view === 'workspace');
    await other.fill('#composer-input', 'Hello?');
    await other.press('#composer-input', 'Enter');
    await other.waitForFunction(() => [...document.querySelectorAll('#messages .msg.assistant .content')].at(-1)?.textContent === 'Hello from the server model.', null, { timeout: 10000 });
    assert.match(await other.textContent('#composer-hint'), /server model/);
  } finally {
    await other.close();
  }
});
