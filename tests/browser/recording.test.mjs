// Recording a call in real Chromium pages against a real server: an agent
// records a call with a customer; the files are real WebM (ffprobe, ffmpeg
// decode them without errors), listed in the console's history and played
// there; nobody without a session gets them; a recording cut by `kill -9`
// plays up to the kill and is listed as interrupted; a backend records a
// plain room through the server API (a screen share in its own file).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, waitFor, sleep, SMALL_CAMERA } from './harness.mjs';

const SHOTS = process.env.SHOTS;
const ANN = ['ann@example.com', 'password-ann'];
let server, browser;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function page(url) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(SMALL_CAMERA);
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error(`[${url}] page error`, e));
  await p.goto(url);
  return p;
}

const inbound = (p) => p.evaluate(() => (window.switchboard ? window.switchboard.inbound() : {}));
const receiving = (p, who) => waitFor(async () => { const s = await inbound(p); return s[who] && s[who].framesDecoded > 0 && s; }, 20000, `receiving from ${who}`);
const shot = async (p, name) => { if (SHOTS) { mkdirSync(SHOTS, { recursive: true }); await p.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true }); } };

/** A signed-in agent in a call with a customer, both decoding. */
async function call(name) {
  if (!server) {
    server = await startServer({ shards: 2 });
    server.addAgent(...ANN);
    browser = await launchBrowser();
  }
  let ann = await page(`${server.url}/agent`);
  if (await ann.getByLabel('Email').isVisible()) {
    await ann.getByLabel('Email').fill(ANN[0]);
    await ann.getByLabel('Password').fill(ANN[1]);
    await ann.getByRole('button', { name: 'Sign in' }).click();
  }
  await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor();
  const customer = await page(`${server.url}/`);
  await customer.getByLabel('Your name').fill(name);
  await customer.getByRole('button', { name: 'Start call' }).click();
  const row = ann.locator('.queue-item', { hasText: name });
  await row.getByRole('button', { name: 'Accept' }).click();
  await Promise.all([receiving(ann, name), receiving(customer, ANN[0])]);
  return { ann, customer };
}

const probe = (file) => JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries',
  'stream=codec_name,codec_type,width,height:format=duration', '-of', 'json', file]).toString());
