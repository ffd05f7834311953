// The watchdog judges progress, not the length of one step: a long unchunked prefill on the CPU
// (one step of seconds, far beyond --watchdog-timeout 1) keeps the server alive and answers, and
// /health_generate answers 200 while that step runs (the engine is working), where a watchdog
// timing steps exited with status 3.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { startServer } from './common.mjs';

test('a long prefill step is not a hang', async () => {
  const s = await startServer(['--skip-tokenizer-init', '--context-length', '4096', '--max-total-tokens', '8192',
                               '--chunked-prefill-size', '-1', '--max-prefill-tokens', '4096', '--watchdog-timeout', '1',
                               '--health-generate-timeout', '30']);
  try {
    const ids = Array.from({ length: 1500 }, (_, i) => 5 + (i % 400));
    const t0 = Date.now();
    const long = fetch(`${s.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' },
                                              body: JSON.stringify({ input_ids: ids, sampling_params: { max_new_tokens: 2 } }) });
    await new Promise((r) => setTimeout(r, 300));
    const h = await fetch(`${s.url}/health_generate`);
    assert.equal(h.status, 200, 'the engine is working: /health_generate says so');
    const r = await long;
    assert.equal(r.status, 200);
    assert.equal((await r.json()).output_ids.length, 2);
    const took = (Date.now() - t0) / 1000;
    assert.ok(took > 1.5, `the step took ${took} s, not beyond the watchdog's 1 s: the test proves nothing`);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  } finally {
    const r = await s.stop();
    assert.equal(r.code, 0, `the server exited with ${r.code ?? r.sig}: ${s.log().split('\n').filter((l) => /watchdog/.test(l)).join(' ')}`);
  }
});
