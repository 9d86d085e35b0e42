// Staying connected when signalling drops: the page's WebSocket is killed
// (`ss -K` on its connection) while new connections to the server are
// refused for a few seconds; meanwhile a third participant joins. The page
// reconnects with backoff and resumes its session: nobody saw it leave, its
// media never stopped, and it learns of the newcomer (the message it missed
// is replayed) and decodes her.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, launchBrowser, waitFor, links, sleep, selectedPair } from './harness.mjs';

const ROOM = 'reconnect-room';
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
});

async function open(name, ns) {
  const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
  browsers.push(b);
  const page = await (await b.newContext()).newPage();
  await page.goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  return page;
}

const inbound = (page) => page.evaluate(() => window.switchboard.inbound());
const decoding = async (page, other, frames = 20) => {
  const s = await inbound(page);
  return s[other] && s[other].framesDecoded > frames;
};

test('a killed signalling connection resumes the same participant; nothing is missed and nobody sees it leave', { timeout: 180000 }, async () => {
  links('up', 3);
  server = await startServer({ shards: 1, netns: 'sbt-srv' });
  const port = new URL(server.pageUrl).port;
  const alice = await open('alice', 'sbt-c1');
  const bob = await open('bob', 'sbt-c2');
  await waitFor(() => decoding(alice, 'bob'), 30000, 'alice decoding bob');
  await waitFor(() => decoding(bob, 'alice'), 30000, 'bob decoding alice');

  // Alice's signalling goes: her connection is killed and new ones are refused.
  links('block-tcp', 1, port, 'on');
  const killedAt = Date.now();
  execFileSync('ip', ['netns', 'exec', 'sbt-c1', 'ss', '-K', 'state', 'established', 'dst', '10.77.1.1', 'dport', '=', `:${port}`]);
  await waitFor(async () => /Reconnecting/.test(await alice.locator('#status').textContent()), 5000, 'alice saying she is reconnecting');
  const framesBefore = (await inbound(bob)).alice.framesDecoded;
  const carol = await open('carol', 'sbt-c3');
  await sleep(1000);
  links('block-tcp', 1, port, 'off');
  const unblockedAt = Date.now();

  await waitFor(() => alice.evaluate(() => window.switchboard.signal.resumes >= 1), 10000, 'alice resuming');
  const back = Date.now();
  console.log(`alice back in the room ${back - killedAt} ms after her WebSocket was killed, ${back - unblockedAt} ms after the server could be reached again`);
  try {
    await waitFor(() => decoding(alice, 'carol'), 30000, 'alice decoding carol, whom she learnt of after resuming');
  } catch (e) {
    console.log('alice:', JSON.stringify(await alice.evaluate(() => ({ events: window.switchboard.events, signaling: window.switchboard.pc.signalingState, ice: window.switchboard.pc.iceConnectionState, mids: [...window.switchboard.midInfo.values()], restarts: window.switchboard.iceRestarts, inbound: 0 }))));
    console.log(server.log().split('\n').filter((l) => /P1|resum|offer/.test(l)).slice(-30).join('\n'));
    throw e;
  }
  await waitFor(() => decoding(carol, 'alice'), 30000, 'carol decoding alice');
  const framesAfter = (await inbound(bob)).alice.framesDecoded;
  console.log(`bob decoded ${framesAfter - framesBefore} frames of alice meanwhile`);
  assert.ok(framesAfter - framesBefore > 50, 'media went on while signalling was down');
  for (const [name, page] of [['bob', bob], ['carol', carol]]) {
    const events = await page.evaluate(() => window.switchboard.events);
    assert.ok(!events.includes('participant_left'), `${name} never saw anybody leave: ${events}`);
  }
  const status = await alice.locator('#status').textContent();
  assert.doesNotMatch(status, /Reconnecting|Disconnected|lost/i, `alice's page is back: ${status}`);
  assert.match(server.log(), /signalling resumed/);
});

