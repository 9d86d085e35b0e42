// Shared test harness: a real switchboard server and Debian's Chromium.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.SWITCHBOARD_BIN || join(root, 'target', 'release', 'switchboard');

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
];

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Polls `fn` until it returns a truthy value; fails after `ms`. */
export async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(250);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

/** Starts switchboard on free loopback ports with a fresh data dir
 *  (or `dataDir`, kept across `restart()`). `args` are extra flags.
 *  `netns`: run it in that namespace of `net/links.sh` instead, on all of
 *  its addresses; `url` is then how the test reaches it and `pageUrl` how
 *  pages in the client namespaces do. */
/** Starts the release binary; `tls`: HTTPS with a self-signed certificate
 *  (`--tls-self-signed`; this process then trusts any certificate). */
export async function startServer({ shards = 2, args = [], netns = null, tls = false } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-test-'));
  const port = await freePort();
  const scheme = tls ? 'https' : 'http';
  if (tls) { process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; args = [...args, '--tls-self-signed']; }
  const url = netns ? `${scheme}://${LINKS.reach}:${port}` : `${scheme}://127.0.0.1:${port}`;
  const pageUrl = netns ? `${scheme}://${LINKS.server}:${port}` : url;
  const where = netns
    ? ['ip', ['netns', 'exec', netns, BIN, '--http', `0.0.0.0:${port}`, '--udp-bind', '0.0.0.0', '--public-ip', LINKS.server]]
    : [BIN, ['--http', `127.0.0.1:${port}`]];
  let proc, log = '';
  const launch = async () => {
    proc = spawn(where[0], [...where[1], '--udp-port', '0', '--shards', String(shards), '--data-dir', dataDir, ...args], {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc.stderr.on('data', (d) => { log += d; });
    await waitFor(async () => { try { return (await fetch(`${url}/healthz`)).ok; } catch { return false; } }, 15000, 'server health');
  };
  // The first SIGTERM drains (the server waits for calls to end), the next
  // stops it at once: keep sending until it has gone.
  const halt = async () => {
    if (proc.exitCode === null) {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const again = setInterval(() => proc.exitCode === null && proc.kill('SIGTERM'), 300);
      await Promise.race([gone, sleep(8000)]);
      clearInterval(again);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  };
  await launch();
  return {
    url, pageUrl, dataDir,
    get proc() { return proc; },
    log: () => log,
    token: (room, identity, extra = []) =>
      execFileSync(BIN, ['token', '--data-dir', dataDir, '--room', room, '--identity', identity, ...extra]).toString().trim(),
    /** A server API token granting recording (of `room`, or of every room). */
    recorderToken: (room = null) =>
      execFileSync(BIN, ['token', '--data-dir', dataDir, '--record', ...(room ? ['--room', room] : [])]).toString().trim(),
    /** Creates an agent account with the CLI, as an operator would. */
    addAgent: (email, password, name = null) =>
      execFileSync(BIN, ['agent', 'add', '--data-dir', dataDir, '--email', email, ...(name ? ['--name', name] : []), '--password-stdin'], { input: `${password}\n`, stdio: ['pipe', 'ignore', 'ignore'] }),
    /** `switchboard agent passwd`, as an operator would run it beside the server. */
    setPassword: (email, password) =>
      execFileSync(BIN, ['agent', 'passwd', '--data-dir', dataDir, '--email', email, '--password-stdin'], { input: `${password}\n`, stdio: ['pipe', 'ignore', 'pipe'] }),
    /** Process CPU seconds (user + system) from /proc. */
    cpuSeconds: () => {
      const f = readFileSync(`/proc/${proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    },
    /** Stops the server (SIGTERM) and starts it again on the same port and data. */
    restart: async () => { await halt(); await launch(); },
    /** Kills the server (SIGKILL: no clean-up at all) and starts it again. */
    crash: async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
      await launch();
    },
    stop: async () => {
      await halt();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** `args`: Chromium flags on top of CHROMIUM_ARGS (e.g. a fake audio file).
 *  `netns`: run the browser in that namespace of `net/links.sh` (playwright
 *  talks to it over pipes, which cross namespaces); pages there are a secure
 *  context on the server's `pageUrl`, so they may use the camera (unless
 *  `insecure`: then only HTTPS makes them one, as for a phone on a LAN). */
export async function launchBrowser(args = [], { netns = null, pageUrl = null, insecure = false } = {}) {
  const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
  let executablePath = chromiumPath;
  if (netns) {
    executablePath = join(mkdtempSync(join(tmpdir(), 'switchboard-chromium-')), 'chromium');
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} ${chromiumPath} "$@"\n`, { mode: 0o755 });
    if (!insecure) args = [...args, `--unsafely-treat-insecure-origin-as-secure=${pageUrl}`];
  }
  return chromium.launch({ executablePath, args: [...CHROMIUM_ARGS, ...args] });
}

/** The candidate pair a page's connection to the server uses: its state and
 *  both ends (`candidateType`, `protocol`, `relayProtocol`, `tcpType`,
 *  `address`, `port`), from getStats. */
export async function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.switchboard.pc.getStats();
    let transport;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) transport = s; });
    if (!transport) return null;
    const p = stats.get(transport.selectedCandidatePairId);
    const end = (id) => {
      const c = stats.get(id);
      return { candidateType: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol, tcpType: c.tcpType, address: c.address, port: c.port };
    };
    return { state: p.state, local: end(p.localCandidateId), remote: end(p.remoteCandidateId) };
  });
}

