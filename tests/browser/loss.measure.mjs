// Measurement, not a test (`npm run measure-loss`, root; a few minutes):
// what a viewer sees when its link loses packets. A publisher (the room
// page: its 720p camera in three layers) and a viewer drawing it 720 lines
// tall (the 1280-wide layer), each browser in its own namespace
// (net/links.sh); for each loss rate the viewer's UDP loses that share of
// datagrams each way (nft numgen) for WINDOW seconds. Prints a table of
// what Chromium's getStats says the viewer saw: frame rate, freezes and
// their total length, frames dropped, keyframe requests (PLIs) it sent, and
// the NACKs the server counted. LOSS_ON=publisher puts the loss on the
// publisher's link instead (its uplink loses what the server then asks it
// to repair, once for every subscriber).
import { startServer, launchBrowser, waitFor, sleep, tileHeight, links } from './harness.mjs';

const RATES = (process.env.LOSS_RATES || '0,5,10,20').split(',').map(Number);
const WINDOW = Number(process.env.LOSS_WINDOW || 30);
const ROOM = 'loss-room';
// Namespace index (net/links.sh) whose link loses: 1 the publisher, 2 the viewer.
const LOSSY = process.env.LOSS_ON === 'publisher' ? 1 : 2;

const browsers = [];
let server;
async function open(ns, identity, extra) {
  const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
  browsers.push(b);
  const ctx = await b.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, identity, extra)}`);
  return page;
}
const metric = async (name) => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
};

try {
  links('up', 2);
  server = await startServer({ shards: 1, netns: 'sbt-srv' });
  const alice = await open('sbt-c1', 'alice', []);
  const viewer = await open('sbt-c2', 'viewer', ['--no-publish']);
  await tileHeight(viewer, 720); // the top layer, 1280 wide
  const stats = async () => {
    const [s] = await viewer.evaluate(() => !window.switchboard.pc ? [] : window.switchboard.pc.getStats().then((r) => {
      const out = [];
      r.forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') out.push(x); });
      return out.map((x) => ({ frames: x.framesDecoded || 0, width: x.frameWidth || 0, freezes: x.freezeCount || 0,
        freezeSeconds: x.totalFreezesDuration || 0, dropped: x.framesDropped || 0, plis: x.pliCount || 0, nacks: x.nackCount || 0 }));
    }));
    return s;
  };
  await waitFor(async () => { const s = await stats(); return s && s.frames > 40 && s; }, 60000, 'the viewer decoding');
  void alice;
  const rows = [];
  for (const pct of RATES) {
    links('loss', LOSSY, pct);
    await sleep(3000);
    const a = await stats();
    const nacks = () => metric(LOSSY === 1 ? 'switchboard_nacks_sent_total' : 'switchboard_nacks_received_total');
    const n0 = await nacks();
    await sleep(WINDOW * 1000);
    const b = await stats();
    const n1 = await nacks();
    rows.push({ pct, width: b.width, fps: ((b.frames - a.frames) / WINDOW).toFixed(1), freezes: b.freezes - a.freezes,
      freezeSeconds: (b.freezeSeconds - a.freezeSeconds).toFixed(1), dropped: b.dropped - a.dropped, plis: b.plis - a.plis,
      nacksSent: b.nacks - a.nacks, nacksAtServer: n1 - n0 });
    console.log(JSON.stringify(rows.at(-1)));
  }
  links('loss', LOSSY, 0);
  const server_nacks = LOSSY === 1 ? 'NACKs server sent' : 'NACKs at server';
  console.log(`\nloss on the ${LOSSY === 1 ? 'publisher' : 'viewer'}'s link`);
  console.log(`| loss each way | width | fps | freezes in ${WINDOW} s | frozen (s) | frames dropped | PLIs sent | NACKs sent | ${server_nacks} |`);
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.pct} % | ${r.width} | ${r.fps} | ${r.freezes} | ${r.freezeSeconds} | ${r.dropped} | ${r.plis} | ${r.nacksSent} | ${r.nacksAtServer} |`);
  }
} finally {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
}
