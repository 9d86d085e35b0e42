// Switchboard client SDK: join a room, publish camera, microphone and
// screen, receive the others, chat, send data and files, survive network
// changes. An ES module with no dependencies and no build step, served by
// every Switchboard server at /sdk/switchboard-client.js (to any origin).
// The protocol underneath is docs/protocol.md; a complete page that embeds
// a call is in docs/embedding.md.
//
//   import { Room } from 'https://sfu.example.com/sdk/switchboard-client.js';
//   const room = await Room.connect({ server: 'https://sfu.example.com', token });
//   room.addEventListener('track', (e) => { if (e.detail.kind === 'video') video.srcObject = e.detail.stream; });
//
// Negotiation is "perfect negotiation" with the client as the polite peer:
// a server offer that crosses ours wins; we roll back and offer again.

/**
 * @typedef {'camera'|'microphone'|'screen_share'|'screen_share_audio'} Source
 * @typedef {'connecting'|'connected'|'reconnecting'|'closed'} RoomState
 *
 * @typedef {object} ConnectOptions
 * @property {string} token           an access token granting the room (see `switchboard token`)
 * @property {string} [server]        the server's base URL (default: this page's origin)
 * @property {string} [room]          the room (default: the token's)
 * @property {MediaStream|null} [stream]  what to publish; default: camera and microphone
 *                                    from getUserMedia; `null`: publish nothing (watch only)
 * @property {MediaStreamConstraints} [constraints]  for the default stream
 * @property {boolean} [simulcast]    send the camera in three layers (default true)
 *
 * @typedef {object} RemoteTrack      detail of the `track` event
 * @property {string} identity
 * @property {Source} source
 * @property {'audio'|'video'} kind
 * @property {string} mid             names the track in `setSubscription`
 * @property {MediaStreamTrack} track
 * @property {MediaStream} stream     the publisher's stream for this source (camera + microphone share one)
 *
 * @typedef {object} Quality          per remote identity, from getStats
 * @property {number} loss            fraction of packets lost over the last interval
 * @property {number} jitter          seconds
 * @property {number} rtt             round-trip time to the server, seconds
 * @property {boolean} stalled        nothing arrived since the last call (a cut path)
 * @property {'good'|'fair'|'poor'} level
 */

// Camera layers, lowest first: rids and scales as LiveKit names them.
// Chromium sends as many as the capture resolution allows (all three from 720p).
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000 },
];
const CONSTRAINTS = { audio: true, video: { width: 1280, height: 720 } };
// Nothing received for this long on a connected media path: it broke.
const STALL_MS = 2000;
// At most one ICE restart this often (a new path needs a moment to carry media).
const RESTART_EVERY_MS = 5000;

/**
 * The signalling connection of a call, kept alive across network trouble:
 * when the WebSocket drops it reconnects with backoff and resumes the same
 * session (the `resume` token from `joined`) for as long as the server
 * waits (`grace_ms`). Both sides number the messages they send after
 * `joined`; on resuming each sends again what the other missed, so no
 * message is lost or doubled.
 */
export class Signal {
  static KEEP = 512;           // sent messages kept for replay (the server keeps as many)
  // Waits between attempts (the last repeats), each ±25 % so that clients
  // of a restarted server do not come back in step.
  static BACKOFF_MS = [250, 500, 1000, 2000];

  /** opts: url, join ({type:'join', ...}), onMessage(msg), onState('connected'|'reconnecting'|'resumed'), onLost({code, message}) */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.resume = null;      // {token, grace_ms} from joined
    this.received = 0;       // numbered messages received
    this.sent = 0;           // numbered messages sent
    this.kept = [];          // the last KEEP of them
    this.resumes = 0;        // how often a session was resumed
    this.ended = false;
    this.lostAt = 0;
    this.connect(false);
  }

  // Numbered messages: everything after joined but joined, resumed and closed.
  static numbered(type) { return type !== 'joined' && type !== 'resumed' && type !== 'closed'; }

  send(msg) {
    const text = JSON.stringify(msg);
    if (this.resume) {
      this.sent += 1;
      this.kept.push(text);
      if (this.kept.length > Signal.KEEP) this.kept.shift();
    }
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  // Moves the session to a new connection now (the network changed, so
  // the current one may be dead without knowing it yet).
  reconnect() {
    if (this.ended || !this.resume || !this.resume.grace_ms) return;
    const old = this.ws;
    this.ws = null;
    // 4000: not a leave; the server waits for the resume (docs/protocol.md).
    if (old) { old.onclose = null; old.onmessage = null; old.close(4000, 'moving'); }
    this.lostAt = this.lostAt || Date.now();
    this.attempt = 0;
    this.connect(true);
  }

  // Stops for good (the session is over).
  end() {
    this.ended = true;
    if (this.ws) this.ws.close();
  }

  connect(resuming) {
    const ws = new WebSocket(this.opts.url);
    this.ws = ws;
    ws.onopen = () => {
      const first = resuming ? { type: 'resume', token: this.resume.token, received: this.received } : this.opts.join;
      ws.send(JSON.stringify(first));
    };
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (Signal.numbered(msg.type)) this.received += 1;
      if (msg.type === 'joined') this.resume = msg.resume || null;
      if (msg.type === 'resumed') return this.onResumed(msg);
      if (msg.type === 'closed') this.ended = true;
      this.opts.onMessage(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.ended) return;
      if (!this.resume || !this.resume.grace_ms) {
        this.ended = true;
        return this.opts.onLost({ code: 'disconnected' });
      }
      if (!this.lostAt) {
        this.lostAt = Date.now();
        this.attempt = 0;
        this.opts.onState('reconnecting');
      }
      this.retry();
    };
  }

  retry() {
    const waited = Date.now() - this.lostAt;
    if (waited >= this.resume.grace_ms) {
      this.ended = true;
      return this.opts.onLost({ code: 'unreachable', message: 'could not reach the server again' });
    }
    const backoff = Signal.BACKOFF_MS;
    const step = backoff[Math.min(this.attempt, backoff.length - 1)] * (0.75 + Math.random() / 2);
    const delay = Math.min(step, this.resume.grace_ms - waited);
    this.attempt += 1;
    setTimeout(() => { if (!this.ended) this.connect(true); }, delay);
  }

  onResumed(msg) {
    // Send again what the server did not get.
    const missing = this.sent - msg.received;
    for (const text of this.kept.slice(Math.max(0, this.kept.length - missing))) this.ws.send(text);
    this.lostAt = 0;
    this.resumes += 1;
    this.opts.onState('resumed');
  }
}

