// The in-call view the room page, the customer page and the agent console
// share, drawn on the client SDK (/sdk/switchboard-client.js): the stage
// (layout by who is there), tiles with their state, controls, the chat and
// files drawer, devices, recording and connection state.
import { Room, mediaUnavailable } from '/sdk/switchboard-client.js';
import { $ } from '/static/page.js';

const MIC_OFF = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" d="M12 14a3 3 0 0 0 3-3V5a3 3 0 1 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 6-6.9h-2z"/><path stroke="currentColor" stroke-width="2.2" d="M4 4l16 16"/></svg>';

const CALL_HTML = `
<header class="bar">
  <strong class="call-title"></strong>
  <span class="bar-end">
    <span id="recording" class="recording" role="status" aria-label="Recording" hidden>● REC</span>
    <span id="status" role="status" aria-live="polite">Connecting…</span>
  </span>
</header>
<p id="media-notice" class="media-notice" role="alert" hidden></p>
<div class="call-body">
  <main id="stage" class="stage">
    <section id="tiles" class="tiles mode-alone" aria-label="Participants">
      <figure class="tile local" id="local-tile">
        <video id="local-video" autoplay playsinline muted></video>
        <div class="placeholder" aria-hidden="true"><span class="initials"></span></div>
        <figcaption><span id="local-label" class="name">You</span><span class="mic-off" role="img" aria-label="Your microphone is muted" hidden>${MIC_OFF}</span></figcaption>
      </figure>
    </section>
    <p id="alone" class="stage-note" hidden>Waiting for others to join…</p>
    <p id="banner" class="stage-banner" role="alert" hidden></p>
  </main>
  <aside id="side" class="side" aria-label="Chat and files">
    <div class="side-head"><strong>Chat and files</strong><button id="side-close" type="button" aria-label="Close chat">✕</button></div>
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
</div>
<footer class="controls">
  <button id="mute" type="button" aria-pressed="false" aria-keyshortcuts="M" title="Mute (M)">Mute</button>
  <button id="camera" type="button" aria-pressed="false" aria-keyshortcuts="V" title="Camera off (V)">Camera off</button>
  <button id="share" type="button" aria-pressed="false">Share screen</button>
  <button id="send-file" type="button">Send file</button>
  <input id="file-input" type="file" hidden>
  <button id="chat-toggle" type="button" aria-expanded="true" aria-controls="side">Chat<span id="unread" class="badge" hidden></span></button>
  <button id="settings" type="button" aria-haspopup="dialog">Devices</button>
  <span id="extra-controls" class="extra-controls"></span>
  <button id="leave" type="button" class="danger">Leave</button>
</footer>
<dialog id="devices" class="devices" aria-labelledby="devices-title">
  <form method="dialog" class="stack">
    <h2 id="devices-title">Devices</h2>
    <label for="pick-camera">Camera</label><select id="pick-camera"></select>
    <label for="pick-microphone">Microphone</label><select id="pick-microphone"></select>
    <label for="pick-speaker">Speaker</label><select id="pick-speaker"></select>
    <p id="devices-error" class="error" role="alert"></p>
    <button type="submit" class="primary">Done</button>
  </form>
</dialog>`;

