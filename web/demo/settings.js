// The user's choices, kept in localStorage: which features the local model powers (chosen in the
// setup step after install, changed later in Settings), whether setup is done, and the optional
// server endpoint. Other modules read `settings.features` and listen for 'change'.

import { el, loadJSON, saveJSON, Emitter } from './util.js';

export const FEATURES = [
  { id: 'chat', name: 'Chat', help: 'Answers in the chat come from the model on this device.' },
  { id: 'titles', name: 'Conversation titles', help: 'Names each conversation from its first messages.' },
  { id: 'quickReplies', name: 'Quick replies', help: 'Suggests short replies under the last answer.' },
  { id: 'memory', name: 'Memory analysis', help: 'Proposes facts about you to remember; you accept or reject each one.' },
  { id: 'routing', name: 'Routing for Auto', help: 'Decides whether an "Auto" message is answered here or by the server model.' },
];

export class Settings extends Emitter {
  constructor(config) {
    super();
    const saved = loadJSON('settings', {});
    this.features = { ...config.features, ...(saved.features ?? {}) };
    this.setupDone = !!saved.setupDone;
    // The page's configured endpoint is the default; a user's own entry replaces it.
    this.endpoint = { ...config.endpoint, ...(saved.endpoint ?? {}) };
    this.mode = saved.mode ?? 'auto'; // composer's model choice: 'auto' | 'local' | 'server'
    this.useServer = !!saved.useServer; // chat with the server model without installing
  }

  save() {
    saveJSON('settings', {
      features: this.features, setupDone: this.setupDone, endpoint: this.endpoint, mode: this.mode, useServer: this.useServer,
    });
    this.emit('change', this);
  }

  setFeature(id, on) {
    this.features[id] = !!on;
    this.save();
  }

  get endpointOn() { return !!this.endpoint.url; }
}

/** A fieldset of feature switches bound to settings; `prefix` keeps ids unique per form. */
export function featureToggles(settings, prefix) {
  const rows = FEATURES.map((f) => {
    const id = `${prefix}-${f.id}`;
    const input = el('input', { type: 'checkbox', id, role: 'switch', 'aria-describedby': `${id}-help`, dataset: { feature: f.id } });
    input.checked = !!settings.features[f.id];
    input.addEventListener('change', () => settings.setFeature(f.id, input.checked));
    settings.on('change', () => { input.checked = !!settings.features[f.id]; });
    return el('div', { class: 'toggle' },
      input,
      el('label', { for: id }, f.name),
      el('p', { id: `${id}-help`, class: 'help' }, f.help));
  });
  return el('fieldset', { class: 'features' }, el('legend', {}, 'Use the model on this device for'), rows);
}

/** Binds the Settings dialog: feature toggles and the server endpoint form. */
export function bindSettingsDialog(dialog, settings) {
  dialog.querySelector('[data-slot="features"]').replaceChildren(featureToggles(settings, 'settings'));
  const form = dialog.querySelector('#endpoint-form');
  const fill = () => {
    form.elements.url.value = settings.endpoint.url ?? '';
    form.elements.model.value = settings.endpoint.model ?? '';
    form.elements.apiKey.value = settings.endpoint.apiKey ?? '';
  };
  fill();
  const status = dialog.querySelector('#endpoint-status');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const url = form.elements.url.value.trim();
    if (url) {
      try {
        const u = new URL(url);
        if (!/^https?:$/.test(u.protocol)) throw new Error('use http or https');
      } catch (err) {
        status.textContent = `Not a valid URL (${err.message}).`;
        form.elements.url.focus();
        return;
      }
    }
    settings.endpoint = { url, model: form.elements.model.value.trim(), apiKey: form.elements.apiKey.value };
    settings.save();
    status.textContent = url ? `Saved: messages routed to the server go to ${url}.` : 'Saved: no server; everything stays on this device.';
  });
  form.querySelector('[data-action="clear-endpoint"]').addEventListener('click', () => {
    settings.endpoint = { url: '', model: '', apiKey: '' };
    settings.save();
    fill();
    status.textContent = 'Server removed: everything stays on this device.';
  });
  dialog.addEventListener('close', fill);
}
