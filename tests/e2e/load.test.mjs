// Load, bounded in count and time: 1,000 concurrent streaming chat clients on the tiny model with a
// few tokens each; every stream must be complete and well-formed (role chunk, finish_reason, usage,
// [DONE]) and /health must keep answering while they run.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

import { BASE, MODEL, post, parseSSE } from './common.mjs';

const CLIENTS = Number(process.env.DSSERVE_LOAD_CLIENTS ?? 1000);
const MAX_TOKENS = 4;
const RSS_GROWTH_LIMIT_MB = 1024;

// Resident memory of the server in MiB (Linux), or 0 when unknown.
function serverRssMb() {
  try {
    const m = fs.readFileSync(`/proc/${process.env.DSSERVE_PID}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : 0;
  } catch { return 0; }
}

test(`${CLIENTS} concurrent streaming clients`, { timeout: 600000 }, async () => {
  const t0 = Date.now();
  let healthChecks = 0, healthFailures = 0, done = false;
  const rss0 = serverRssMb();
  let rssMax = rss0;
  const health = (async () => {
    while (!done) {
      const h0 = Date.now();
      try {
        const r = await fetch(`${BASE}/health`, { signal: AbortSignal.timeout(5000) });
        if (r.status !== 200) healthFailures++;
      } catch { healthFailures++; }
      healthChecks++;
      rssMax = Math.max(rssMax, serverRssMb());
      await new Promise((r) => setTimeout(r, Math.max(0, 200 - (Date.now() - h0))));
    }
  })();
  const one = async (i) => {
    const r = await post('/v1/chat/completions', {
      model: MODEL, messages: [{ role: 'user', content: `client ${i} says hi` }], max_tokens: MAX_TOKENS,
      stream: true, stream_options: { include_usage: true }, ignore_eos: true,
    });
    assert.equal(r.status, 200, `client ${i}: HTTP ${r.status}`);
    const ev = parseSSE(await r.text());
    assert.equal(ev[ev.length - 1], '[DONE]', `client ${i}: no [DONE]`);
    assert.equal(ev[0].choices[0].delta.role, 'assistant');
    const fin = ev.filter((e) => e !== '[DONE]' && e.choices.length && e.choices[0].finish_reason);
    assert.equal(fin.length, 1, `client ${i}: ${fin.length} finish chunks`);
    assert.equal(fin[0].choices[0].finish_reason, 'length');
    assert.equal(ev[ev.length - 2].usage.completion_tokens, MAX_TOKENS);
    return ev.length;
  };
  const results = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, i) => one(i)));
  done = true;
  await health;
  const failed = results.filter((r) => r.status === 'rejected');
  const secs = (Date.now() - t0) / 1000;
  console.log(`load: ${CLIENTS} streams in ${secs.toFixed(1)} s, ${failed.length} failed, health ${healthChecks} checks / ${healthFailures} failures, server RSS ${rss0.toFixed(0)} -> max ${rssMax.toFixed(0)} MiB`);
  if (failed.length) console.log(String(failed[0].reason));
  assert.equal(failed.length, 0);
  assert.equal(healthFailures, 0);
  assert.ok(healthChecks > 0);
  assert.ok(rssMax - rss0 < RSS_GROWTH_LIMIT_MB, `server memory grew by ${(rssMax - rss0).toFixed(0)} MiB`);
});
