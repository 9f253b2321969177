// Memory: facts about the user that the local model proposes from the conversation; nothing is
// remembered until the user accepts it. Accepted facts (kept in localStorage, never sent anywhere
// but to the local model and, for server-routed messages, the configured endpoint) join the
// system prompt. Rejected facts are remembered too, so they are not proposed again.

import { el, loadJSON, saveJSON, uid, Emitter, announce } from './util.js';

const KEY = 'memory';
const norm = (s) => String(s).toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim();

export class Memory extends Emitter {
  constructor() {
    super();
    const m = loadJSON(KEY, {});
    this.facts = Array.isArray(m.facts) ? m.facts : [];
    this.suggestions = Array.isArray(m.suggestions) ? m.suggestions : [];
    this.rejected = Array.isArray(m.rejected) ? m.rejected : [];
  }

  save() {
    saveJSON(KEY, { facts: this.facts, suggestions: this.suggestions, rejected: this.rejected.slice(-200) });
    this.emit('change');
  }

  known(fact) {
    const n = norm(fact);
    return !n || this.facts.some((f) => norm(f.fact) === n) || this.suggestions.some((f) => norm(f.fact) === n) || this.rejected.includes(n);
  }

  /** Adds the model's proposals ({ fact, category, confidence }) that are new. Returns how many. */
  propose(items, source) {
    let added = 0;
    for (const it of items ?? []) {
      const fact = typeof it === 'string' ? it : it?.fact;
      if (typeof fact !== 'string' || this.known(fact)) continue;
      this.suggestions.push({ id: uid(), fact: fact.trim(), category: it.category ?? null, confidence: it.confidence ?? null, source, at: Date.now() });
      added++;
    }
    if (added) this.save();
    return added;
  }

  accept(id) {
    const i = this.suggestions.findIndex((s) => s.id === id);
    if (i < 0) return;
    const [s] = this.suggestions.splice(i, 1);
    this.facts.push({ id: s.id, fact: s.fact, category: s.category, at: Date.now() });
    this.save();
    announce(`Remembered: ${s.fact}`);
  }

  reject(id) {
    const i = this.suggestions.findIndex((s) => s.id === id);
    if (i < 0) return;
    const [s] = this.suggestions.splice(i, 1);
    this.rejected.push(norm(s.fact));
    this.save();
  }

  forget(id) {
    this.facts = this.facts.filter((f) => f.id !== id);
    this.save();
  }

  /** Text for the system prompt, or '' when nothing is remembered. */
  promptText() {
    if (!this.facts.length) return '';
    return `Facts the user asked you to remember:\n${this.facts.map((f) => `- ${f.fact}`).join('\n')}`;
  }
}

/** Renders the memory panel: suggestions with Accept / Reject, remembered facts with Forget. */
export function bindMemoryPanel(root, memory, { onCountChange } = {}) {
  const sug = root.querySelector('[data-slot="suggestions"]');
  const facts = root.querySelector('[data-slot="facts"]');
  const render = () => {
    sug.replaceChildren(...memory.suggestions.map((s) => el('li', { class: 'memory-item suggestion', dataset: { id: s.id } },
      el('p', { class: 'fact' }, s.fact,
        s.category ? el('span', { class: 'tag' }, s.category) : null),
      el('div', { class: 'row' },
        el('button', { class: 'btn small primary', 'aria-label': `Remember: ${s.fact}`, dataset: { action: 'accept' }, onclick: () => memory.accept(s.id) }, 'Remember'),
        el('button', { class: 'btn small', 'aria-label': `Reject: ${s.fact}`, dataset: { action: 'reject' }, onclick: () => memory.reject(s.id) }, 'Reject')))));
    facts.replaceChildren(...memory.facts.map((f) => el('li', { class: 'memory-item fact-item', dataset: { id: f.id } },
      el('p', { class: 'fact' }, f.fact, f.category ? el('span', { class: 'tag' }, f.category) : null),
      el('button', { class: 'btn small', 'aria-label': `Forget: ${f.fact}`, dataset: { action: 'forget' }, onclick: () => memory.forget(f.id) }, 'Forget'))));
    root.querySelector('[data-slot="no-suggestions"]').hidden = memory.suggestions.length > 0;
    root.querySelector('[data-slot="no-facts"]').hidden = memory.facts.length > 0;
    onCountChange?.(memory.suggestions.length);
  };
  memory.on('change', render);
  render();
}
