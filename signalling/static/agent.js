// The agent console: sign in, watch the queue live, accept, invite, history.
import { startCall } from '/static/call.js';
import { $, api, clock, wsUrl } from '/static/page.js';

const agent = { me: null, queue: [], invites: [], history: [], feed: null, inCall: null };
window.agent = agent;

const say = (text) => { $('console-status').textContent = text; };

function showConsole() {
  $('login').hidden = true;
  $('call').hidden = true;
  $('console').hidden = false;
  $('me').textContent = agent.me.email;
}

// ---- queue and invitations (live over a WebSocket) ----------------------

function renderQueue() {
  const ul = $('queue');
  ul.replaceChildren();
  $('queue-empty').hidden = agent.queue.length > 0;
  const now = performance.now();
  for (const c of agent.queue) {
    const li = document.createElement('li');
    li.className = 'queue-item';
    li.dataset.call = c.id;
    const who = document.createElement('strong');
    who.textContent = c.customer_name;
    const topic = document.createElement('span');
    topic.textContent = c.topic || 'no topic';
    const waited = document.createElement('span');
    waited.className = 'waited';
    waited.dataset.base = String(c.waited_ms - (now - agent.queueAt));
    waited.textContent = clock(c.waited_ms);
    const accept = document.createElement('button');
    accept.type = 'button'; accept.className = 'primary'; accept.textContent = 'Accept';
    accept.setAttribute('aria-describedby', `q-${c.id}`);
    who.id = `q-${c.id}`;
    accept.onclick = () => acceptCall(c, accept);
    li.append(who, topic, waited, accept);
    ul.append(li);
  }
}

setInterval(() => {
  for (const w of document.querySelectorAll('#queue .waited')) w.textContent = clock(Number(w.dataset.base) + performance.now() - agent.queueAt);
}, 1000);

function renderInvites() {
  const ul = $('invites');
  ul.replaceChildren();
  for (const inv of agent.invites) {
    const li = document.createElement('li');
    li.className = 'queue-item';
    li.textContent = `${inv.by} invites you to the call with ${inv.customer} `;
    const join = document.createElement('button');
    join.type = 'button'; join.className = 'primary'; join.textContent = 'Join';
    join.onclick = async () => {
      try {
        const pass = await api('POST', `/api/calls/${encodeURIComponent(inv.call)}/join`);
        agent.invites = agent.invites.filter((i) => i !== inv);
        renderInvites();
        enterCall(pass);
      } catch (e) { say(e.message); }
    };
    li.append(join);
    ul.append(li);
  }
}

// ---- the team, and telling the agent about new calls ---------------------

const STATUS_WORDS = { available: 'available', away: 'away', in_call: 'in a call', offline: 'offline' };

function renderTeam() {
  $('team').replaceChildren(...(agent.team || []).map((a) => {
    const li = document.createElement('li');
    li.className = `member ${a.status}`;
    li.dataset.email = a.email;
    const dot = document.createElement('span');
    dot.className = 'dot'; dot.setAttribute('aria-hidden', 'true');
    li.append(dot, `${a.name || a.email}${a.email === agent.me.email ? ' (you)' : ''}: ${STATUS_WORDS[a.status] || a.status}`);
    return li;
  }));
}

$('my-status').onchange = async () => {
  try { await api('POST', '/api/agent/status', { status: $('my-status').value }); } catch (e) { say(e.message); }
};

// A call that was not in the queue before: a chime, and a notification
// when the console is in the background; the tab title counts the waiting.
function alertNew(calls) {
  const known = new Set(agent.queue.map((c) => c.id));
  const fresh = agent.queueSeen ? calls.filter((c) => !known.has(c.id)) : [];
  agent.queueSeen = true;
  document.title = calls.length ? `(${calls.length}) Agent console — Switchboard` : 'Agent console — Switchboard';
  if (!fresh.length || $('my-status').value === 'away' || agent.inCall) return;
  agent.alerts = (agent.alerts || 0) + fresh.length;
  chime();
  if (document.hidden && window.Notification && Notification.permission === 'granted') {
    for (const c of fresh) new Notification(`${c.customer_name} is waiting`, { body: c.topic || 'A new call', tag: c.id });
  }
}

