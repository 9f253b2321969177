// Installing the model, only when the user asks: the model card (name, size, what it is good for),
// Install, a progress bar with MB, MB/s and time left, Pause / Resume / Cancel, and afterwards
// the storage used and Remove. The user's intent is kept in localStorage so that a reload in the
// middle of a download resumes it, and so that a model the browser evicted later is noticed.

import { createStore } from '../store.js';
import { $, loadJSON, saveJSON, formatBytes, formatDuration, mb, Emitter, announce } from './util.js';

export class Installer extends Emitter {
  /** entry: the catalog model; storeOptions: createStore's options. */
  constructor(entry, storeOptions = {}) {
    super();
    this.entry = entry;
    this.storeOptions = storeOptions;
    this.store = createStore(storeOptions);
    this.useWorker = typeof Worker === 'function' && !storeOptions.fetch && typeof storeOptions.backend !== 'object';
    this.state = { phase: 'checking' };
    this.controller = null;
    this.job = null;
  }

  get record() {
    const r = loadJSON('install', null);
    return r && r.id === this.entry.id ? r : null;
  }

  set record(r) { saveJSON('install', r ?? undefined); }

  set(state) {
    this.state = state;
    this.emit('state', state);
  }

  /** Bytes stored for this model (0 when none). */
  async storedBytes() {
    try {
      const m = (await this.store.list()).find((x) => x.id === this.entry.id);
      return m?.bytes ?? 0;
    } catch {
      return 0;
    }
  }

  /** Reads the stored state; resumes a download a reload interrupted. */
  async init() {
    const rec = this.record;
    let status;
    try {
      status = await this.store.status(this.entry.id);
    } catch (e) {
      this.set({ phase: 'error', message: `Storage is not usable here: ${e.message}` });
      return;
    }
    if (status === 'installed') {
      if (rec?.intent !== 'installed') this.record = { id: this.entry.id, intent: 'installed', at: Date.now(), size: this.entry.size };
      this.set({ phase: 'installed', size: this.entry.size, persisted: rec?.persisted ?? null });
      return;
    }
    if (rec?.intent === 'installed') {
      // We installed it and the bytes are gone: the browser evicted the origin's storage.
      this.record = { id: this.entry.id, intent: 'evicted', at: Date.now() };
      this.set({ phase: 'not-installed', evicted: true, bytes: await this.storedBytes() });
      this.emit('evicted');
      return;
    }
    const bytes = await this.storedBytes();
    if (rec?.intent === 'download') {
      this.install({ resumed: true });
      return;
    }
    if (status === 'partial' || rec?.intent === 'paused') {
      this.set({ phase: 'paused', bytes, total: this.entry.size });
      return;
    }
    this.set({ phase: 'not-installed', evicted: rec?.intent === 'evicted', bytes });
  }

  /** Starts or resumes the download. */
  async install({ resumed = false } = {}) {
    if (this.job) return this.job;
    const id = this.entry.id;
    this.controller = new AbortController();
    this.record = { id, intent: 'download', at: Date.now() };
    this.job = (async () => {
      const start = await this.storedBytes();
      this.set({ phase: 'downloading', bytes: start, total: this.entry.size, rate: 0, eta: null, resumed: resumed || start > 0, startBytes: start });
      try {
        if (start === 0) this.askPersistence();
        const r = await (this.useWorker ? this.installInWorker.bind(this) : this.store.install.bind(this.store))(this.entry, {
          signal: this.controller.signal,
          onProgress: (p) => {
            if (this.state.phase !== 'downloading' && this.state.phase !== 'verifying') return;
            this.set({ ...this.state, phase: p.phase === 'verify' ? 'verifying' : 'downloading', bytes: p.bytes, total: p.total ?? this.entry.size, rate: p.rate, eta: p.eta });
          },
        });
        let persisted = r.persisted;
        try { persisted = (await navigator.storage?.persisted?.()) ?? persisted; } catch { /* unknown */ }
        this.record = { id, intent: 'installed', at: Date.now(), size: r.size, persisted, verified: r.verified };
        this.set({ phase: 'installed', size: r.size, persisted, verified: r.verified, fresh: true });
        announce('The model is installed.');
        this.emit('installed', r);
      } catch (e) {
        const why = this.controller.signal.reason;
        if (why === 'cancel') return; // cancel() set the state
        if (why === 'pause' || e?.name === 'AbortError') {
          this.record = { id, intent: 'paused', at: Date.now() };
          this.set({ phase: 'paused', bytes: await this.storedBytes(), total: this.entry.size });
          return;
        }
        this.record = { id, intent: 'paused', at: Date.now() };
        const message = e?.code === 'QUOTA' ? `Not enough storage: ${e.message}`
          : e?.code === 'INTEGRITY' ? `The download did not match the published checksum, so it was discarded (${e.message}).`
            : `The download stopped: ${e?.message ?? e}. What was downloaded is kept; Resume continues from there.`;
        this.set({ phase: 'paused', bytes: await this.storedBytes(), total: this.entry.size, error: message });
      } finally {
        this.job = null;
        this.controller = null;
      }
    })();
    return this.job;
  }

