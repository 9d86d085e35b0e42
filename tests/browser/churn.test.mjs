// Churn: str0m clients (`loadtest churn`: real signalling, DTLS-SRTP media)
// join rooms of two, publish for 0.5-3 s, then leave or vanish (WebSocket
// and UDP just dropped), over and over, against the real server. Afterwards
// the server holds no participants and no signalling connections, its file
// descriptors and threads are back where they were after a warm-up round,
// and its live heap and resident memory grew by at most HEAP_BOUND_MB and
// RSS_BOUND_MB.
//
// CHURN_SECONDS (default 60) sets the length: the soak is
// `CHURN_SECONDS=3600 CHURN_PEERS=40 node --test churn.test.mjs` (README), which prints
// the server's memory and descriptors every SAMPLE_EVERY as it goes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startServer, waitFor, sleep } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOADTEST = process.env.LOADTEST_BIN || join(root, 'target', 'release', 'loadtest');
const SECONDS = Number(process.env.CHURN_SECONDS || 60);
const PEERS = Number(process.env.CHURN_PEERS || 16);
const SAMPLE_EVERY = SECONDS > 300 ? 60000 : 10000;
// What churn may leave in resident memory: allocator caches and the room
// directory's high-water marks, not sessions (a leaked session holds a str0m
// peer, ~1-2 MB with its buffers: 400 sessions a minute run here). Measured
// +2.6 MB after a minute (jemalloc; glibc malloc kept +12 MB, +54 MB after 15).
const RSS_BOUND_MB = Number(process.env.RSS_BOUND_MB || 24);
// What it may leave allocated (jemalloc's count of live bytes, caches of the
// allocator excluded): a leak of sessions shows here first. Measured +1.2 MB.
const HEAP_BOUND_MB = Number(process.env.HEAP_BOUND_MB || 8);
let server;

after(async () => { if (server) await server.stop(); });

/** The server process's descriptors, threads and resident memory, from /proc. */
function usage(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'))[1]);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, threads: field('Threads'), rssMb: field('VmRSS') / 1024 };
}

/** Sums of the server's gauges we watch. */
async function held() {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const sum = (name) => text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
  return {
    participants: sum('switchboard_participants'), connections: sum('switchboard_signalling_connections'),
    heapMb: sum('switchboard_heap_allocated_bytes') / 2 ** 20,
  };
}

async function churn(peers, seconds) {
  const { stdout } = await promisify(execFile)(LOADTEST, [
    'churn', '--url', server.url, '--keys', join(server.dataDir, 'keys.json'),
    '--peers', String(peers), '--duration', `${seconds}s`, '--video-kbps', '300',
    '--json', join(server.dataDir, `churn-${seconds}.json`),
  ], { timeout: (seconds + 60) * 1000 });
  console.log(stdout.trim());
  return JSON.parse(readFileSync(join(server.dataDir, `churn-${seconds}.json`), 'utf8'));
}

async function settled() {
  await waitFor(async () => { const h = await held(); return h.participants === 0 && h.connections === 0; }, 45000,
    'no participants and no signalling connections left');
}