// ---- file transfer ----------------------------------------------------------
//
// Over the room's data channel, through the server. Control messages are
// JSON text (relayed to everyone; `to` picks the reader):
//   {t:'file-offer', id, name, size, mime}    sender -> all
//   {t:'file-ack', id, to, bytes}             receiver -> sender, every ACK_EVERY bytes
//   {t:'file-end', id, sha256}                sender -> all, after the last chunk
//   {t:'file-done', id, to, ok, reason?}      receiver -> sender, after checking
//   {t:'file-cancel', id, reason}             either side
// Chunks are binary: 'F', 16 ASCII bytes of id, u32 big-endian sequence, data.
//
// Flow control is end to end: the sender keeps at most WINDOW bytes beyond
// what its slowest receiver acknowledged, so neither its own buffer nor the
// server's (1 MiB per recipient) grows without bound. A chunk that does not
// arrive in sequence (the server dropped it) fails the transfer.

const CHUNK = 16 * 1024;
const WINDOW = 256 * 1024;
const ACK_EVERY = 64 * 1024;
const HIGH_WATER = 1024 * 1024;     // our own channel's send buffer
const STALL = 30000;                // no progress for this long: give up
const HEADER = 1 + 16 + 4;

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (buf) => hex(await crypto.subtle.digest('SHA-256', buf));
const randomId = () => hex(crypto.getRandomValues(new Uint8Array(8)).buffer);

/**
 * One file on its way in or out. Fires `update` whenever a field changes.
 * Fields: id, direction ('in'|'out'), name, size, peers (identities),
 * progress (0..1), status (words for people), finished, ok, url (a blob
 * URL of a received file once its checksum verified), cancel().
 */
export class FileTransfer extends EventTarget {
  constructor(fields, cancel) {
    super();
    Object.assign(this, { progress: 0, status: '', finished: false, ok: false, url: null }, fields);
    this.cancel = cancel;
  }

  update(fields) {
    Object.assign(this, fields);
    this.dispatchEvent(new Event('update'));
  }
}

/** The file transfer protocol of one room; `onTransfer(t)` for each new transfer. */
export class FileTransfers {
  constructor({ channel, me, peers, onTransfer }) {
    Object.assign(this, { channel, me, peers, onTransfer });
    this.outgoing = new Map();
    this.incoming = new Map();
    this.done = [];   // finished transfers: {id, direction, name, size, ok, sha256, ms, reason}
  }

  transfer(fields, cancel) {
    const t = new FileTransfer(fields, cancel);
    this.onTransfer(t);
    return t;
  }

  sendText(obj) { this.channel.send(JSON.stringify(obj)); }

  /** Sends `file` to everyone else in the room; the transfer. */
  async send(file) {
    const recipients = new Set(this.peers());
    if (!recipients.size) {
      return this.transfer({ id: randomId(), direction: 'out', name: file.name, size: file.size, peers: [], finished: true, status: 'Nobody else is in the call' }, () => {});
    }
    const id = randomId();
    const t = { id, file, recipients, active: new Set(recipients), acked: new Map([...recipients].map((r) => [r, 0])), results: new Map(), wake: null, failed: null, started: performance.now() };
    t.ui = this.transfer({ id, direction: 'out', name: file.name, size: file.size, peers: [...recipients] }, () => this.cancelOut(t, 'cancelled by you', true));
    this.outgoing.set(id, t);
    this.sendText({ t: 'file-offer', id, name: file.name, size: file.size, mime: file.type });
    try {
      let offset = 0, seq = 0;
      while (offset < file.size || file.size === 0) {
        await this.room(t, offset);
        if (t.failed) return t.ui;
        const data = new Uint8Array(await file.slice(offset, offset + CHUNK).arrayBuffer());
        const msg = new Uint8Array(HEADER + data.length);
        msg[0] = 0x46; // 'F'
        msg.set(new TextEncoder().encode(id), 1);
        new DataView(msg.buffer).setUint32(17, seq);
        msg.set(data, HEADER);
        this.channel.send(msg);
        offset += data.length; seq += 1;
        t.ui.update({ progress: file.size ? offset / file.size : 1 });
        if (file.size === 0) break;
      }
      t.ui.update({ status: 'Checking…' });
      const sum = await sha256(await file.arrayBuffer());
      t.sha256 = sum;
      this.sendText({ t: 'file-end', id, sha256: sum });
      t.ui.update({ status: 'Sent; waiting for the receivers to check it' });
    } catch (e) {
      this.cancelOut(t, `failed: ${e.message || e}`, true);
    }
    return t.ui;
  }

