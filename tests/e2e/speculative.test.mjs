// Speculative decoding through the server: a second `dsserve serve` on the same tiny model with
// --speculative-algorithm EAGLE (chain, then a tree) answers /generate greedily with exactly the
// tokens of the main server, reports spec_verify_ct per response, and its acceptance statistics
// in /get_server_info and /metrics.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

import { post as postMain } from './common.mjs';

async function startSpecServer(extra) {
  const args = ['serve', '--model-path', process.env.DSSERVE_MODEL_DIR, '--device', process.env.DSSERVE_E2E_DEVICE || 'cpu', '--host', '127.0.0.1',
    '--port', '0', '--context-length', '512', '--max-total-tokens', '8192', '--enable-metrics', ...extra];
  const proc = spawn(process.env.DSSERVE_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`speculative server did not start:\n${log}`)), 60000);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/dsserve: listening on [^:\s]+:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code}:\n${log}`)); });
  });
  return { proc, base: `http://127.0.0.1:${port}` };
}

const prompts = [[0, 100, 200, 300], [0, 5, 6, 7, 8, 9, 10, 11], [0, 4242]];

for (const [name, flags] of [
  ['chain', ['--speculative-algorithm', 'EAGLE', '--speculative-num-steps', '3']],
  ['tree', ['--speculative-algorithm', 'NEXTN', '--speculative-num-steps', '2', '--speculative-eagle-topk', '2',
            '--speculative-num-draft-tokens', '4']],
]) {
  test(`speculative (${name}) greedy output equals the plain server's`, async () => {
    const { proc, base } = await startSpecServer(flags);
    try {
      for (const ids of prompts) {
        const body = { input_ids: ids, sampling_params: { max_new_tokens: 12, temperature: 0, ignore_eos: true } };
        const plain = await (await postMain('/generate', body)).json();
        const r = await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify(body) });
        assert.equal(r.status, 200);
        const spec = await r.json();
        assert.deepEqual(spec.output_ids, plain.output_ids);
        assert.ok(spec.meta_info.spec_verify_ct >= 1 && spec.meta_info.spec_verify_ct <= 12, JSON.stringify(spec.meta_info));
        assert.equal(plain.meta_info.spec_verify_ct, 0);
      }
      const info = await (await fetch(`${base}/get_server_info`)).json();
      assert.equal(info.speculative_algorithm, name === 'chain' ? 'EAGLE' : 'NEXTN');
      assert.ok(info.internal_states[0].avg_spec_accept_length >= 1.0, JSON.stringify(info.internal_states));
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /sglang:spec_accept_length\{[^}]*\} \d/);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    }
  });
}