  /** store.install, run in a worker (install-worker.js) so hashing never blocks the page. */
  installInWorker(entry, { signal, onProgress }) {
    return new Promise((resolve, reject) => {
      const w = new Worker(new URL('./install-worker.js', import.meta.url), { type: 'module', name: 'nbl-install' });
      const end = () => { w.terminate(); signal.removeEventListener('abort', onAbort); };
      const onAbort = () => w.postMessage({ type: 'abort', reason: String(signal.reason ?? 'abort') });
      signal.addEventListener('abort', onAbort);
      w.onmessage = ({ data }) => {
        if (data.type === 'progress') onProgress(data.progress);
        else if (data.type === 'done') { end(); resolve(data.result); }
        else if (data.type === 'error') { end(); reject(Object.assign(new Error(data.error.message), data.error)); }
      };
      w.onerror = (e) => {
        e.preventDefault?.();
        end();
        reject(new Error(`the download worker failed: ${e.message || 'could not start'}`));
      };
      w.postMessage({ type: 'install', entry, storeOptions: this.storeOptions });
      if (signal.aborted) onAbort();
    });
  }

  /** Asks the browser to keep the model when space runs low (only a page may ask, not a worker). */
  async askPersistence() {
    try {
      if (!(await navigator.storage?.persisted?.())) await navigator.storage?.persist?.();
    } catch { /* the browser decides; eviction is detected either way */ }
  }

  async pause() {
    this.controller?.abort('pause');
    await this.job;
  }

  /** Stops the download and deletes what it stored. */
  async cancel() {
    this.controller?.abort('cancel');
    await this.job;
    await this.store.remove(this.entry.id);
    this.record = null;
    this.set({ phase: 'not-installed', bytes: 0 });
    announce('Download cancelled and removed.');
  }

  async remove() {
    await this.cancel();
    this.emit('removed');
    announce('The model was removed from this device.');
  }

  /** Re-checks that an installed model is still there (the browser may evict it any time). */
  async verifyStillInstalled() {
    if (this.state.phase !== 'installed') return true;
    let status;
    try { status = await this.store.status(this.entry.id); } catch { return true; }
    if (status === 'installed') return true;
    this.record = { id: this.entry.id, intent: 'evicted', at: Date.now() };
    this.set({ phase: 'not-installed', evicted: true, bytes: await this.storedBytes() });
    this.emit('evicted');
    return false;
  }
}

