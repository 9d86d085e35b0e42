// The customer/agent call flow in real Chromium pages against a real server:
// request → live console → accept → media both ways, screen share, file,
// chat, a supervisor, hang-up into history; then persistence, races and
// refusals.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { startServer, launchBrowser, waitFor, sleep, SMALL_CAMERA } from './harness.mjs';

const SHOTS = process.env.SHOTS; // a directory: save screenshots there
const ANN = ['ann@example.com', 'password-ann'];
const SAM = ['sam@example.com', 'password-sam'];
const servers = [];
let browser;

after(async () => {
  if (browser) await browser.close();
  for (const s of servers) await s.stop();
});

async function server(args = []) {
  const s = await startServer({ shards: 2, args });
  servers.push(s);
  s.addAgent(...ANN);
  s.addAgent(...SAM);
  browser ||= await launchBrowser();
  return s;
}

// The call flow, not video quality, is under test here (simulcast.test.mjs
// covers the 720p layers): these pages capture 640x480.

async function page(url) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(SMALL_CAMERA);
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error(`[${url}] page error`, e));
  await p.goto(url);
  return p;
}

async function signIn(s, [email, password]) {
  const p = await page(`${s.url}/agent`);
  await p.getByLabel('Email').fill(email);
  await p.getByLabel('Password').fill(password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByRole('heading', { name: 'Waiting customers' }).waitFor();
  return p;
}

async function startCall(s, name, topic = '') {
  const p = await page(`${s.url}/`);
  await p.getByLabel('Your name').fill(name);
  await p.getByLabel(/What is it about/).fill(topic);
  await p.getByRole('button', { name: 'Start call' }).click();
  await waitFor(() => p.evaluate(() => window.customer.status === 'queued'), 10000, `${name} queued`);
  return p;
}

const inbound = (p) => p.evaluate(() => (window.switchboard ? window.switchboard.inbound() : {}));
const receiving = (p, who, ms, key = 'framesDecoded') => waitFor(async () => {
  const s = await inbound(p);
  return s[who] && s[who][key] > 0 && (key !== 'framesDecoded' || s[who].audioBytes > 0) && s;
}, ms, `receiving ${key} from ${who}`);
const shot = async (p, name) => { if (SHOTS) { mkdirSync(SHOTS, { recursive: true }); await p.screenshot({ path: `${SHOTS}/${name}.png` }); } };
const chatHas = (p, from, text) => p.evaluate(([f, t]) => window.switchboard.chat.some((m) => m.from === f && m.text === t), [from, text]);

test('customer calls, agent accepts; screen, file and chat flow; a supervisor joins; hang-up lands in history', { timeout: 240000 }, async () => {
  const s = await server();
  const ann = await signIn(s, ANN);
  const customer = await startCall(s, 'Carla', 'billing question');
  await shot(customer, 'customer-waiting');

  // The request shows up on the console live (no reload).
  const row = ann.locator('.queue-item', { hasText: 'Carla' });
  await row.waitFor({ timeout: 5000 });
  assert.match(await row.textContent(), /billing question/);
  await shot(ann, 'agent-console');

  // Accept → both sides decode each other.
  const tAccept = Date.now();
  await row.getByRole('button', { name: 'Accept' }).click();
  const firstFrame = {};
  await Promise.all([
    receiving(ann, 'Carla', 20000).then(() => { firstFrame.agent = Date.now() - tAccept; }),
    receiving(customer, ANN[0], 20000).then(() => { firstFrame.customer = Date.now() - tAccept; }),
  ]);
  console.log(`accept to first decoded frame: agent ${firstFrame.agent} ms, customer ${firstFrame.customer} ms`);

  // Screen share: the agent decodes a second video track from the customer.
  await customer.getByRole('button', { name: 'Share screen' }).click();
  await receiving(ann, 'Carla', 20000, 'screenFramesDecoded');
  const cam = (await inbound(ann)).Carla.framesDecoded;
  await sleep(1000);
  assert.ok((await inbound(ann)).Carla.framesDecoded > cam, 'the camera keeps flowing next to the screen');
  await shot(ann, 'agent-in-call-with-screen');

  // A 5 MB file from the customer arrives at the agent with the same SHA-256.
  const bytes = randomBytes(5 * 1024 * 1024);
  const sum = createHash('sha256').update(bytes).digest('hex');
  const chooser = customer.waitForEvent('filechooser');
  await customer.getByRole('button', { name: 'Send file' }).click();
  await (await chooser).setFiles({ name: 'statement.bin', mimeType: 'application/octet-stream', buffer: bytes });
  const got = await waitFor(() => ann.evaluate(() => window.switchboard.files.done.find((d) => d.direction === 'in')), 60000, 'the file at the agent');
  assert.equal(got.ok, true, `transfer failed: ${got.reason}`);
  assert.equal(got.sha256, sum);
  assert.equal(got.size, bytes.length);
  const sent = await waitFor(() => customer.evaluate(() => window.switchboard.files.done.find((d) => d.direction === 'out')), 10000, 'the sender told of delivery');
  assert.equal(sent.ok, true);
  console.log(`5 MB file: ${(bytes.length / 1e6 / (got.ms / 1000)).toFixed(2)} MB/s (${got.ms} ms at the receiver)`);
  await ann.getByRole('link', { name: 'Download statement.bin' }).waitFor();

  // Chat both ways.
  await customer.fill('#chat-input', 'hello from Carla');
  await customer.getByRole('button', { name: 'Send', exact: true }).click();
  await ann.fill('#chat-input', 'hello from Ann');
  await ann.getByRole('button', { name: 'Send', exact: true }).click();
  await waitFor(() => chatHas(ann, 'Carla', 'hello from Carla'), 10000, 'chat at the agent');
  await waitFor(() => chatHas(customer, ANN[0], 'hello from Ann'), 10000, 'chat at the customer');

  // Stop sharing: the screen tile goes away at the agent.
  await customer.getByRole('button', { name: 'Share screen' }).click();
  await waitFor(() => ann.evaluate(() => !document.querySelector('[data-identity="Carla screen"]')), 10000, 'the screen tile removed');

  // Invite a supervisor: three-party call.
  const sam = await signIn(s, SAM);
  await ann.getByLabel('Agent to invite').selectOption(SAM[0]);
  await ann.getByRole('button', { name: 'Invite' }).click();
  await sam.getByRole('button', { name: 'Join' }).click();
  await Promise.all([
    receiving(sam, 'Carla', 20000), receiving(sam, ANN[0], 20000),
    receiving(ann, SAM[0], 20000), receiving(customer, SAM[0], 20000),
  ]);
  await shot(customer, 'customer-three-party-call');

  // Hang up ends it for everyone and closes the record with its duration.
  await ann.getByRole('button', { name: 'Hang up' }).click();
  for (const p of [ann, sam, customer]) {
    await waitFor(() => p.evaluate(() => window.switchboard.closed && window.switchboard.closed.code), 10000, 'the call closed');
  }
  const rec = await waitFor(() => ann.evaluate(() => window.agent.history.find((c) => c.customer_name === 'Carla')), 10000, 'the call in history');
  assert.equal(rec.status, 'ended');
  assert.equal(rec.agent, ANN[0]);
  assert.ok(rec.duration_ms > 1000, `duration ${rec.duration_ms}`);
  await ann.locator('#history tbody tr', { hasText: 'Carla' }).waitFor();
  await shot(ann, 'agent-history');
  // The customer's token died with the call.
  const again = await customer.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token: window.customer.call.token }));
    ws.onmessage = (e) => resolve(JSON.parse(e.data));
  }));
  assert.equal(again.code, 'call_ended');
});

