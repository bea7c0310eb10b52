// The REST API client: every call sends the API key the user signed in with (kept in
// sessionStorage: gone when the tab closes) and turns error answers into ApiError with the
// server's message.

const KEY = 'statewright.apiKey';
export const BASE = '/api/v1';

export function apiKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** The server wants an API key (or a different one). */
  get auth() {
    return this.status === 401 || this.status === 403;
  }
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function failure(res) {
  let body = null;
  let text = '';
  try {
    text = await res.text();
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  let message = (body && (body.message || body.detail)) || text || res.statusText;
  if (typeof message !== 'string') message = JSON.stringify(message);
  if (body && Array.isArray(body.errors) && body.errors.length) {
    const first = body.errors[0];
    message += `: ${(first.loc || []).join('.')} ${first.msg || ''}`.trimEnd();
  }
  const code = (body && (body.code || body.__type)) || `HTTP ${res.status}`;
  return new ApiError(res.status, code, `${message} (${code}, HTTP ${res.status})`, body);
}

/** fetch() an API path; resolves to the Response when it is 2xx, throws ApiError otherwise. */
export async function request(path, { method = 'GET', body, signal, headers } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json', ...authHeaders(), ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path.startsWith('/ui/') ? path : BASE + path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NetworkError', `The server did not answer: ${err.message}`, null);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

export async function get(path, opts) {
  return (await request(path, opts)).json();
}

export async function post(path, body, opts) {
  const res = await request(path, { ...opts, method: 'POST', body: body === undefined ? {} : body });
  return res.status === 204 ? null : res.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

export const enc = encodeURIComponent;

/**
 * Read a text/event-stream with fetch (EventSource cannot send the Authorization header).
 * Calls onMessage({event, data, id}) per message; resolves when the stream ends.
 */
export async function stream(path, onMessage, signal) {
  const res = await request(path, { signal, headers: { Accept: 'text/event-stream' } });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const message = { event: 'message', data: '', id: null };
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') message.event = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id') message.id = val;
      }
      if (!data.length && message.event === 'message') continue;
      message.data = data.join('\n');
      onMessage(message);
    }
  }
}