/** The last packet time (s) of each stream, by codec type. */
const lastPackets = (file) => {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=codec_type,pts_time', '-of', 'csv=p=0', file]).toString();
  const last = {};
  for (const line of out.trim().split('\n')) { const [type, t] = line.split(','); last[type] = Math.max(last[type] || 0, Number(t)); }
  return last;
};
// Decoder errors only: `-fps_mode passthrough` and the file's own time
// base (`-enc_time_base -1`) keep ffmpeg's null output from re-timing the
// camera's variable frame rate onto a coarser grid (its "non monotonically
// increasing dts" complaints are about its own output, not the file).
const decodeErrors = (file) => execFileSync('sh', ['-c', `ffmpeg -v error -i '${file}' -fps_mode passthrough -enc_time_base -1 -f null - 2>&1 >/dev/null`]).toString();
/** CPU seconds of the server's recorder thread so far (its report of the cost). */
const recorderCpu = () => {
  const tasks = `/proc/${server.proc.pid}/task`;
  for (const t of readdirSync(tasks)) {
    if (readFileSync(`${tasks}/${t}/comm`, 'utf8').trim() !== 'recorder') continue;
    const f = readFileSync(`${tasks}/${t}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  }
  return 0;
};
const history = (p) => p.evaluate(() => fetch('/api/agent/history').then((r) => r.json()));
const files = (dir) => readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.webm')).map((f) => join(dir, String(f)));

test('an agent records a call: WebM per participant, listed, played and downloaded from the console; strangers are refused', { timeout: 240000 }, async () => {
  const { ann, customer } = await call('Rita');

  const cpu0 = recorderCpu();
  await ann.getByRole('button', { name: 'Record' }).click();
  const t0 = Date.now();
  for (const p of [ann, customer]) await p.getByRole('status', { name: 'Recording' }).waitFor({ timeout: 5000 });
  await ann.getByRole('button', { name: 'Stop recording' }).waitFor();
  await shot(ann, 'agent-recording');
  await sleep(10000);
  await ann.getByRole('button', { name: 'Stop recording' }).click();
  const recorded = (Date.now() - t0) / 1000;
  console.log(`recorder thread: ${((recorderCpu() - cpu0) * 1000).toFixed(0)} ms CPU for 2 streams × ${recorded.toFixed(1)} s (audio + video each)`);
  await customer.getByRole('status', { name: 'Recording' }).waitFor({ state: 'hidden', timeout: 5000 });

  // The best layer the customer sends is what the recording should hold.
  const layers = await customer.evaluate(() => window.switchboard.outbound());
  const best = Math.max(...Object.values(layers).filter((l) => l.bytesSent > 0).map((l) => l.frameWidth));
  console.log(`Rita's layers: ${JSON.stringify(Object.fromEntries(Object.entries(layers).map(([r, l]) => [r, l.frameWidth])))}`);
  await ann.getByRole('button', { name: 'Hang up' }).click();
  await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor({ timeout: 10000 });
  const rec = await waitFor(async () => {
    const h = await history(ann);
    const r = h.calls.find((c) => c.customer_name === 'Rita')?.recordings?.[0];
    return r && r.files.length === 2 && r.files.every((f) => f.status === 'finished') && r;
  }, 15000, 'two finished files in the history');
  if (process.env.RECORDING_DEBUG) console.log(server.log().split('\n').filter((l) => /recording|gap/.test(l)).join('\n'));
  console.log(`recording ${rec.id}: ${rec.status}; files ${JSON.stringify(rec.files.map((f) => [f.identity, f.duration_ms, f.bytes, f.gaps, f.offset_ms]))}`);

  const paths = files(join(server.dataDir, 'recordings'));
  assert.equal(paths.length, 2, `two files: ${paths}`);
  for (const f of paths) {
    const p = probe(f);
    const codecs = p.streams.map((s) => s.codec_name).sort();
    const video = p.streams.find((s) => s.codec_type === 'video');
    // Both pages capture the same size, so each file holds that best layer.
    assert.equal(video.width, best, 'the best layer sent');
    const duration = Number(p.format.duration);
    console.log(`${f.split('/').slice(-2).join('/')}: ${codecs.join('+')} ${video.width}x${video.height}, ${duration.toFixed(2)} s (recorded ${recorded.toFixed(2)} s), ${statSync(f).size} B`);
    assert.deepEqual(codecs, ['opus', 'vp8']);
    assert.ok(Math.abs(duration - recorded) <= 0.5, `duration ${duration} s within 0.5 s of ${recorded} s`);
    const widths = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'frame=width', '-of', 'csv=p=0', f]).toString().trim().split('\n');
    const runs = widths.reduce((acc, w) => { if (acc.length && acc[acc.length - 1][0] === w) acc[acc.length - 1][1]++; else acc.push([w, 1]); return acc; }, []);
    console.log(`  decoded frame widths (width × frames, in order): ${runs.map(([w, n]) => `${w}×${n}`).join(' ')}`);
    const last = lastPackets(f);
    assert.ok(Math.abs(last.audio - last.video) < 0.2, `audio and video end together: ${JSON.stringify(last)}`);
    const errors = decodeErrors(f);
    assert.equal(errors.trim(), '', `ffmpeg decodes ${f} without errors`);
  }

  // The console lists the files with duration and size, and plays them.
  await ann.reload();
  await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor();
  const line = ann.locator('.recording-file', { hasText: 'Rita' }).first();
  await line.waitFor({ timeout: 10000 });
  assert.match(await line.textContent(), /Rita: 0:1\d, \d+ kB/);
  await line.getByRole('button', { name: /Play the recording of Rita/ }).click();
  const played = await waitFor(() => line.evaluate((el) => {
    const v = el.querySelector('video');
    return v && v.currentTime > 1.5 && { t: v.currentTime, w: v.videoWidth, h: v.videoHeight };
  }), 15000, 'the recording playing in the console');
  console.log(`played in the console: ${JSON.stringify(played)}`);
  assert.equal(played.w, best, 'the best layer Rita sent');
  await shot(ann, 'history-with-recordings');
  const download = ann.waitForEvent('download');
  await line.getByRole('link', { name: 'Download' }).click();
  assert.match((await download).suggestedFilename(), /^recording-[0-9a-f]+\.webm$/);

  // Without an agent session: refused, whatever the id.
  const fileId = rec.files[0].id;
  const anon = await fetch(`${server.url}/api/recordings/${fileId}`);
  assert.equal(anon.status, 401);
  const range = await ann.evaluate((id) => fetch(`/api/recordings/${id}`, { headers: { range: 'bytes=0-99' } }).then((r) => [r.status, r.headers.get('content-type')]), fileId);
  assert.deepEqual(range, [206, 'video/webm'], 'ranges for seeking');
  const guessed = await ann.evaluate(() => fetch('/api/recordings/00000000000000000000000000000000').then((r) => r.status));
  assert.equal(guessed, 404);
  for (const p of [ann, customer]) await p.context().close();
});

