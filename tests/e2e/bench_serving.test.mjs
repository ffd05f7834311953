// `dsserve bench-serving` against the running server: a small random-dataset run completes every
// request and writes the sglang.bench_serving-style JSON line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { BASE, API_KEY } from './common.mjs';

test('bench-serving: random dataset, streaming, JSON output', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dsserve-bench-')), 'bench.jsonl');
  const r = spawnSync(process.env.DSSERVE_BIN, ['bench-serving', '--base-url', BASE, '--api-key', API_KEY,
    '--num-prompts', '8', '--random-input-len', '32', '--random-output-len', '4', '--max-concurrency', '4',
    '--request-rate', '50', '--vocab-size', '128000', '--output-file', out], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Serving Benchmark Result/);
  const j = JSON.parse(fs.readFileSync(out, 'utf8').trim());
  assert.equal(j.completed, 8);
  assert.equal(j.failed, 0);
  assert.equal(j.total_output_tokens, 32);
  for (const k of ['request_throughput', 'output_throughput', 'mean_ttft_ms', 'median_ttft_ms', 'p99_ttft_ms',
    'mean_itl_ms', 'p99_itl_ms', 'mean_e2e_latency_ms', 'p99_e2e_latency_ms'])
    assert.equal(typeof j[k], 'number', k);
});
