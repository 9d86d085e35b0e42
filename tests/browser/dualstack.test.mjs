// Dual stack: a server bound to 0.0.0.0 and :: offers a UDP candidate of
// each family. A page whose network passes no IPv4 UDP (nft) reaches it
// over IPv6, one whose network passes no IPv6 UDP over IPv4, and each
// decodes the other (the shard forwards between the families); getStats
// shows each selected pair on the server's address of its family.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, links, selectedPair } from './harness.mjs';

const ROOM = 'dual-room';
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
});

test('on a dual-stack server a page with only IPv6 and one with only IPv4 decode each other', { timeout: 180000 }, async () => {
  links('up', 2, 'ipv6');
  links('block-udp', 1, 'on', 'ipv4');
  links('block-udp', 2, 'on', 'ipv6');
  // ICE-TCP is off (the default): IPv6 UDP is the only way left for alice's media.
  server = await startServer({ shards: 2, netns: 'sbt-srv', args: ['--udp-bind', '::', '--public-ip', 'fd77::1'] });
  assert.match(server.log(), /fd77::1/, 'the log names the IPv6 candidate addresses');
  const pages = {};
  for (const [name, ns] of [['alice', 'sbt-c1'], ['bob', 'sbt-c2']]) {
    const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
    browsers.push(b);
    pages[name] = await (await b.newContext()).newPage();
    await pages[name].goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  }
  for (const [name, other] of [['alice', 'bob'], ['bob', 'alice']]) {
    await waitFor(async () => {
      const s = await pages[name].evaluate(() => window.switchboard.inbound());
      return s[other] && s[other].framesDecoded > 20 && s[other].frameWidth > 0 && s[other].audioBytes > 0;
    }, 40000, `${name} decoding ${other}`);
  }
  const pairs = { alice: await selectedPair(pages.alice), bob: await selectedPair(pages.bob) };
  console.log(`alice: ${JSON.stringify(pairs.alice)}\nbob: ${JSON.stringify(pairs.bob)}`);
  assert.equal(pairs.alice.remote.address, 'fd77::1', 'alice reaches the server over IPv6');
  assert.equal(pairs.alice.local.protocol, 'udp');
  assert.equal(pairs.bob.remote.address, '10.77.1.1', 'bob reaches it over IPv4');
});
