// The chat: messages of the current conversation, streamed answers painted once per animation
// frame, Stop (button or Esc), Regenerate and Copy, the empty state with rotating example prompts,
// quick-reply chips under the last answer, and the helper tasks that run after an answer (title,
// quick replies, memory proposals). Where each message goes (this device or the server model)
// is decided here, with the local classifier for "Auto".

import { el, $, announce } from './util.js';
import { draftTitle } from './conversations.js';
import { classify, routeBadge } from './router.js';
import { remoteChat } from './remote.js';
import { perf } from './perf.js';

const EXAMPLES_SHOWN = 3;
const ROTATE_MS = 6000;

export class Chat {
  constructor({ root, config, settings, convs, memory, local }) {
    Object.assign(this, { root, config, settings, convs, memory, local });
    this.list = $('#messages', root);
    this.empty = $('#empty-state', root);
    this.chips = $('#quick-replies', root);
    this.form = $('#composer', root);
    this.input = $('#composer-input', root);
    this.mode = $('#route-mode', root);
    this.sendBtn = $('[data-action="send"]', root);
    this.stopBtn = $('[data-action="stop"]', root);
    this.hint = $('#composer-hint', root);
    this.controller = null; // the generation in progress
    this.tasksController = null; // helper tasks after an answer
    this.exampleStart = 0;

    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.send(this.input.value);
    });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send(this.input.value);
      }
    });
    this.input.addEventListener('input', () => {
      this.autosize();
      // Someone typing their next message wants the model free: helper tasks not started yet wait.
      this.tasksController?.abort();
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.controller && !document.querySelector('dialog[open]')) {
        e.preventDefault();
        this.stop();
      }
    });
    this.stopBtn.addEventListener('click', () => this.stop());
    this.mode.value = settings.mode;
    this.mode.addEventListener('change', () => {
      settings.mode = this.mode.value;
      settings.save();
    });
    convs.on('select', () => this.render());
    settings.on('change', () => this.updateComposer());
    local.on('state', () => this.updateComposer());
    this.startExamples();
    this.render();
  }

  get busy() { return !!this.controller; }

  // ---- where a message goes ---------------------------------------------------------------

  localChat() { return this.local.ready && this.settings.features.chat; }

  updateComposer() {
    const local = this.localChat();
    const server = this.settings.endpointOn;
    const opt = (v) => this.mode.querySelector(`option[value="${v}"]`);
    opt('local').disabled = !local;
    opt('server').disabled = !server;
    if (this.mode.selectedOptions[0]?.disabled) this.mode.value = 'auto';
    const loading = this.local.state.phase === 'loading';
    const can = local || server;
    this.input.disabled = !can && !loading;
    this.sendBtn.disabled = this.busy || (!can && !loading);
    let hint = '';
    if (loading) hint = 'Loading the model into memory…';
    else if (!can) {
      hint = this.local.ready
        ? 'Chat on this device is off in Settings, and no server model is set up.'
        : 'Install the model above to chat on this device, or set up a server model in Settings.';
    } else if (!local) hint = 'Answers come from the server model.';
    else hint = this.local.describe() ? `Answers are made ${this.local.describe()}; nothing you type leaves it${server ? ' unless routed to the server' : ''}.` : '';
    this.hint.textContent = hint;
    this.input.placeholder = can ? 'Message (Enter to send, Shift+Enter for a new line)' : 'Chat is not available yet';
  }

  /** Decides where a message is answered: { mode, route?, scores?, via, note? } or throws. */
  async decide(text) {
    const mode = this.mode.value;
    const local = this.localChat();
    const server = this.settings.endpointOn;
    if (mode === 'local') return { mode, via: 'local' };
    if (mode === 'server') return { mode, via: 'server' };
    let r = null;
    if (this.settings.features.routing && this.local.ready && this.local.hasTask('route')) {
      try {
        r = await classify(this.local.engine, text, this.config);
      } catch (e) {
        console.warn('routing failed', e);
      }
    }
    if (!r) return { mode, via: local ? 'local' : 'server' };
    const base = { mode, route: r.route, scores: r.scores, confidence: r.confidence, unsure: r.unsure };
    if (r.route === 'server' && !server) return { ...base, via: 'local', note: 'no server set up, answered here' };
    if (r.route !== 'server' && !local) return { ...base, via: 'server', note: 'chat on this device is off' };
    return { ...base, via: r.route === 'server' ? 'server' : 'local' };
  }

  // ---- sending and generating -------------------------------------------------------------

  async send(raw) {
    const text = String(raw ?? '').trim();
    if (!text || this.busy) return;
    if (!this.local.ready && this.local.state.phase === 'loading') {
      try { await this.local.load(); } catch { /* reported in the header */ }
    }
    if (!this.localChat() && !this.settings.endpointOn) return;
    this.tasksController?.abort(); // the user goes on: helper tasks for the last answer can wait
    this.input.value = '';
    this.autosize();
    const conv = this.convs.ensureCurrent();
    conv.quickReplies = [];
    const user = { id: crypto.randomUUID?.() ?? String(Math.random()), role: 'user', content: text };
    conv.messages.push(user);
    if (conv.titleSource === 'none') { conv.title = draftTitle(text); conv.titleSource = 'draft'; }
    this.convs.touch(conv);
    this.appendView(user);
    this.controller = new AbortController();
    this.updateComposer();
    this.setBusy(true);
    let route;
    try {
      // Stop works while the classifier runs too.
      const stopped = new Promise((_, reject) => this.controller.signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
      stopped.catch(() => {}); // settles after the race when Stop ends the generation later
      route = await Promise.race([this.decide(text), stopped]);
    } catch {
      route = { mode: this.mode.value, via: this.localChat() ? 'local' : 'server' };
    }
    user.routing = route;
    this.renderBadge(user);
    await this.generate(conv, route);
  }

  /** Generates the answer to the conversation's last user message. */
  async generate(conv, route) {
    const ctl = this.controller ?? new AbortController();
    this.controller = ctl;
    this.setBusy(true);
    const msg = { id: crypto.randomUUID?.() ?? String(Math.random()), role: 'assistant', content: '', via: route.via };
    conv.messages.push(msg);
    const view = this.appendView(msg, true);
    const body = $('.content', view);
    const text = document.createTextNode('');
    body.replaceChildren(text);
    let frame = 0;
    let atEnd = true;
    let shown = 0; // characters of msg.content already in the text node
    const paint = () => {
      frame = 0;
      // Appending (rather than setting the whole text) lets the browser keep the shaping of the
      // text already laid out, so a frame costs the new tokens, not the whole answer.
      text.appendData(msg.content.slice(shown));
      shown = msg.content.length;
      if (atEnd) this.scrollToEnd();
    };
    const onDelta = (t) => {
      msg.content += t;
      // Tokens arrive faster than frames: paint at most once per frame.
      if (!frame) {
        atEnd = this.nearEnd();
        frame = requestAnimationFrame(paint);
      }
    };
    const history = this.promptMessages(conv, route.via);
    const endSpan = perf.begin('generation');
    let finish = 'stop';
    try {
      if (route.via === 'local') {
        const engine = this.local.engine;
        const stream = await engine.chat.completions.create({ messages: history, stream: true, max_tokens: this.config.maxTokens, signal: ctl.signal });
        for await (const chunk of stream) {
          const c = chunk.choices[0];
          if (c?.delta?.content) onDelta(c.delta.content);
          if (c?.finish_reason) finish = c.finish_reason;
        }
      } else {
        const r = await remoteChat(this.settings.endpoint, history, { signal: ctl.signal, onDelta, maxTokens: this.config.maxTokens });
        finish = r.finish;
      }
    } catch (e) {
      if (e?.name === 'AbortError' || ctl.signal.aborted) finish = 'abort';
      else {
        finish = 'error';
        msg.error = e?.message ?? String(e);
      }
    } finally {
      endSpan();
      cancelAnimationFrame(frame);
    }
    if (finish === 'abort') msg.stopped = true;
    if (finish === 'length') msg.truncated = true;
    if (shown < msg.content.length) text.appendData(msg.content.slice(shown));
    this.controller = null;
    this.setBusy(false);
    this.convs.touch(conv);
    this.finishView(view, msg);
    announce(msg.error ? `The answer failed: ${msg.error}` : msg.stopped ? 'Stopped.' : 'Answer complete.');
    if (!msg.error) this.afterAnswer(conv, msg);
  }

  /** The messages sent to the model: system prompt (with remembered facts on device) + history. */
  promptMessages(conv, via) {
    let system = this.config.systemPrompt;
    const mem = via === 'local' ? this.memory.promptText() : '';
    if (mem) system += `\n\n${mem}`;
    const out = [{ role: 'system', content: system }];
    for (const m of conv.messages) {
      if (m.error || (m.role === 'assistant' && !m.content)) continue;
      out.push({ role: m.role, content: m.content });
    }
    // The answer being generated is the last (empty) element; leave it out.
    return out;
  }

  stop() {
    if (!this.controller) return;
    this.controller.abort();
  }

  async regenerate() {
    const conv = this.convs.current;
    if (!conv || this.busy) return;
    const last = conv.messages.at(-1);
    if (last?.role !== 'assistant') return;
    conv.messages.pop();
    conv.quickReplies = [];
    this.list.querySelector(`[data-id="${CSS.escape(last.id)}"]`)?.remove();
    const user = [...conv.messages].reverse().find((m) => m.role === 'user');
    const prev = user?.routing ?? { mode: 'auto', via: this.localChat() ? 'local' : 'server' };
    const via = prev.via === 'server' && !this.settings.endpointOn ? 'local' : prev.via === 'local' && !this.localChat() ? 'server' : prev.via;
    this.controller = new AbortController();
    await this.generate(conv, { ...prev, via });
  }

  async copy(msg, button) {
    try {
      await navigator.clipboard.writeText(msg.content);
      button.textContent = 'Copied';
      announce('Copied to the clipboard.');
    } catch {
      button.textContent = 'Copy failed';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  }

  // ---- helper tasks after an answer -------------------------------------------------------

  async afterAnswer(conv, msg) {
    const f = this.settings.features;
    const local = this.local;
    if (!local.ready) return;
    const ctl = new AbortController();
    this.tasksController = ctl;
    const still = () => !ctl.signal.aborted && this.convs.list.includes(conv);
    const messages = conv.messages.filter((m) => !m.error && m.content).map((m) => ({ role: m.role, content: m.content }));
    const run = async (name, fn) => {
      if (!still()) return;
      const end = perf.begin(`task:${name}`);
      try {
        await fn();
      } catch (e) {
        if (e?.name !== 'AbortError') console.warn(`${name} failed:`, e);
      } finally {
        end();
      }
    };
    try {
      if (f.titles && conv.titleSource !== 'local' && local.hasTask('title')) {
        await run('title', async () => {
          const title = await local.engine.tasks.title(messages.slice(0, 4), { signal: ctl.signal });
          if (still() && typeof title === 'string' && title.trim()) this.convs.setTitle(conv, title.trim(), 'local');
        });
      }
      if (msg.stopped) return; // the user cut the answer short: no suggestions for it
      if (f.quickReplies && local.hasTask('quickReplies')) {
        await run('quickReplies', async () => {
          const replies = await local.engine.tasks.quickReplies(messages.slice(-6), { n: 3, signal: ctl.signal });
          if (!still() || !Array.isArray(replies)) return;
          conv.quickReplies = replies.filter((r) => typeof r === 'string' && r.trim()).map((r) => r.trim()).slice(0, 4);
          this.convs.touch(conv);
          if (conv === this.convs.current) this.renderChips(conv);
        });
      }
      if (f.memory && local.hasTask('memory')) {
        await run('memory', async () => {
          const existing = this.memory.facts.map((x) => x.fact);
          const facts = await local.engine.tasks.memory(messages.slice(-4), { existing, signal: ctl.signal });
          if (still() && Array.isArray(facts)) {
            const n = this.memory.propose(facts, conv.id);
            if (n) announce(`${n} new memory suggestion${n > 1 ? 's' : ''} to review.`);
          }
        });
      }
    } finally {
      if (this.tasksController === ctl) this.tasksController = null;
    }
  }

  // ---- rendering --------------------------------------------------------------------------

  setBusy(on) {
    this.root.dataset.busy = on ? 'true' : 'false';
    this.stopBtn.hidden = !on;
    this.stopBtn.disabled = !on;
    this.sendBtn.hidden = on;
    this.updateComposer();
    if (on) this.chips.replaceChildren();
  }

  autosize() {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight, 200)}px`;
  }

  nearEnd() {
    const s = this.list;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToEnd(force) {
    if (force || this.nearEnd()) this.list.scrollTop = this.list.scrollHeight;
  }

  render() {
    const conv = this.convs.current;
    const msgs = conv?.messages ?? [];
    this.empty.hidden = msgs.length > 0;
    this.list.hidden = msgs.length === 0;
    const lastAssistant = msgs.findLast((m) => m.role === 'assistant');
    this.list.replaceChildren(...msgs.map((m) => this.messageView(m, false, m === lastAssistant && m === msgs.at(-1))));
    this.renderChips(conv);
    this.scrollToEnd(true);
    this.updateComposer();
  }

  /**
   * Adds one message to the list. Re-rendering the whole conversation would lay out every
   * earlier answer again, which for long conversations is a long main-thread task.
   */
  appendView(m, streaming = false) {
    if (this.list.hidden) this.render(); // the first message: swap the empty state for the list
    this.list.querySelector(`[data-id="${CSS.escape(m.id)}"]`)?.remove();
    for (const b of this.list.querySelectorAll('[data-action="regenerate"]')) b.remove();
    const v = this.messageView(m, streaming);
    this.list.append(v);
    this.scrollToEnd(true);
    return v;
  }

  /** Turns the streaming view into the finished one in place (its text stays laid out). */
  finishView(view, msg) {
    const fresh = this.messageView(msg, false, true);
    view.classList.remove('streaming');
    view.removeAttribute('aria-busy');
    view.querySelector('.meta').replaceWith(fresh.querySelector('.meta'));
    const content = view.querySelector('.content');
    for (const extra of fresh.querySelector('.content').children) content.append(extra.cloneNode(true));
    const actions = fresh.querySelector('.msg-actions');
    if (actions) view.append(actions);
    if (!view.isConnected && this.convs.current?.messages.includes(msg)) this.render();
    this.renderChips(this.convs.current);
    this.updateComposer();
    this.scrollToEnd();
  }

  messageView(m, streaming = false, last = false) {
    const isUser = m.role === 'user';
    const meta = [];
    if (isUser && m.routing) meta.push(routeBadge(this.config, m.routing));
    if (!isUser) {
      meta.push(el('span', { class: 'badge via' }, m.via === 'server' ? 'Server model' : 'On device'));
      if (m.stopped) meta.push(el('span', { class: 'badge stopped' }, 'Stopped'));
      if (m.truncated) meta.push(el('span', { class: 'badge' }, 'Reached the length limit'));
    }
    const actions = !isUser && !streaming ? el('div', { class: 'msg-actions' },
      m.content ? el('button', { class: 'btn small', dataset: { action: 'copy' }, onclick: (e) => this.copy(m, e.currentTarget) }, 'Copy') : null,
      last ? el('button', { class: 'btn small', dataset: { action: 'regenerate' }, onclick: () => this.regenerate() }, 'Regenerate') : null) : null;
    const content = el('div', { class: 'content' }, m.content);
    if (m.error) content.append(el('p', { class: 'error' }, `Could not answer: ${m.error}`));
    if (!isUser && !m.content && !m.error && !streaming) content.append(el('span', { class: 'muted' }, '(no text)'));
    return el('article', {
      class: `msg ${m.role}${streaming ? ' streaming' : ''}`, dataset: { id: m.id, role: m.role },
      'aria-busy': streaming ? 'true' : null, 'aria-label': isUser ? 'You said' : 'Assistant said',
    }, el('div', { class: 'meta' }, el('span', { class: 'who' }, isUser ? 'You' : 'Assistant'), meta), content, actions);
  }

  renderBadge(user) {
    const v = this.list.querySelector(`[data-id="${CSS.escape(user.id)}"] .meta`);
    const b = routeBadge(this.config, user.routing);
    if (v && b) v.append(b);
  }

  renderChips(conv) {
    const replies = !this.busy && conv?.messages.at(-1)?.role === 'assistant' ? conv.quickReplies ?? [] : [];
    this.chips.replaceChildren(...replies.map((r) => el('button', { class: 'chip', type: 'button', onclick: () => this.send(r) }, r)));
    this.chips.hidden = replies.length === 0;
  }

  startExamples() {
    const box = $('[data-slot="examples"]', this.empty);
    const ex = this.config.examples ?? [];
    const show = () => {
      const pick = [];
      for (let i = 0; i < Math.min(EXAMPLES_SHOWN, ex.length); i++) pick.push(ex[(this.exampleStart + i) % ex.length]);
      box.replaceChildren(...pick.map((p) => el('li', {}, el('button', {
        class: 'example', type: 'button',
        onclick: () => { this.input.value = p; this.autosize(); this.input.focus(); },
      }, p))));
    };
    show();
    const reduced = matchMedia('(prefers-reduced-motion: reduce)').matches;
    if (reduced || ex.length <= EXAMPLES_SHOWN) return;
    setInterval(() => {
      // Never swap the buttons under someone's pointer or keyboard focus.
      if (this.empty.hidden || box.contains(document.activeElement) || box.matches(':hover')) return;
      this.exampleStart = (this.exampleStart + EXAMPLES_SHOWN) % ex.length;
      box.classList.add('fade');
      setTimeout(() => { show(); box.classList.remove('fade'); }, 200);
    }, ROTATE_MS);
  }
}