test(`${SECONDS} s of churn leaves nothing behind`, { timeout: (SECONDS + 240) * 1000 }, async () => {
  // A short grace for dropped WebSockets: vanished clients are gone 3 s later.
  server = await startServer({ shards: 2, args: ['--resume-grace', '3s'] });
  const pid = server.proc.pid;
  await churn(4, 5); // warm-up: one-time allocations (thread pools, tables) happen here
  await settled();
  const base = usage(pid), baseHeap = (await held()).heapMb;
  assert.ok(baseHeap > 1, `the server reports its live heap (switchboard_heap_allocated_bytes): ${baseHeap} MB`);
  console.log(`after warm-up: ${base.fds} fds, ${base.threads} threads, ${base.rssMb.toFixed(1)} MB resident, ${baseHeap.toFixed(1)} MB allocated`);

  const samples = [];
  const started = Date.now();
  const sampler = setInterval(async () => {
    const u = usage(pid), h = await held().catch(() => ({}));
    samples.push({ t: Math.round((Date.now() - started) / 1000), ...u, ...h });
    console.log(`  t=${samples.at(-1).t}s fds=${u.fds} threads=${u.threads} rss=${u.rssMb.toFixed(1)}MB ` +
      `allocated=${h.heapMb?.toFixed(1)}MB participants=${h.participants}`);
  }, SAMPLE_EVERY);
  let report;
  try { report = await churn(PEERS, SECONDS); } finally { clearInterval(sampler); }
  const sessions = report.left + report.vanished + report.failed;
  assert.ok(report.left > 0 && report.vanished > 0, `both ways of ending happened: ${JSON.stringify(report)}`);
  assert.ok(report.failed <= sessions * 0.02, `at most 2% of ${sessions} sessions failed: ${JSON.stringify(report.errors)}`);

  await settled();
  let now;
  await waitFor(async () => { now = usage(pid); return now.fds <= base.fds && now.threads <= base.threads; }, 20000,
    'descriptors and threads back to the warm-up level').catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify({ base, now })}`);
  });
  // jemalloc hands freed pages back from its background thread within ~10 s.
  await sleep(12000);
  now = usage(pid);
  const grown = now.rssMb - base.rssMb, heapGrown = (await held()).heapMb - baseHeap;
  console.log(`after ${sessions} sessions: ${now.fds} fds (was ${base.fds}), ${now.threads} threads (was ${base.threads}), ` +
    `${now.rssMb.toFixed(1)} MB resident (${grown >= 0 ? '+' : ''}${grown.toFixed(1)} MB; peak ${Math.max(...samples.map((s) => s.rssMb), now.rssMb).toFixed(1)} MB), ` +
    `allocated ${heapGrown >= 0 ? '+' : ''}${heapGrown.toFixed(1)} MB`);
  assert.ok(heapGrown <= HEAP_BOUND_MB, `live heap grew ${heapGrown.toFixed(1)} MB (bound ${HEAP_BOUND_MB} MB)`);
  assert.ok(grown <= RSS_BOUND_MB, `resident memory grew ${grown.toFixed(1)} MB (bound ${RSS_BOUND_MB} MB)`);
});

/** Opens a raw TCP connection to the server's /ws and misbehaves `how`:
 *  invalid JSON, a 2 MiB message, half a frame then silence, or no
 *  WebSocket at all. Resolves when the server has closed it (or after 15 s). */
function garbageClient(port, how) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const done = () => { sock.destroy(); resolve(); };
    sock.setTimeout(15000, done);
    sock.on('error', done);
    sock.on('close', done);
    sock.on('data', () => {}); // read what the server says, so it is not stuck writing
    sock.on('connect', () => {
      if (how === 'http') { sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: nonsense\r\n\r\n'); return; }
      sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      const payload = how === 'json' ? Buffer.from('{"type": "join", "token": ') // cut short: not JSON
        : how === 'oversized' ? Buffer.alloc(2 << 20, 0x61)
        : Buffer.alloc(100 * 1024, 0x61); // half-open: declared, then only a little sent
      const frame = wsFrame(payload);
      sock.write(how === 'half' ? frame.subarray(0, 64) : frame);
    });
  });
}

/** A masked text frame (clients must mask) carrying `payload`. */
function wsFrame(payload) {
  const mask = randomBytes(4);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n])
    : n < 65536 ? Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff])
    : Buffer.concat([Buffer.from([0x81, 0x80 | 127, 0, 0, 0, 0]), Buffer.from([(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff])]);
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

// The question was whether a burst of garbage connections grows memory for
// good (it roughly doubled resident memory once). Repeated bursts tell the
// allocator keeping freed pages (a plateau after the first burst) from
// something held per connection (growth with every burst).
test('bursts of garbage connections: memory plateaus, nothing is held', { timeout: 240000 }, async () => {
  const port = Number(new URL(server.url).port);
  const kinds = ['json', 'oversized', 'half', 'http'];
  const rss = [];
  for (let round = 0; round < 4; round++) {
    await Promise.all(Array.from({ length: 50 }, (_, i) => garbageClient(port, kinds[i % kinds.length])));
    await waitFor(async () => (await held()).connections === 0, 20000, 'garbage connections closed by the server');
    rss.push(usage(server.proc.pid).rssMb);
    console.log(`  burst ${round + 1}: 50 garbage connections (each kind, 2 MiB messages among them); rss ${rss.at(-1).toFixed(1)} MB`);
  }
  const afterFirst = rss[3] - rss[0];
  assert.ok(afterFirst <= 8, `memory kept growing after the first burst: ${rss.map((r) => r.toFixed(1)).join(' → ')} MB`);
});