/** The install card: renders the Installer's state into #install and wires its buttons. */
export function bindInstallCard(root, installer, { capability }) {
  const e = installer.entry;
  $('[data-slot="model-name"]', root).textContent = e.name;
  $('[data-slot="model-meta"]', root).textContent = [
    formatBytes(e.size), e.parameters && `${e.parameters} parameters`, e.quantization && `${e.quantization} quantization`, e.license,
  ].filter(Boolean).join(' · ');
  $('[data-slot="model-desc"]', root).textContent = e.description;
  if (e.notice) $('[data-slot="model-notice"]', root).textContent = e.notice;

  const btn = (a) => $(`[data-action="${a}"]`, root);
  const progress = $('progress', root);
  const stats = $('[data-slot="stats"]', root);
  const status = $('[data-slot="status"]', root);
  const notice = $('[data-slot="notice"]', root);
  let frame = 0;
  let pending = null;

  btn('install').addEventListener('click', () => installer.install());
  btn('resume').addEventListener('click', () => installer.install({ resumed: true }));
  btn('pause').addEventListener('click', () => installer.pause());
  btn('cancel').addEventListener('click', () => installer.cancel());

  const show = (action, on) => { btn(action).hidden = !on; };

  function render(s) {
    root.dataset.phase = s.phase;
    const canRun = capability?.verdict === 'gpu' || capability?.verdict === 'cpu';
    show('install', s.phase === 'not-installed' && canRun);
    show('pause', s.phase === 'downloading');
    show('resume', s.phase === 'paused');
    show('cancel', s.phase === 'downloading' || s.phase === 'paused');
    const moving = s.phase === 'downloading' || s.phase === 'verifying' || s.phase === 'paused';
    progress.hidden = !moving;
    stats.hidden = !moving;
    if (!moving) stats.textContent = '';
    if (moving) {
      progress.max = s.total || 1;
      progress.value = Math.min(s.bytes, s.total || s.bytes);
      const pct = s.total ? Math.floor((100 * s.bytes) / s.total) : 0;
      progress.setAttribute('aria-valuetext', `${pct}% downloaded`);
      const parts = [`${mb(s.bytes)} of ${mb(s.total)} MB`];
      if (s.phase === 'downloading') parts.push(s.rate > 0 ? `${mb(s.rate)} MB/s` : 'starting…', s.rate > 0 ? `${formatDuration(s.eta)} left` : '');
      if (s.phase === 'verifying') parts.push('checking the download…');
      stats.textContent = parts.filter(Boolean).join(' · ');
    }
    status.textContent = {
      checking: 'Checking what is stored on this device…',
      'not-installed': s.bytes > 0 ? `${formatBytes(s.bytes)} of an earlier download is stored.` : 'Not installed. Nothing is downloaded until you press Install.',
      downloading: s.resumed ? 'Downloading (resumed where it stopped)…' : 'Downloading…',
      verifying: 'Verifying the download…',
      paused: 'Paused. What was downloaded is kept, even if you close this tab.',
      installed: `Installed: ${formatBytes(s.size)} stored on this device.`,
      error: s.message,
    }[s.phase] ?? '';
    notice.hidden = !(s.evicted || s.error || (!canRun && s.phase === 'not-installed'));
    notice.textContent = s.evicted
      ? 'Your browser removed the downloaded model to free up storage. Install it again to keep using it on this device; your conversations and memory are still here.'
      : s.error ?? (canRun ? '' : 'This device cannot run the model, so there is nothing to install.');
  }

  installer.on('state', (s) => {
    // Progress arrives up to ten times a second; paint at most once a frame.
    pending = s;
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(pending); });
    if (s.phase !== 'downloading' && s.phase !== 'verifying') { cancelAnimationFrame(frame); frame = 0; render(s); }
  });
  render(installer.state);
  return { render: () => render(installer.state) };
}

/** The "installed" block shown in Settings: storage used and Remove with a confirmation step. */
export function bindModelStorage(root, installer) {
  const line = $('[data-slot="storage-line"]', root);
  const remove = $('[data-action="remove"]', root);
  const confirm = $('[data-slot="confirm-remove"]', root);
  const update = (s) => {
    const on = s.phase === 'installed';
    remove.hidden = !on;
    if (!on) confirm.hidden = true;
    line.textContent = on
      ? `${installer.entry.name}: ${formatBytes(s.size)} stored on this device${s.persisted === true ? ' (kept even when space runs low)' : s.persisted === false ? ' (the browser may remove it when space runs low)' : ''}.`
      : `${installer.entry.name} is not installed.`;
  };
  remove.addEventListener('click', () => {
    confirm.hidden = false;
    $('[data-action="confirm-remove"]', confirm).focus();
  });
  $('[data-action="confirm-remove"]', confirm).addEventListener('click', async () => {
    confirm.hidden = true;
    await installer.remove();
  });
  $('[data-action="keep"]', confirm).addEventListener('click', () => {
    confirm.hidden = true;
    remove.focus();
  });
  installer.on('state', update);
  update(installer.state);
}

