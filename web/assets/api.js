// The page's calls to its own server (same origin only): the chat stream over
// /v1/chat/completions (server-sent events), /v1/models and /get_server_info, each with the API key
// when one is set. Errors come back as ApiError carrying the server's OpenAI-style message. No DOM here.

let apiKey = '';
export function setApiKey(key) { apiKey = key || ''; }

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  if (apiKey) h.authorization = `Bearer ${apiKey}`;
  return h;
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  let code;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code;
    }
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(res.status, message, code);
}

async function getJSON(path) {
  const res = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

export const listModels = () => getJSON('/v1/models');
export const serverInfo = () => getJSON('/get_server_info');

// Yields the JSON of each `data:` event of an SSE body until [DONE].
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
    }
  }
}

// Streams one chat completion. `request` is the JSON body without `stream`; onDelta(delta) gets
// each choice-0 delta, onUsage(usage) the final usage. Resolves with the finish reason; rejects with
// ApiError (server error, or an error event inside the stream) or the AbortError of `signal`.
export async function streamChat(request, { signal, onDelta, onUsage }) {
  const body = { ...request, stream: true, stream_options: { include_usage: true } };
  const res = await fetch('/v1/chat/completions', {
    method: 'POST',
    headers: headers({ 'content-type': 'application/json' }),
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await errorOf(res);
  let finish = null;
  for await (const chunk of sseEvents(res.body)) {
    if (chunk.error) throw new ApiError(chunk.error.code || 500, chunk.error.message || 'error in stream');
    if (chunk.usage) onUsage(chunk.usage);
    const choice = chunk.choices && chunk.choices[0];
    if (!choice) continue;
    if (choice.delta) onDelta(choice.delta);
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return finish;
}
