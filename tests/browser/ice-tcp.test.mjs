// ICE over TCP: a page on a network that lets no UDP through (nft drops all
// UDP in its namespace) joins through the server's passive TCP candidate
// and decodes a page on an open network, and is decoded by it; getStats
// shows its selected pair is TCP. Strangers' connections to the TCP port
// (silent, garbage, too many from one address) are closed without
// disturbing the call.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startServer, launchBrowser, waitFor, links, selectedPair, sleep, LINKS } from './harness.mjs';

const ROOM = 'tcp-room';
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) await server.stop();
  links('down');
});

/** Opens a connection from the test runner; resolves how long it lived. */
function stranger(port, send) {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = connect({ host: LINKS.server, port }, () => { if (send) s.write(send); });
    s.on('error', () => {});
    s.on('close', () => resolve(Date.now() - started));
    s.on('data', () => {});
    setTimeout(() => { s.destroy(); resolve(Infinity); }, 6000);
  });
}

async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const lines = text.split('\n').filter((l) => l.startsWith(name));
  return Object.fromEntries(lines.map((l) => { const [k, v] = l.split(' '); return [k, Number(v)]; }));
}

test('a page whose UDP is blocked joins over ICE-TCP and decodes; strangers on the TCP port are closed', { timeout: 180000 }, async () => {
  links('up', 2);
  links('block-udp', 1, 'on');
  server = await startServer({ shards: 2, netns: 'sbt-srv', args: ['--tcp-port', '0'] });
  const m = server.log().match(/tcp=Some\(([\d.]+):(\d+)\)/);
  assert.ok(m, 'the log names the ICE-TCP listener');
  const tcpPort = Number(m[2]);
  const pages = {};
  const started = {};
  for (const [name, ns] of [['alice', 'sbt-c1'], ['bob', 'sbt-c2']]) {
    const b = await launchBrowser([], { netns: ns, pageUrl: server.pageUrl });
    browsers.push(b);
    pages[name] = await (await b.newContext()).newPage();
    started[name] = Date.now();
    await pages[name].goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  }
  const firstFrame = {};
  for (const [name, other] of [['alice', 'bob'], ['bob', 'alice']]) {
    await waitFor(async () => {
      const s = await pages[name].evaluate(() => window.switchboard.inbound());
      if (s[other] && s[other].framesDecoded > 0 && !firstFrame[name]) firstFrame[name] = Date.now() - started[name];
      return s[other] && s[other].framesDecoded > 20 && s[other].frameWidth > 0 && s[other].audioBytes > 0;
    }, 40000, `${name} decoding ${other}`);
  }
  const pairs = { alice: await selectedPair(pages.alice), bob: await selectedPair(pages.bob) };
  for (const name of ['alice', 'bob']) {
    console.log(`${name}: first frame after ${firstFrame[name]} ms (from opening the page); selected pair ${JSON.stringify(pairs[name])}`);
  }
  assert.equal(pairs.alice.local.protocol, 'tcp', 'alice, without UDP, is on TCP');
  assert.equal(pairs.alice.remote.tcpType, 'passive', "alice reaches the server's passive candidate");
  assert.equal(pairs.alice.remote.port, tcpPort);
  assert.equal(pairs.bob.local.protocol, 'udp', 'bob, with UDP, prefers it');
  const conns = await metric('switchboard_ice_tcp_connections');
  assert.ok(Object.values(conns).reduce((a, b) => a + b, 0) >= 1, `a shard serves alice's connection: ${JSON.stringify(conns)}`);

  // Strangers: 20 silent connections from one address (16 may wait, the
  // rest are refused at once), one sending garbage, one a huge frame header.
  const silent = Array.from({ length: 20 }, () => stranger(tcpPort, null));
  const lived = await Promise.all(silent);
  const refusedAtOnce = lived.filter((t) => t < 1000).length;
  const timedOut = lived.filter((t) => t >= 1500 && t < 4000).length;
  console.log(`silent strangers: ${refusedAtOnce} refused at once, ${timedOut} closed after ~2 s (lifetimes ${lived.join(',')})`);
  assert.ok(refusedAtOnce >= 4, 'past 16 waiting from one address, connections are refused');
  assert.ok(timedOut >= 15, 'a connection that sends no STUN is closed after about 2 s');
  const garbage = await stranger(tcpPort, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.ok(garbage < 1000, `a connection sending something other than STUN is closed at once (${garbage} ms)`);
  const outcomes = await metric('switchboard_ice_tcp_listener_connections_total');
  const outcome = (o) => outcomes[`switchboard_ice_tcp_listener_connections_total{outcome="${o}"}`];
  console.log(`listener: ${JSON.stringify(outcomes)}`);
  assert.equal(outcome('bad_first_frame'), 1, 'the garbage was seen as such');
  assert.ok(outcome('refused_limit') >= 4 && outcome('timed_out') >= 15);
  assert.ok(outcome('handed_over') >= 1, "alice's connection went to her shard");

  // The call went on meanwhile.
  const before = (await pages.bob.evaluate(() => window.switchboard.inbound())).alice.framesDecoded;
  await sleep(2000);
  const afterStrangers = (await pages.bob.evaluate(() => window.switchboard.inbound())).alice.framesDecoded;
  assert.ok(afterStrangers > before + 20, `bob still decodes alice over her TCP path (${before} -> ${afterStrangers})`);
});
