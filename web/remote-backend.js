// The remote backend: the last link of the fallback chain, used only when the site configures
// one (createEngine({ remote: { url, model, headers } })) and neither WebGPU nor WebAssembly can
// run the model here. It forwards the conversation to an OpenAI-compatible endpoint
// (POST {url}/chat/completions, streamed as server-sent events), so unlike the local backends the
// text leaves the device: sites choose this knowingly. Helper tasks are not offered on it.

function remoteError(message, status) {
  const e = new Error(message);
  e.code = 'remote';
  if (status !== undefined) e.status = status;
  return e;
}

// C-named generation parameters back to OpenAI request fields.
function requestBody(messages, params, model) {
  const body = { model, messages, stream: true, stream_options: { include_usage: true } };
  for (const k of ['max_tokens', 'temperature', 'top_p', 'seed', 'stop']) if (params[k] !== undefined) body[k] = params[k];
  const rf = params.response_format;
  if (rf?.type === 'json_object') body.response_format = { type: 'json_object' };
  else if (rf?.type === 'json_schema') body.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: JSON.parse(rf.schema_text) } };
  return body;
}

/** Splits a byte stream of server-sent events into the data of each event. */
async function* sseData(body, signal) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { done, value } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
        const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (data) yield data;
      }
    }
    if (buf.trim().startsWith('data:')) yield buf.trim().slice(5).trim();
  } finally {
    reader.cancel().catch(() => {});
  }
}

export class RemoteBackend {
  /**
   * options.remote: { url (the API base, e.g. 'https://example.com/v1'), model (sent as the
   * request's model), headers (e.g. an Authorization header), fetch (an implementation to use) }.
   */
  static async create(options = {}) {
    const r = options.remote;
    if (!r || typeof r.url !== 'string' || !r.url) throw new TypeError('remote: { url } is required');
    const b = new RemoteBackend(r);
    return b;
  }

  constructor({ url, model = '', headers = {}, fetch: fetchImpl }) {
    this.name = 'remote';
    this.url = url.replace(/\/+$/, '');
    this.model = model;
    this.headers = headers;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
    this.info = { backend: 'remote', remote_url: this.url, remote_model: model, n_ctx: 0 };
  }

  async generate({ messages, params = {} }, { onDelta, signal } = {}) {
    if (signal?.aborted) return { finish: 'abort', usage: null };
    let res;
    try {
      res = await this.fetch(`${this.url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...this.headers },
        body: JSON.stringify(requestBody(messages, params, this.model)),
        signal,
      });
    } catch (e) {
      if (signal?.aborted) return { finish: 'abort', usage: null };
      throw remoteError(`remote: ${this.url}: ${e?.message ?? e}`);
    }
    if (!res.ok) {
      let detail = '';
      try { detail = (await res.json())?.error?.message ?? ''; } catch { /* not JSON */ }
      throw remoteError(`remote: HTTP ${res.status}${detail ? `: ${detail}` : ''}`, res.status);
    }
    let finish = null, usage = null, completion = 0;
    try {
      for await (const data of sseData(res.body, signal)) {
        if (data === '[DONE]') break;
        let chunk;
        try { chunk = JSON.parse(data); } catch { throw remoteError(`remote: not a JSON event: ${data.slice(0, 80)}`); }
        if (chunk.error) throw remoteError(`remote: ${chunk.error.message ?? 'error'}`);
        const c = chunk.choices?.[0];
        if (c?.delta?.content) {
          completion++;
          onDelta?.(c.delta.content, -1);
        }
        if (c?.finish_reason) finish = c.finish_reason === 'length' ? 'length' : 'stop';
        if (chunk.usage) usage = chunk.usage;
      }
    } catch (e) {
      if (signal?.aborted) return { finish: 'abort', usage: null };
      throw e;
    }
    if (signal?.aborted) return { finish: 'abort', usage: null };
    return {
      finish: finish ?? 'stop',
      usage: {
        prompt_tokens: usage?.prompt_tokens ?? 0,
        cached_tokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
        completion_tokens: usage?.completion_tokens ?? completion,
        dropped_messages: 0,
      },
    };
  }

  async tokenize() { throw remoteError('remote: tokenize is not available on a remote backend'); }
  async renderChat() { throw remoteError('remote: renderChat is not available on a remote backend'); }
  reset() {}
  dispose() {}
}
