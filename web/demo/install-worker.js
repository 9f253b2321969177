// Runs a model install (web/store.js) off the page's main thread: hashing and storing chunks of
// several megabytes would otherwise block the page for tens of milliseconds at a time.
//   page → worker  { type: 'install', entry, storeOptions }   { type: 'abort', reason }
//   worker → page  { type: 'progress', progress }   { type: 'done', result }   { type: 'error', error }

import { createStore } from '../store.js';

let controller = null;

self.onmessage = async ({ data }) => {
  if (data?.type === 'abort') {
    controller?.abort(data.reason);
    return;
  }
  if (data?.type !== 'install') return;
  controller = new AbortController();
  try {
    const store = createStore(data.storeOptions ?? {});
    const result = await store.install(data.entry, {
      signal: controller.signal,
      onProgress: (progress) => postMessage({ type: 'progress', progress }),
    });
    postMessage({ type: 'done', result });
  } catch (e) {
    const { name = 'Error', message = String(e), code, needed, available, expected, actual, status } = e ?? {};
    postMessage({ type: 'error', error: { name, message, code, needed, available, expected, actual, status } });
  }
};