  // Waits until another chunk fits: the window towards the slowest
  // recipient and our own send buffer.
  async room(t, offset) {
    let last = performance.now(), lastMin = -1;
    for (;;) {
      if (t.failed) return;
      for (const r of [...t.active]) if (!this.peers().includes(r)) this.dropRecipient(t, r, 'left the call');
      if (t.failed) return;
      if (!t.active.size) return this.cancelOut(t, 'no receiver is left', false);
      const min = Math.min(...[...t.active].map((r) => t.acked.get(r)));
      if (min !== lastMin) { lastMin = min; last = performance.now(); }
      if (offset - min <= WINDOW && this.channel.bufferedAmount <= HIGH_WATER) return;
      if (performance.now() - last > STALL) return this.cancelOut(t, 'no progress from the receivers', true);
      if (this.channel.readyState !== 'open') return this.cancelOut(t, 'the connection closed', false);
      await new Promise((resolve) => {
        t.wake = resolve;
        this.channel.addEventListener('bufferedamountlow', resolve, { once: true });
        setTimeout(resolve, 250);
      });
    }
  }

  // A receiver is out of this transfer (left, refused or cancelled).
  dropRecipient(t, who, reason) {
    if (!t.active.delete(who) || t.results.has(who)) return;
    t.results.set(who, { ok: false, reason });
    this.settleOut(t);
  }

  cancelOut(t, reason, tell) {
    if (t.failed) return;
    t.failed = reason;
    if (tell && this.channel.readyState === 'open') this.sendText({ t: 'file-cancel', id: t.id, reason });
    t.ui.update({ status: `Not sent: ${reason}`, finished: true, ok: false });
    this.record(t.id, 'out', t.file.name, t.file.size, false, t.sha256, t.started, reason);
    this.outgoing.delete(t.id);
  }

  // Reports the outcome once every receiver has one.
  settleOut(t) {
    if (t.failed || [...t.recipients].some((r) => !t.results.has(r))) return;
    const parts = [...t.results].map(([who, r]) => (r.ok ? `${who}: delivered, checksum verified` : `${who}: failed (${r.reason})`));
    const ok = [...t.results.values()].every((r) => r.ok);
    t.ui.update({ status: parts.join('; '), finished: true, ok });
    this.record(t.id, 'out', t.file.name, t.file.size, ok, t.sha256, t.started, ok ? null : parts.join('; '));
    this.outgoing.delete(t.id);
  }

  record(id, direction, name, size, ok, sum, started, reason) {
    this.done.push({ id, direction, name, size, ok, sha256: sum || null, ms: Math.round(performance.now() - started), reason: reason || null });
  }

  onText(from, m) {
    const me = this.me();
    switch (m.t) {
      case 'file-offer': {
        if (this.incoming.has(m.id)) return;
        const r = { id: m.id, from, name: String(m.name || 'file'), size: Number(m.size) || 0, mime: String(m.mime || ''), chunks: [], received: 0, acked: 0, next: 0, started: performance.now(), failed: null };
        r.ui = this.transfer({ id: r.id, direction: 'in', name: r.name, size: r.size, peers: [from] }, () => this.failIn(r, 'cancelled by you', true));
        this.incoming.set(m.id, r);
        break;
      }
      case 'file-end': {
        const r = this.incoming.get(m.id);
        if (r && r.from === from) this.finishIn(r, String(m.sha256));
        break;
      }
      case 'file-cancel': {
        const r = this.incoming.get(m.id);
        if (r && r.from === from) this.failIn(r, `the sender stopped: ${m.reason}`, false);
        const t = this.outgoing.get(m.id);
        if (t) this.dropRecipient(t, from, m.reason);
        break;
      }
      case 'file-ack': {
        const t = this.outgoing.get(m.id);
        if (m.to === me && t && t.acked.has(from)) { t.acked.set(from, Number(m.bytes)); if (t.wake) t.wake(); }
        break;
      }
      case 'file-done': {
        const t = this.outgoing.get(m.id);
        if (m.to !== me || !t || !t.active.has(from)) break;
        if (m.ok) { t.results.set(from, { ok: true }); this.settleOut(t); } else this.dropRecipient(t, from, m.reason);
        break;
      }
    }
  }

