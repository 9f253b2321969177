// Module worker for the store end-to-end test: opens the same storage from a worker, as the engine
// does, and reports a model's status and the SHA-256 of its bytes read with readRange.
import { createStore } from '/web/store.js';
import { Sha256 } from '/web/sha256.js';

self.onmessage = async ({ data: { id, backend, chunk } }) => {
  try {
    const store = createStore({ backend, chunkSize: chunk });
    const status = await store.status(id);
    const blob = await store.open(id);
    const h = new Sha256();
    const step = 300000; // not a chunk multiple: reads straddle chunk files
    for (let off = 0; off < blob.size; off += step) {
      h.update(await store.readRange(id, off, Math.min(step, blob.size - off)));
    }
    self.postMessage({ status, kind: await store.kind(), size: blob.size, sha256: h.hex() });
  } catch (e) {
    self.postMessage({ error: { name: e.name, code: e.code ?? null, message: String(e.message ?? e) } });
  }
};
