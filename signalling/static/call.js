// Switchboard in-call view, shared by the room page, the customer page and
// the agent console. Protocol: docs/protocol.md.
// Negotiation is "perfect negotiation" with this page as the polite peer:
// a server offer that crosses ours wins, we roll back and offer again later.
'use strict';

(function () {
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

  // Camera layers, lowest first: rids and scales as LiveKit names them. Chromium
  // sends as many as the capture resolution allows (all three from 720p).
  const SIMULCAST = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1500000 },
  ];
  const CAMERA = { width: 1280, height: 720 };
  // Nothing received for this long on a connected media path: it broke.
  const STALL_MS = 2000;
  // At most one ICE restart this often (a new path needs a moment to carry media).
  const RESTART_EVERY_MS = 5000;

  // Starts a call view in `opts.mount`:
  //   token, room        the access token and its room
  //   title              shown in the bar (defaults to the room)
  //   leaveLabel         "Leave" (room page) or "Hang up" (call pages)
  //   onLeave()          called when the user leaves, before the socket closes
  //   onClosed(msg)      called once when the session is over, for any reason
  //   controls           extra buttons to put in the control bar
  //   onRecording(msg)   the room's recording started or stopped ({on, error})
  // Returns the call's state, also exposed as `window.switchboard` (tests).
  function start(opts) {
    opts.mount.innerHTML = CALL_HTML;
    opts.mount.hidden = false;
    const state = {
      signal: null, pc: null, dc: null, local: null, me: null, screen: null,
      makingOffer: false,
      midInfo: new Map(),      // mid -> {identity, source, kind} for media we receive
      received: new Map(),     // mid -> MediaStreamTrack
      tiles: new Map(),        // tile key (identity, or identity + ' screen') -> {fig, video, stream, cap}
      present: new Set(),      // identities currently in the room
      chat: [],                // {from, text}
      events: [],              // protocol events seen (for tests and debugging)
      closed: null,
      files: null,
      screenTracks: new Map(), // track id -> identity, for screen shares
      speakers: [],            // who speaks, loudest first: {participant, identity, level}
      iceRestarts: 0,
      lastRestart: 0,
      stallTimer: null,
      recording: false,        // the room is being recorded
    };
    window.switchboard = state;
    const setStatus = (text) => { $('status').textContent = text; };
    const send = (msg) => { if (state.signal) state.signal.send(msg); };

    function tileFor(key, label) {
      let t = state.tiles.get(key);
      if (t) return t;
      const fig = document.createElement('figure');
      fig.className = 'tile';
      fig.dataset.identity = key;
      fig.classList.toggle('speaking', state.speakers.some((s) => s.identity === key));
      const video = document.createElement('video');
      video.autoplay = true; video.playsInline = true;
      const cap = document.createElement('figcaption');
      cap.textContent = label;
      fig.append(video, cap);
      $('tiles').append(fig);
      const stream = new MediaStream();
      video.srcObject = stream;
      t = { fig, video, stream, cap, label, videoMid: null, visible: true, wishTimer: null };
      state.tiles.set(key, t);
      resizes.observe(video);
      sightings.observe(fig);
      return t;
    }

    // Adaptive stream: each camera tile tells the server how tall it is
    // drawn, or that nobody sees it (hidden tab, scrolled away), so a
    // thumbnail costs a thumbnail's simulcast layer and a hidden tile no video.
    const tileOf = (el) => [...state.tiles.values()].find((t) => t.video === el || t.fig === el);
    const resizes = new ResizeObserver((entries) => { for (const e of entries) wishSoon(tileOf(e.target)); });
    const sightings = new IntersectionObserver((entries) => {
      for (const e of entries) { const t = tileOf(e.target); if (t) { t.visible = e.isIntersecting; wishSoon(t); } }
    });
    document.addEventListener('visibilitychange', () => { for (const t of state.tiles.values()) wishSoon(t); });
    const wishes = new Map(); // mid -> the last subscription sent for it (JSON)

    function wishSoon(t) {
      if (!t || !t.videoMid || t.wishTimer) return;
      t.wishTimer = setTimeout(() => { t.wishTimer = null; sendWish(t); }, 200);
    }

    function sendWish(t) {
      const h = Math.ceil(t.video.clientHeight * (window.devicePixelRatio || 1));
      const seen = !document.hidden && t.visible && !t.fig.hidden && h > 0;
      const wish = seen ? { max_height: h, enabled: true } : { enabled: false };
      const key = JSON.stringify(wish);
      if (wishes.get(t.videoMid) === key) return;
      wishes.set(t.videoMid, key);
      send({ type: 'subscription', mid: t.videoMid, ...wish });
    }

    function removeTile(key) {
      const t = state.tiles.get(key);
      if (t) { t.fig.remove(); state.tiles.delete(key); }
    }

    const isScreen = (info) => info.source === 'screen_share' || info.source === 'screen_share_audio';

    function attach(mid) {
      const info = state.midInfo.get(mid), track = state.received.get(mid);
      if (!info || !track || !state.present.has(info.identity)) return;
      const t = isScreen(info)
        ? tileFor(`${info.identity} screen`, `${info.identity}'s screen`)
        : tileFor(info.identity, info.identity);
      t.fig.hidden = false;
      for (const old of t.stream.getTracks()) if (old.kind === track.kind && old !== track) t.stream.removeTrack(old);
      if (!t.stream.getTracks().includes(track)) t.stream.addTrack(track);
      if (track.kind === 'video' && !isScreen(info) && t.videoMid !== mid) { t.videoMid = mid; wishSoon(t); }
      t.video.play().catch(() => setStatus('Click anywhere to enable sound'));
    }

    function participantPresent(identity) {
      state.present.add(identity);
      tileFor(identity, identity);
      for (const mid of state.midInfo.keys()) attach(mid);
    }

    function participantGone(identity) {
      state.present.delete(identity);
      removeTile(identity);
      removeTile(`${identity} screen`);
      if (state.files) state.files.peerLeft(identity);
    }

    function addChat(from, text) {
      state.chat.push({ from, text });
      const li = document.createElement('li');
      const who = document.createElement('span');
      who.className = 'from'; who.textContent = from;
      li.append(who, document.createTextNode(text));
      $('chat-log').append(li);
      li.scrollIntoView({ block: 'end' });
    }

    function sources() {
      return state.pc.getTransceivers()
        .filter((t) => t.mid && t.sender.track && t.direction !== 'inactive')
        .map((t) => ({ mid: t.mid, source: t === state.screenTransceiver ? 'screen_share' : (t.sender.track.kind === 'audio' ? 'microphone' : 'camera') }));
    }

    async function negotiate() {
      try {
        state.makingOffer = true;
        await state.pc.setLocalDescription();
        send({ type: 'offer', sdp: state.pc.localDescription.sdp, tracks: sources() });
      } catch (e) {
        console.error('offer failed', e);
      } finally {
        state.makingOffer = false;
      }
    }

    // App messages on the data channel are JSON objects with a `t`; any
    // other text is shown as chat (other clients may send plain text).
    function onChannelText(from, data) {
      let m = null;
      try { m = JSON.parse(data); } catch (_) { /* plain text */ }
      if (!m || typeof m !== 'object' || typeof m.t !== 'string') return addChat(from, data);
      if (m.t === 'chat') addChat(from, String(m.text));
      else state.files.onText(from, m);
    }

    function setupPeer(joined) {
      const pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      state.pc = pc;
      const dc = pc.createDataChannel('room');
      dc.binaryType = 'arraybuffer';
      dc.bufferedAmountLowThreshold = 256 * 1024;
      state.dc = dc;
      state.files = new window.SwitchboardFiles({
        list: $('transfers'),
        channel: dc,
        me: () => (state.me ? state.me.identity : ''),
        peers: () => [...state.present],
      });
      dc.onmessage = (e) => {
        if (typeof e.data === 'string') {
          try { const m = JSON.parse(e.data); onChannelText(m.from, m.data); } catch (_) { /* not relayed by the server */ }
          return;
        }
        const bytes = new Uint8Array(e.data);
        const n = bytes[0];
        const from = new TextDecoder().decode(bytes.subarray(1, 1 + n));
        state.files.onBinary(from, bytes.subarray(1 + n));
      };
      if (joined.can_publish && state.local) {
        for (const track of state.local.getTracks()) {
          // The camera goes out in three simulcast layers; the server sends
          // each subscriber the one its tile and link need.
          const sendEncodings = track.kind === 'video' ? SIMULCAST : undefined;
          pc.addTransceiver(track, { direction: 'sendonly', streams: [state.local], sendEncodings });
        }
      }
      pc.onnegotiationneeded = negotiate;
      pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid }); };
      pc.ontrack = (e) => { const mid = e.transceiver.mid; state.received.set(mid, e.track); attach(mid); };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'connected') setStatus('Connected');
        else if (pc.connectionState === 'failed') setStatus('Media connection failed');
      };
      // A new network (Wi-Fi to 4G, a new address) breaks the media path:
      // restart ICE, on the same participant, so media resumes on the new
      // one (the server drops a participant it has not heard from for 15 s).
      // The old path keeps carrying media while the new one is checked, so a
      // restart on a mere blip costs nothing.
      pc.oniceconnectionstatechange = () => {
        if (pc.iceConnectionState === 'disconnected' || pc.iceConnectionState === 'failed') restartIce();
      };
      // Chromium calls a path 'disconnected' only after some 5 s without an
      // answer to its checks; media from the others arrives many times a
      // second, so a connected path on which none came for STALL_MS broke:
      // restart sooner. (Receivers' synchronization sources say when their
      // last packet came, far cheaper than getStats.)
      let lastPacket = -1, lastChange = Date.now();
      state.stallTimer = setInterval(() => {
        if (state.closed) return clearInterval(state.stallTimer);
        const latest = Math.max(-1, ...pc.getReceivers().flatMap((r) => r.getSynchronizationSources().map((x) => x.timestamp)));
        // Only while media comes to us: alone in a room, nothing does.
        if (!['connected', 'completed'].includes(pc.iceConnectionState) || latest < 0 || latest !== lastPacket) {
          lastPacket = latest;
          lastChange = Date.now();
          return;
        }
        if (Date.now() - lastChange > STALL_MS && Date.now() - state.lastRestart > RESTART_EVERY_MS) restartIce();
      }, 500);
    }

    function restartIce() {
      if (state.closed || !state.pc) return;
      state.lastRestart = Date.now();
      state.iceRestarts += 1;
      setStatus('Reconnecting…');
      // The signalling connection left from the old network too and may be
      // dead without knowing it: resume on a new one, which the new offer
      // (negotiationneeded) then takes.
      state.signal.reconnect();
      state.pc.restartIce();
    }

    async function onMessage(msg) {
      state.events.push(msg.type);
      switch (msg.type) {
        case 'joined':
          state.me = msg;
          $('local-label').textContent = `${msg.identity} (you)`;
          setupPeer(msg);
          for (const p of msg.participants) { participantPresent(p.identity); for (const t of p.tracks || []) noteTrack(t); }
          break;
        case 'answer':
          if (state.pc.signalingState === 'have-local-offer') await state.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          break;
        case 'offer':
          for (const m of msg.mids) state.midInfo.set(m.mid, m);
          // Polite: an offer of ours in flight is rolled back implicitly.
          await state.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await state.pc.setLocalDescription();
          send({ type: 'answer', sdp: state.pc.localDescription.sdp });
          for (const mid of state.midInfo.keys()) attach(mid);
          break;
        case 'participant_joined': participantPresent(msg.participant.identity); break;
        case 'participant_left': participantGone(msg.identity); break;
        case 'track_published':
          noteTrack(msg.track);
          // A republished source (e.g. a new screen share) reuses its m-line.
          for (const [mid, info] of state.midInfo) if (info.identity === msg.track.identity && info.source === msg.track.source) attach(mid);
          break;
        case 'track_unpublished':
          if (state.screenTracks.get(msg.track) === msg.identity) {
            state.screenTracks.delete(msg.track);
            removeTile(`${msg.identity} screen`);
          }
          break;
        case 'track_muted': {
          const t = state.tiles.get(msg.identity);
          if (t) t.cap.textContent = msg.identity + (msg.muted ? ' (muted)' : '');
          break;
        }
        case 'speakers': showSpeakers(msg.speakers); break;
        case 'layers_wanted': setLayers(msg.mid, msg.rids); break;
        case 'track_paused':
        case 'track_resumed': {
          // The link cannot carry even the lowest layer: say so on the tile
          // instead of leaving a frozen frame.
          const t = [...state.tiles.values()].find((x) => x.videoMid === msg.mid);
          if (t) t.fig.classList.toggle('paused', msg.type === 'track_paused');
          break;
        }
        case 'recording':
          state.recording = msg.on;
          $('recording').hidden = !msg.on;
          if (msg.error) setStatus(msg.error);
          if (opts.onRecording) opts.onRecording(msg);
          break;
        case 'error': setStatus(`Error: ${msg.message}`); console.warn('server error', msg); break;
        case 'closed': finish(msg); break;
      }
    }

    // Dynacast: the server names the simulcast layers somebody takes; the
    // encoder pauses the others (no uplink, no CPU for them). In order: a
    // second change must not race the first's setParameters.
    let layerChanges = Promise.resolve();
    function setLayers(mid, rids) {
      layerChanges = layerChanges.then(async () => {
        const tr = state.pc && state.pc.getTransceivers().find((t) => t.mid === mid);
        if (!tr) return;
        const params = tr.sender.getParameters();
        let changed = false;
        for (const e of params.encodings || []) {
          const on = !e.rid || rids.includes(e.rid);
          if (e.active !== on) { e.active = on; changed = true; }
        }
        if (changed) await tr.sender.setParameters(params);
        state.layersWanted = rids;
      }).catch((e) => console.warn('could not change simulcast layers', e));
    }

    // Who speaks: their tiles are outlined; the loudest other speaker's tile
    // moves to the front and stays there until someone else speaks.
    function showSpeakers(speakers) {
      state.speakers = speakers;
      const speaking = new Set(speakers.map((s) => s.identity));
      $('local-tile').classList.toggle('speaking', !!state.me && speaking.has(state.me.identity));
      for (const [key, t] of state.tiles) t.fig.classList.toggle('speaking', speaking.has(key));
      const first = speakers.find((s) => state.tiles.has(s.identity));
      if (first) for (const [key, t] of state.tiles) t.fig.style.order = key === first.identity ? '-1' : '';
    }

    // Screen-share track ids by publisher: `track_unpublished` names only the id.
    function noteTrack(track) {
      if (track.source === 'screen_share') state.screenTracks.set(track.track, track.identity);
    }

    function finish(msg) {
      if (state.closed) return;
      state.closed = msg;
      const reasons = {
        call_ended: 'The call has ended', left: 'You left', server_shutdown: 'The server is restarting',
        connection_lost: 'Connection lost: media could not get through',
        unreachable: 'Connection lost: could not reach the server again',
      };
      setStatus(reasons[msg.code] || `Disconnected${msg.message ? `: ${msg.message}` : ''}`);
      if (state.signal) state.signal.end();
      teardown();
      if (opts.onClosed) opts.onClosed(msg);
    }

    function teardown() {
      if (state.files) state.files.abortAll('the call ended');
      if (state.pc) state.pc.close();
      if (state.local) for (const t of state.local.getTracks()) t.stop();
      if (state.screen) state.screen.stop();
      for (const id of [...state.present]) participantGone(id);
      for (const b of opts.mount.querySelectorAll('.controls button')) b.disabled = true;
    }

    function toggle(kind, button) {
      if (!state.local) return;
      const track = state.local.getTracks().find((t) => t.kind === kind);
      if (!track) return;
      track.enabled = !track.enabled;
      button.setAttribute('aria-pressed', String(!track.enabled));
      const tr = state.pc && state.pc.getTransceivers().find((t) => t.sender.track === track);
      if (tr && tr.mid) send({ type: 'mute', mid: tr.mid, muted: !track.enabled });
    }

    async function toggleShare(button) {
      if (state.screen) return stopShare(button);
      let stream;
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      } catch (e) {
        setStatus('Screen sharing was not started');
        return;
      }
      const track = stream.getVideoTracks()[0];
      track.contentHint = 'detail';
      state.screen = track;
      track.onended = () => stopShare(button);
      // Its own send-only m-line (addTrack could take over one we receive
      // on), reused when sharing again.
      const tr = state.screenTransceiver;
      if (tr) {
        await tr.sender.replaceTrack(track);
        tr.direction = 'sendonly';
      } else {
        state.screenTransceiver = state.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      }
      button.setAttribute('aria-pressed', 'true');
      setStatus('You are sharing your screen');
    }

    function stopShare(button) {
      if (!state.screen) return;
      state.screen.stop();
      state.screen = null;
      const tr = state.screenTransceiver;
      if (tr) { tr.sender.replaceTrack(null); tr.direction = 'inactive'; }
      button.setAttribute('aria-pressed', 'false');
      setStatus('Screen sharing stopped');
    }

    async function main() {
      opts.mount.querySelector('.call-title').textContent = opts.title || opts.room;
      $('leave').textContent = opts.leaveLabel || 'Leave';
      for (const b of opts.controls || []) $('extra-controls').append(b);
      try {
        state.local = opts.stream || await navigator.mediaDevices.getUserMedia({ audio: true, video: CAMERA });
        $('local-video').srcObject = state.local;
      } catch (e) {
        // Stays on screen: the status line moves on once the call connects.
        $('media-notice').textContent = `${mediaUnavailable()}. You can still watch and listen.`;
        $('media-notice').hidden = false;
      }
      state.signal = new window.SwitchboardSignal({
        url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
        join: { type: 'join', token: opts.token, room: opts.room },
        onMessage: (msg) => onMessage(msg).catch((err) => console.error(err)),
        onState: (s) => {
          state.events.push(s);
          setStatus(s === 'reconnecting' ? 'Reconnecting…' : (state.pc && state.pc.connectionState === 'connected' ? 'Connected' : 'Connecting…'));
        },
        onLost: (msg) => finish(msg),
      });

      $('mute').onclick = (e) => toggle('audio', e.currentTarget);
      $('camera').onclick = (e) => toggle('video', e.currentTarget);
      $('share').onclick = (e) => toggleShare(e.currentTarget);
      if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $('share').hidden = true;
      $('send-file').onclick = () => $('file-input').click();
      $('file-input').onchange = (e) => {
        const file = e.target.files[0];
        e.target.value = '';
        if (file && state.files) state.files.send(file);
      };
      $('leave').onclick = async () => {
        if (opts.onLeave) { try { await opts.onLeave(); } catch (err) { console.error(err); } }
        send({ type: 'leave' });
      };
      $('chat-form').onsubmit = (e) => {
        e.preventDefault();
        const text = $('chat-input').value.trim();
        if (!text || !state.dc || state.dc.readyState !== 'open') return;
        state.dc.send(JSON.stringify({ t: 'chat', text }));
        addChat(state.me ? state.me.identity : 'me', text);
        $('chat-input').value = '';
      };
      document.addEventListener('click', () => { for (const t of state.tiles.values()) t.video.play().catch(() => {}); });
    }

    // Test and debugging hook: per remote identity, what arrived (getStats).
    state.inbound = async () => {
      const out = {};
      if (!state.pc) return out;
      const stats = await state.pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const info = state.midInfo.get(s.mid);
        if (!info) return;
        const o = (out[info.identity] ||= { framesDecoded: 0, videoBytes: 0, audioBytes: 0, screenFramesDecoded: 0 });
        if (s.kind === 'video' && isScreen(info)) o.screenFramesDecoded += s.framesDecoded || 0;
        else if (s.kind === 'video') {
          o.framesDecoded += s.framesDecoded || 0; o.videoBytes += s.bytesReceived || 0;
          o.frameWidth = s.frameWidth || 0; o.frameHeight = s.frameHeight || 0; o.freezeCount = s.freezeCount || 0;
          o.framesReceived = s.framesReceived || 0; o.freezeSeconds = s.totalFreezesDuration || 0;
          o.framesDropped = s.framesDropped || 0; o.pliCount = s.pliCount || 0;
        }
        else o.audioBytes += s.bytesReceived || 0;
      });
      return out;
    };

    // Test and debugging hook: per simulcast layer (rid) of our camera, what left.
    state.outbound = async () => {
      const out = {};
      if (!state.pc) return out;
      (await state.pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
          out[s.rid] = { bytesSent: s.bytesSent || 0, frameWidth: s.frameWidth || 0, framesEncoded: s.framesEncoded || 0, active: s.active };
        }
      });
      return out;
    };

    main();
    return state;
  }

  // Why the camera could not be opened, in words for the person at the page.
  function mediaUnavailable() {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      return 'The camera and microphone need a secure page: open this address with https:// ' +
        '(the server needs --tls-cert and --tls-key, or --tls-self-signed to try it) or on localhost';
    }
    return 'No camera or microphone';
  }

  window.SwitchboardCall = { start, mediaUnavailable };
})();
