// A multi-party room works in real browsers through the SFU: three Chromium
// pages decode each other's video, receive audio, chat, and see a leave.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, sleep } from './harness.mjs';

const ROOM = 'browser-room';
const NAMES = ['alice', 'bob', 'carol'];
let server, browser;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('three browsers see, hear and message each other; a closed tab leaves', { timeout: 300000 }, async () => {
  server = await startServer({ shards: 2 });
  browser = await launchBrowser();
  const pages = {};
  for (const name of NAMES) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[${name}] page error`, e));
    await page.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, name)}`);
    pages[name] = page;
  }
  const inbound = (name) => pages[name].evaluate(() => window.switchboard.inbound());
  const others = (name) => NAMES.filter((n) => n !== name);

  // Every page decodes video and receives audio from both others. The bound
  // is for a loaded CI machine; the time it took is printed (well under 1 s
  // here, since each new leg asks the publisher for a keyframe).
  const tJoin = Date.now();
  for (const name of NAMES) {
    await waitFor(async () => {
      const s = await inbound(name);
      return others(name).every((o) => s[o] && s[o].framesDecoded > 0 && s[o].audioBytes > 0) && s;
    }, 20000, `${name} receiving from ${others(name)}`);
  }
  console.log(`all three pages decoding each other after ${Date.now() - tJoin} ms`);
  const cpu0 = server.cpuSeconds();
  const before = {};
  for (const name of NAMES) before[name] = await inbound(name);
  const window = 5000;
  await sleep(window);
  const cpu1 = server.cpuSeconds();
  for (const name of NAMES) {
    const now = await inbound(name);
    for (const o of others(name)) {
      assert.ok(now[o].framesDecoded > before[name][o].framesDecoded + 10, `${name}: frames from ${o} keep growing`);
      assert.ok(now[o].audioBytes > before[name][o].audioBytes, `${name}: audio from ${o} keeps arriving`);
    }
    console.log(`frames decoded on ${name}: ${others(name).map((o) => `${o}=${now[o].framesDecoded}`).join(' ')}`);
  }
  console.log(`server CPU during the three-party call: ${(100 * (cpu1 - cpu0) / (window / 1000)).toFixed(1)}% of one core`);

  // A viewer (a grant without publishing) decodes everyone. Its legs carry no
  // transport-cc or abs-send-time (we run no bandwidth estimation on what it
  // could send), and Chromium plays them all the same.
  const viewer = await (await browser.newContext()).newPage();
  await viewer.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, 'dave', ['--no-publish'])}`);
  const seen = await waitFor(async () => {
    const s = await viewer.evaluate(() => window.switchboard.inbound());
    return NAMES.every((o) => s[o] && s[o].framesDecoded > 10 && s[o].audioBytes > 0) && s;
  }, 20000, 'the viewer decoding everyone');
  console.log(`frames decoded on the viewer: ${NAMES.map((o) => `${o}=${seen[o].framesDecoded}`).join(' ')}`);
  const viewerSdp = await viewer.evaluate(() => window.switchboard.pc.remoteDescription.sdp);
  assert.ok(viewerSdp.includes('m=video') && !viewerSdp.includes('transport-wide-cc'), 'no transport-cc towards the viewer');
  const aliceSdp = await pages.alice.evaluate(() => window.switchboard.pc.remoteDescription.sdp);
  assert.ok(aliceSdp.includes('transport-wide-cc'), 'a publisher keeps transport-cc for its bandwidth estimation');
  await viewer.context().close();

  // Chat over the data channel reaches the two others, tagged with the sender.
  await pages.alice.fill('#chat-input', 'hello from alice');
  await pages.alice.getByRole('button', { name: 'Send', exact: true }).click();
  for (const name of ['bob', 'carol']) {
    await waitFor(() => pages[name].evaluate(() => window.switchboard.chat.some((m) => m.from === 'alice' && m.text === 'hello from alice')),
      10000, `${name} receiving alice's chat`);
  }

  // Carol closes her tab: the others get the leave and stop receiving her media.
  await pages.carol.context().close();
  for (const name of ['alice', 'bob']) {
    await waitFor(() => pages[name].evaluate(() => window.switchboard.events.includes('participant_left') &&
      !document.querySelector('[data-identity="carol"]')), 10000, `${name} seeing carol leave`);
  }
  await sleep(1500);
  const gone1 = await inbound('alice');
  await sleep(2000);
  const gone2 = await inbound('alice');
  assert.equal(gone2.carol.videoBytes, gone1.carol.videoBytes, 'no more video from carol');
  assert.equal(gone2.carol.audioBytes, gone1.carol.audioBytes, 'no more audio from carol');
  assert.ok(gone2.bob.framesDecoded > gone1.bob.framesDecoded, 'bob still flows to alice');
});