  onBinary(from, bytes) {
    if (bytes.length < HEADER || bytes[0] !== 0x46) return;
    const id = new TextDecoder().decode(bytes.subarray(1, 17));
    const r = this.incoming.get(id);
    if (!r || r.from !== from || r.failed) return;
    const seq = new DataView(bytes.buffer, bytes.byteOffset + 17, 4).getUint32(0);
    if (seq !== r.next) return this.failIn(r, `chunk ${r.next} was lost on the way`, true);
    r.next += 1;
    const data = bytes.slice(HEADER);
    r.chunks.push(data);
    r.received += data.length;
    if (r.received > r.size) return this.failIn(r, 'more data than announced', true);
    r.ui.update({ progress: r.size ? r.received / r.size : 1 });
    if (r.received - r.acked >= ACK_EVERY || r.received === r.size) {
      r.acked = r.received;
      this.sendText({ t: 'file-ack', id, to: from, bytes: r.received });
    }
  }

  async finishIn(r, expected) {
    if (r.failed) return;
    if (r.received !== r.size) return this.failIn(r, `got ${r.received} of ${r.size} bytes`, true);
    r.ui.update({ status: 'Checking…' });
    const blob = new Blob(r.chunks, { type: r.mime || 'application/octet-stream' });
    r.chunks = [];
    const sum = await sha256(await blob.arrayBuffer());
    if (sum !== expected) return this.failIn(r, 'checksum mismatch', true);
    this.sendText({ t: 'file-done', id: r.id, to: r.from, ok: true });
    this.incoming.delete(r.id);
    this.record(r.id, 'in', r.name, r.size, true, sum, r.started, null);
    r.ui.update({ status: 'Checksum verified.', url: URL.createObjectURL(blob), finished: true, ok: true });
  }

  failIn(r, reason, tell) {
    if (r.failed) return;
    r.failed = reason;
    r.chunks = [];
    if (tell && this.channel.readyState === 'open') {
      this.sendText({ t: 'file-done', id: r.id, to: r.from, ok: false, reason });
    }
    r.ui.update({ status: `Not received: ${reason}`, finished: true, ok: false });
    this.incoming.delete(r.id);
    this.record(r.id, 'in', r.name, r.size, false, null, r.started, reason);
  }

  peerLeft(identity) {
    for (const r of [...this.incoming.values()]) if (r.from === identity) this.failIn(r, 'the sender left', false);
    for (const t of [...this.outgoing.values()]) this.dropRecipient(t, identity, 'left the call');
  }

  abortAll(reason) {
    for (const r of [...this.incoming.values()]) this.failIn(r, reason, false);
    for (const t of [...this.outgoing.values()]) this.cancelOut(t, reason, false);
  }
}

// ---- the room ---------------------------------------------------------------

const isScreen = (source) => source === 'screen_share' || source === 'screen_share_audio';

/**
 * A session in one room. Events (CustomEvent, data in `detail`):
 * - `state` {state: RoomState}: connecting, connected (media flows),
 *   reconnecting (signalling or media dropped; it comes back by itself), closed
 * - `joined` {identity, participants}: in the room
 * - `participant_joined` {identity, name}, `participant_left` {identity}
 *   (`name`: the display name the token gave them, else the identity; `nameOf(identity)`)
 * - `track` RemoteTrack: a remote track to show or play (again after a renegotiation)
 * - `track_ended` {identity, source}: a screen share stopped
 * - `mute` {identity, kind, source, muted}: also for tracks muted before we came
 * - `speakers` {speakers: [{identity, level}]}: who speaks, loudest first
 * - `paused` {identity, mid, paused}: the link cannot carry even the lowest layer
 * - `chat` {from, text}, `data` {from, message}: from the data channel
 * - `transfer` {transfer: FileTransfer}: a file coming in or going out
 * - `recording` {on, error}: the room's recording started or stopped
 * - `error` {code, message}: a request of ours was refused (the session goes on)
 * - `closed` {code, message}: the session is over (left, ended, lost)
 */
export class Room extends EventTarget {
  /**
   * Joins a room; resolves once joined (media connects after), rejects if
   * the server refuses (the error has the server's `code`).
   * @param {ConnectOptions} opts
   * @returns {Promise<Room>}
   */
  static connect(opts) {
    const room = new Room(opts);
    return room.ready;
  }

  /** @param {ConnectOptions} opts */
  constructor(opts) {
    super();
    this.opts = opts;
    const base = new URL(opts.server || location.origin);
    this.wsUrl = `${base.protocol === 'https:' ? 'wss' : 'ws'}://${base.host}/ws`;
    /** @type {RoomState} */
    this.state = 'connecting';
    this.me = null;            // the `joined` message: identity, participant id, ice servers…
    this.pc = null;
    this.dc = null;
    this.signal = null;
    this.local = null;         // the MediaStream we publish (camera + microphone)
    this.localError = null;    // why there is none (getUserMedia's error)
    this.screen = null;        // the screen track we share
    this.screenTransceiver = null;
    this.files = null;
    this.present = new Set();  // identities in the room (not us)
    this.names = new Map();    // identity -> display name, for those who have one
    this.midInfo = new Map();  // mid -> {identity, source, kind} for media we receive
    this.received = new Map(); // mid -> MediaStreamTrack
    this.streams = new Map();  // identity + source group -> MediaStream
    this.tracks = new Map();   // remote track id -> {track, identity, kind, source, muted}
    this.speakers = [];
    this.chat = [];            // {from, text}
    this.events = [];          // protocol events seen (tests and debugging)
    this.recording = false;
    this.layersWanted = null;
    this.closed = null;
    this.iceRestarts = 0;
    this.lastRestart = 0;
    this.makingOffer = false;
    this.layerChanges = Promise.resolve();
    this.ready = new Promise((resolve, reject) => { this.settle = { resolve, reject }; });
    this.start();
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state) {
    if (this.state === state || this.state === 'closed') return;
    this.state = state;
    this.emit('state', { state });
  }

