// Connections and admission, each against a server of its own with small limits: idle keep-alive,
// header and body timeouts close the connection; connections beyond --max-connections get 503;
// out of file descriptors, the accept loop backs off (little CPU, a few log lines) and serves
// again once descriptors free up; a client flooding the queue does not starve another.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';

import { startServer, rawExchange } from './common.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const common = ['--skip-tokenizer-init', '--context-length', '256', '--max-total-tokens', '8192'];

test('timeouts: idle keep-alive, a slow header, a slow body', async () => {
  const s = await startServer([...common, '--timeout-keep-alive', '1', '--timeout-request-header', '1.5',
                               '--timeout-request-body', '1.5']);
  try {
    let t0 = Date.now();
    let r = await rawExchange(s.url, [], { timeoutMs: 10000 });  // connect, send nothing
    assert.ok(r.closed && Date.now() - t0 < 5000, `idle connection open for ${Date.now() - t0} ms`);
    t0 = Date.now();
    r = await rawExchange(s.url, ['GET /health HTTP/1.1\r\n', 'host: x\r\n'], { gapMs: 400, timeoutMs: 10000 });
    assert.ok(r.closed && Date.now() - t0 < 5000, 'an unfinished header keeps the connection');
    t0 = Date.now();
    r = await rawExchange(s.url, ['POST /generate HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"input_ids"'],
                          { timeoutMs: 10000 });
    assert.ok(r.closed && Date.now() - t0 < 6000, 'an unfinished body keeps the connection');
    assert.equal(r.data, '', 'nothing is answered to a request that never arrived');
    // A request answered keeps the connection for the keep-alive time, then closes it.
    t0 = Date.now();
    r = await rawExchange(s.url, ['GET /health HTTP/1.1\r\nhost: x\r\n\r\n'], { timeoutMs: 10000 });
    assert.match(r.data, /^HTTP\/1\.1 200/);
    assert.ok(r.closed && Date.now() - t0 >= 900 && Date.now() - t0 < 5000, `closed after ${Date.now() - t0} ms`);
    // Still serving.
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('connections beyond --max-connections get 503', async () => {
  const s = await startServer([...common, '--max-connections', '4', '--timeout-keep-alive', '30']);
  const socks = [];
  try {
    const port = Number(new URL(s.url).port);
    for (let i = 0; i < 4; i++) {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => {});
      await new Promise((r) => sock.on('connect', r));
      socks.push(sock);
    }
    await sleep(200);
    const r = await rawExchange(s.url, ['GET /health HTTP/1.1\r\nhost: x\r\n\r\n'], { timeoutMs: 5000 });
    assert.match(r.data, /^HTTP\/1\.1 503/);
    assert.match(r.data, /--max-connections/);
    for (const sock of socks) sock.destroy();
    await sleep(300);
    assert.equal((await fetch(`${s.url}/health`)).status, 200, 'room again once connections close');
  } finally {
    for (const sock of socks) sock.destroy();
    await s.stop();
  }
});

// CPU seconds the process has used (utime + stime from /proc).
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

test('out of file descriptors: the accept loop backs off, logs little, and recovers', async () => {
  const s = await startServer([...common, '--timeout-keep-alive', '60', '--max-connections', '100000'],
                              { wrap: ['prlimit', '--nofile=80'] });
  const socks = [];
  try {
    const port = Number(new URL(s.url).port);
    for (let i = 0; i < 120; i++) {  // more than the server has descriptors for
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => {});
      socks.push(sock);
    }
    await sleep(1000);
    const cpu0 = cpuSeconds(s.proc.pid), lines0 = s.log().split('\n').length;
    await sleep(4000);
    const cpu = cpuSeconds(s.proc.pid) - cpu0, lines = s.log().split('\n').length - lines0;
    assert.ok(cpu < 1.5, `the accept loop used ${cpu} CPU seconds in 4 s`);
    assert.ok(lines <= 3, `${lines} log lines in 4 s`);
    assert.match(s.log(), /accept: .*Too many open files/);
    for (const sock of socks) sock.destroy();
    await sleep(1500);
    assert.equal((await fetch(`${s.url}/health`)).status, 200, 'serving again once descriptors free up');
  } finally {
    for (const sock of socks) sock.destroy();
    await s.stop();
  }
});

test('fairness: a client flooding the queue does not starve another', async () => {
  const s = await startServer([...common, '--max-queued-requests', '32', '--max-running-requests', '2']);
  try {
    const post = (body) => fetch(`${s.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' },
                                                       body: JSON.stringify(body) });
    let stop = false, flooded = 0;
    // Two flooding clients, each keeping a 16-sequence batch queued at all times.
    const flood = async () => {
      while (!stop) {
        const r = await post({ input_ids: Array.from({ length: 16 }, (_, i) => [5 + i, 6, 7]),
                               sampling_params: { max_new_tokens: 24, ignore_eos: true } });
        await r.text();
        flooded += r.status === 503 ? 1 : 0;
      }
    };
    const floods = [flood(), flood()];
    await sleep(500);
    const statuses = [];
    for (let i = 0; i < 20; i++) {
      const r = await post({ input_ids: [9, 10, 11], sampling_params: { max_new_tokens: 2 } });
      statuses.push(r.status);
      await r.text();
    }
    stop = true;
    await Promise.all(floods);
    assert.deepEqual(statuses, Array(20).fill(200), `the third client got ${statuses.join(' ')}`);
  } finally {
    await s.stop();
  }
});