test('a queued request survives a restart; two agents accepting at once: exactly one gets it', { timeout: 120000 }, async () => {
  const s = await server();
  const customer = await startCall(s, 'Dora');
  const id = await customer.evaluate(() => window.customer.call.id);
  await s.restart();
  // The waiting page reconnects by itself and is still queued.
  await waitFor(() => customer.evaluate(() => document.getElementById('queue-status').textContent.includes('next in line')), 20000, 'queued after restart');

  const [ann, sam] = [await signIn(s, ANN), await signIn(s, SAM)];
  await ann.locator('.queue-item', { hasText: 'Dora' }).waitFor({ timeout: 5000 });
  const accept = (p) => p.evaluate(async (callId) => {
    const r = await fetch(`/api/calls/${callId}/accept`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    return { status: r.status, body: await r.json() };
  }, id);
  const results = await Promise.all([accept(ann), accept(sam)]);
  const won = results.filter((r) => r.status === 200);
  const lost = results.filter((r) => r.status === 409);
  assert.equal(won.length, 1, JSON.stringify(results));
  assert.equal(lost.length, 1, JSON.stringify(results));
  assert.equal(lost[0].body.error, 'already_taken');
  // The queue empties on both consoles.
  for (const p of [ann, sam]) await waitFor(() => p.evaluate(() => window.agent.queue.length === 0), 5000, 'queue emptied');
});

test('signing out ends the session on the server; a new password signs the agent out everywhere', { timeout: 60000 }, async () => {
  const s = await server();
  const signIn = async (password) => {
    const r = await fetch(`${s.url}/api/agent/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: ANN[0], password }) });
    assert.equal(r.status, 200, 'signed in');
    return r.headers.get('set-cookie').split(';')[0];
  };
  const me = async (cookie) => (await fetch(`${s.url}/api/agent/me`, { headers: { cookie } })).status;
  const [laptop, phone] = [await signIn(ANN[1]), await signIn(ANN[1])];
  assert.deepEqual([await me(laptop), await me(phone)], [200, 200]);
  // The laptop's console is open in a browser.
  const ctx = await browser.newContext();
  await ctx.addCookies([{ name: 'sb_session', value: laptop.split('=').slice(1).join('='), url: s.url }]);
  await (await ctx.newPage()).goto(`${s.url}/agent`);
  const consoles = async () => Number(((await (await fetch(`${s.url}/metrics`)).text())
    .match(/^switchboard_signalling_connections\{kind="console"\} (\d+)/m) || [0, 0])[1]);
  await waitFor(async () => (await consoles()) === 1, 10000, "the laptop's console feed open");
  // Signing out on the laptop: a copy of its cookie is worth nothing, its
  // open console feed is closed by the server; the phone stays signed in.
  assert.equal((await fetch(`${s.url}/api/agent/logout`, { method: 'POST', headers: { cookie: laptop } })).status, 200);
  assert.deepEqual([await me(laptop), await me(phone)], [401, 200], 'after signing out on the laptop');
  await waitFor(async () => (await consoles()) === 0, 5000, 'the signed-out console feed closed');
  await ctx.close();
  // A new password signs every session out; the old password no longer works.
  s.setPassword(ANN[0], 'a-new-password');
  assert.equal(await me(phone), 401, 'the phone after the password changed');
  const old = await fetch(`${s.url}/api/agent/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: ANN[0], password: ANN[1] }) });
  assert.equal(old.status, 401, 'the old password');
  assert.equal(await me(await signIn('a-new-password')), 200, 'the new password');
});

