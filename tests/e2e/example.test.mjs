// The newcomer's path: the README's `cd third_party/npm && node example.mjs` runs against a live
// server (pointed at it with OPENAI_BASE_URL / OPENAI_API_KEY) and prints the streamed reply and
// its usage.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { BASE, API_KEY } from './common.mjs';

test('third_party/npm/example.mjs streams a reply', () => {
  const dir = path.resolve(process.env.DSSERVE_NODE_MODULES, '..');
  const r = spawnSync(process.execPath, ['example.mjs'], {
    cwd: dir, encoding: 'utf8', timeout: 120000,
    env: { ...process.env, OPENAI_BASE_URL: `${BASE}/v1`, OPENAI_API_KEY: API_KEY },
  });
  assert.equal(r.status, 0, `example.mjs failed: ${r.stderr}`);
  assert.match(r.stdout, /\[\d+ prompt tokens, \d+ completion tokens\]\n$/);
});
