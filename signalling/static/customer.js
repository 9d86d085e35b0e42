// The customer page: ask for a call, wait in the queue, talk.
import { startCall, mediaUnavailable } from '/static/call.js';
import { $, api, clock, eventStream } from '/static/page.js';

const show = (id) => { for (const p of ['start', 'waiting', 'ended']) $(p).hidden = p !== id; };
const customer = { call: null, stream: null, events: null, status: null };
window.customer = customer;

// ---- before the call: see yourself, see that you are heard, pick devices ----

const VIDEO = { width: 1280, height: 720 };
let level = null; // {ctx, timer} of the microphone level meter

async function preview(choice = {}) {
  const constraints = {
    audio: choice.audio ? { deviceId: { exact: choice.audio } } : true,
    video: choice.video ? { ...VIDEO, deviceId: { exact: choice.video } } : VIDEO,
  };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    if (customer.stream) for (const t of customer.stream.getTracks()) t.stop();
    customer.stream = stream;
    $('preview').srcObject = stream;
    $('start-error').textContent = '';
    meter(stream);
    await fillDevices();
  } catch (e) {
    $('start-error').textContent = `${mediaUnavailable(e)}. You can still call and listen.`;
  }
}

// A live level from the microphone, so the customer knows they will be heard.
function meter(stream) {
  if (level) { clearInterval(level.timer); level.ctx.close(); level = null; }
  if (!stream.getAudioTracks().length || !window.AudioContext) return;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length);
    // Decays slowly so that speech reads as a steady bar, not flicker.
    $('mic-level').value = Math.max(Math.min(1, rms * 4), $('mic-level').value * 0.85);
  }, 100);
  level = { ctx, timer };
}

async function fillDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  const current = (kind) => { const t = customer.stream && customer.stream.getTracks().find((x) => x.kind === kind); return t && t.getSettings().deviceId; };
  const fill = (id, kind, selected, what) => {
    const list = all.filter((d) => d.kind === kind);
    $(id).replaceChildren(...list.map((d, i) => Object.assign(document.createElement('option'), { value: d.deviceId, textContent: d.label || `${what} ${i + 1}`, selected: d.deviceId === selected })));
    $(id).disabled = list.length === 0;
  };
  fill('pre-camera', 'videoinput', current('video'), 'Camera');
  fill('pre-microphone', 'audioinput', current('audio'), 'Microphone');
  fill('pre-speaker', 'audiooutput', customer.speaker, 'Speaker');
  if (!('setSinkId' in HTMLMediaElement.prototype)) $('pre-speaker').disabled = true;
}

$('pre-camera').onchange = () => preview({ video: $('pre-camera').value, audio: $('pre-microphone').value });
$('pre-microphone').onchange = () => preview({ video: $('pre-camera').value, audio: $('pre-microphone').value });
$('pre-speaker').onchange = () => { customer.speaker = $('pre-speaker').value; };
// A headset plugged in appears in the lists at once.
if (navigator.mediaDevices) navigator.mediaDevices.addEventListener('devicechange', () => fillDevices().catch(() => {}));

function wait(call) {
  customer.call = call;
  sessionStorage.setItem('switchboard-call', JSON.stringify(call));
  show('waiting');
  let base = { waited: 0, at: performance.now() };
  const tick = setInterval(() => { $('waited').textContent = clock(base.waited + performance.now() - base.at); }, 500);
  const es = eventStream(`/api/calls/${encodeURIComponent(call.id)}/events`, call.token, (data) => {
    const w = JSON.parse(data);
    customer.status = w.status;
    base = { waited: w.waited_ms, at: performance.now() };
    if (w.status === 'queued') {
      $('queue-status').textContent = w.position === 1 ? 'You are next in line.' : `You are number ${w.position} in line.`;
      return;
    }
    clearInterval(tick);
    es.close();
    if (w.status === 'accepted') enterCall(call, w.agent);
    else over(w.status === 'missed' ? 'Nobody could take your call in time' : 'Your request was cancelled', 'Please try again.');
  }, () => { $('queue-status').textContent = 'Reconnecting…'; });
  customer.events = es;
}

function enterCall(call, agent) {
  if (customer.inCall) return;
  customer.inCall = true;
  if (level) { clearInterval(level.timer); level.ctx.close(); level = null; }
  for (const p of ['start', 'waiting', 'ended']) $(p).hidden = true;
  startCall({
    mount: $('call'),
    token: call.token,
    room: call.room,
    title: agent ? `Call with ${agent}` : 'Your call',
    leaveLabel: 'Hang up',
    stream: customer.stream, // may still be null: the call asks for devices then
    speaker: customer.speaker,
    onLeave: () => api('POST', `/api/calls/${encodeURIComponent(call.id)}/hangup`, {}, call.token),
    onClosed: (msg) => {
      sessionStorage.removeItem('switchboard-call');
      setTimeout(() => { $('call').hidden = true; over('Call ended', msg.code === 'call_ended' ? 'Thank you for calling.' : (msg.message || '')); }, 1500);
    },
  });
}

function over(title, detail) {
  sessionStorage.removeItem('switchboard-call');
  $('ended-title').textContent = title;
  $('ended-detail').textContent = detail;
  show('ended');
}

$('start-form').onsubmit = async (e) => {
  e.preventDefault();
  $('start-error').textContent = '';
  const button = e.submitter || $('start-form').querySelector('button');
  button.disabled = true;
  try {
    const call = await api('POST', '/api/calls', { name: $('name').value, topic: $('topic').value });
    wait(call);
  } catch (err) {
    $('start-error').textContent = err.message;
  } finally {
    button.disabled = false;
  }
};

$('cancel').onclick = async () => {
  const call = customer.call;
  if (!call) return;
  try {
    await api('POST', `/api/calls/${encodeURIComponent(call.id)}/cancel`, {}, call.token);
  } catch (err) {
    $('queue-status').textContent = err.message;
  }
};

$('again').onclick = () => { location.reload(); };

// Told before the call starts when every call is recorded.
fetch('/api/config').then((r) => r.json()).then((c) => { $('recorded-notice').hidden = !c.record_calls; }).catch(() => {});

// A reload while waiting continues the same request.
const saved = sessionStorage.getItem('switchboard-call');
preview();
if (saved) wait(JSON.parse(saved));
