// HTTPS without a proxy: a server with --tls-self-signed, reached at a
// non-loopback address (each browser in a network namespace of its own, as
// a phone on a LAN would be): the pages are a secure context only because of
// HTTPS, open the camera, and two of them decode each other over WSS
// signalling. The same pages over plain HTTP there say they need HTTPS.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitFor, links } from './harness.mjs';

const ROOM = 'https-room';
const browsers = [];
const servers = [];

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const s of servers) await s.stop();
  links('down');
});

async function page(server, ns, insecure = false) {
  const b = await launchBrowser(['--ignore-certificate-errors'], { netns: ns, pageUrl: server.pageUrl, insecure });
  browsers.push(b);
  return (await b.newContext()).newPage();
}

test('the room page over HTTPS with a self-signed certificate joins and decodes; over plain HTTP it says it needs HTTPS', { timeout: 180000 }, async () => {
  links('up', 2);
  const server = await startServer({ shards: 1, netns: 'sbt-srv', tls: true });
  servers.push(server);
  assert.match(server.pageUrl, /^https:\/\/10\./);
  assert.match(server.log(), /self-signed certificate for .*10\.77\.1\.1/, 'the log says the certificate is self-signed');
  const pages = {};
  for (const [name, ns] of [['alice', 'sbt-c1'], ['bob', 'sbt-c2']]) {
    // Not loopback, and no flag treating the origin as secure: only HTTPS.
    pages[name] = await page(server, ns, true);
    await pages[name].goto(`${server.pageUrl}/room/${ROOM}#token=${server.token(ROOM, name)}`);
  }
  for (const [name, other] of [['alice', 'bob'], ['bob', 'alice']]) {
    const ctx = await pages[name].evaluate(() => ({ secure: window.isSecureContext, protocol: location.protocol }));
    assert.deepEqual(ctx, { secure: true, protocol: 'https:' }, `${name}'s page`);
    await waitFor(async () => {
      const s = await pages[name].evaluate(() => window.switchboard.inbound());
      return s[other] && s[other].framesDecoded > 20 && s[other].frameWidth > 0 && s[other].audioBytes > 0;
    }, 30000, `${name} decoding ${other} over HTTPS`);
  }
  const ws = await pages.alice.evaluate(() => window.switchboard.signal.ws.url);
  assert.match(ws, /^wss:\/\//, 'signalling runs over WSS');
  const favicon = await fetch(`${server.url}/favicon.ico`);
  assert.equal(favicon.headers.get('content-type'), 'image/svg+xml');

  // Plain HTTP at a LAN address: no secure context, no camera; the pages say why.
  const plain = await startServer({ shards: 1, netns: 'sbt-srv' });
  servers.push(plain);
  const insecure = await page(plain, 'sbt-c1', true);
  await insecure.goto(`${plain.pageUrl}/room/${ROOM}#token=${plain.token(ROOM, 'carol')}`);
  await waitFor(async () => /secure page: open this address with https:\/\//.test(await insecure.locator('#media-notice').textContent()), 10000, 'the room page saying it needs HTTPS');
  assert.ok(await insecure.locator('#media-notice').isVisible(), 'the notice is on screen');
  await insecure.goto(`${plain.pageUrl}/`);
  await waitFor(async () => /https:\/\//.test(await insecure.locator('#start-error').textContent()), 10000, 'the customer page saying it needs HTTPS');

  // Every page runs our scripts only, says who may frame it, sends no
  // Referer (a room link's token goes nowhere) and is not type-sniffed.
  for (const path of ['/', '/agent', `/room/${ROOM}`]) {
    const h = (await fetch(`${plain.url}${path}`)).headers;
    assert.match(h.get('content-security-policy') || '', /script-src 'self';.*frame-ancestors 'self'$/, `${path}: policy`);
    assert.equal(h.get('referrer-policy'), 'no-referrer', `${path}`);
    assert.equal(h.get('x-content-type-options'), 'nosniff', `${path}`);
  }
  const inline = await insecure.evaluate(() => new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true';
    document.body.append(s);
    setTimeout(() => resolve(window.inlineRan ? 'it ran' : 'no violation reported'), 3000);
  }));
  assert.equal(inline, 'script-src-elem', 'Chromium refuses an inline script on our pages');
  // A token in the query string (sent to the server, logged by proxies) is not used.
  await insecure.goto(`${plain.pageUrl}/room/${ROOM}?token=${plain.token(ROOM, 'dave')}`);
  await waitFor(async () => /after "#"/.test(await insecure.locator('#call').textContent()), 10000, 'the room page refusing a ?token= link');
  assert.equal(await insecure.evaluate(() => window.switchboard), undefined, 'it did not join');
});
