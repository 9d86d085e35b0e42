// Helpers the pages share (the call itself is the SDK's and call.js's).
export const $ = (id) => document.getElementById(id);

/** A JSON request to this server's API; throws an Error with the server's `code` and message. */
export async function api(method, path, body, token) {
  const headers = body ? { 'content-type': 'application/json' } : {};
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined, credentials: 'same-origin' });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) { const e = new Error(data.message || `request failed (${res.status})`); e.code = data.error; e.status = res.status; throw e; }
  return data;
}

/** m:ss */
export const clock = (ms) => { const s = Math.max(0, Math.floor(ms / 1000)); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; };

/** A WebSocket URL on this server. */
export const wsUrl = (path) => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