  async start() {
    if (this.opts.stream !== undefined) this.local = this.opts.stream;
    else {
      try {
        this.local = await navigator.mediaDevices.getUserMedia(this.opts.constraints || CONSTRAINTS);
      } catch (e) {
        this.localError = e;
      }
    }
    this.signal = new Signal({
      url: this.wsUrl,
      join: { type: 'join', token: this.opts.token, ...(this.opts.room ? { room: this.opts.room } : {}) },
      onMessage: (msg) => this.onMessage(msg).catch((err) => console.error('switchboard:', err)),
      onState: (s) => {
        this.events.push(s);
        if (s === 'reconnecting') this.setState('reconnecting');
        else if (this.pc && this.pc.connectionState === 'connected') this.setState('connected');
      },
      onLost: (msg) => this.finish(msg),
    });
  }

  send(msg) { if (this.signal) this.signal.send(msg); }

  // ---- what the app calls ----

  /** Mutes or unmutes our microphone (`audio`) or camera (`video`); the others are told. */
  setMuted(kind, muted) {
    const track = this.local && this.local.getTracks().find((t) => t.kind === kind);
    if (!track) return;
    track.enabled = !muted;
    const tr = this.pc && this.pc.getTransceivers().find((t) => t.sender.track === track);
    if (tr && tr.mid) this.send({ type: 'mute', mid: tr.mid, muted });
  }

  /** Whether our `audio` or `video` is muted (true without one). */
  isMuted(kind) {
    const track = this.local && this.local.getTracks().find((t) => t.kind === kind);
    return !track || !track.enabled;
  }

