// The optional server model: an OpenAI-compatible /chat/completions endpoint (llama.cpp's
// server, vLLM, Ollama, OpenAI, ...), streamed with server-sent events. Used only for messages
// routed to the server, or when this device cannot run the model; off unless a URL is set.

/** The completions URL for a base such as http://localhost:8000/v1 (or a full .../chat/completions). */
export function completionsUrl(base) {
  const u = String(base).replace(/\/+$/, '');
  return /\/chat\/completions$/.test(u) ? u : `${u}/chat/completions`;
}

/**
 * Streams a chat completion from the endpoint; calls onDelta(text) per piece. Resolves to
 * { finish } ('stop' | 'length' | 'abort'); rejects with a readable Error on HTTP or network
 * failures.
 */
export async function remoteChat(endpoint, messages, { signal, onDelta, maxTokens } = {}) {
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  if (endpoint.apiKey) headers.Authorization = `Bearer ${endpoint.apiKey}`;
  let res;
  try {
    res = await fetch(completionsUrl(endpoint.url), {
      method: 'POST', headers, signal,
      body: JSON.stringify({ model: endpoint.model || undefined, messages, stream: true, max_tokens: maxTokens }),
    });
  } catch (e) {
    if (e?.name === 'AbortError') return { finish: 'abort' };
    throw new Error(`the server model at ${endpoint.url} cannot be reached (${e?.message ?? e})`);
  }
  if (!res.ok) {
    let detail = '';
    try { detail = (await res.text()).slice(0, 200); } catch { /* none */ }
    throw new Error(`the server model answered HTTP ${res.status}${detail ? `: ${detail}` : ''}`);
  }
  if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
    // A server that ignores stream: one JSON completion.
    const j = await res.json();
    const text = j?.choices?.[0]?.message?.content ?? '';
    if (text) onDelta?.(text);
    return { finish: j?.choices?.[0]?.finish_reason ?? 'stop' };
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', finish = 'stop';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return { finish };
        let j;
        try { j = JSON.parse(data); } catch { continue; }
        const c = j?.choices?.[0];
        if (c?.delta?.content) onDelta?.(c.delta.content);
        if (c?.finish_reason) finish = c.finish_reason;
      }
    }
  } catch (e) {
    if (e?.name === 'AbortError' || signal?.aborted) return { finish: 'abort' };
    throw new Error(`the connection to the server model dropped (${e?.message ?? e})`);
  }
  return { finish };
}