let audio = null;
function chime() {
  try {
    audio ||= new AudioContext();
    const t = audio.currentTime;
    for (const [i, f] of [660, 880].entries()) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t + i * 0.15);
      gain.gain.exponentialRampToValueAtTime(0.2, t + i * 0.15 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.15 + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + i * 0.15); osc.stop(t + i * 0.15 + 0.32);
    }
  } catch (_) { /* no audio: the title and list still say it */ }
}

function connectFeed() {
  const ws = new WebSocket(wsUrl('/api/agent/console'));
  agent.feed = ws;
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === 'queue') {
      alertNew(m.calls);
      agent.queue = m.calls;
      agent.queueAt = performance.now();
      renderQueue();
      loadHistory();
    } else if (m.type === 'team') {
      agent.team = m.agents;
      $('my-status').value = m.away ? 'away' : 'available';
      renderTeam();
    } else if (m.type === 'invite') {
      agent.invites.push(m);
      renderInvites();
      say(`${m.by} invites you into a call`);
    }
  };
  ws.onclose = () => { if (agent.me) setTimeout(connectFeed, 1000); };
}

// The history search in the form; `more`: the next page, appended.
function historyQuery(before) {
  const p = new URLSearchParams();
  const q = $('history-q').value.trim();
  if (q) p.set('q', q);
  // Dates are the agent's local days: from its first millisecond to the end of `to`.
  if ($('history-from').value) p.set('from', String(new Date(`${$('history-from').value}T00:00`).getTime()));
  if ($('history-to').value) p.set('to', String(new Date(`${$('history-to').value}T00:00`).getTime() + 86400000));
  if (before) p.set('before', before);
  return `/api/agent/history?${p}`;
}