  /** Cameras, microphones and speakers this browser offers. */
  static async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: all.filter((d) => d.kind === 'videoinput'),
      microphones: all.filter((d) => d.kind === 'audioinput'),
      speakers: all.filter((d) => d.kind === 'audiooutput'),
    };
  }

  /** Switches the camera (`video`) or microphone (`audio`) we publish to `deviceId`, without renegotiating. */
  async useDevice(kind, deviceId) {
    const constraints = kind === 'video' ? { ...CONSTRAINTS.video, deviceId: { exact: deviceId } } : { deviceId: { exact: deviceId } };
    const fresh = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
    const track = fresh.getTracks()[0];
    const old = this.local && this.local.getTracks().find((t) => t.kind === kind);
    if (old) {
      track.enabled = old.enabled;
      const tr = this.pc && this.pc.getTransceivers().find((t) => t.sender.track === old);
      if (tr) await tr.sender.replaceTrack(track);
      this.local.removeTrack(old);
      old.stop();
    }
    if (!this.local) this.local = new MediaStream();
    this.local.addTrack(track);
    return track;
  }

  /** Starts sharing the screen (the browser asks which); false if the user declined. */
  async shareScreen() {
    if (this.screen) return true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      return false;
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    this.screen = track;
    track.onended = () => this.stopScreenShare();
    // Its own send-only m-line (addTrack could take over one we receive
    // on), reused when sharing again.
    const tr = this.screenTransceiver;
    if (tr) {
      await tr.sender.replaceTrack(track);
      tr.direction = 'sendonly';
    } else {
      this.screenTransceiver = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
    this.emit('screen', { sharing: true, track });
    return true;
  }

  stopScreenShare() {
    if (!this.screen) return;
    this.screen.stop();
    this.screen = null;
    const tr = this.screenTransceiver;
    if (tr) { tr.sender.replaceTrack(null); tr.direction = 'inactive'; }
    this.emit('screen', { sharing: false });
  }

  /** Sends a chat message to everyone; false if the data channel is not open yet. */
  sendChat(text) {
    if (!this.dc || this.dc.readyState !== 'open') return false;
    this.dc.send(JSON.stringify({ t: 'chat', text }));
    this.chat.push({ from: this.identity, text });
    return true;
  }

  /** Sends an app message (a JSON object; `t` must not start with "file" or be "chat") to everyone. */
  sendData(message) {
    if (!this.dc || this.dc.readyState !== 'open') return false;
    this.dc.send(JSON.stringify({ t: 'data', message }));
    return true;
  }

  /** Sends a file to everyone else; resolves with its FileTransfer (also in a `transfer` event). */
  sendFile(file) { return this.files ? this.files.send(file) : Promise.resolve(null); }

  /**
   * Tells the server how a remote video is shown, so it sends the simulcast
   * layer that fills it: `{maxHeight}` in device pixels, or `{enabled: false}`
   * when nobody sees it (it then sends none).
   */
  setSubscription(mid, { maxHeight, enabled = true }) {
    const wish = enabled && maxHeight > 0 ? { max_height: Math.ceil(maxHeight), enabled: true } : { enabled: false };
    this.send({ type: 'subscription', mid, ...wish });
  }

  /** Leaves the room (the others see us go). */
  leave() { this.send({ type: 'leave' }); }

  get identity() { return this.me ? this.me.identity : ''; }

  /** What to call `identity`: their display name (the token's `name`), else the identity. */
  nameOf(identity) {
    if (this.me && identity === this.me.identity) return this.me.name || identity;
    return this.names.get(identity) || identity;
  }

  // ---- the protocol ----

  sources() {
    return this.pc.getTransceivers()
      .filter((t) => t.mid && t.sender.track && t.direction !== 'inactive')
      .map((t) => ({ mid: t.mid, source: t === this.screenTransceiver ? 'screen_share' : (t.sender.track.kind === 'audio' ? 'microphone' : 'camera') }));
  }

  async negotiate() {
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.send({ type: 'offer', sdp: this.pc.localDescription.sdp, tracks: this.sources() });
    } catch (e) {
      console.error('switchboard: offer failed', e);
    } finally {
      this.makingOffer = false;
    }
  }

  // App messages on the data channel are JSON objects with a `t`; any
  // other text is chat (other clients may send plain text).
  onChannelText(from, data) {
    let m = null;
    try { m = JSON.parse(data); } catch (_) { /* plain text */ }
    if (!m || typeof m !== 'object' || typeof m.t !== 'string') return this.gotChat(from, data);
    if (m.t === 'chat') this.gotChat(from, String(m.text));
    else if (m.t === 'data') this.emit('data', { from, message: m.message });
    else this.files.onText(from, m);
  }

  gotChat(from, text) {
    this.chat.push({ from, text });
    this.emit('chat', { from, text });
  }

  setupPeer(joined) {
    const pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    const dc = pc.createDataChannel('room');
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = 256 * 1024;
    this.dc = dc;
    this.files = new FileTransfers({
      channel: dc,
      me: () => this.identity,
      peers: () => [...this.present],
      onTransfer: (transfer) => this.emit('transfer', { transfer }),
    });
    dc.onmessage = (e) => {
      if (typeof e.data === 'string') {
        try { const m = JSON.parse(e.data); this.onChannelText(m.from, m.data); } catch (_) { /* not relayed by the server */ }
        return;
      }
      const bytes = new Uint8Array(e.data);
      const n = bytes[0];
      const from = new TextDecoder().decode(bytes.subarray(1, 1 + n));
      this.files.onBinary(from, bytes.subarray(1 + n));
    };
    if (joined.can_publish && this.local) {
      for (const track of this.local.getTracks()) {
        // The camera goes out in three simulcast layers; the server sends
        // each subscriber the one its tile and link need.
        const sendEncodings = track.kind === 'video' && this.opts.simulcast !== false ? SIMULCAST : undefined;
        pc.addTransceiver(track, { direction: 'sendonly', streams: [this.local], sendEncodings });
      }
    }
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onicecandidate = (e) => { if (e.candidate) this.send({ type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid }); };
    pc.ontrack = (e) => { const mid = e.transceiver.mid; this.received.set(mid, e.track); this.attach(mid); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') this.setState('connected');
      else if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') this.setState('reconnecting');
    };
    // A new network (Wi-Fi to 4G, a new address) breaks the media path:
    // restart ICE, on the same participant, so media resumes on the new
    // one (the server drops a participant it has not heard from for 15 s).
    // The old path keeps carrying media while the new one is checked, so a
    // restart on a mere blip costs nothing.
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'disconnected' || pc.iceConnectionState === 'failed') this.restartIce();
    };
    // Chromium calls a path 'disconnected' only after some 5 s without an
    // answer to its checks; media from the others arrives many times a
    // second, so a connected path on which none came for STALL_MS broke:
    // restart sooner. (Receivers' synchronization sources say when their
    // last packet came, far cheaper than getStats.)
    let lastPacket = -1, lastChange = Date.now();
    this.stallTimer = setInterval(() => {
      if (this.closed) return clearInterval(this.stallTimer);
      const latest = Math.max(-1, ...pc.getReceivers().flatMap((r) => r.getSynchronizationSources().map((x) => x.timestamp)));
      // Only while media comes to us: alone in a room, nothing does.
      if (!['connected', 'completed'].includes(pc.iceConnectionState) || latest < 0 || latest !== lastPacket) {
        lastPacket = latest;
        lastChange = Date.now();
        return;
      }
      if (Date.now() - lastChange > STALL_MS && Date.now() - this.lastRestart > RESTART_EVERY_MS) this.restartIce();
    }, 500);
  }

  restartIce() {
    if (this.closed || !this.pc) return;
    this.lastRestart = Date.now();
    this.iceRestarts += 1;
    this.setState('reconnecting');
    // The signalling connection left from the old network too and may be
    // dead without knowing it: resume on a new one, which the new offer
    // (negotiationneeded) then takes.
    this.signal.reconnect();
    this.pc.restartIce();
  }

  /** The stream a remote source shows in (camera and microphone share one). */
  streamOf(identity, source) {
    const key = `${identity}\n${isScreen(source) ? 'screen' : 'camera'}`;
    let s = this.streams.get(key);
    if (!s) { s = new MediaStream(); this.streams.set(key, s); }
    return s;
  }

  attach(mid) {
    const info = this.midInfo.get(mid), track = this.received.get(mid);
    if (!info || !track || !this.present.has(info.identity)) return;
    const stream = this.streamOf(info.identity, info.source);
    for (const old of stream.getTracks()) if (old.kind === track.kind && old !== track) stream.removeTrack(old);
    if (!stream.getTracks().includes(track)) stream.addTrack(track);
    this.emit('track', { identity: info.identity, source: info.source, kind: track.kind, mid, track, stream });
  }

  participantPresent(identity, name) {
    if (name) this.names.set(identity, name);
    if (this.present.has(identity)) return;
    this.present.add(identity);
    this.emit('participant_joined', { identity, name: this.nameOf(identity) });
    for (const mid of this.midInfo.keys()) this.attach(mid);
  }

  participantGone(identity) {
    if (!this.present.delete(identity)) return;
    for (const key of [...this.streams.keys()]) if (key.startsWith(`${identity}\n`)) this.streams.delete(key);
    for (const [id, t] of [...this.tracks]) if (t.identity === identity) this.tracks.delete(id);
    if (this.files) this.files.peerLeft(identity);
    this.emit('participant_left', { identity });
  }

  async onMessage(msg) {
    this.events.push(msg.type);
    switch (msg.type) {
      case 'joined':
        this.me = msg;
        this.setupPeer(msg);
        this.emit('joined', { identity: msg.identity, participants: msg.participants });
        this.settle.resolve(this);
        for (const p of msg.participants) { this.participantPresent(p.identity, p.name); for (const t of p.tracks || []) this.noteTrack(t); }
        break;
      case 'answer':
        if (this.pc.signalingState === 'have-local-offer') await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        break;
      case 'offer':
        for (const m of msg.mids) this.midInfo.set(m.mid, m);
        // Polite: an offer of ours in flight is rolled back implicitly.
        await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        await this.pc.setLocalDescription();
        this.send({ type: 'answer', sdp: this.pc.localDescription.sdp });
        for (const mid of this.midInfo.keys()) this.attach(mid);
        break;
      case 'participant_joined': this.participantPresent(msg.participant.identity, msg.participant.name); break;
      case 'participant_left': this.participantGone(msg.identity); break;
      case 'track_published':
        this.noteTrack(msg.track);
        // A republished source (e.g. a new screen share) reuses its m-line.
        for (const [mid, info] of this.midInfo) if (info.identity === msg.track.identity && info.source === msg.track.source) this.attach(mid);
        break;
      case 'track_unpublished': {
        const t = this.tracks.get(msg.track);
        this.tracks.delete(msg.track);
        if (t && t.source === 'screen_share') this.emit('track_ended', { identity: msg.identity, source: t.source });
        break;
      }
      case 'track_muted': {
        const t = this.tracks.get(msg.track);
        if (t) t.muted = msg.muted;
        this.emit('mute', { identity: msg.identity, kind: t ? t.kind : null, source: t ? t.source : null, muted: msg.muted });
        break;
      }
      case 'speakers': this.speakers = msg.speakers; this.emit('speakers', { speakers: msg.speakers }); break;
      case 'layers_wanted': this.setLayers(msg.mid, msg.rids); break;
      case 'track_paused':
      case 'track_resumed': {
        const info = this.midInfo.get(msg.mid);
        this.emit('paused', { identity: info ? info.identity : null, mid: msg.mid, paused: msg.type === 'track_paused' });
        break;
      }
      case 'recording':
        this.recording = msg.on;
        this.emit('recording', { on: msg.on, error: msg.error || null });
        break;
      case 'error':
        console.warn('switchboard: server error', msg);
        if (!this.me) this.settle.reject(Object.assign(new Error(msg.message), { code: msg.code }));
        this.emit('error', { code: msg.code, message: msg.message });
        break;
      case 'closed': this.finish(msg); break;
    }
  }

  // Dynacast: the server names the simulcast layers somebody takes; the
  // encoder pauses the others (no uplink, no CPU for them). In order: a
  // second change must not race the first's setParameters.
  setLayers(mid, rids) {
    this.layerChanges = this.layerChanges.then(async () => {
      const tr = this.pc && this.pc.getTransceivers().find((t) => t.mid === mid);
      if (!tr) return;
      const params = tr.sender.getParameters();
      let changed = false;
      for (const e of params.encodings || []) {
        const on = !e.rid || rids.includes(e.rid);
        if (e.active !== on) { e.active = on; changed = true; }
      }
      if (changed) await tr.sender.setParameters(params);
      this.layersWanted = rids;
    }).catch((e) => console.warn('switchboard: could not change simulcast layers', e));
  }

  // What each remote track is: `track_muted` and `track_unpublished` name only its id.
  noteTrack(track) {
    this.tracks.set(track.track, { track: track.track, identity: track.identity, kind: track.kind, source: track.source, muted: !!track.muted });
    if (track.muted) this.emit('mute', { identity: track.identity, kind: track.kind, source: track.source, muted: true });
  }



  finish(msg) {
    if (this.closed) return;
    this.closed = msg;
    if (this.signal) this.signal.end();
    if (this.files) this.files.abortAll('the call ended');
    if (this.pc) this.pc.close();
    if (this.local) for (const t of this.local.getTracks()) t.stop();
    if (this.screen) this.screen.stop();
    for (const id of [...this.present]) this.participantGone(id);
    this.settle.reject(Object.assign(new Error(msg.message || msg.code), { code: msg.code }));
    this.ready.catch(() => {});
    this.setState('closed');
    this.emit('closed', { code: msg.code, message: msg.message || null });
  }

  // ---- stats ----

  /** Per remote identity, what arrived (getStats): frames decoded, bytes, size, freezes. */
  async inbound() {
    const out = {};
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const info = this.midInfo.get(s.mid);
      if (!info) return;
      const o = (out[info.identity] ||= { framesDecoded: 0, videoBytes: 0, audioBytes: 0, screenFramesDecoded: 0 });
      if (s.kind === 'video' && isScreen(info.source)) o.screenFramesDecoded += s.framesDecoded || 0;
      else if (s.kind === 'video') {
        o.framesDecoded += s.framesDecoded || 0; o.videoBytes += s.bytesReceived || 0;
        o.frameWidth = s.frameWidth || 0; o.frameHeight = s.frameHeight || 0; o.freezeCount = s.freezeCount || 0;
        o.framesReceived = s.framesReceived || 0; o.freezeSeconds = s.totalFreezesDuration || 0;
        o.framesDropped = s.framesDropped || 0; o.pliCount = s.pliCount || 0;
      }
      else o.audioBytes += s.bytesReceived || 0;
    });
    return out;
  }

  /**
   * Who of the others sent us nothing since the last call, on a track they
   * have not muted: their path (or ours) is cut. Cheap (the receivers'
   * synchronization sources, no getStats): call it every second or two.
   * @returns {Set<string>} identities
   */
  stalled() {
    const out = new Set();
    if (!this.pc) return out;
    const last = this.lastPackets || new Map();
    const now = new Map();
    const fresh = new Set();
    for (const tr of this.pc.getTransceivers()) {
      const info = tr.mid && this.midInfo.get(tr.mid);
      if (!info || isScreen(info.source) || !this.present.has(info.identity) || this.mutedMid(tr.mid)) continue;
      const at = Math.max(-1, ...tr.receiver.getSynchronizationSources().map((s) => s.timestamp));
      now.set(tr.mid, at);
      if (!last.has(tr.mid) || at !== last.get(tr.mid)) fresh.add(info.identity);
      else out.add(info.identity);
    }
    this.lastPackets = now;
    for (const id of fresh) out.delete(id);
    return out;
  }

  mutedMid(mid) {
    const info = this.midInfo.get(mid);
    return !!info && [...this.tracks.values()].some((t) => t.identity === info.identity && t.source === info.source && t.muted);
  }

  /** Per simulcast layer (rid) of our camera, what left. */
  async outbound() {
    const out = {};
    if (!this.pc) return out;
    (await this.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
        out[s.rid] = { bytesSent: s.bytesSent || 0, frameWidth: s.frameWidth || 0, framesEncoded: s.framesEncoded || 0, active: s.active };
      }
    });
    return out;
  }

  /**
   * How well media from each remote identity arrives, since the last call:
   * loss, jitter, round-trip time. A full getStats, which costs the page
   * CPU (enough, every 2 s on a 2-core machine, to sway a receiver's
   * bandwidth estimate): call it every ten seconds or so, and `stalled()`
   * in between.
   * @returns {Promise<Object<string, Quality>>}
   */
  async quality() {
    const out = {};
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    let rtt = 0;
    stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime) rtt = s.currentRoundTripTime; });
    const last = this.lastQuality || new Map();
    const now = new Map();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const info = this.midInfo.get(s.mid);
      if (!info || isScreen(info.source)) return;
      const prev = last.get(s.id) || { lost: 0, received: 0 };
      const lost = Math.max(0, (s.packetsLost || 0) - prev.lost), got = Math.max(0, (s.packetsReceived || 0) - prev.received);
      now.set(s.id, { lost: s.packetsLost || 0, received: s.packetsReceived || 0 });
      const q = (out[info.identity] ||= { loss: 0, jitter: 0, rtt, stalled: false, packets: 0, lost: 0 });
      q.lost += lost; q.packets += lost + got;
      q.jitter = Math.max(q.jitter, s.jitter || 0);
      // Nothing at all since last time on a track that is not muted: its
      // path is cut somewhere (ours or theirs), the worst quality there is.
      if (last.size && !got && !this.mutedMid(s.mid)) q.stalled = true;
    });
    this.lastQuality = now;
    for (const q of Object.values(out)) {
      q.loss = q.packets ? q.lost / q.packets : 0;
      q.level = q.stalled || q.loss > 0.1 || q.rtt > 0.5 || q.jitter > 0.1 ? 'poor' : (q.loss > 0.02 || q.rtt > 0.25 || q.jitter > 0.03 ? 'fair' : 'good');
      delete q.packets; delete q.lost;
    }
    return out;
  }
}

/** Why the camera could not be opened, in words for the person at the page. */
export function mediaUnavailable(error) {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return 'The camera and microphone need a secure page: open this address with https:// ' +
      '(the server needs --tls-cert and --tls-key, or --tls-self-signed to try it) or on localhost';
  }
  if (error && error.name === 'NotAllowedError') {
    return 'The camera and microphone are blocked for this site: allow them in the browser\'s address bar, then reload';
  }
  return 'No camera or microphone';
}
