// The load-test harness against a real server: a short `pairs` run, its JSON
// and HTML reports, and the server's /metrics agreeing with what it counted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startServer, launchBrowser } from './harness.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOADTEST = process.env.LOADTEST_BIN || join(root, 'target', 'release', 'loadtest');
let server, browser;

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Parses Prometheus text exposition; throws on a malformed line. */
function parsePrometheus(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$/);
    assert.ok(m, `not Prometheus text: ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels: m[2] || '', value: Number(m[3]) });
  }
  return samples;
}
const total = (samples, name) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);

test('a short pairs run: everyone gets ≥95%, reports are complete, /metrics agrees', { timeout: 120000 }, async () => {
  server = await startServer({ shards: 2 });
  const before = parsePrometheus(await (await fetch(`${server.url}/metrics`)).text());
  const out = join(server.dataDir, 'report');
  const { stdout } = await promisify(execFile)(LOADTEST, [
    'pairs', '--url', server.url, '--keys', join(server.dataDir, 'keys.json'),
    '--peers', '10', '--duration', '5s', '--json', `${out}.json`, '--html', `${out}.html`,
  ], { timeout: 90000 });
  console.log(stdout.trim());

  const r = JSON.parse(readFileSync(`${out}.json`, 'utf8'));
  assert.equal(r.connected, 10, JSON.stringify(r.failed));
  assert.equal(r.subscribers.length, 10, 'every peer subscribes to its partner');
  for (const s of r.subscribers) {
    assert.equal(s.streams, s.expected_streams, `${s.identity} got every stream`);
    assert.ok(s.delivery >= 0.95, `${s.identity} got ${(s.delivery * 100).toFixed(1)}%`);
  }
  assert.ok(r.latency_us.count > 1000 && r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p50, 'latency measured');
  assert.ok(r.join_to_media_ms.count === 10, 'join time measured for every peer');
  for (const key of ['sent_packets', 'received_packets', 'expected_packets', 'delivery_ratio', 'duplicates', 'reordered', 'jitter_us_mean', 'series', 'latency_histogram']) {
    assert.ok(key in r, `JSON has ${key}`);
  }
  assert.ok(r.server && r.server.cpu_seconds > 0 && r.server.forwarded_per_cpu_second > 0, 'server cost measured');
  assert.ok(r.server.forwarding_delay_us && r.server.forwarding_delay_us.p99 > 0, 'delay inside the server measured');

  // The server's own counters agree with what the peers counted.
  const after = parsePrometheus(await (await fetch(`${server.url}/metrics`)).text());
  const forwarded = total(after, 'switchboard_rtp_packets_forwarded_total') - total(before, 'switchboard_rtp_packets_forwarded_total');
  const received = total(after, 'switchboard_rtp_packets_received_total') - total(before, 'switchboard_rtp_packets_received_total');
  assert.ok(Math.abs(forwarded - r.received_packets) <= 0.03 * r.received_packets, `forwarded ${forwarded} vs received by peers ${r.received_packets}`);
  assert.ok(Math.abs(received - r.sent_packets) <= 0.03 * r.sent_packets, `server received ${received} vs sent by peers ${r.sent_packets}`);
  for (const name of ['switchboard_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'switchboard_packets_dropped_total',
    'switchboard_signalling_connections', 'switchboard_participants', 'switchboard_keyframe_requests_sent_total',
    'switchboard_forwarding_delay_seconds_bucket', 'switchboard_forwarding_delay_seconds_count', 'switchboard_udp_send_messages_total']) {
    assert.ok(after.some((s) => s.name === name), `/metrics has ${name}`);
  }

  // The HTML report renders its charts in a browser.
  browser = await launchBrowser();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`file://${out}.html`);
  const drawn = await page.evaluate(() => ({
    bars: document.querySelectorAll('#latency rect.bar').length,
    barHeight: Math.max(...[...document.querySelectorAll('#latency rect.bar')].map((r) => r.getBBox().height)),
    throughput: document.querySelector('#throughput polyline.rx')?.points.length || 0,
    cpu: document.querySelector('#cpu polyline.cpu')?.points.length || 0,
  }));
  assert.ok(drawn.bars > 0 && drawn.barHeight > 10, `latency histogram drawn: ${JSON.stringify(drawn)}`);
  assert.ok(drawn.throughput >= 5 && drawn.cpu >= 5, `time series drawn: ${JSON.stringify(drawn)}`);
});

test('simulcast webinar: each capped subscriber settles on the layer its downlink carries', { timeout: 120000 }, async () => {
  if (server) await server.stop();
  server = await startServer({ shards: 1 });
  const out = join(server.dataDir, 'simulcast.json');
  // Layers: q 150, h 500, f 1500 kb/s; the caps carry q, h and everything.
  const { stdout } = await promisify(execFile)(LOADTEST, [
    'webinar', '--url', server.url, '--keys', join(server.dataDir, 'keys.json'), '--peers', '4',
    '--duration', '15s', '--simulcast', '--downlink-kbps', '300,1000,0', '--json', out,
  ], { timeout: 90000 });
  console.log(stdout.trim());

  const r = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(r.connected, 4, JSON.stringify(r.failed));
  const byCap = Object.fromEntries(r.subscribers.map((s) => [String(s.downlink_kbps), s]));
  for (const [cap, layer] of [['300', 0], ['1000', 1], ['null', 2]]) {
    const s = byCap[cap];
    assert.ok(s, `a subscriber with cap ${cap}`);
    assert.equal(s.video.length, 1, `${s.identity} receives the publisher's video`);
    const v = s.video[0];
    assert.equal(v.layer, layer, `cap ${cap}: ended on layer ${v.layer} (${JSON.stringify(v)})`);
    assert.ok(v.switches <= 5, `cap ${cap}: ${v.switches} switches`);
    assert.ok(v.layer_packets[layer] > v.layer_packets.reduce((a, b) => a + b, 0) / 2, `cap ${cap}: mostly on its layer`);
  }
  assert.ok(byCap.null.delivery >= 0.95, `uncapped subscriber got ${byCap.null.delivery}`);
  assert.match(stdout, /layers +cap 300 kb\/s: 1 streams ended on q 1/);
});
