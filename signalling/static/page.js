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

/**
 * Server-sent events from `path`, authorised by `token` in a header (not in
 * the URL, where it would be logged and leak): `EventSource` cannot send
 * headers, so this reads the stream with fetch. Calls `onData` with each
 * event's data, `onError` when the stream breaks (it reconnects after a
 * second); `close()` stops it.
 */
export function eventStream(path, token, onData, onError) {
  let closed = false, abort = null;
  const run = async () => {
    while (!closed) {
      abort = new AbortController();
      try {
        const res = await fetch(path, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: abort.signal });
        if (!res.ok) throw new Error(`events: ${res.status}`);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n/g, '\n');
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const data = buf.slice(0, cut).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
            buf = buf.slice(cut + 2);
            if (data && !closed) onData(data);
          }
        }
        if (closed) return;
        throw new Error('events: stream ended');
      } catch (e) {
        if (closed) return;
        onError(e);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  run();
  return { close: () => { closed = true; if (abort) abort.abort(); } };
}