const fmtSize = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`);
const isScreen = (source) => source === 'screen_share' || source === 'screen_share_audio';
const initials = (name) => (name.split(/[\s@._-]+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('') || '?');
// Tiles are drawn 16:9; a screen share keeps its own shape (contain).
const ASPECT = 16 / 9;
// Below this width the chat is a drawer over the stage, closed at first.
const NARROW = 900;
// A cut path shows within a couple of seconds (the receivers' sync
// sources: cheap); loss, jitter and round trip take a full getStats, a few
// ms of the page's CPU: every ten seconds, and every two while someone
// looks at a tile's details.
const STALL_EVERY_MS = 2000;
const QUALITY_EVERY_MS = 10000;

const REASONS = {
  call_ended: 'The call has ended', left: 'You left the call', server_shutdown: 'The server is restarting',
  draining: 'The server is restarting: try again in a minute',
  connection_lost: 'Connection lost: media could not get through',
  unreachable: 'Connection lost: could not reach the server again',
  disconnected: 'Disconnected from the server',
};

/**
 * The columns that make `n` tiles of `aspect` largest in a `w`×`h` box,
 * and the tile size.
 */
export function bestGrid(n, w, h, gap = 8, aspect = ASPECT) {
  let best = { cols: 1, width: 0, height: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const width = Math.min((w - gap * (cols - 1)) / cols, ((h - gap * (rows - 1)) / rows) * aspect);
    if (width > best.width) best = { cols, width: Math.floor(width), height: Math.floor(width / aspect) };
  }
  return best;
}

/**
 * Starts a call view in `opts.mount`:
 *   token, room        the access token and its room
 *   title              shown in the bar (defaults to the room)
 *   leaveLabel         "Leave" (room page) or "Hang up" (call pages)
 *   stream             the camera and microphone to publish (default: asked for)
 *   speaker            the audio output device to play the others on
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
  const nameOf = (identity) => room.nameOf(identity);
  /** tile key (identity, or identity + ' screen') -> {fig, video, cap, name, identity, screen, videoMid, visible, wishTimer} */
  const tiles = new Map();
  const local = { fig: $('local-tile'), video: $('local-video'), local: true };
  let speakerId = opts.speaker || 'default'; // where the others are played

  // ---- tiles ----

  function tileFor(key, identity, screen, stream) {
    let t = tiles.get(key);
    if (t) return t;
    const fig = document.createElement('figure');
    fig.className = screen ? 'tile screen' : 'tile';
    fig.dataset.identity = key;
    fig.classList.toggle('speaking', room.speakers.some((s) => s.identity === key));
    const video = document.createElement('video');
    video.autoplay = true; video.playsInline = true;
    const placeholder = document.createElement('div');
    placeholder.className = 'placeholder';
    placeholder.setAttribute('aria-hidden', 'true');
    placeholder.innerHTML = '<span class="initials"></span>';
    placeholder.firstChild.textContent = initials(nameOf(identity));
    const cap = document.createElement('figcaption');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = screen ? `${nameOf(identity)}'s screen` : nameOf(identity);
    cap.append(name);
    if (!screen) {
      const mic = document.createElement('span');
      mic.className = 'mic-off'; mic.setAttribute('role', 'img'); mic.setAttribute('aria-label', `${nameOf(identity)}'s microphone is muted`);
      mic.innerHTML = MIC_OFF; mic.hidden = !remoteMuted(identity, 'microphone');
      const q = document.createElement('button');
      q.type = 'button'; q.className = 'quality'; q.dataset.level = 'unknown';
      q.setAttribute('aria-label', `${nameOf(identity)}'s connection`);
      q.innerHTML = '<i></i><i></i><i></i>';
      const details = document.createElement('span');
      details.className = 'quality-details'; details.hidden = true;
      q.onclick = (e) => { e.stopPropagation(); details.hidden = !details.hidden; };
      cap.append(mic);
      fig.append(q, details);
    }
    fig.prepend(video, placeholder, cap);
    $('tiles').append(fig);
    video.srcObject = stream || new MediaStream();
    if (speakerId !== 'default' && video.setSinkId) video.setSinkId(speakerId).catch(() => {});
    t = { fig, video, cap, name, identity, screen, videoMid: null, visible: true, wishTimer: null };
    tiles.set(key, t);
    resizes.observe(video);
    sightings.observe(fig);
    showCamera(t);
    layout();
    return t;
  }

  function removeTile(key) {
    const t = tiles.get(key);
    if (t) { t.fig.remove(); tiles.delete(key); layout(); }
  }

  // Muted, as the publisher said (absent is not muted: a viewer has no microphone).
  const remoteMuted = (identity, source) => [...room.tracks.values()].some((x) => x.identity === identity && x.source === source && x.muted);

  // A camera tile without live video shows the person's initials.
  function showCamera(t) {
    if (t.screen) return;
    const off = t.local
      ? !room.local || !room.local.getVideoTracks().length || room.isMuted('video')
      : remoteMuted(t.identity, 'camera') || !t.video.srcObject || !t.video.srcObject.getVideoTracks().length;
    t.fig.classList.toggle('camera-off', off);
  }

  // ---- layout ----
  //
  // Alone: your camera fills the stage. Two: the other person fills it and
  // your camera is a corner picture (click it to move it to the next
  // corner). Three or more: a grid whose tiles are as large as the stage
  // allows. A screen share: the share takes the stage, cameras a strip.

  const corners = ['br', 'bl', 'tl', 'tr'];
  let corner = 0;
  local.fig.onclick = () => { corner = (corner + 1) % corners.length; layout(); };

  function layout() {
    const box = $('tiles');
    const stage = $('stage');
    const cams = [local, ...[...tiles.values()].filter((t) => !t.screen)];
    const screens = [...tiles.values()].filter((t) => t.screen);
    const mode = screens.length ? 'share' : cams.length === 1 ? 'alone' : cams.length === 2 ? 'pair' : 'grid';
    box.className = `tiles mode-${mode}`;
    for (const t of [...cams, ...screens]) { t.fig.classList.remove('main', 'pip', 'strip', ...corners.map((c) => `pip-${c}`)); t.fig.style.order = ''; }
    box.style.removeProperty('--tile-w'); box.style.removeProperty('--tile-h');
    $('alone').hidden = mode !== 'alone' || !!room.closed;
    if (mode === 'alone') local.fig.classList.add('main');
    if (mode === 'pair') {
      cams[1].fig.classList.add('main');
      local.fig.classList.add('pip', `pip-${corners[corner]}`);
    }
    local.fig.title = mode === 'pair' ? 'Click to move your picture' : '';
    if (mode === 'grid') {
      const g = bestGrid(cams.length, stage.clientWidth - 16, stage.clientHeight - 16);
      box.style.setProperty('--tile-w', `${g.width}px`);
      box.style.setProperty('--tile-h', `${g.height}px`);
      speakerFirst();
    }
    if (mode === 'share') {
      screens[0].fig.classList.add('main');
      const strip = [...cams, ...screens.slice(1)];
      for (const t of strip) t.fig.classList.add('strip');
    }
  }
  new ResizeObserver(() => layout()).observe($('stage'));

  // ---- adaptive stream ----
  //
  // Each camera tile tells the server how tall it is drawn, or that nobody
  // sees it (hidden tab, scrolled away), so a thumbnail costs a
  // thumbnail's simulcast layer and a hidden tile no video.
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

  // ---- what the room says ----

  room.addEventListener('participant_joined', (e) => {
    const { identity } = e.detail;
    tileFor(identity, identity, false, room.streamOf(identity, 'camera'));
  });
  room.addEventListener('participant_left', (e) => { removeTile(e.detail.identity); removeTile(`${e.detail.identity} screen`); });
  room.addEventListener('track', (e) => {
    const { identity, source, kind, mid, stream } = e.detail;
    const screen = isScreen(source);
    const t = tileFor(screen ? `${identity} screen` : identity, identity, screen, stream);
    if (t.video.srcObject !== stream) t.video.srcObject = stream;
    if (kind === 'video' && !screen && t.videoMid !== mid) { t.videoMid = mid; wishSoon(t); }
    showCamera(t);
    t.video.play().catch(() => setStatus('Click anywhere to enable sound'));
  });
  room.addEventListener('track_ended', (e) => removeTile(`${e.detail.identity} screen`));
  room.addEventListener('mute', (e) => {
    const t = tiles.get(e.detail.identity);
    if (!t) return;
    if (e.detail.kind === 'audio') t.cap.querySelector('.mic-off').hidden = !e.detail.muted;
    showCamera(t);
  });
  // The link cannot carry even the lowest layer: say so on the tile
  // instead of leaving a frozen frame.
  room.addEventListener('paused', (e) => {
    const t = [...tiles.values()].find((x) => x.videoMid === e.detail.mid);
    if (t) t.fig.classList.toggle('paused', e.detail.paused);
  });
  // Who speaks: their tiles are outlined; in a grid the loudest other
  // speaker's tile moves to the front and stays until someone else speaks.
  let lastSpeaker = null;
  function speakerFirst() {
    for (const [key, t] of tiles) t.fig.style.order = key === lastSpeaker ? '-1' : '';
  }
  room.addEventListener('speakers', (e) => {
    const speaking = new Set(e.detail.speakers.map((s) => s.identity));
    local.fig.classList.toggle('speaking', speaking.has(room.identity));
    for (const [key, t] of tiles) t.fig.classList.toggle('speaking', speaking.has(key));
    const first = e.detail.speakers.find((s) => tiles.has(s.identity));
    if (first) { lastSpeaker = first.identity; if ($('tiles').classList.contains('mode-grid')) speakerFirst(); }
  });

  // Connection quality of each remote tile: whether anything arrives, and
  // the numbers from getStats.
  let numbers = {};
  let measured = 0;
  const qualityTimer = setInterval(async () => {
    if (room.closed) return clearInterval(qualityTimer);
    const stalled = room.stalled();
    const looking = [...tiles.values()].some((t) => !t.screen && !t.fig.querySelector('.quality-details').hidden);
    if (looking || Date.now() - measured >= QUALITY_EVERY_MS) {
      measured = Date.now();
      numbers = await room.quality().catch(() => ({}));
    }
    for (const t of tiles.values()) {
      const mark = !t.screen && t.fig.querySelector('.quality');
      if (!mark) continue;
      const s = numbers[t.identity];
      const cut = stalled.has(t.identity);
      const level = cut ? 'poor' : s ? s.level : 'unknown';
      mark.dataset.level = level;
      mark.setAttribute('aria-label', `${nameOf(t.identity)}'s connection: ${level}`);
      t.fig.querySelector('.quality-details').textContent = cut
        ? 'poor: nothing is arriving'
        : s ? `${level}: loss ${(s.loss * 100).toFixed(1)} %, jitter ${Math.round(s.jitter * 1000)} ms, round trip ${Math.round(s.rtt * 1000)} ms` : 'measuring…';
    }
  }, STALL_EVERY_MS);

  // ---- chat and files (a drawer on narrow screens) ----

  let unread = 0;
  const narrow = () => window.innerWidth < NARROW;
  function setSide(open) {
    $('side').classList.toggle('open', open);
    $('side').hidden = !open;
    $('chat-toggle').setAttribute('aria-expanded', String(open));
    if (open) { unread = 0; showUnread(); }
  }
  function showUnread() {
    $('unread').hidden = unread === 0;
    $('unread').textContent = String(unread);
    $('chat-toggle').setAttribute('aria-label', unread ? `Chat, ${unread} unread` : 'Chat');
  }
  const sideOpen = () => !$('side').hidden;
  function noteUnread() { if (!sideOpen()) { unread += 1; showUnread(); } }
  setSide(!narrow());
  // Crossing the width (a phone turned, a window resized) moves the chat
  // out of the way or back beside the stage.
  let wasNarrow = narrow();
  window.addEventListener('resize', () => { if (narrow() !== wasNarrow) { wasNarrow = narrow(); setSide(!wasNarrow); } });
  $('chat-toggle').onclick = () => setSide(!sideOpen());
  $('side-close').onclick = () => setSide(false);

  function showChat(from, text) {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'from'; who.textContent = nameOf(from);
    li.append(who, document.createTextNode(text));
    $('chat-log').append(li);
    li.scrollIntoView({ block: 'end' });
  }
  room.addEventListener('chat', (e) => { showChat(e.detail.from, e.detail.text); noteUnread(); });

  room.addEventListener('transfer', (e) => {
    const t = e.detail.transfer;
    const label = `${t.name} (${fmtSize(t.size)}) ${t.direction === 'in' ? 'from' : 'to'} ${t.peers.map(nameOf).join(', ')}`;
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
    if (t.direction === 'in') noteUnread();
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

  // ---- connection and session state ----

  const banner = (text) => { $('banner').hidden = !text; $('banner').textContent = text || ''; };
  room.addEventListener('state', (e) => {
    if (e.detail.state === 'reconnecting') { setStatus('Reconnecting…'); banner('Reconnecting…'); }
    else if (e.detail.state === 'connected') { setStatus('Connected'); banner(''); }
  });
  room.addEventListener('joined', (e) => {
    $('local-label').textContent = `${nameOf(e.detail.identity)} (you)`;
    local.fig.querySelector('.initials').textContent = initials(nameOf(e.detail.identity));
  });
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
    const why = REASONS[msg.code] || `Disconnected${msg.message ? `: ${msg.message}` : ''}`;
    setStatus(why);
    banner(why);
    $('alone').hidden = true;
    for (const key of [...tiles.keys()]) removeTile(key);
    local.video.srcObject = null;
    showCamera(local);
    for (const b of opts.mount.querySelectorAll('.controls button')) b.disabled = true;
    if (opts.onClosed) opts.onClosed(msg);
  });

  // ---- local media and controls ----

  room.ready.then(() => {
    if (room.local) local.video.srcObject = room.local;
    else {
      // Stays on screen: the status line moves on once the call connects.
      $('media-notice').textContent = `${mediaUnavailable(room.localError)}. You can still watch and listen.`;
      $('media-notice').hidden = false;
    }
    showCamera(local);
  }, () => {});

  const toggle = (kind) => {
    room.setMuted(kind, !room.isMuted(kind));
    $(kind === 'audio' ? 'mute' : 'camera').setAttribute('aria-pressed', String(room.isMuted(kind)));
    if (kind === 'audio') local.fig.querySelector('.mic-off').hidden = !room.isMuted('audio');
    showCamera(local);
  };
  $('mute').onclick = () => toggle('audio');
  $('camera').onclick = () => toggle('video');
  // M and V, as in most call apps, unless typing.
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || room.closed || e.target.closest('input, textarea, select, [contenteditable]')) return;
    if (e.key === 'm' || e.key === 'M') { e.preventDefault(); toggle('audio'); }
    if (e.key === 'v' || e.key === 'V') { e.preventDefault(); toggle('video'); }
  });
  $('share').onclick = async () => {
    if (room.screen) room.stopScreenShare();
    else if (!await room.shareScreen()) setStatus('Screen sharing was not started');
  };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $('share').hidden = true;
  $('send-file').onclick = () => $('file-input').click();
  $('file-input').onchange = (e) => {
    const file = e.target.files[0];
    e.target.value = '';
    if (file) { room.sendFile(file); if (!sideOpen()) setSide(true); }
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

  // Devices: what this browser has, kept current as devices come and go.
  async function fillDevices() {
    const { cameras, microphones, speakers } = await Room.devices();
    const current = (kind) => { const t = room.local && room.local.getTracks().find((x) => x.kind === kind); return t && t.getSettings().deviceId; };
    const fill = (select, list, selected, what) => {
      select.replaceChildren(...list.map((d, i) => Object.assign(document.createElement('option'), { value: d.deviceId, textContent: d.label || `${what} ${i + 1}`, selected: d.deviceId === selected })));
      select.disabled = list.length === 0;
    };
    fill($('pick-camera'), cameras, current('video'), 'Camera');
    fill($('pick-microphone'), microphones, current('audio'), 'Microphone');
    fill($('pick-speaker'), speakers, speakerId, 'Speaker');
    $('pick-speaker').disabled ||= !('setSinkId' in HTMLMediaElement.prototype);
  }
  $('settings').onclick = async () => { $('devices-error').textContent = ''; await fillDevices().catch(() => {}); $('devices').showModal(); };
  const pick = (kind) => async (e) => {
    try {
      await room.useDevice(kind, e.target.value);
      local.video.srcObject = room.local;
      showCamera(local);
    } catch (err) {
      $('devices-error').textContent = `That device could not be opened: ${err.message || err.name}`;
    }
  };
  $('pick-camera').onchange = pick('video');
  $('pick-microphone').onchange = pick('audio');
  $('pick-speaker').onchange = async (e) => {
    speakerId = e.target.value;
    for (const t of tiles.values()) await t.video.setSinkId(speakerId).catch(() => {});
  };
  if (navigator.mediaDevices) navigator.mediaDevices.addEventListener('devicechange', () => { if ($('devices').open) fillDevices().catch(() => {}); });

  layout();
  return room;
}

export { mediaUnavailable };
