// The call screen at a phone's size (390×844) and a laptop's (1280×800):
// screenshots of every state go to tests/browser/artifacts/ (look at them),
// and layout facts are asserted: in a two-party call the other person's
// video is far larger than your own, no control is covered by video, and
// tiles fill most of the stage; muting shows the mark on the others' tiles.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer, launchBrowser, waitFor, sleep, SMALL_CAMERA } from './harness.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1280, height: 800 };
const ANN = ['ann@example.com', 'password-ann'];
let server, browser;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function open(url, size) {
  const ctx = await browser.newContext({ viewport: size });
  await ctx.addInitScript(SMALL_CAMERA);
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.error(`[${url}] page error`, e));
  await p.goto(url);
  return p;
}

async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const { width } = page.viewportSize();
  await page.screenshot({ path: `${ARTIFACTS}${name}-${width}.png` });
}

/** Boxes (x, y, width, height) of what the layout is made of. */
const boxes = (page) => page.evaluate(() => {
  const box = (el) => { if (!el) return null; const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height, a: r.width * r.height }; };
  const tiles = [...document.querySelectorAll('.tile')].filter((t) => t.offsetParent && !t.classList.contains('preview'));
  return {
    stage: box(document.getElementById('stage')),
    mode: document.getElementById('tiles').className,
    local: box(document.getElementById('local-tile')),
    main: box(document.querySelector('.tile.main')),
    tiles: tiles.map(box),
    // Each visible control: is it what is drawn at its centre (not covered)?
    covered: [...document.querySelectorAll('.controls button')].filter((b) => b.offsetParent).filter((b) => {
      const r = b.getBoundingClientRect();
      const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
      return !(top === b || b.contains(top));
    }).map((b) => b.textContent),
    overflowing: document.documentElement.scrollWidth > window.innerWidth,
  };
});

async function assertLayout(page, what, { mode, fill = 0.5 }) {
  const b = await boxes(page);
  const { width } = page.viewportSize();
  assert.match(b.mode, new RegExp(`mode-${mode}`), `${what} at ${width}: layout ${b.mode}`);
  assert.deepEqual(b.covered, [], `${what} at ${width}: no control covered`);
  assert.equal(b.overflowing, false, `${what} at ${width}: nothing wider than the screen`);
  const filled = b.tiles.reduce((s, t) => s + t.a, 0) / b.stage.a;
  if (mode === 'pair') {
    assert.ok(b.main.a > 4 * b.local.a, `${what} at ${width}: the other person (${Math.round(b.main.w)}x${Math.round(b.main.h)}) far larger than you (${Math.round(b.local.w)}x${Math.round(b.local.h)})`);
  }
  assert.ok(filled >= fill, `${what} at ${width}: tiles fill ${(filled * 100).toFixed(0)} % of the stage`);
  console.log(`${what} at ${width}: ${b.mode.replace('tiles ', '')}, tiles fill ${(filled * 100).toFixed(0)} % of the stage`);
}

const decoding = (page, who) => waitFor(async () => {
  const s = await page.evaluate(() => (window.switchboard ? window.switchboard.inbound() : {}));
  return s[who] && s[who].framesDecoded > 5;
}, 20000, `decoding ${who}`);

