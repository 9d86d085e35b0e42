// Simulcast in real browsers: the room page publishes its 720p camera in
// three layers, and each viewer decodes the layer its tile needs (adaptive
// stream): a big tile the full 1280-wide layer, a thumbnail the 320-wide
// one, a middle tile the 640-wide one, a hidden tile no video at all.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, sleep, tileHeight } from './harness.mjs';

const ROOM = 'simulcast-room';
let server, browser;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('viewers decode the simulcast layer their tile needs; a hidden tile gets no video', { timeout: 240000 }, async () => {
  server = await startServer({ shards: 1 });
  browser = await launchBrowser();
  const open = async (identity, extra) => {
    const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[${identity}] page error`, e));
    await page.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, identity, extra)}`);
    return page;
  };
  const alice = await open('alice', []);

  // Three layers really leave the publisher (Chromium adds the upper ones as
  // its bandwidth estimate grows).
  const out = await waitFor(async () => {
    const o = await alice.evaluate(() => window.switchboard.outbound());
    return ['q', 'h', 'f'].every((r) => o[r] && o[r].bytesSent > 20000) && o;
  }, 60000, 'alice sending three layers');
  console.log(`alice's layers: ${Object.entries(out).map(([r, s]) => `${r}=${s.frameWidth}px/${s.bytesSent}B`).join(' ')}`);
  assert.equal(out.f.frameWidth, 1280, 'the top layer is the full 720p capture');
  assert.equal(out.q.frameWidth, 320, 'the low layer is a quarter of it');

  const big = await open('bob', ['--no-publish']);
  const small = await open('carol', ['--no-publish']);
  await tileHeight(big, 720);
  await tileHeight(small, 90);
  const stats = (page) => page.evaluate(() => window.switchboard.inbound().then((s) => s.alice));
  const decodingAt = (page, width, what) => waitFor(async () => {
    const s = await stats(page);
    return s && s.framesDecoded > 0 && s.frameWidth === width && s;
  }, 30000, what);

  await decodingAt(big, 1280, 'the big tile decoding the full layer');
  await decodingAt(small, 320, 'the thumbnail decoding the low layer');
  // And they keep decoding: frames grow, few freezes.
  const b0 = await stats(big), s0 = await stats(small);
  await sleep(5000);
  const b1 = await stats(big), s1 = await stats(small);
  console.log(`big: ${b1.frameWidth}px, ${b1.framesDecoded - b0.framesDecoded} frames and ${b1.videoBytes - b0.videoBytes} B in 5 s, ` +
    `freezes ${b1.freezeCount}; small: ${s1.frameWidth}px, ${s1.framesDecoded - s0.framesDecoded} frames and ` +
    `${s1.videoBytes - s0.videoBytes} B, freezes ${s1.freezeCount}`);
  assert.ok(b1.framesDecoded - b0.framesDecoded > 50, 'the big tile keeps decoding');
  assert.ok(s1.framesDecoded - s0.framesDecoded > 50, 'the thumbnail keeps decoding');
  assert.equal(b1.frameWidth, 1280);
  assert.equal(s1.frameWidth, 320);
  // The thumbnail costs a thumbnail's bytes.
  assert.ok((s1.videoBytes - s0.videoBytes) * 2 < b1.videoBytes - b0.videoBytes,
    `the thumbnail receives far less (${s1.videoBytes - s0.videoBytes} vs ${b1.videoBytes - b0.videoBytes} bytes)`);

  // The thumbnail grows to 300 lines: the middle layer (360) fills it.
  const tSwitch = Date.now();
  await tileHeight(small, 300);
  await decodingAt(small, 640, 'the 300-line tile switching to the middle layer');
  console.log(`switched to the middle layer in ${Date.now() - tSwitch} ms`);
  const m0 = await stats(small);
  await sleep(2000);
  const m1 = await stats(small);
  assert.ok(m1.framesDecoded - m0.framesDecoded > 20, 'decoding goes on after the switch');

  // Hidden: no video bytes at all, audio goes on.
  await tileHeight(small, 0);
  await sleep(1500);
  const h0 = await stats(small);
  await sleep(3000);
  const h1 = await stats(small);
  assert.equal(h1.videoBytes, h0.videoBytes, 'no video for a hidden tile');
  assert.ok(h1.audioBytes > h0.audioBytes, 'audio keeps flowing');
  // Shown again: video comes back.
  await tileHeight(small, 90);
  await decodingAt(small, 320, 'the shown thumbnail decoding again');

  // Dynacast: with every tile a thumbnail, alice stops encoding the two
  // upper layers (a few seconds after the last viewer took them).
  await tileHeight(big, 90);
  await decodingAt(big, 320, 'the big tile shrunk to a thumbnail');
  const paused = await waitFor(async () => {
    const a = await alice.evaluate(() => window.switchboard.outbound());
    await sleep(1500);
    const b = await alice.evaluate(() => window.switchboard.outbound());
    const still = (r) => b[r].bytesSent === a[r].bytesSent;
    return still('h') && still('f') && b.q.bytesSent > a.q.bytesSent && b;
  }, 20000, 'alice pausing her unwatched layers');
  console.log(`dynacast: alice's layers active q=${paused.q.active} h=${paused.h.active} f=${paused.f.active}`);
  assert.deepEqual(await alice.evaluate(() => window.switchboard.layersWanted), ['q']);
  // A big tile again: the top layer resumes and is decoded.
  const tResume = Date.now();
  await tileHeight(big, 720);
  await decodingAt(big, 1280, 'the top layer resumed for a big tile');
  console.log(`top layer resumed and decoded in ${Date.now() - tResume} ms`);
});
