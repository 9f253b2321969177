// The product page: wires the capability check, the install card, the setup step, the chat with
// its conversation list and memory panel, Settings, and the service worker. Each concept lives in
// its own module; this file decides which view shows and keeps the header's status honest.

import { perf } from './perf.js'; // first, so that long tasks during start-up are seen too
import { loadConfig } from './config.js';
import { assertCatalog, findModel } from '../catalog.js';
import { checkCapabilities, SUMMARIES } from './capability.js';
import { Installer, bindInstallCard, bindModelStorage } from './install.js';
import { Settings, featureToggles, bindSettingsDialog } from './settings.js';
import { Conversations, bindConversationList } from './conversations.js';
import { Memory, bindMemoryPanel } from './memory.js';
import { LocalModel } from './local.js';
import { Chat } from './chat.js';
import { el, $, formatBytes, loadJSON, saveJSON } from './util.js';

const app = { perf, state: 'starting' };
globalThis.nblDemo = app; // for developers' consoles and the end-to-end test

function fatal(message) {
  const main = $('#main');
  main.replaceChildren(el('section', { class: 'view narrow', role: 'alert' }, el('h2', {}, 'The page could not start'), el('p', {}, message)));
  app.state = 'error';
  app.error = message;
}

async function loadCatalog(url) {
  // The last catalog fetched is kept, so that an installed model works offline even when the
  // catalog lives on another origin (which the service worker leaves alone).
  const key = `catalog:${url}`;
  let json;
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`it answered HTTP ${r.status}`);
    json = await r.json();
    json = { ...json, base: r.url || url };
    saveJSON(key, json);
  } catch (e) {
    json = loadJSON(key, null);
    if (!json) throw new Error(`the model catalog ${url} cannot be fetched (${e.message})`);
  }
  const base = json.base ?? url;
  delete json.base;
  // Model URLs may be relative to the catalog, for sites that host the files themselves.
  for (const m of Array.isArray(json?.models) ? json.models : []) {
    const abs = (u) => (typeof u === 'string' ? new URL(u, base).href : u);
    if (m.url) m.url = abs(m.url);
    if (Array.isArray(m.urls)) m.urls = m.urls.map(abs);
  }
  return assertCatalog(json);
}

function renderCapability(root, cap, entry) {
  root.dataset.verdict = cap.verdict;
  $('[data-slot="summary"]', root).textContent = cap.summary;
  const check = (ok, name, text) => el('li', { dataset: { ok: ok ? 'yes' : 'no', check: name } },
    el('span', { class: 'mark', 'aria-hidden': 'true' }, ok ? '✓' : '–'), el('span', {}, text));
  const g = cap.gpu;
  const s = cap.storage;
  $('[data-slot="checks"]', root).replaceChildren(
    check(g.available, 'webgpu', g.available ? `WebGPU: available${g.name ? ` (${g.name})` : ''}` : 'WebGPU: not available'),
    check(g.f16, 'shader-f16', g.available ? `16-bit shaders (shader-f16): ${g.f16 ? 'yes' : 'no'}` : '16-bit shaders: no GPU'),
    check(cap.wasm.simd, 'wasm', cap.wasm.simd ? 'WebAssembly with SIMD: yes' : 'WebAssembly with SIMD: no'),
    check(cap.threads, 'threads', cap.threads ? `Threads: yes, ${cap.cores} cores (cross-origin isolated)` : 'Threads: no (page not cross-origin isolated)'),
    check(s.enough, 'storage', s.known ? `Storage: ${formatBytes(s.available)} free for this site; the model needs ${formatBytes(entry.size)}` : 'Storage: the browser does not say how much is free'),
  );
  $('[data-slot="notes"]', root).replaceChildren(...cap.notes.map((n) => el('li', {}, n)));
}

