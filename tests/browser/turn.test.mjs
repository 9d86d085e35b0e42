// TURN with short-lived credentials: Debian's coturn with a secret shared
// with switchboard (--use-auth-secret); every `joined` carries credentials
// minted for that participant. Two pages that may only use relayed
// candidates (iceTransportPolicy 'relay') call each other through coturn,
// one over UDP and one over TCP to it, and decode each other; coturn
// refuses a forged and an expired credential.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { startServer, launchBrowser, waitFor, freePort, selectedPair } from './harness.mjs';

const SECRET = 'turn-secret-for-the-test';
const ROOM = 'turn-room';
let server, browser, coturn, coturnLog = '';

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (coturn) coturn.kill('SIGKILL');
});

/** A TURN REST credential, computed here independently of the server. */
function credential(identity, expiresAt) {
  const username = `${Math.floor(expiresAt / 1000)}:${identity}`;
  return { username, credential: createHmac('sha1', SECRET).update(username).digest('base64') };
}

/** Makes the page's peer connections relay-only, through `transport` only. */
function relayOnly(transport) {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (config = {}) {
    const iceServers = (config.iceServers || []).filter((s) => s.urls.some((u) => u.endsWith(`transport=${transport}`)));
    return new Native({ ...config, iceServers, iceTransportPolicy: 'relay' });
  };
  window.RTCPeerConnection.prototype = Native.prototype;
}

test('relay-only pages call each other through coturn over UDP and TCP with minted credentials', { timeout: 120000 }, async () => {
  const port = await freePort();
  const min = 49160 + (port % 500) * 2;
  coturn = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    `--min-port=${min}`, `--max-port=${min + 40}`, '--use-auth-secret', `--static-auth-secret=${SECRET}`,
    '--realm=switchboard.test', '--fingerprint', '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers',
    '--no-multicast-peers', '--log-file=stdout', '--simple-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  coturn.stdout.on('data', (d) => { coturnLog += d; });
  coturn.stderr.on('data', (d) => { coturnLog += d; });
  await waitFor(() => /listener opened on|Total General servers/i.test(coturnLog), 10000, 'coturn listening');

  const turn = (t) => `turn:127.0.0.1:${port}?transport=${t}`;
  server = await startServer({ shards: 1, args: ['--ice-server', turn('udp'), '--ice-server', turn('tcp'), '--turn-secret', SECRET, '--turn-ttl', '10m'] });
  browser = await launchBrowser();
  const pages = {};
  for (const [name, transport] of [['alice', 'udp'], ['bob', 'tcp']]) {
    const page = await (await browser.newContext()).newPage();
    await page.addInitScript(relayOnly, transport);
    page.on('pageerror', (e) => console.error(`[${name}] page error`, e));
    await page.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, name)}`);
    pages[name] = page;
  }
  const started = Date.now();
  for (const [name, other] of [['alice', 'bob'], ['bob', 'alice']]) {
    await waitFor(async () => {
      const s = await pages[name].evaluate(() => window.switchboard.inbound());
      return s[other] && s[other].framesDecoded > 20 && s[other].audioBytes > 0;
    }, 30000, `${name} decoding ${other} through the relay`);
  }
  console.log(`both decoding through coturn after ${Date.now() - started} ms`);

  // The pair in use is relayed, over the transport each page was given.
  for (const [name, transport] of [['alice', 'udp'], ['bob', 'tcp']]) {
    const pair = await selectedPair(pages[name]);
    console.log(`${name}: selected pair ${JSON.stringify(pair)}`);
    assert.equal(pair.local.candidateType, 'relay', `${name} uses a relayed candidate`);
    assert.equal(pair.local.relayProtocol, transport, `${name} reaches coturn over ${transport}`);
  }
  // Each page got a credential of its own, valid for --turn-ttl.
  const joinedUser = await pages.alice.evaluate(() => window.switchboard.me.ice_servers.find((s) => s.username).username);
  const [expiry, identity] = joinedUser.split(':');
  assert.equal(identity, 'alice');
  assert.ok(Math.abs(Number(expiry) - (Date.now() / 1000 + 600)) < 60, `valid for ten minutes: ${joinedUser}`);

  // coturn itself refuses what was not minted with the secret, or expired.
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/healthz`);
  const relayCandidates = (iceServer) => page.evaluate(async (s) => {
    const pc = new RTCPeerConnection({ iceServers: [s], iceTransportPolicy: 'relay' });
    pc.createDataChannel('probe');
    let relays = 0;
    pc.onicecandidate = (e) => { if (e.candidate && e.candidate.type === 'relay') relays += 1; };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { const t = setTimeout(r, 8000); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') { clearTimeout(t); r(); } }; });
    pc.close();
    return relays;
  }, iceServer);
  const now = Date.now();
  const valid = { urls: [turn('udp')], ...credential('dave', now + 60000) };
  const expired = { urls: [turn('udp')], ...credential('dave', now - 60000) };
  const forged = { urls: [turn('udp')], username: valid.username, credential: createHmac('sha1', 'wrong').update(valid.username).digest('base64') };
  assert.ok(await relayCandidates(valid) > 0, 'a credential minted with the secret gets a relay');
  assert.equal(await relayCandidates(expired), 0, 'an expired credential is refused');
  assert.equal(await relayCandidates(forged), 0, 'a forged credential is refused');
});