test('the call screen at phone and laptop sizes: pre-call, waiting, two-party, console; the other person fills the stage', { timeout: 180000 }, async () => {
  server = await startServer({ shards: 1 });
  server.addAgent(...ANN, 'Ann Smith');
  browser = await launchBrowser();
  const ann = await open(`${server.url}/agent`, LAPTOP);
  await ann.getByLabel('Email').fill(ANN[0]);
  await ann.getByLabel('Password').fill(ANN[1]);
  await ann.getByRole('button', { name: 'Sign in' }).click();
  await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor();

  const customer = await open(`${server.url}/`, PHONE);
  await customer.locator('#preview').evaluate((v) => new Promise((r) => { if (v.videoWidth) r(); else v.onloadeddata = r; }));
  // Before the call: the microphone's level moves (Chromium's fake microphone
  // beeps), and the devices can be picked.
  const loudest = await waitFor(() => customer.evaluate(() => { const v = document.getElementById('mic-level').value; return v > 0.02 && v; }), 10000, 'the microphone level moving');
  console.log(`pre-call microphone level reached ${loudest.toFixed(2)}`);
  await customer.getByText('Camera, microphone and speaker').click();
  for (const what of ['Camera', 'Microphone']) {
    const options = await customer.getByLabel(what, { exact: true }).locator('option').allTextContents();
    assert.ok(options.length >= 1, `${what} choices: ${options}`);
  }
  for (const size of [PHONE, LAPTOP]) { await customer.setViewportSize(size); await shot(customer, 'customer-precall'); }
  await customer.getByLabel('Your name').fill('Carla');
  await customer.getByRole('button', { name: 'Start call' }).click();
  await customer.getByRole('heading', { name: 'Waiting for an agent' }).waitFor();
  for (const size of [PHONE, LAPTOP]) { await customer.setViewportSize(size); await shot(customer, 'customer-waiting'); }
  await ann.locator('.queue-item', { hasText: 'Carla' }).waitFor();
  for (const size of [PHONE, LAPTOP]) { await ann.setViewportSize(size); await shot(ann, 'console-queue'); }

  await ann.locator('.queue-item', { hasText: 'Carla' }).getByRole('button', { name: 'Accept' }).click();
  await Promise.all([decoding(ann, 'Carla'), decoding(customer, ANN[0])]);
  await sleep(1500); // the layout settles, video plays
  // The customer sees the agent's name, never the e-mail address.
  await customer.getByText('Call with Ann Smith').waitFor();
  assert.equal(await customer.locator('[data-identity="ann@example.com"] .name').textContent(), 'Ann Smith');
  assert.doesNotMatch(await customer.locator('body').innerText(), /ann@example\.com/);
  assert.match(await ann.locator('#local-label').textContent(), /Ann Smith \(you\)/);
  for (const size of [PHONE, LAPTOP]) {
    for (const [page, who] of [[customer, 'customer'], [ann, 'agent']]) {
      await page.setViewportSize(size);
      await sleep(300);
      await shot(page, `${who}-in-call`);
      await assertLayout(page, `${who} in a two-party call`, { mode: 'pair', fill: 0.6 });
    }
  }
  // The chat is a drawer on a phone: closed, with an unread count.
  await customer.setViewportSize(PHONE);
  await ann.setViewportSize(LAPTOP);
  await sleep(300);
  assert.equal(await customer.locator('#chat-input').isVisible(), false, 'the phone shows no chat column');
  await ann.fill('#chat-input', 'hello Carla');
  await ann.getByRole('button', { name: 'Send', exact: true }).click();
  await customer.getByRole('button', { name: 'Chat, 1 unread' }).waitFor({ timeout: 5000 });
  await shot(customer, 'customer-unread');
  await customer.getByRole('button', { name: /^Chat/ }).click();
  await customer.getByText('hello Carla').waitFor();
  assert.match(await customer.locator('#chat-log').innerText(), /^Ann Smith/);
  await shot(customer, 'customer-chat-open');
  await customer.getByRole('button', { name: 'Close chat' }).click();

  // Muting shows the mark on the agent's tile of her; her camera off, her initials.
  await customer.getByRole('button', { name: 'Mute' }).click();
  await ann.getByRole('img', { name: "Carla's microphone is muted" }).waitFor({ timeout: 5000 });
  await customer.keyboard.press('v');
  await waitFor(() => ann.evaluate(() => document.querySelector('[data-identity="Carla"]').classList.contains('camera-off')), 5000, 'her camera off on the agent\'s page');
  assert.equal(await ann.locator('[data-identity="Carla"] .initials').textContent(), 'C');
  await shot(ann, 'agent-customer-muted');
  await customer.keyboard.press('m');
  await ann.getByRole('img', { name: "Carla's microphone is muted" }).waitFor({ state: 'hidden', timeout: 5000 });
  await customer.keyboard.press('v');

  // Hang up: both see why it ended.
  await ann.getByRole('button', { name: 'Hang up' }).click();
  await customer.getByRole('heading', { name: 'Call ended' }).waitFor({ timeout: 10000 });
  for (const size of [PHONE, LAPTOP]) { await customer.setViewportSize(size); await shot(customer, 'customer-ended'); }
  await ann.getByRole('heading', { name: 'Waiting customers' }).waitFor();
  for (const size of [PHONE, LAPTOP]) { await ann.setViewportSize(size); await shot(ann, 'console-history'); }
  // The history is searchable: by customer, by the agent's name.
  for (const [q, rows] of [['carla', 1], ['Ann Smith', 1], ['nobody like this', 0]]) {
    await ann.getByRole('searchbox', { name: 'Search' }).fill(q);
    await ann.getByRole('button', { name: 'Search', exact: true }).click();
    await waitFor(async () => (await ann.locator('#history tbody tr').count()) === rows, 5000, `${rows} row(s) for "${q}"`);
  }
  assert.equal(await ann.getByText('No calls match.').isVisible(), true);
  for (const p of [ann, customer]) await p.context().close();
});