test('kill -9 mid-recording: after a restart the file plays up to the kill and the history says interrupted', { timeout: 180000 }, async () => {
  const { ann, customer } = await call('Kurt');
  const id = await ann.evaluate(() => window.agent.inCall.id);
  await ann.getByRole('button', { name: 'Record' }).click();
  await ann.getByRole('button', { name: 'Stop recording' }).waitFor();
  const t0 = Date.now();
  await sleep(5000);
  await server.crash();
  const ran = (Date.now() - t0) / 1000;
  const dir = join(server.dataDir, 'recordings');
  const cut = files(dir).filter((f) => statSync(f).mtimeMs > t0 - 1000);
  assert.equal(cut.length, 2, `the call's two files: ${cut}`);
  for (const f of cut) {
    const last = lastPackets(f);
    console.log(`${f.split('/').slice(-2).join('/')} after kill -9 at ${ran.toFixed(1)} s: last packets ${JSON.stringify(last)}`);
    assert.ok(last.video >= ran - 2 && last.audio >= ran - 2, `plays up to within 2 s of the kill (${ran} s): ${JSON.stringify(last)}`);
    if (process.env.RECORDING_DEBUG) console.log(execFileSync('sh', ['-c', `ffprobe -v error -show_entries packet=codec_type,pts_time,flags -of csv=p=0 '${f}' | head -40 | tr '\\n' ' '`]).toString());
    // The demuxer says where the file was cut; nothing before it is broken.
    const decoded = decodeErrors(f).split('\n').filter((l) => l && !/ended prematurely|truncat|end of file/i.test(l));
    assert.deepEqual(decoded, [], 'no decoding errors before the cut');
  }
  // The call survived in the records; the agent ends it, then looks.
  const hung = await ann.evaluate((c) => fetch(`/api/calls/${c}/hangup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.status), id);
  assert.equal(hung, 200);
  const h = await history(ann);
  const r = h.calls.find((c) => c.customer_name === 'Kurt').recordings[0];
  console.log(`after the restart: recording ${r.status}, files ${JSON.stringify(r.files.map((f) => [f.status, f.duration_ms]))}`);
  assert.equal(r.status, 'interrupted');
  assert.ok(r.files.every((f) => f.status === 'interrupted' && f.duration_ms >= 2000), 'each file with how far it got');
  for (const p of [ann, customer]) await p.context().close();
});

test('a backend records a plain room through the server API: a file per camera and one for the screen share; only its grant reads them', { timeout: 180000 }, async () => {
  if (!server) { server = await startServer({ shards: 2 }); server.addAgent(...ANN); browser = await launchBrowser(); }
  const ROOM = 'standup';
  const [alice, bob] = [await page(`${server.url}/room/${ROOM}#token=${server.token(ROOM, 'alice')}`), await page(`${server.url}/room/${ROOM}#token=${server.token(ROOM, 'bob')}`)];
  await Promise.all([receiving(alice, 'bob'), receiving(bob, 'alice')]);
  const api = (method, path, token) => fetch(`${server.url}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} })
    .then(async (r) => [r.status, await r.json().catch(() => null)]);
  const url = `/api/rooms/${ROOM}/recording`;

  // Refused: no token, a participant's join token, a grant for another room.
  const [none, joinToken, otherRoom] = [await api('POST', url), await api('POST', url, server.token(ROOM, 'alice')), await api('POST', url, server.recorderToken('elsewhere'))];
  assert.deepEqual([none[0], none[1].error], [401, 'missing_token']);
  assert.deepEqual([joinToken[0], joinToken[1].error], [403, 'not_allowed']);
  assert.deepEqual([otherRoom[0], otherRoom[1].error], [403, 'not_allowed']);
  assert.equal(await alice.getByRole('status', { name: 'Recording' }).isVisible(), false, 'refused calls started nothing');

  const token = server.recorderToken(ROOM);
  const [started, body] = await api('POST', url, token);
  assert.equal(started, 200);
  const t0 = Date.now();
  for (const p of [alice, bob]) await p.getByRole('status', { name: 'Recording' }).waitFor({ timeout: 5000 });
  await sleep(3000);
  // Alice shares her screen for 4 s: a file of its own.
  await alice.getByRole('button', { name: 'Share screen' }).click();
  const tShare = Date.now();
  await waitFor(async () => (await inbound(bob)).alice?.screenFramesDecoded > 0, 20000, 'bob decoding the screen');
  await sleep(4000);
  await alice.getByRole('button', { name: 'Share screen' }).click();
  await sleep(1000);
  assert.deepEqual(await api('DELETE', url, token), [200, { recording: null }]);
  const recorded = (Date.now() - t0) / 1000;
  for (const p of [alice, bob]) await p.getByRole('status', { name: 'Recording' }).waitFor({ state: 'hidden', timeout: 5000 });

  const rec = await waitFor(async () => {
    const [status, list] = await api('GET', `/api/rooms/${ROOM}/recordings`, token);
    const r = status === 200 && list.recordings.find((x) => x.id === body.recording);
    return r && r.status === 'finished' && r.files.length === 3 && r.files.every((f) => f.status === 'finished') && r;
  }, 15000, 'three finished files listed by the API');
  console.log(`API recording ${rec.id}: files ${JSON.stringify(rec.files.map((f) => [f.identity, f.screen, f.offset_ms, f.duration_ms, f.bytes]))}`);
  const screen = rec.files.find((f) => f.screen);
  assert.equal(screen.identity, 'alice');
  // On the recording's timeline the share starts ~3 s in and lasts ~4–5 s.
  const shareAt = (tShare - t0) / 1000;
  assert.ok(Math.abs(screen.offset_ms / 1000 - shareAt) < 1.5, `screen file at ${screen.offset_ms} ms, shared at ${shareAt.toFixed(1)} s`);
  assert.ok(screen.duration_ms >= 3000 && screen.duration_ms <= 6500, `screen ${screen.duration_ms} ms`);
  for (const f of rec.files.filter((x) => !x.screen)) {
    assert.ok(Math.abs(f.duration_ms / 1000 - recorded) <= 1, `${f.identity}'s camera ${f.duration_ms} ms of ${recorded} s`);
  }

  // The files through the API, with the grant: real WebM, decodable.
  const tmp = join(server.dataDir, 'fetched');
  mkdirSync(tmp, { recursive: true });
  for (const f of rec.files) {
    const r = await fetch(`${server.url}/api/recordings/${f.id}?download`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    const path = join(tmp, `${f.id}.webm`);
    writeFileSync(path, Buffer.from(await r.arrayBuffer()));
    if (process.env.RECORDING_DEBUG) execFileSync('cp', [path, '/tmp/']);
    const p = probe(path);
    const codecs = p.streams.map((s) => s.codec_name).sort();
    console.log(`${f.identity}${f.screen ? ' screen' : ''}: ${codecs.join('+')} ${p.streams.find((s) => s.codec_type === 'video').width}x${p.streams.find((s) => s.codec_type === 'video').height}, ${Number(p.format.duration).toFixed(2)} s`);
    assert.deepEqual(codecs, f.screen ? ['vp8'] : ['opus', 'vp8']);
    assert.equal(decodeErrors(path).trim(), '', `ffmpeg decodes ${f.identity}'s file without errors`);
  }
  // Another room's grant does not learn the file exists; no grant is 401.
  const elsewhere = await fetch(`${server.url}/api/recordings/${screen.id}`, { headers: { authorization: `Bearer ${server.recorderToken('elsewhere')}` } });
  assert.equal(elsewhere.status, 404);
  assert.equal((await fetch(`${server.url}/api/recordings/${screen.id}`)).status, 401);

  // A recording ends by itself when everyone has left.
  const [again, second] = await api('POST', url, token);
  assert.equal(again, 200);
  await bob.getByRole('status', { name: 'Recording' }).waitFor({ timeout: 5000 });
  await sleep(2000);
  for (const p of [alice, bob]) await p.context().close();
  await waitFor(async () => {
    const [, list] = await api('GET', `/api/rooms/${ROOM}/recordings`, token);
    const r = list.recordings.find((x) => x.id === second.recording);
    return r && r.status === 'finished' && r.files.length === 2 && r.files.every((f) => f.status === 'finished');
  }, 20000, 'the second recording finished when the room emptied');
});

test('--record-calls with a disk that fills: the customer is told before the call, the agent sees the recording stop, the call goes on', { timeout: 180000 }, async () => {
  if (!browser) browser = await launchBrowser();
  // A 600 kB disk for recordings: full a few seconds into the call.
  const disk = mkdtempSync(join(tmpdir(), 'switchboard-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=600k', 'tmpfs', disk]);
  const small = await startServer({ shards: 1, args: ['--record-calls', '--recordings-dir', disk] });
  try {
    small.addAgent(...ANN);
    const ann = await page(`${small.url}/agent`);
    await ann.getByLabel('Email').fill(ANN[0]);
    await ann.getByLabel('Password').fill(ANN[1]);
    await ann.getByRole('button', { name: 'Sign in' }).click();
    await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor();
    const customer = await page(`${small.url}/`);
    await customer.getByText('Calls are recorded').waitFor({ timeout: 5000 });
    await customer.getByLabel('Your name').fill('Dora');
    await customer.getByRole('button', { name: 'Start call' }).click();
    await ann.locator('.queue-item', { hasText: 'Dora' }).getByRole('button', { name: 'Accept' }).click();
    // Recorded from the start, without anyone pressing Record.
    for (const p of [ann, customer]) await p.getByRole('status', { name: 'Recording' }).waitFor({ timeout: 10000 });
    await Promise.all([receiving(ann, 'Dora'), receiving(customer, ANN[0])]);

    const alert = ann.getByRole('alert').filter({ hasText: /recording stopped/i });
    await alert.waitFor({ timeout: 60000 });
    console.log(`the agent sees: ${await alert.textContent()}`);
    for (const p of [ann, customer]) await p.getByRole('status', { name: 'Recording' }).waitFor({ state: 'hidden', timeout: 5000 });
    assert.equal(await ann.getByRole('button', { name: 'Record' }).isVisible(), true, 'the agent may try again');
    // The call goes on: both still decode new frames.
    const before = [(await inbound(ann)).Dora.framesDecoded, (await inbound(customer))[ANN[0]].framesDecoded];
    await sleep(3000);
    const later = [(await inbound(ann)).Dora.framesDecoded, (await inbound(customer))[ANN[0]].framesDecoded];
    console.log(`frames decoded (agent, customer) 3 s apart after the failure: ${before} -> ${later}`);
    assert.ok(later[0] > before[0] + 20 && later[1] > before[1] + 20, 'media keeps flowing');
    await ann.getByRole('button', { name: 'Hang up' }).click();
    await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor({ timeout: 10000 });
    const rec = (await history(ann)).calls.find((c) => c.customer_name === 'Dora').recordings[0];
    console.log(`history: recording ${rec.status} (${rec.error}); files ${JSON.stringify(rec.files.map((f) => [f.identity, f.status, f.duration_ms]))}`);
    assert.equal(rec.status, 'failed');
    assert.match(rec.error, /space|write|disk/i);
    // What was written before the disk filled still plays.
    for (const f of files(disk)) assert.ok(lastPackets(f).video > 0.5, `${f} holds video`);
    for (const p of [ann, customer]) await p.context().close();
  } finally {
    await small.stop();
    execFileSync('umount', [disk]);
  }
});