test('a full queue refuses new call requests with server_full until one is taken', { timeout: 30000 }, async () => {
  const s = await server(['--max-queued-calls', '1']);
  const ask = (name) => fetch(`${s.url}/api/calls`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  const first = await ask('Una');
  assert.equal(first.status, 201);
  const second = await ask('Vic');
  assert.equal(second.status, 503);
  assert.equal((await second.json()).error, 'server_full');
  const { id, token } = await first.json();
  assert.equal((await fetch(`${s.url}/api/calls/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 200);
  assert.equal((await ask('Vic')).status, 201, 'a place in the queue came free');
});

test('tokens, sessions and limits are enforced', { timeout: 120000 }, async () => {
  const s = await server(['--calls-per-minute', '3', '--logins-per-minute', '3']);
  const customer = await startCall(s, 'Eve');
  const other = await startCall(s, 'Finn');
  const otherRoom = await other.evaluate(() => window.customer.call.room);

  // A customer token cannot join another call's room.
  const refused = await customer.evaluate((room) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token: window.customer.call.token, room }));
    ws.onmessage = (e) => resolve(JSON.parse(e.data));
  }), otherRoom);
  assert.equal(refused.type, 'closed');
  assert.equal(refused.code, 'wrong_room');

  // The agent API refuses requests without a session, or with a customer token.
  const api = (p, method, path, headers = {}) => p.evaluate(async ([m, u, h]) => {
    const r = await fetch(u, { method: m, headers: { 'content-type': 'application/json', ...h }, body: m === 'POST' ? '{}' : undefined });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, [method, path, headers]);
  const id = await customer.evaluate(() => window.customer.call.id);
  const token = await customer.evaluate(() => window.customer.call.token);
  assert.equal((await api(customer, 'GET', '/api/agent/queue')).status, 401);
  assert.equal((await api(customer, 'GET', '/api/agent/history')).status, 401);
  assert.equal((await api(customer, 'POST', `/api/calls/${id}/accept`, { authorization: `Bearer ${token}` })).status, 401);
  // The status stream takes the token in a header only: one in the URL
  // (which gets logged) is refused.
  const inUrl = await api(customer, 'GET', `/api/calls/${id}/events?token=${encodeURIComponent(token)}`);
  assert.equal(inUrl.status, 400);
  assert.equal(inUrl.body.error, 'bad_token');
  // A cancelled request's room is closed to its token.
  assert.equal((await api(customer, 'POST', `/api/calls/${id}/cancel`, { authorization: `Bearer ${token}` })).status, 200);
  await waitFor(() => customer.evaluate(() => !document.getElementById('ended').hidden), 5000, 'the customer page shows the cancellation');

  // Wrong credentials get a clear message; repeated attempts are limited.
  const login = await page(`${s.url}/agent`);
  await login.getByLabel('Email').fill(ANN[0]);
  await login.getByLabel('Password').fill('wrong password');
  await login.getByRole('button', { name: 'Sign in' }).click();
  await waitFor(async () => (await login.locator('#login-error').textContent()).includes('wrong email or password'), 5000, 'bad credentials message');
  for (let i = 0; i < 3; i++) {
    const answered = login.waitForResponse((r) => r.url().endsWith('/api/agent/login'));
    await login.getByRole('button', { name: 'Sign in' }).click();
    await answered;
  }
  await waitFor(async () => (await login.locator('#login-error').textContent()).includes('too many sign-in attempts'), 5000, 'sign-in rate limited');

  // Call creation is limited per client address (two made above, one more allowed).
  const statuses = [];
  for (let i = 0; i < 2; i++) statuses.push((await api(other, 'POST', '/api/calls')).status);
  const created = await other.evaluate(async () => (await fetch('/api/calls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Gus' }) })).status);
  assert.deepEqual([...statuses, created], [400, 429, 429], 'a nameless request is refused, then the limit bites');
});
