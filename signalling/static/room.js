// Switchboard room client. Protocol: docs/protocol.md.
// Negotiation is "perfect negotiation" with this page as the polite peer:
// a server offer that crosses ours wins, we roll back and offer again later.
'use strict';

const room = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = new URLSearchParams(location.search).get('token') || '';
const $ = (id) => document.getElementById(id);

const state = {
  ws: null, pc: null, dc: null, local: null, me: null,
  makingOffer: false,
  midInfo: new Map(),      // mid -> {identity, source, kind} for media we receive
  received: new Map(),     // mid -> MediaStreamTrack
  tiles: new Map(),        // identity -> {fig, video, stream}
  present: new Set(),      // identities currently in the room
  chat: [],                // {from, text}
  events: [],              // protocol events seen (for tests and debugging)
  closed: null,
};
window.switchboard = state;

function setStatus(text) { $('status').textContent = text; }
function send(msg) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg)); }

function tileFor(identity) {
  let t = state.tiles.get(identity);
  if (t) return t;
  const fig = document.createElement('figure');
  fig.className = 'tile';
  fig.dataset.identity = identity;
  const video = document.createElement('video');
  video.autoplay = true; video.playsInline = true;
  const cap = document.createElement('figcaption');
  cap.textContent = identity;
  fig.append(video, cap);
  $('tiles').append(fig);
  const stream = new MediaStream();
  video.srcObject = stream;
  t = { fig, video, stream, cap };
  state.tiles.set(identity, t);
  return t;
}

function attach(mid) {
  const info = state.midInfo.get(mid), track = state.received.get(mid);
  if (!info || !track || !state.present.has(info.identity)) return;
  const t = tileFor(info.identity);
  for (const old of t.stream.getTracks()) if (old.kind === track.kind && old !== track && info.source !== 'screen_share') t.stream.removeTrack(old);
  if (!t.stream.getTracks().includes(track)) t.stream.addTrack(track);
  t.video.play().catch(() => setStatus('Click anywhere to enable sound'));
}

function participantPresent(identity) {
  state.present.add(identity);
  tileFor(identity);
  for (const mid of state.midInfo.keys()) attach(mid);
}

function participantGone(identity) {
  state.present.delete(identity);
  const t = state.tiles.get(identity);
  if (t) { t.fig.remove(); state.tiles.delete(identity); }
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
    .map((t) => ({ mid: t.mid, source: t.sender.track.kind === 'audio' ? 'microphone' : (t.sender.track.contentHint === 'detail' ? 'screen_share' : 'camera') }));
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

function setupPeer(joined) {
  const pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  state.pc = pc;
  const dc = pc.createDataChannel('room');
  state.dc = dc;
  dc.onmessage = (e) => {
    if (typeof e.data !== 'string') return;
    try { const m = JSON.parse(e.data); addChat(m.from, m.data); } catch (_) { /* not a chat message */ }
  };
  if (joined.can_publish && state.local) {
    for (const track of state.local.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [state.local] });
  }
  pc.onnegotiationneeded = negotiate;
  pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid }); };
  pc.ontrack = (e) => { const mid = e.transceiver.mid; state.received.set(mid, e.track); attach(mid); };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'connected') setStatus(`In room ${room}`);
    else if (pc.connectionState === 'failed') setStatus('Media connection failed');
  };
}

async function onMessage(msg) {
  state.events.push(msg.type);
  switch (msg.type) {
    case 'joined':
      state.me = msg;
      $('local-label').textContent = `${msg.identity} (you)`;
      setupPeer(msg);
      for (const p of msg.participants) participantPresent(p.identity);
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
    case 'track_muted': {
      const t = state.tiles.get(msg.identity);
      if (t) t.cap.textContent = msg.identity + (msg.muted ? ' (muted)' : '');
      break;
    }
    case 'error': setStatus(`Error: ${msg.message}`); console.warn('server error', msg); break;
    case 'closed': state.closed = msg; setStatus(`Disconnected: ${msg.message}`); teardown(); break;
  }
}

function teardown() {
  if (state.pc) state.pc.close();
  if (state.local) for (const t of state.local.getTracks()) t.stop();
  for (const id of [...state.tiles.keys()]) participantGone(id);
}

function toggle(kind, button, offLabel, onLabel) {
  if (!state.local) return;
  const track = state.local.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  button.setAttribute('aria-pressed', String(!track.enabled));
  button.textContent = track.enabled ? offLabel : onLabel;
  const tr = state.pc && state.pc.getTransceivers().find((t) => t.sender.track === track);
  if (tr && tr.mid) send({ type: 'mute', mid: tr.mid, muted: !track.enabled });
}

async function main() {
  $('room-name').textContent = room;
  if (!token) { setStatus('No access token in the link (?token=…)'); return; }
  try {
    state.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    $('local-video').srcObject = state.local;
  } catch (e) {
    setStatus('No camera or microphone; joining to watch only');
  }
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => send({ type: 'join', token, room });
  ws.onmessage = (e) => onMessage(JSON.parse(e.data)).catch((err) => console.error(err));
  ws.onclose = () => { if (!state.closed) { state.closed = { code: 'disconnected' }; setStatus('Disconnected'); teardown(); } };

  $('mute').onclick = (e) => toggle('audio', e.currentTarget, 'Mute', 'Unmute');
  $('camera').onclick = (e) => toggle('video', e.currentTarget, 'Camera off', 'Camera on');
  $('leave').onclick = () => { send({ type: 'leave' }); teardown(); setStatus('You left the room'); };
  $('chat-form').onsubmit = (e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text || !state.dc || state.dc.readyState !== 'open') return;
    state.dc.send(text);
    addChat(state.me ? state.me.identity : 'me', text);
    $('chat-input').value = '';
  };
  document.addEventListener('click', () => { for (const t of state.tiles.values()) t.video.play().catch(() => {}); });
}

// Test and debugging hook: per remote identity, what arrived (from getStats).
state.inbound = async () => {
  const out = {};
  if (!state.pc) return out;
  const stats = await state.pc.getStats();
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const info = state.midInfo.get(s.mid);
    if (!info) return;
    const o = (out[info.identity] ||= { framesDecoded: 0, videoBytes: 0, audioBytes: 0 });
    if (s.kind === 'video') { o.framesDecoded += s.framesDecoded || 0; o.videoBytes += s.bytesReceived || 0; }
    else o.audioBytes += s.bytesReceived || 0;
  });
  return out;
};

main();
