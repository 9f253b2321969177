// The model on this device: loads the installed model into the engine (web/engine.js; inference
// runs in a Web Worker so the page stays responsive) once it is installed, and says which backend
// actually runs it. Helper tasks (titles, quick replies, memory, routing) are engine.tasks.*.

import { createEngine } from '../engine.js';
import { Emitter } from './util.js';

export class LocalModel extends Emitter {
  constructor({ entry, catalog, store, options }) {
    super();
    this.entry = entry;
    this.catalog = catalog;
    this.store = store;
    this.options = options ?? {};
    this.engine = null;
    this.state = { phase: 'off' };
    this.loading = null;
  }

  set(state) {
    this.state = state;
    this.emit('state', state);
  }

  get ready() { return this.state.phase === 'ready'; }

  /** Whether the loaded engine offers helper task `name`. */
  hasTask(name) { return typeof this.engine?.tasks?.[name] === 'function'; }

  load() {
    if (this.engine) return Promise.resolve(this.engine);
    if (this.loading) return this.loading;
    this.set({ phase: 'loading', loaded: 0, total: this.entry.size });
    this.loading = (async () => {
      try {
        const engine = await createEngine({
          ...this.options,
          model: this.entry.id,
          catalog: this.catalog,
          store: this.store,
          // A worker inside the demo's folder, so the service worker's scope covers it offline.
          workerUrl: new URL('./engine-worker.js', import.meta.url),
          onProgress: (p) => {
            if (p.phase === 'load') this.set({ phase: 'loading', loaded: p.loaded ?? 0, total: p.total ?? this.entry.size });
          },
        });
        this.engine = engine;
        this.set({ phase: 'ready', info: engine.info });
        return engine;
      } catch (e) {
        this.set({ phase: 'error', message: e?.message ?? String(e) });
        throw e;
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  async unload() {
    const e = this.engine;
    this.engine = null;
    try { await this.loading; } catch { /* already reported */ }
    await e?.dispose();
    await this.engine?.dispose();
    this.engine = null;
    this.set({ phase: 'off' });
  }

  /** A one-line description of where the model runs, from the engine itself. */
  describe() {
    const i = this.state.info;
    if (!i) return '';
    if (i.backend === 'webgpu') return 'on your GPU (WebGPU)';
    if (i.backend === 'wasm') return i.threaded ? `on your CPU (${i.threads} threads)` : 'on your CPU (one thread)';
    return `on ${i.backend}`;
  }
}