async function main() {
  const config = loadConfig();
  app.config = config;
  const settings = new Settings(config);
  let catalog;
  try {
    catalog = await loadCatalog(config.catalog);
  } catch (e) {
    fatal(e.message);
    return;
  }
  const entry = findModel(catalog, config.model ?? undefined);
  if (!entry) {
    fatal(`The model "${config.model}" is not in the catalog ${config.catalog}.`);
    return;
  }
  let installer;
  try {
    installer = new Installer(entry, config.store);
  } catch (e) {
    fatal(`The model store cannot start: ${e.message}`);
    return;
  }
  const convs = new Conversations();
  const memory = new Memory();
  const local = new LocalModel({ entry, catalog, store: installer.store, options: config.engine });
  Object.assign(app, { settings, installer, convs, memory, local, entry, catalog });

  // ---- capability check, before anything is downloaded --------------------------------------
  const stored = await installer.storedBytes();
  const capability = await checkCapabilities({ needBytes: Math.max(0, (entry.size ?? 0) - stored), endpoint: settings.endpointOn });
  app.capability = capability;
  renderCapability($('#capability'), capability, entry);
  const canRun = capability.verdict === 'gpu' || capability.verdict === 'cpu';

  // ---- views --------------------------------------------------------------------------------
  const views = { onboarding: $('#onboarding'), setup: $('#setup'), workspace: $('#workspace') };
  const toggles = [$('#toggle-convs'), $('#toggle-memory')];
  let view = null;
  const pickView = () => {
    const ph = installer.state.phase;
    if (ph === 'installed') return settings.setupDone ? 'workspace' : 'setup';
    if (settings.useServer && settings.endpointOn) return 'workspace';
    return 'onboarding';
  };
  const show = () => {
    const next = pickView();
    if (next === view) return;
    view = next;
    for (const [k, v] of Object.entries(views)) v.hidden = k !== next;
    for (const t of toggles) t.hidden = next !== 'workspace';
    document.body.dataset.view = next;
    app.view = next;
    if (next === 'setup') {
      const st = installer.state;
      $('[data-slot="installed-line"]', views.setup).textContent = `${entry.name}: ${formatBytes(st.size)} stored on this device${st.verified ? ', checksum verified' : ''}. Remove it any time in Settings.`;
      $('#setup-title').focus();
    }
    if (next === 'workspace') chat.render();
  };

  // ---- install card, setup, settings ----------------------------------------------------------
  bindInstallCard($('#install'), installer, { capability });
  $('[data-slot="features"]', views.setup).replaceChildren(featureToggles(settings, 'setup'));
  $('[data-action="finish-setup"]').addEventListener('click', () => {
    settings.setupDone = true;
    settings.save();
    show();
    $('#composer-input').focus();
  });
  const serverChoice = $('#server-choice');
  const updateServerChoice = () => { serverChoice.hidden = !settings.endpointOn || installer.state.phase === 'installed'; };
  $('[data-action="use-server"]').addEventListener('click', () => {
    settings.useServer = true;
    settings.save();
    show();
  });

  const dialog = $('#settings');
  bindSettingsDialog(dialog, settings);
  bindModelStorage($('#model-storage'), installer);
  const opener = $('#open-settings');
  opener.addEventListener('click', () => dialog.showModal());
  dialog.addEventListener('close', () => opener.focus());
  $('[data-action="clear-data"]', dialog).addEventListener('click', () => {
    convs.list = [];
    convs.currentId = null;
    convs.save();
    convs.emit('select', null);
    convs.emit('change');
    memory.facts = [];
    memory.suggestions = [];
    memory.rejected = [];
    memory.save();
  });

  // ---- workspace ------------------------------------------------------------------------------
  bindConversationList($('#conversations'), convs);
  const count = $('#memory-count');
  bindMemoryPanel($('#memory'), memory, {
    onCountChange: (n) => { count.hidden = n === 0; count.textContent = n ? String(n) : ''; },
  });
  const chat = new Chat({ root: $('#chat'), config, settings, convs, memory, local });
  app.chat = chat;
  for (const t of toggles) {
    const panel = document.getElementById(t.getAttribute('aria-controls'));
    t.addEventListener('click', () => {
      const open = t.getAttribute('aria-expanded') !== 'true';
      for (const o of toggles) { o.setAttribute('aria-expanded', 'false'); document.getElementById(o.getAttribute('aria-controls')).classList.remove('open'); }
      t.setAttribute('aria-expanded', String(open));
      panel.classList.toggle('open', open);
      if (open) panel.querySelector('button, [tabindex]')?.focus();
    });
  }
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || chat.busy) return;
    for (const t of toggles) {
      if (t.getAttribute('aria-expanded') === 'true') { t.click(); t.focus(); }
    }
  });
  convs.on('select', () => {
    // On a phone the list is a drawer: close it once a conversation is picked.
    const t = $('#toggle-convs');
    if (t.getAttribute('aria-expanded') === 'true') t.click();
  });

  // ---- the model on this device ---------------------------------------------------------------
  const status = $('#model-status');
  const renderStatus = () => {
    const ph = installer.state.phase;
    const ls = local.state;
    let text;
    if (ph === 'downloading' || ph === 'verifying') {
      const s = installer.state;
      text = `Downloading the model: ${s.total ? Math.floor((100 * s.bytes) / s.total) : 0}%`;
    } else if (ph === 'paused') text = 'Download paused';
    else if (ph !== 'installed') text = settings.useServer && settings.endpointOn ? 'Using the server model' : 'Model not installed';
    else if (ls.phase === 'loading') text = `Loading the model${ls.total ? `: ${Math.floor((100 * ls.loaded) / ls.total)}%` : '…'}`;
    else if (ls.phase === 'ready') text = `${entry.name}, ${local.describe()}`;
    else if (ls.phase === 'error') text = `The model could not start: ${ls.message}`;
    else text = `${entry.name} installed`;
    status.textContent = text;
    status.dataset.phase = ls.phase === 'ready' ? 'ready' : ph;
  };
  const wantLocal = () => Object.values(settings.features).some(Boolean);
  const ensureLoaded = async () => {
    if (installer.state.phase !== 'installed' || !canRun || !wantLocal() || local.engine || local.loading) return;
    if (!(await installer.verifyStillInstalled())) return;
    try {
      await local.load();
    } catch (e) {
      console.error('model load failed', e);
      if (e?.code === 'NOT_INSTALLED') await installer.verifyStillInstalled();
    }
  };
  installer.on('state', () => { renderStatus(); updateServerChoice(); show(); });
  installer.on('installed', () => ensureLoaded());
  const drop = () => { chat.stop(); local.unload(); };
  installer.on('removed', drop);
  installer.on('evicted', drop);
  local.on('state', renderStatus);
  settings.on('change', () => {
    if (!canRun) {
      // Setting up (or removing) a server changes what a device that cannot run the model offers.
      capability.verdict = settings.endpointOn ? 'server' : 'none';
      capability.summary = SUMMARIES[capability.verdict];
      renderCapability($('#capability'), capability, entry);
    }
    updateServerChoice();
    renderStatus();
    show();
    ensureLoaded();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') installer.verifyStillInstalled();
  });

  await installer.init();
  renderStatus();
  updateServerChoice();
  show();
  ensureLoaded();
  app.state = 'ready';
  registerServiceWorker();
}

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || app.config.serviceWorker === false) return;
  const url = new URL('./sw.js', import.meta.url);
  try {
    // A scope over the whole runtime (web/) lets the engine's own workers be served offline; it
    // needs the server's Service-Worker-Allowed header (scripts/serve.mjs sends it).
    app.sw = await navigator.serviceWorker.register(url, { scope: new URL('../', url).pathname, type: 'classic' });
  } catch {
    try {
      app.sw = await navigator.serviceWorker.register(url);
    } catch (e) {
      console.warn(`offline support is off: ${e.message}`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  fatal(e?.message ?? String(e));
});
