// Conversations kept on this device (localStorage): the list in the sidebar, the current one,
// and titles. A title comes from the local model when that feature is on (titleSource 'local');
// until then, or without the model, the first words of the first message stand in ('draft').

import { el, loadJSON, saveJSON, uid, Emitter } from './util.js';

const KEY = 'conversations';
const MAX_CONVERSATIONS = 100;

export function draftTitle(text) {
  const words = String(text).replace(/\s+/g, ' ').trim().split(' ').slice(0, 6).join(' ');
  return words.length > 48 ? `${words.slice(0, 47)}…` : words || 'New chat';
}

export class Conversations extends Emitter {
  constructor() {
    super();
    const saved = loadJSON(KEY, null);
    this.list = Array.isArray(saved?.list) ? saved.list : [];
    this.currentId = saved?.currentId && this.list.some((c) => c.id === saved.currentId) ? saved.currentId : null;
  }

  get current() { return this.list.find((c) => c.id === this.currentId) ?? null; }

  save() {
    // Oldest conversations go first when the list or the storage quota overflows.
    this.list.sort((a, b) => b.updated - a.updated);
    if (this.list.length > MAX_CONVERSATIONS) this.list.length = MAX_CONVERSATIONS;
    while (!saveJSON(KEY, { list: this.list, currentId: this.currentId }) && this.list.length > 1) this.list.pop();
  }

  /** The current conversation, created when there is none. */
  ensureCurrent() {
    if (this.current) return this.current;
    const c = { id: uid(), title: 'New chat', titleSource: 'none', created: Date.now(), updated: Date.now(), messages: [] };
    this.list.unshift(c);
    this.currentId = c.id;
    this.save();
    this.emit('change');
    return c;
  }

  newChat() {
    this.currentId = null;
    this.save();
    this.emit('select', null);
    this.emit('change');
  }

  select(id) {
    if (!this.list.some((c) => c.id === id)) return;
    this.currentId = id;
    this.save();
    this.emit('select', this.current);
    this.emit('change');
  }

  remove(id) {
    this.list = this.list.filter((c) => c.id !== id);
    if (this.currentId === id) this.currentId = null;
    this.save();
    if (!this.currentId) this.emit('select', null);
    this.emit('change');
  }

  touch(c) {
    c.updated = Date.now();
    this.save();
    this.emit('change');
  }

  setTitle(c, title, source) {
    c.title = title;
    c.titleSource = source;
    this.touch(c);
  }
}

/** Renders the conversation list into `root` (an element holding a <ul>). */
export function bindConversationList(root, convs) {
  const ul = root.querySelector('ul');
  root.querySelector('[data-action="new-chat"]').addEventListener('click', () => {
    convs.newChat();
    document.getElementById('composer-input')?.focus();
  });
  const render = () => {
    const items = convs.list.filter((c) => c.messages.length > 0).map((c) => {
      const current = c.id === convs.currentId;
      const open = el('button', {
        class: 'conv-open', 'aria-current': current ? 'page' : null,
        dataset: { titleSource: c.titleSource }, title: c.title,
        onclick: () => convs.select(c.id),
      }, el('span', { class: 'conv-title' }, c.title),
      c.titleSource === 'local' ? el('span', { class: 'visually-hidden' }, ' (title by the local model)') : null);
      const del = el('button', { class: 'icon-btn conv-delete', 'aria-label': `Delete conversation “${c.title}”`, onclick: () => convs.remove(c.id) }, '×');
      return el('li', { dataset: { id: c.id } }, open, del);
    });
    ul.replaceChildren(...items);
    root.querySelector('[data-slot="empty"]').hidden = items.length > 0;
  };
  convs.on('change', render);
  render();
}
