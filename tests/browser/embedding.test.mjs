// Another app embeds a call with the client SDK: the page in
// docs/embedding.md, exactly as written there, served from a second origin,
// joins a room with a token, and decodes video through the server from a
// participant on the server's own room page (and the other way round).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer, launchBrowser, waitFor, freePort, SMALL_CAMERA } from './harness.mjs';

const DOC = fileURLToPath(new URL('../../docs/embedding.md', import.meta.url));
const ROOM = 'embedded';
let server, browser, app;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (app) app.close();
});

/** The one html block of docs/embedding.md. */
function documentedPage() {
  const md = readFileSync(DOC, 'utf8');
  const blocks = [...md.matchAll(/```html\n([\s\S]*?)\n```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 1, 'docs/embedding.md has one page');
  return blocks[0];
}

test('the documented embedding page, from another origin, decodes video through the server', { timeout: 120000 }, async () => {
  server = await startServer({ shards: 1 });
  browser = await launchBrowser();
  // "Your app": another origin (another port) serving only that page.
  const page = documentedPage();
  const port = await freePort();
  app = createServer((req, res) => {
    if (req.url.startsWith('/call.html')) res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    else res.writeHead(req.url === '/favicon.ico' ? 204 : 404).end();
  });
  await new Promise((r) => app.listen(port, '127.0.0.1', r));
  const appOrigin = `http://127.0.0.1:${port}`;
  assert.notEqual(appOrigin, new URL(server.url).origin);

  const open = async (url) => {
    const ctx = await browser.newContext();
    await ctx.addInitScript(SMALL_CAMERA);
    const p = await ctx.newPage();
    p.on('pageerror', (e) => console.error(`[${url}] page error`, e));
    p.on('console', (m) => { if (m.type() === 'error') console.error(`[${url}] console`, m.text()); });
    await p.goto(url);
    return p;
  };
  const alice = await open(`${server.url}/room/${ROOM}#token=${server.token(ROOM, 'alice')}`);
  const embedded = await open(`${appOrigin}/call.html?server=${encodeURIComponent(server.url)}&token=${server.token(ROOM, 'bob')}`);

  const got = await waitFor(async () => {
    const s = await embedded.evaluate(() => (window.room ? window.room.inbound() : {}));
    return s.alice && s.alice.framesDecoded > 10 && s.alice.audioBytes > 0 && s.alice;
  }, 30000, 'the embedded page decoding alice');
  console.log(`embedded page at ${appOrigin} decodes alice: ${got.framesDecoded} frames, ${got.frameWidth}x${got.frameHeight}, ${got.videoBytes} video bytes`);
  assert.ok(got.frameWidth > 0);
  // Drawn in the page's own <video> for alice's camera.
  const drawn = await waitFor(() => embedded.evaluate(() => {
    const v = document.querySelector('video[title="alice/camera"]');
    return v && v.videoWidth > 0 && v.currentTime > 0 && { w: v.videoWidth, t: v.currentTime };
  }), 15000, 'alice playing in the embedded page');
  console.log(`alice's <video> in the embedded page: ${JSON.stringify(drawn)}`);
  assert.equal(await embedded.evaluate(() => location.origin), appOrigin);
  assert.match(await embedded.locator('#status').textContent(), /connected|In embedded as bob/);

  // And the server's own page sees the embedded user.
  const back = await waitFor(async () => {
    const s = await alice.evaluate(() => window.switchboard.inbound());
    return s.bob && s.bob.framesDecoded > 10 && s.bob;
  }, 30000, 'alice decoding the embedded page');
  console.log(`alice decodes bob (embedded): ${back.framesDecoded} frames, ${back.frameWidth}x${back.frameHeight}`);

  // Mute from the embedded page reaches alice's page; Leave leaves.
  await embedded.getByRole('button', { name: 'Mute' }).click();
  await alice.getByRole('img', { name: "bob's microphone is muted" }).waitFor({ timeout: 10000 });
  await embedded.getByRole('button', { name: 'Leave' }).click();
  await waitFor(() => alice.evaluate(() => !document.querySelector('[data-identity="bob"]')), 10000, 'bob gone from alice\'s page');
  await embedded.locator('#status', { hasText: 'Call over (left)' }).waitFor({ timeout: 5000 });
});
