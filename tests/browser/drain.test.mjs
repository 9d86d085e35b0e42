// A restart that does not cut calls: SIGTERM starts a drain. The call in
// progress goes on (both pages keep decoding each other), /readyz says 503
// while /healthz stays 200, a join that would open a new room and a new call
// request are refused with `draining`, a join into the room in progress is
// still let in, and the process exits by itself once the call has ended.
// Then the two ways a drain ends early: a second SIGTERM, and --drain-timeout.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, sleep, SMALL_CAMERA } from './harness.mjs';

const ROOM = 'drain-room';
const browsers = [];
const servers = [];

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const s of servers) await s.stop();
});

async function open(server, name) {
  const b = await launchBrowser();
  browsers.push(b);
  const context = await b.newContext();
  await context.addInitScript(SMALL_CAMERA);
  const page = await context.newPage();
  await page.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  return { browser: b, page };
}

const frames = async (page, other) => {
  const s = await page.evaluate(() => window.switchboard.inbound());
  return s[other] ? s[other].framesDecoded : 0;
};

/** A raw signalling join from a page: the first server message, or how the
 *  connection was closed. */
const tryJoin = (page, url, token) => page.evaluate(([url, token]) => new Promise((resolve) => {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws');
  ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token }));
  ws.onmessage = (m) => { resolve(JSON.parse(m.data)); ws.close(); };
  ws.onclose = (e) => resolve({ closed: e.code, reason: e.reason });
}), [url, token]);

const exited = (proc) => new Promise((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', (code) => r(code))));

async function call(server) {
  const alice = await open(server, 'alice');
  const bob = await open(server, 'bob');
  await waitFor(async () => (await frames(alice.page, 'bob')) > 20, 30000, 'alice decoding bob');
  await waitFor(async () => (await frames(bob.page, 'alice')) > 20, 30000, 'bob decoding alice');
  return { alice, bob };
}

test('SIGTERM drains: the call in progress goes on, newcomers are refused, the process exits when the call ends', { timeout: 120000 }, async () => {
  const server = await startServer({ shards: 1 });
  servers.push(server);
  const { alice, bob } = await call(server);
  const t0 = Date.now();
  const at = () => `${Date.now() - t0} ms`;
  const aliceBefore = await frames(alice.page, 'bob');
  const bobBefore = await frames(bob.page, 'alice');

  server.proc.kill('SIGTERM');
  await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 503, 3000, '/readyz saying 503');
  console.log(`${at()}: /readyz 503`);
  assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'still alive');

  const refused = await tryJoin(alice.page, server.url, server.token('another-room', 'carol'));
  assert.equal(refused.type, 'closed', `a join opening a new room is refused: ${JSON.stringify(refused)}`);
  assert.equal(refused.code, 'draining');
  console.log(`${at()}: a join into a new room refused: ${refused.message}`);
  const joined = await tryJoin(alice.page, server.url, server.token(ROOM, 'dave'));
  assert.equal(joined.type, 'joined', `a join into the room in progress is let in: ${JSON.stringify(joined)}`);
  const request = await fetch(`${server.url}/api/calls`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Eve', topic: 'billing' }),
  });
  assert.equal(request.status, 503, 'a call request is refused');
  assert.equal((await request.json()).error, 'draining');
  console.log(`${at()}: a call request refused (503 draining)`);

  await sleep(3000);
  const aliceGot = (await frames(alice.page, 'bob')) - aliceBefore;
  const bobGot = (await frames(bob.page, 'alice')) - bobBefore;
  console.log(`${at()}: during the drain alice decoded ${aliceGot} frames of bob, bob ${bobGot} of alice`);
  assert.ok(aliceGot > 45 && bobGot > 45, 'media goes on while draining');
  assert.equal(server.proc.exitCode, null, 'still running while the call goes on');

  // The call ends: both hang up. The server stops by itself.
  await alice.browser.close();
  await bob.browser.close();
  const ended = Date.now();
  const code = await Promise.race([exited(server.proc), sleep(20000).then(() => 'still running')]);
  console.log(`${at()}: exited with ${code}, ${Date.now() - ended} ms after the call ended`);
  assert.equal(code, 0);
  assert.match(server.log(), /drained: the last call has ended/);
});

test('a second SIGTERM stops a drain at once, and the pages are told', { timeout: 90000 }, async () => {
  const server = await startServer({ shards: 1 });
  servers.push(server);
  const { alice } = await call(server);
  server.proc.kill('SIGTERM');
  await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 503, 3000, 'draining');
  await sleep(500);
  const t = Date.now();
  server.proc.kill('SIGTERM');
  const code = await Promise.race([exited(server.proc), sleep(10000).then(() => 'still running')]);
  console.log(`second SIGTERM: exited with ${code} after ${Date.now() - t} ms`);
  assert.equal(code, 0);
  assert.match(server.log(), /second stop signal/);
  await waitFor(async () => /restarting/i.test(await alice.page.locator('#status').textContent()), 5000, 'alice told the server stopped');
});

test('a drain ends at --drain-timeout with the call still going', { timeout: 90000 }, async () => {
  const server = await startServer({ shards: 1, args: ['--drain-timeout', '3s'] });
  servers.push(server);
  const { bob } = await call(server);
  const t = Date.now();
  server.proc.kill('SIGTERM');
  const code = await Promise.race([exited(server.proc), sleep(15000).then(() => 'still running')]);
  const took = Date.now() - t;
  console.log(`--drain-timeout 3s: exited with ${code} after ${took} ms`);
  assert.equal(code, 0);
  assert.ok(took >= 2900, `it waited for the timeout (${took} ms)`);
  assert.match(server.log(), /drain timeout passed/);
  await waitFor(async () => /restarting/i.test(await bob.page.locator('#status').textContent()), 5000, 'bob told the server stopped');
});