async function loadHistory(more = false) {
  try {
    const { calls, next } = await api('GET', historyQuery(more ? agent.historyNext : null));
    agent.history = more ? [...agent.history, ...calls] : calls;
    agent.historyNext = next;
    $('history-more').hidden = !next;
    $('history-empty').hidden = agent.history.length > 0;
    const tbody = $('history').querySelector('tbody');
    if (!more) tbody.replaceChildren();
    for (const c of calls) {
      const tr = document.createElement('tr');
      const started = new Date(c.accepted_at || c.created_at).toLocaleString();
      for (const v of [c.customer_name, c.agent || '—', started, c.duration_ms == null ? '—' : clock(c.duration_ms), c.status]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      const rec = document.createElement('td');
      rec.append(...(c.recordings || []).map((r) => recordingItem(c, r)));
      if (!rec.childElementCount) rec.textContent = '—';
      tr.append(rec);
      tbody.append(tr);
    }
  } catch (e) { /* signed out */ }
}

$('history-search').onsubmit = (e) => { e.preventDefault(); loadHistory(); };
$('history-more').onclick = () => loadHistory(true);

const size = (b) => (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(b / 1e3))} kB`);

// One recording in the history: a line per file (whose, how long, how big,
// its state), each with Play (in the page) and Download.
function recordingItem(call, r) {
  const box = document.createElement('div');
  box.className = 'recording-item';
  box.dataset.recording = r.id;
  for (const f of r.files) {
    const line = document.createElement('div');
    line.className = 'recording-file';
    line.dataset.file = f.id;
    const what = `${f.identity}${f.screen ? ' (screen)' : ''}: ${clock(f.duration_ms)}, ${size(f.bytes)}`;
    const state = f.status === 'finished' ? '' : ` — ${f.status}${f.error ? `: ${f.error}` : ''}`;
    const label = document.createElement('span');
    label.textContent = what + state;
    const play = document.createElement('button');
    play.type = 'button'; play.textContent = 'Play';
    play.setAttribute('aria-label', `Play the recording of ${f.identity}${f.screen ? ' (screen)' : ''} in the call with ${call.customer_name}`);
    play.onclick = () => {
      let v = line.querySelector('video');
      if (!v) {
        v = document.createElement('video');
        v.controls = true; v.src = `/api/recordings/${encodeURIComponent(f.id)}`;
        v.className = 'recording-player';
        line.append(v);
      }
      v.play().catch(() => {});
    };
    const dl = document.createElement('a');
    dl.href = `/api/recordings/${encodeURIComponent(f.id)}?download`;
    dl.textContent = 'Download';
    dl.setAttribute('download', '');
    line.append(label, ' ', play, ' ', dl);
    box.append(line);
  }
  if (!r.files.length) box.textContent = `recording ${r.status}${r.error ? `: ${r.error}` : ''}`;
  return box;
}

// ---- calls ----------------------------------------------------------------

async function acceptCall(c, button) {
  button.disabled = true;
  try {
    enterCall(await api('POST', `/api/calls/${encodeURIComponent(c.id)}/accept`));
  } catch (e) {
    say(e.code === 'already_taken' ? `Too late: ${e.message}` : e.message);
    button.disabled = false;
  }
}

async function inviteControls(call) {
  const select = document.createElement('select');
  select.setAttribute('aria-label', 'Agent to invite');
  try {
    const { agents } = await api('GET', '/api/agent/agents');
    for (const a of agents) {
      if (a.email === agent.me.email) continue;
      const o = document.createElement('option');
      o.value = a.email; o.textContent = a.email;
      select.append(o);
    }
  } catch (e) { /* the call goes on without invitations */ }
  const invite = document.createElement('button');
  invite.type = 'button'; invite.textContent = 'Invite';
  invite.disabled = select.options.length === 0;
  invite.onclick = async () => {
    try {
      await api('POST', `/api/calls/${encodeURIComponent(call.id)}/invite`, { email: select.value });
      document.getElementById('status').textContent = `Invited ${select.value}`;
    } catch (e) {
      document.getElementById('status').textContent = e.message;
    }
  };
  return [select, invite];
}

// "Record" / "Stop recording": the button follows what the server says
// (another agent in the call may start or stop it too).
function recordControl(call) {
  const button = document.createElement('button');
  button.type = 'button'; button.id = 'record'; button.textContent = 'Record';
  let on = false;
  button.onclick = async () => {
    button.disabled = true;
    try {
      await api('POST', `/api/calls/${encodeURIComponent(call.id)}/record`, { on: !on });
    } catch (e) {
      document.getElementById('status').textContent = e.message;
    } finally {
      button.disabled = false;
    }
  };
  // Why a recording stopped by itself (e.g. the disk is full) stays on
  // screen until the next start: the call goes on without it.
  const error = document.createElement('span');
  error.id = 'record-error'; error.className = 'notice'; error.setAttribute('role', 'alert'); error.hidden = true;
  const follow = (msg) => {
    on = msg.on;
    button.textContent = on ? 'Stop recording' : 'Record';
    error.hidden = !msg.error;
    error.textContent = msg.error ? msg.error.charAt(0).toUpperCase() + msg.error.slice(1) : '';
  };
  return { button, error, follow };
}

async function enterCall(pass) {
  agent.inCall = pass.call;
  $('console').hidden = true;
  const record = recordControl(pass.call);
  const controls = [record.button, record.error, ...await inviteControls(pass.call)];
  startCall({
    onRecording: record.follow,
    mount: $('call'),
    token: pass.token,
    room: pass.room,
    title: `Call with ${pass.call.customer_name}${pass.call.topic ? ` — ${pass.call.topic}` : ''}`,
    leaveLabel: 'Hang up',
    controls,
    onLeave: () => api('POST', `/api/calls/${encodeURIComponent(pass.call.id)}/hangup`, {}),
    onClosed: () => {
      agent.inCall = null;
      setTimeout(() => { showConsole(); say('Call ended'); loadHistory(); }, 1500);
    },
  });
}

// ---- sign-in -------------------------------------------------------------

$('login-form').onsubmit = async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  // Asked on the click (browsers want a gesture): to be told of new calls in the background.
  if (window.Notification && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
  try {
    await api('POST', '/api/agent/login', { email: $('email').value, password: $('password').value });
    await start();
  } catch (err) {
    $('login-error').textContent = err.message;
  }
};

$('logout').onclick = async () => {
  await api('POST', '/api/agent/logout', {}).catch(() => {});
  agent.me = null;
  if (agent.feed) agent.feed.close();
  location.reload();
};

async function start() {
  try {
    agent.me = await api('GET', '/api/agent/me');
  } catch (e) {
    $('login').hidden = false;
    return;
  }
  showConsole();
  connectFeed();
}

start();
