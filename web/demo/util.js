// Small helpers shared by the demo's modules: element creation, number formatting for sizes,
// rates and times, and JSON in localStorage that never throws (private modes and full quotas
// make localStorage fail; the page must keep working without it).

const PREFIX = 'nbl-demo:';

/** Creates an element: el('button', { class: 'x', onclick }, 'text', child, ...). */
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c);
  return e;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function loadJSON(key, fallback) {
  try {
    const s = localStorage.getItem(PREFIX + key);
    return s == null ? fallback : JSON.parse(s);
  } catch {
    return fallback;
  }
}

export function saveJSON(key, value) {
  try {
    if (value === undefined) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}

export function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return '?';
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** Megabytes with one decimal, as the progress line shows them. */
export const mb = (n) => (n / 1e6).toFixed(1);

export function formatDuration(s) {
  if (s == null || !Number.isFinite(s)) return 'estimating…';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function uid() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** A tiny event emitter for module-level state changes. */
export class Emitter {
  constructor() { this.handlers = new Map(); }
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type)?.delete(fn);
  }
  emit(type, detail) {
    for (const fn of this.handlers.get(type) ?? []) {
      try { fn(detail); } catch (e) { console.error(e); }
    }
  }
}

/** Announces a short message to screen readers through the page's polite live region. */
export function announce(text) {
  const r = document.getElementById('announcer');
  if (!r) return;
  r.textContent = '';
  // A separate task makes repeated identical messages announce again.
  setTimeout(() => { r.textContent = text; }, 30);
}
