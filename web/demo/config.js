// The demo's configuration: what a web developer changes to embed it. Values come, later ones
// winning, from DEFAULTS below, a <script type="application/json" id="nbl-config"> block in the
// page, a `window.NBL_CONFIG` object set before app.js loads, and for quick trials the query
// parameters ?catalog= (same-origin URLs only) and ?model=.

export const DEFAULTS = Object.freeze({
  /** The model catalog (see web/models.json); relative to the page. */
  catalog: '../models.json',
  /** Catalog id of the model to offer; null: the catalog's default. */
  model: null,
  /** Options for web/store.js's createStore, e.g. { chunkSize }. */
  store: {},
  /** Options for web/engine.js's createEngine (nCtx, threads, backends, ...). */
  engine: { nCtx: 4096 },
  /** Tokens an answer may take at most. */
  maxTokens: 512,
  systemPrompt: 'You are a helpful assistant that runs privately on the user\'s device. Answer briefly and plainly.',
  /**
   * An OpenAI-compatible server for messages routed away from the device, or for devices that
   * cannot run the model. Off unless url is set here or by the user in Settings.
   * apiKey belongs in here only for endpoints on your own machine; it is visible to the page.
   */
  endpoint: { url: '', model: '', apiKey: '' },
  /** Routes the local classifier picks from for messages sent with "Auto". */
  routes: [
    {
      id: 'local',
      label: 'On device',
      description: 'Everyday requests a small model handles well: greetings, rewording, short answers, summaries of text the user gives, brainstorming.',
      examples: ['Rewrite this more politely: send me the file', 'Give me three names for a cat', 'Summarise: the meeting moved to Friday at 3pm'],
    },
    {
      id: 'server',
      label: 'Server',
      description: 'Requests that need a large model: multi-step reasoning, maths, writing or fixing code, facts about the world, long documents.',
      examples: ['Prove that there are infinitely many primes', 'Write a Python function that parses ISO 8601 dates', 'What caused the 2008 financial crisis?'],
    },
  ],
  /** Route chosen when the classifier is unsure (top score below the threshold). */
  routeFallback: 'local',
  routeThreshold: 0.55,
  /** Example prompts the empty chat rotates through. */
  examples: [
    'Rewrite this so it sounds friendlier: "Send me the report today."',
    'Give me five name ideas for a small bakery.',
    'Summarise this in one sentence: The train leaves at 9, so we should meet at the station at 8:40.',
    'Write a two-line birthday message for my sister.',
    'Turn these notes into a to-do list: milk, call Sam, fix bike',
    'Translate "Where is the train station?" into Spanish and French.',
    'What is a good way to start a thank-you email?',
    'Suggest three questions to ask at a job interview.',
  ],
  /** Features the local model may power; the user changes them in setup and Settings. */
  features: { chat: true, titles: true, quickReplies: true, memory: true, routing: true },
});

function readBlock(doc) {
  const s = doc?.getElementById?.('nbl-config');
  if (!s?.textContent?.trim()) return {};
  try {
    return JSON.parse(s.textContent);
  } catch (e) {
    console.error(`#nbl-config is not valid JSON: ${e.message}`);
    return {};
  }
}

function readQuery(loc) {
  const out = {};
  if (!loc) return out;
  const q = new URL(loc.href).searchParams;
  const cat = q.get('catalog');
  if (cat) {
    // Another site's catalog could point the download anywhere: accept only this origin's.
    const u = new URL(cat, loc.href);
    if (u.origin === loc.origin) out.catalog = u.href;
    else console.warn(`?catalog= ignored: ${u.origin} is not this page's origin`);
  }
  const model = q.get('model');
  if (model) out.model = model;
  return out;
}

const isObject = (v) => v && typeof v === 'object' && !Array.isArray(v);

function merge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b ?? {})) out[k] = isObject(v) && isObject(a[k]) ? merge(a[k], v) : v;
  return out;
}

/** The effective configuration for this page. */
export function loadConfig({ doc = globalThis.document, loc = globalThis.location, global = globalThis.NBL_CONFIG } = {}) {
  let c = merge(DEFAULTS, readBlock(doc));
  if (isObject(global)) c = merge(c, global);
  c = merge(c, readQuery(loc));
  if (typeof c.catalog === 'string' && loc) c.catalog = new URL(c.catalog, loc.href).href;
  return c;
}