test('a page whose address changes mid-call restarts ICE and its media resumes on the new path', { timeout: 180000 }, async () => {
  for (const b of browsers.splice(0)) await b.close().catch(() => {});
  await server.stop();
  links('up', 2);
  server = await startServer({ shards: 1, netns: 'sbt-srv' });
  const alice = await open('alice', 'sbt-c1');
  const bob = await open('bob', 'sbt-c2');
  await waitFor(() => decoding(alice, 'bob'), 30000, 'alice decoding bob');
  await waitFor(() => decoding(bob, 'alice'), 30000, 'bob decoding alice');
  const before = await selectedPair(alice);

  links('readdress', 1, 12);
  const movedAt = Date.now();
  const frames = { bob: (await inbound(bob)).alice.framesDecoded, alice: (await inbound(alice)).bob.framesDecoded };
  await waitFor(async () => (await inbound(bob)).alice.framesDecoded > frames.bob + 30, 10000, 'bob decoding alice again');
  const bobBack = Date.now() - movedAt;
  await waitFor(async () => (await inbound(alice)).bob.framesDecoded > frames.alice + 30, 10000, 'alice decoding bob again');
  const aliceBack = Date.now() - movedAt;
  const after = await selectedPair(alice);
  const restarts = await alice.evaluate(() => window.switchboard.iceRestarts);
  console.log(`alice moved ${before.local.address} -> ${after.local.address}: bob decodes her again after ${bobBack} ms, she decodes him after ${aliceBack} ms; ICE restarts ${restarts}; pair ${JSON.stringify(after)}`);
  assert.equal(after.local.address, '10.77.1.12', 'the new path leaves from the new address');
  assert.ok(restarts >= 1, 'the page restarted ICE');
  for (const [name, page] of [['alice', alice], ['bob', bob]]) {
    const events = await page.evaluate(() => window.switchboard.events);
    assert.ok(!events.includes('participant_left') && !events.includes('closed'), `${name} saw nobody leave: ${events}`);
  }
  assert.match(server.log(), /ICE restart/);
});

test('a page whose media path dies is removed in bounded time and the others see it leave', { timeout: 180000 }, async () => {
  for (const b of browsers.splice(0)) await b.close().catch(() => {});
  await server.stop();
  links('up', 2);
  server = await startServer({ shards: 1, netns: 'sbt-srv', args: ['--tcp-port', '0'] });
  const tcpPort = server.log().match(/tcp=Some\([\d.]+:(\d+)\)/)[1];
  const alice = await open('alice', 'sbt-c1');
  const bob = await open('bob', 'sbt-c2');
  await waitFor(() => decoding(bob, 'alice'), 30000, 'bob decoding alice');

  // Signalling still works, but no media gets through, over UDP or TCP:
  // alice's ICE restarts cannot help.
  links('block-udp', 1, 'on');
  links('block-tcp', 1, tcpPort, 'on');
  const cutAt = Date.now();
  // Meanwhile her page says it is reconnecting, and bob's shows her
  // connection as poor (nothing of hers arrives).
  await alice.getByRole('alert').filter({ hasText: 'Reconnecting…' }).waitFor({ timeout: 10000 });
  await waitFor(() => bob.evaluate(() => document.querySelector('[data-identity="alice"] .quality')?.dataset.level === 'poor'), 10000, "bob's tile of alice marked poor");
  console.log(`after the cut: alice's page reconnecting, bob's tile of her poor (${await bob.locator('[data-identity="alice"] .quality').getAttribute('aria-label')}) within ${Date.now() - cutAt} ms`);
  await waitFor(() => bob.evaluate(() => window.switchboard.events.includes('participant_left')), 30000, 'bob seeing alice leave');
  const gone = Date.now() - cutAt;
  await waitFor(async () => /lost|Disconnected/i.test(await alice.locator('#status').textContent()), 5000, "alice's page saying the call was lost");
  const restarts = await alice.evaluate(() => window.switchboard.iceRestarts);
  console.log(`alice's media cut: removed and bob told after ${gone} ms (${restarts} ICE restarts tried); her page says "${await alice.locator('#status').textContent()}"`);
  assert.ok(restarts >= 1, 'her page tried to restart ICE meanwhile');
});
