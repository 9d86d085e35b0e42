// The in-call view the room page, the customer page and the agent console
// share, drawn on the client SDK (/sdk/switchboard-client.js): tiles,
// controls, chat, file transfer rows, recording and connection state.
import { Room, mediaUnavailable } from '/sdk/switchboard-client.js';

const CALL_HTML = `
<header class="bar">
  <strong class="call-title"></strong>
  <span id="recording" class="recording" role="status" aria-label="Recording" hidden>● REC</span>
  <span id="status" role="status" aria-live="polite">Connecting…</span>
</header>
<p id="media-notice" class="media-notice" role="alert" hidden></p>
<main class="room">
  <section id="tiles" class="tiles" aria-label="Participants">
    <figure class="tile local" id="local-tile">
      <video id="local-video" autoplay playsinline muted></video>
      <figcaption id="local-label">You</figcaption>
    </figure>
  </section>
  <aside class="side">
    <section class="chat" aria-label="Chat">
      <ol id="chat-log" class="chat-log" aria-live="polite"></ol>
      <form id="chat-form" class="chat-form">
        <label for="chat-input" class="visually-hidden">Message</label>
        <input id="chat-input" autocomplete="off" placeholder="Message" maxlength="2000">
        <button type="submit">Send</button>
      </form>
    </section>
    <section class="files" aria-label="File transfers"><ul id="transfers" class="transfers"></ul></section>
  </aside>
</main>
<footer class="controls">
  <button id="mute" type="button" aria-pressed="false">Mute</button>
  <button id="camera" type="button" aria-pressed="false">Camera off</button>
  <button id="share" type="button" aria-pressed="false">Share screen</button>
  <button id="send-file" type="button">Send file</button>
  <input id="file-input" type="file" hidden>
  <span id="extra-controls" class="extra-controls"></span>
  <button id="leave" type="button" class="danger">Leave</button>
</footer>`;