/** The addresses `net/links.sh` gives the server namespace. */
export const LINKS = { server: '10.77.1.1', reach: '10.77.1.1' };
const LINKS_SH = join(root, 'tests', 'browser', 'net', 'links.sh');
/** Runs `net/links.sh` (`up N`, `cap I KBIT`, `down`). */
export const links = (...words) => execFileSync(LINKS_SH, words.map(String), { stdio: 'inherit' });

/** Forces the height (px) a page draws remote tiles at (0: not at all); the
 *  page's own tile goes, so the remote one is on screen. */
export async function tileHeight(page, px) {
  await page.evaluate((h) => {
    let s = document.getElementById('test-tile-size');
    if (!s) { s = document.createElement('style'); s.id = 'test-tile-size'; document.head.append(s); }
    s.textContent = h === 0
      ? '.tile:not(.local) { display: none !important; }'
      : `.tile.local { display: none !important; }
         .tiles { grid-template-columns: repeat(auto-fill, ${Math.ceil(h * 16 / 9)}px) !important; }
         .tile:not(.local) { aspect-ratio: auto !important; height: ${h}px !important; }`;
  }, px);
}

/** An init script for pages whose video quality is not under test: the
 *  camera captures 640x480, not the pages' 720p, so several pages each
 *  encoding simulcast layers do not starve a 2-core machine. */
export const SMALL_CAMERA = () => {
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => gum(c && c.video ? { ...c, video: { width: 640, height: 480 } } : c);
};

/** Writes a WAV file of `seconds` of something like a voice for Chromium's
 *  `--use-file-for-fake-audio-capture` (which loops it): syllables of a
 *  gliding tone at half scale, 250 ms on and 100 ms off. Chromium's noise
 *  suppression mutes a steady tone as noise; syllables pass. Returns its path. */
export function toneWav(dir, seconds = 5) {
  const rate = 48000, n = rate * seconds;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate, inSyllable = (t % 0.35) < 0.25;
    phase += 2 * Math.PI * (180 + 60 * Math.sin(2 * Math.PI * 3 * t)) / rate;
    buf.writeInt16LE(inSyllable ? Math.round(16000 * Math.sin(phase)) : 0, 44 + i * 2);
  }
  const path = join(dir, 'tone.wav');
  writeFileSync(path, buf);
  return path;
}
