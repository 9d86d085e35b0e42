// Active speaker in real browsers: a page whose microphone plays a tone is
// reported first in `speakers` to everyone (its tile outlined), a muted
// page never is, and muting the speaker empties the list.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, waitFor, SMALL_CAMERA, toneWav } from './harness.mjs';

const ROOM = 'speakers-room';
const dir = mkdtempSync(join(tmpdir(), 'switchboard-speakers-'));
const browsers = [];
let server;

after(async () => {
  for (const b of browsers) await b.close();
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function open(browser, identity) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(SMALL_CAMERA);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${identity}] page error`, e));
  await page.goto(`${server.url}/room/${ROOM}#token=${server.token(ROOM, identity)}`);
  await page.locator('#local-video').evaluate((v) => new Promise((r) => (v.srcObject ? r() : v.addEventListener('loadedmetadata', r))));
  return page;
}

const speakers = (page) => page.evaluate(() => window.switchboard.speakers.map((s) => s.identity));
const outlined = (page, selector) => page.locator(selector).evaluate((e) => e.classList.contains('speaking'));

test('the page that speaks is reported first and outlined; muting it clears the list', { timeout: 120000 }, async () => {
  server = await startServer({ shards: 1 });
  const voiced = await launchBrowser([`--use-file-for-fake-audio-capture=${toneWav(dir)}`]);
  const plain = await launchBrowser();
  browsers.push(voiced, plain);
  const talker = await open(voiced, 'talker');
  const listener = await open(plain, 'listener');
  await listener.getByRole('button', { name: 'Mute' }).click();

  await waitFor(async () => (await speakers(listener))[0] === 'talker', 20000, 'the listener told that talker speaks');
  await waitFor(() => outlined(listener, '.tile[data-identity="talker"]'), 5000, "talker's tile outlined for the listener");
  await waitFor(() => outlined(talker, '#local-tile'), 5000, "the talker's own tile outlined");
  const heard = await speakers(talker);
  console.log(`speakers seen by the talker: ${JSON.stringify(await talker.evaluate(() => window.switchboard.speakers))}`);
  assert.ok(!heard.includes('listener'), 'a muted page is not a speaker');

  await talker.getByRole('button', { name: 'Mute' }).click();
  await waitFor(async () => (await speakers(listener)).length === 0, 10000, 'the list empty once the talker muted');
  assert.equal(await outlined(listener, '.tile[data-identity="talker"]'), false);
});
