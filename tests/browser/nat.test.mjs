// Behind a NAT: a page whose only address is private (192.168.9.2, behind a
// masquerading router in its own namespace) joins a server it reaches only
// through the NAT. The server (ICE-lite) never sees the page's host address:
// it admits the NAT's mapped address from the page's verified STUN checks
// (peer-reflexive) and both pages decode each other.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, links, selectedPair } from './harness.mjs';

const ROOM = 'nat-room';
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
});

test('a page behind a NAT joins and decodes, and is decoded', { timeout: 180000 }, async () => {
  links('up', 1);
  links('nat');
  server = await startServer({ shards: 1, netns: 'sbt-srv', });
  const pages = {}, started = {}, firstFrame = {};
  for (const [name, ns] of [['alice', 'sbt-n1'], ['bob', 'sbt-c1']]) {
    const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
    browsers.push(b);
    pages[name] = await (await b.newContext()).newPage();
    started[name] = Date.now();
    await pages[name].goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  }
  for (const [name, other] of [['alice', 'bob'], ['bob', 'alice']]) {
    await waitFor(async () => {
      const s = await pages[name].evaluate(() => window.switchboard.inbound());
      if (s[other] && s[other].framesDecoded > 0 && !firstFrame[name]) firstFrame[name] = Date.now() - started[name];
      return s[other] && s[other].framesDecoded > 20 && s[other].frameWidth > 0 && s[other].audioBytes > 0;
    }, 40000, `${name} decoding ${other}`);
  }
  const pair = await selectedPair(pages.alice);
  console.log(`alice (behind the NAT): first frame after ${firstFrame.alice} ms; selected pair ${JSON.stringify(pair)}`);
  // Her host address is private; the server's answers told her the address
  // the NAT maps her to, which is what the pair uses.
  assert.equal(pair.local.candidateType, 'prflx');
  assert.equal(pair.local.address, '10.77.1.50', "the NAT's address");
  assert.equal(pair.remote.address, '10.77.1.1');
});