test('the call screen with three and with a screen share: a grid that fills the stage, the share on the stage', { timeout: 180000 }, async () => {
  const ROOM = 'layout';
  const names = ['alice', 'bob', 'carol'];
  const pages = {};
  for (const n of names) pages[n] = await open(`${server.url}/room/${ROOM}#token=${server.token(ROOM, n)}`, LAPTOP);
  for (const n of names) for (const o of names) if (o !== n) await decoding(pages[n], o);
  await sleep(1500);
  const alice = pages.alice;
  for (const size of [PHONE, LAPTOP]) {
    await alice.setViewportSize(size);
    await sleep(400);
    await shot(alice, 'room-three');
    await assertLayout(alice, 'three in a room', { mode: 'grid', fill: 0.5 });
  }
  await pages.bob.getByRole('button', { name: 'Share screen' }).click();
  await waitFor(async () => (await alice.evaluate(() => window.switchboard.inbound())).bob?.screenFramesDecoded > 0, 20000, 'alice decoding the screen');
  await sleep(1000);
  for (const size of [PHONE, LAPTOP]) {
    await alice.setViewportSize(size);
    await sleep(400);
    await shot(alice, 'room-three-share');
    await assertLayout(alice, 'three with a screen share', { mode: 'share', fill: 0.4 });
    const b = await boxes(alice);
    assert.ok(b.main.a > 0.4 * b.stage.a, `the share takes the stage (${Math.round(b.main.w)}x${Math.round(b.main.h)})`);
  }
  for (const p of Object.values(pages)) await p.context().close();
});

test('the team sees who can take calls (available, away, in a call, offline); a new call alerts whoever is available', { timeout: 120000 }, async () => {
  const SAM = ['sam@example.com', 'password-sam'];
  server.addAgent(...SAM, 'Sam Lee');
  const signIn = async ([email, password]) => {
    const p = await open(`${server.url}/agent`, LAPTOP);
    await p.getByLabel('Email').fill(email);
    await p.getByLabel('Password').fill(password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Waiting customers' }).waitFor();
    return p;
  };
  const ann = await signIn(ANN);
  const sam = await signIn(SAM);
  const member = (p, email) => p.locator(`#team [data-email="${email}"]`);
  await member(sam, ANN[0]).filter({ hasText: 'Ann Smith: available' }).waitFor({ timeout: 5000 });
  await ann.getByLabel('Your status').selectOption('away');
  await member(sam, ANN[0]).filter({ hasText: 'Ann Smith: away' }).waitFor({ timeout: 5000 });

  // A customer calls: the title counts the waiting everywhere; only Sam
  // (available) is alerted.
  const customer = await open(`${server.url}/`, PHONE);
  await customer.getByLabel('Your name').fill('Omar');
  await customer.getByRole('button', { name: 'Start call' }).click();
  for (const p of [ann, sam]) await waitFor(async () => (await p.title()).startsWith('(1)'), 5000, 'the title counting the waiting call');
  assert.deepEqual(await Promise.all([ann, sam].map((p) => p.evaluate(() => window.agent.alerts || 0))), [0, 1], 'alerts: Ann away, Sam available');
  await shot(sam, 'console-team-alert');

  await sam.locator('.queue-item', { hasText: 'Omar' }).getByRole('button', { name: 'Accept' }).click();
  await member(ann, SAM[0]).filter({ hasText: 'Sam Lee: in a call' }).waitFor({ timeout: 5000 });
  await ann.context().close();
  await sam.getByRole('button', { name: 'Hang up' }).click();
  await sam.getByRole('heading', { name: 'Waiting customers' }).waitFor({ timeout: 10000 });
  await member(sam, ANN[0]).filter({ hasText: 'Ann Smith: offline' }).waitFor({ timeout: 5000 });
  await member(sam, SAM[0]).filter({ hasText: 'Sam Lee (you): available' }).waitFor({ timeout: 5000 });
  for (const p of [sam, customer]) await p.context().close();
});