const $ = (id) => document.getElementById(id);
const fmtSize = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`);
const isScreen = (source) => source === 'screen_share' || source === 'screen_share_audio';

const REASONS = {
  call_ended: 'The call has ended', left: 'You left', server_shutdown: 'The server is restarting',
  connection_lost: 'Connection lost: media could not get through',
  unreachable: 'Connection lost: could not reach the server again',
};

/**
 * Starts a call view in `opts.mount`:
 *   token, room        the access token and its room
 *   title              shown in the bar (defaults to the room)
 *   leaveLabel         "Leave" (room page) or "Hang up" (call pages)
 *   stream             the camera and microphone to publish (default: asked for)
 *   onLeave()          called when the user leaves, before the session ends
 *   onClosed(msg)      called once when the session is over, for any reason
 *   controls           extra elements to put in the control bar
 *   onRecording(msg)   the room's recording started or stopped ({on, error})
 * Returns the SDK's Room, also exposed as `window.switchboard` (tests).
 */
export function startCall(opts) {
  opts.mount.innerHTML = CALL_HTML;
  opts.mount.hidden = false;
  opts.mount.querySelector('.call-title').textContent = opts.title || opts.room;
  $('leave').textContent = opts.leaveLabel || 'Leave';
  for (const b of opts.controls || []) $('extra-controls').append(b);
  const setStatus = (text) => { $('status').textContent = text; };

  const room = new Room({ token: opts.token, room: opts.room, ...(opts.stream ? { stream: opts.stream } : {}) });
  room.ready.catch(() => {}); // a refusal arrives as `closed`
  window.switchboard = room;
  const tiles = new Map(); // tile key (identity, or identity + ' screen') -> {fig, video, cap, videoMid, visible, wishTimer}

  // ---- tiles ----

  function tileFor(key, label, stream) {
    let t = tiles.get(key);
    if (t) return t;
    const fig = document.createElement('figure');
    fig.className = 'tile';
    fig.dataset.identity = key;
    fig.classList.toggle('speaking', room.speakers.some((s) => s.identity === key));
    const video = document.createElement('video');
    video.autoplay = true; video.playsInline = true;
    const cap = document.createElement('figcaption');
    cap.textContent = label;
    fig.append(video, cap);
    $('tiles').append(fig);
    video.srcObject = stream || new MediaStream();
    t = { fig, video, cap, label, videoMid: null, visible: true, wishTimer: null };
    tiles.set(key, t);
    resizes.observe(video);
    sightings.observe(fig);
    return t;
  }

  function removeTile(key) {
    const t = tiles.get(key);
    if (t) { t.fig.remove(); tiles.delete(key); }
  }

  // Adaptive stream: each camera tile tells the server how tall it is
  // drawn, or that nobody sees it (hidden tab, scrolled away), so a
  // thumbnail costs a thumbnail's simulcast layer and a hidden tile no video.
  const tileOf = (el) => [...tiles.values()].find((t) => t.video === el || t.fig === el);
  const resizes = new ResizeObserver((entries) => { for (const e of entries) wishSoon(tileOf(e.target)); });
  const sightings = new IntersectionObserver((entries) => {
    for (const e of entries) { const t = tileOf(e.target); if (t) { t.visible = e.isIntersecting; wishSoon(t); } }
  });
  document.addEventListener('visibilitychange', () => { for (const t of tiles.values()) wishSoon(t); });
  const wishes = new Map(); // mid -> the last subscription sent for it

  function wishSoon(t) {
    if (!t || !t.videoMid || t.wishTimer) return;
    t.wishTimer = setTimeout(() => { t.wishTimer = null; sendWish(t); }, 200);
  }

  function sendWish(t) {
    const h = Math.ceil(t.video.clientHeight * (window.devicePixelRatio || 1));
    const seen = !document.hidden && t.visible && !t.fig.hidden && h > 0;
    const key = seen ? `h${h}` : 'off';
    if (wishes.get(t.videoMid) === key) return;
    wishes.set(t.videoMid, key);
    room.setSubscription(t.videoMid, seen ? { maxHeight: h } : { enabled: false });
  }

  room.addEventListener('participant_joined', (e) => tileFor(e.detail.identity, e.detail.identity, room.streamOf(e.detail.identity, 'camera')));
  room.addEventListener('participant_left', (e) => { removeTile(e.detail.identity); removeTile(`${e.detail.identity} screen`); });
  room.addEventListener('track', (e) => {
    const { identity, source, kind, mid, stream } = e.detail;
    const t = isScreen(source) ? tileFor(`${identity} screen`, `${identity}'s screen`, stream) : tileFor(identity, identity, stream);
    t.fig.hidden = false;
    if (t.video.srcObject !== stream) t.video.srcObject = stream;
    if (kind === 'video' && !isScreen(source) && t.videoMid !== mid) { t.videoMid = mid; wishSoon(t); }
    t.video.play().catch(() => setStatus('Click anywhere to enable sound'));
  });
  room.addEventListener('track_ended', (e) => removeTile(`${e.detail.identity} screen`));
  room.addEventListener('mute', (e) => {
    const t = tiles.get(e.detail.identity);
    if (t) t.cap.textContent = e.detail.identity + (e.detail.muted ? ' (muted)' : '');
  });
  // The link cannot carry even the lowest layer: say so on the tile
  // instead of leaving a frozen frame.
  room.addEventListener('paused', (e) => {
    const t = [...tiles.values()].find((x) => x.videoMid === e.detail.mid);
    if (t) t.fig.classList.toggle('paused', e.detail.paused);
  });
  // Who speaks: their tiles are outlined; the loudest other speaker's tile
  // moves to the front and stays there until someone else speaks.
  room.addEventListener('speakers', (e) => {
    const speaking = new Set(e.detail.speakers.map((s) => s.identity));
    $('local-tile').classList.toggle('speaking', speaking.has(room.identity));
    for (const [key, t] of tiles) t.fig.classList.toggle('speaking', speaking.has(key));
    const first = e.detail.speakers.find((s) => tiles.has(s.identity));
    if (first) for (const [key, t] of tiles) t.fig.style.order = key === first.identity ? '-1' : '';
  });

  // ---- chat and files ----

  function showChat(from, text) {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'from'; who.textContent = from;
    li.append(who, document.createTextNode(text));
    $('chat-log').append(li);
    li.scrollIntoView({ block: 'end' });
  }
  room.addEventListener('chat', (e) => showChat(e.detail.from, e.detail.text));

  room.addEventListener('transfer', (e) => {
    const t = e.detail.transfer;
    const label = `${t.name} (${fmtSize(t.size)}) ${t.direction === 'in' ? 'from' : 'to'} ${t.peers.join(', ')}`;
    const li = document.createElement('li');
    li.className = 'transfer';
    const name = document.createElement('span');
    name.className = 'transfer-name';
    name.textContent = t.peers.length ? label : t.name;
    const bar = document.createElement('progress');
    bar.max = 1; bar.value = 0;
    bar.setAttribute('aria-label', `Progress of ${name.textContent}`);
    const status = document.createElement('span');
    status.className = 'transfer-status';
    status.setAttribute('role', 'status');
    const stop = document.createElement('button');
    stop.type = 'button'; stop.textContent = 'Cancel transfer';
    stop.onclick = () => t.cancel();
    li.append(name, bar, status, stop);
    $('transfers').append(li);
    const render = () => {
      bar.value = t.progress;
      status.textContent = t.status;
      if (t.url) {
        const a = document.createElement('a');
        a.href = t.url; a.download = t.name; a.textContent = `Download ${t.name}`;
        status.replaceChildren(`${t.status} `, a);
      }
      if (t.finished) stop.remove();
    };
    t.addEventListener('update', render);
    render();
  });

  // ---- state ----

  room.addEventListener('state', (e) => {
    if (e.detail.state === 'reconnecting') setStatus('Reconnecting…');
    else if (e.detail.state === 'connected') setStatus('Connected');
  });
  room.addEventListener('joined', (e) => { $('local-label').textContent = `${e.detail.identity} (you)`; });
  room.addEventListener('screen', (e) => {
    $('share').setAttribute('aria-pressed', String(e.detail.sharing));
    setStatus(e.detail.sharing ? 'You are sharing your screen' : 'Screen sharing stopped');
  });
  room.addEventListener('recording', (e) => {
    $('recording').hidden = !e.detail.on;
    if (e.detail.error) setStatus(e.detail.error);
    if (opts.onRecording) opts.onRecording(e.detail);
  });
  room.addEventListener('error', (e) => setStatus(`Error: ${e.detail.message}`));
  room.addEventListener('closed', (e) => {
    const msg = e.detail;
    setStatus(REASONS[msg.code] || `Disconnected${msg.message ? `: ${msg.message}` : ''}`);
    for (const key of [...tiles.keys()]) removeTile(key);
    for (const b of opts.mount.querySelectorAll('.controls button')) b.disabled = true;
    if (opts.onClosed) opts.onClosed(msg);
  });

  // ---- local media and controls ----

  room.ready.then(() => {
    if (room.local) $('local-video').srcObject = room.local;
    else {
      // Stays on screen: the status line moves on once the call connects.
      $('media-notice').textContent = `${mediaUnavailable(room.localError)}. You can still watch and listen.`;
      $('media-notice').hidden = false;
    }
  }, () => {});

  const toggle = (kind, button) => {
    room.setMuted(kind, !room.isMuted(kind));
    button.setAttribute('aria-pressed', String(room.isMuted(kind)));
  };
  $('mute').onclick = (e) => toggle('audio', e.currentTarget);
  $('camera').onclick = (e) => toggle('video', e.currentTarget);
  $('share').onclick = async () => {
    if (room.screen) room.stopScreenShare();
    else if (!await room.shareScreen()) setStatus('Screen sharing was not started');
  };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $('share').hidden = true;
  $('send-file').onclick = () => $('file-input').click();
  $('file-input').onchange = (e) => {
    const file = e.target.files[0];
    e.target.value = '';
    if (file) room.sendFile(file);
  };
  $('leave').onclick = async () => {
    if (opts.onLeave) { try { await opts.onLeave(); } catch (err) { console.error(err); } }
    room.leave();
  };
  $('chat-form').onsubmit = (e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text || !room.sendChat(text)) return;
    showChat(room.identity || 'me', text);
    $('chat-input').value = '';
  };
  document.addEventListener('click', () => { for (const t of tiles.values()) t.video.play().catch(() => {}); });
  return room;
}

export { mediaUnavailable };
