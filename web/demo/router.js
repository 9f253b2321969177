// Routing for messages sent with "Auto": the local model classifies the message against the
// configured routes (engine.tasks.route: label likelihoods, no generation), and the message goes
// to the device or to the server model accordingly. The chosen route is shown as a badge.

import { el } from './util.js';

/**
 * Classifies text. Resolves to { route, scores, label } or null when the local classifier is
 * unavailable (no model loaded, the feature is off, or the engine has no route task).
 */
export async function classify(engine, text, config) {
  if (typeof engine?.tasks?.route !== 'function') return null;
  const routes = config.routes.map((r) => ({ id: r.id, description: r.description, examples: r.examples }));
  const r = await engine.tasks.route(text, { routes, threshold: config.routeThreshold, fallback: config.routeFallback });
  const route = r?.route ?? config.routeFallback;
  const confidence = typeof r?.confidence === 'number' ? r.confidence : Array.isArray(r?.scores) ? Math.max(...r.scores) : null;
  return { route, scores: r?.scores ?? null, confidence, unsure: !!r?.fallback, label: labelOf(config, route) };
}

export function labelOf(config, route) {
  return config.routes.find((r) => r.id === route)?.label ?? route;
}

/**
 * The badge under a user message: how it was routed and where it was answered.
 * info: { mode: 'auto' | 'local' | 'server', route?, confidence?, unsure?, via: 'local' | 'server', note? }
 */
export function routeBadge(config, info) {
  if (!info) return null;
  const where = info.via === 'server' ? 'Server' : 'On device';
  let text, title;
  if (info.mode === 'auto' && info.route) {
    const sure = info.confidence != null ? ` (${Math.round(info.confidence * 100)}% sure)` : '';
    text = `Auto → ${labelOf(config, info.route)}`;
    title = info.unsure
      ? `The local classifier was unsure${sure}, so Auto used the default, “${labelOf(config, info.route)}”. Answered: ${where.toLowerCase()}.`
      : `The local classifier chose “${labelOf(config, info.route)}”${sure}. Answered: ${where.toLowerCase()}.`;
  } else if (info.mode === 'auto') {
    text = `Auto → ${where}`;
    title = 'Routing on this device is off or unavailable, so Auto used the default.';
  } else {
    text = where;
    title = `You chose ${where.toLowerCase()}.`;
  }
  return el('span', {
    class: `badge route-badge via-${info.via}`, title,
    dataset: { route: info.route ?? '', via: info.via, mode: info.mode },
  }, text, info.note ? el('span', { class: 'badge-note' }, ` · ${info.note}`) : null,
  el('span', { class: 'visually-hidden' }, `. ${title}`));
}
