// Multi-node serving end to end (CTest "e2e_multi_node"): two `dsserve serve` processes on this
// machine (--device cpu --nnodes 2 --tp-size 2, node ranks 0 and 1, 127.0.0.1 and a free port) must
// give the same greedy output ids over HTTP (/generate: several prompts, sequential and concurrent)
// as one process with --tp-size 2 and with --tp-size 1, also with --ep-size 2; on a random tiny model
// from init-tiny-model and on the fixture checkpoints (reported as skipped when absent). Failures:
// node 0 without its peer names the missing rank after --dist-timeout; node 1 without node 0 fails
// clearly; killing node 1 mid-serving fails the request and /health_generate and makes node 0 exit
// non-zero naming node rank 1; SIGTERM to node 0 ends both nodes with 0. Always kills what it starts.
// DSSERVE_E2E_DEVICE=cuda runs the same on GPUs (node r sees GPUs r*N/2.. through
// CUDA_VISIBLE_DEVICES; NCCL between the processes); there, rounding differs between --tp-size 1
// and 2, so the two-node runs are compared with the one-process run of the same layout only.
// With DSSERVE_E2E_GPUS=4 (or on the CPU) it also runs --tp-size 4 over 2 nodes (2 ranks per node).
// Usage: node multi_node.mjs DSSERVE_BINARY REPO_ROOT
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const [dsserve, repo] = process.argv.slice(2);
if (!dsserve || !repo) {
  console.error('usage: node multi_node.mjs DSSERVE_BINARY REPO_ROOT');
  process.exit(2);
}
const DEVICE = process.env.DSSERVE_E2E_DEVICE || 'cpu';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dsserve-multinode-'));
const procs = new Set();
process.on('exit', () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) try { p.kill('SIGKILL'); } catch {}
  fs.rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

let failures = 0;
function check(cond, what) {
  if (cond) { console.log(`ok: ${what}`); return; }
  failures++;
  console.error(`FAIL: ${what}`);
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// Starts one dsserve process; collects its stderr; resolves `exited` with {code, signal}.
function start(args, tag, env = process.env) {
  const proc = spawn(dsserve, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  procs.add(proc);
  const p = { proc, log: '', tag };
  proc.stderr.on('data', (d) => { p.log += d.toString(); });
  p.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return p;
}

async function waitFor(fn, seconds, what) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function serveArgs(model, extra) {
  return ['serve', '--model-path', model, '--device', DEVICE, '--host', '127.0.0.1', '--port', '0',
    '--skip-tokenizer-init', '--context-length', '256', '--max-total-tokens', '4096', ...extra];
}

// node 0 (and, with nnodes 2, node 1) serving; resolves with the base URL once /health answers.
async function launch(model, { tp = 1, ep = 1, nnodes = 1, timeout = 60 } = {}) {
  const extra = ['--tp-size', String(tp), '--ep-size', String(ep)];
  const nodes = [];
  if (nnodes > 1) {
    const addr = `127.0.0.1:${await freePort()}`;
    const perNode = tp / nnodes;
    for (let r = 0; r < nnodes; r++) {
      const gpus = Array.from({ length: perNode }, (_, i) => r * perNode + i).join(',');
      const env = DEVICE === 'cuda' ? { ...process.env, CUDA_VISIBLE_DEVICES: gpus } : process.env;
      nodes.push(start(serveArgs(model, [...extra, '--nnodes', String(nnodes), '--node-rank', String(r),
        '--dist-init-addr', addr, '--dist-timeout', String(timeout)]), `node ${r}`, env));
    }
  } else {
    nodes.push(start(serveArgs(model, extra), 'single'));
  }
  let early = null;
  nodes.forEach((n) => n.exited.then((e) => { early = early || `${n.tag} exited with ${e.code ?? e.signal}:\n${n.log}`; }));
  const port = await waitFor(() => {
    if (early) throw new Error(early);
    const m = nodes[0].log.match(/dsserve: listening on [^:\s]+:(\d+)/);
    return m && Number(m[1]);
  }, 120, 'node 0 listening');
  const base = `http://127.0.0.1:${port}`;
  return { nodes, base };
}

async function stop(run) {
  run.nodes[0].proc.kill('SIGTERM');
  const codes = [];
  for (const n of run.nodes) {
    const e = await Promise.race([n.exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    codes.push(e.code ?? e.signal);
  }
  return codes;
}

async function generate(base, ids, maxNew) {
  const r = await fetch(`${base}/generate`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input_ids: ids, sampling_params: { temperature: 0, max_new_tokens: maxNew, ignore_eos: true } }),
  });
  if (r.status !== 200) throw new Error(`/generate answered ${r.status}: ${await r.text()}`);
  return r.json();
}

// Greedy output ids of several prompts: two one after the other, then four at once.
async function outputs(base, vocab) {
  const prompt = (seed, n) => Array.from({ length: n }, (_, i) => (seed * 7919 + i * 104729) % vocab);
  const prompts = [prompt(1, 5), prompt(2, 17), prompt(3, 1), prompt(4, 33), prompt(5, 9), prompt(6, 24)];
  const out = [];
  for (const p of prompts.slice(0, 2)) out.push((await generate(base, p, 12)).output_ids);
  const together = await Promise.all(prompts.slice(2).map((p) => generate(base, p, 12)));
  for (const j of together) out.push(j.output_ids);
  return out;
}

async function compareLayouts(model, name, { twoRanksPerNode = false } = {}) {
  const vocab = JSON.parse(fs.readFileSync(path.join(model, 'config.json'))).vocab_size;
  const layouts = [
    { tp: 1, label: '--tp-size 1' },
    { tp: 2, label: '--tp-size 2 (one process)' },
    { tp: 2, nnodes: 2, label: '--tp-size 2 --nnodes 2' },
    { tp: 2, ep: 2, nnodes: 2, label: '--tp-size 2 --ep-size 2 --nnodes 2' },
    { tp: 2, ep: 2, label: '--tp-size 2 --ep-size 2 (one process)' },
  ];
  // Two ranks per node (threads meeting before the exchange between nodes): compared with one
  // process of the same --tp-size only (four-way sums may round differently from --tp-size 1).
  if (twoRanksPerNode)
    layouts.push({ tp: 4, nnodes: 2, vsOnlySameLayout: true, label: '--tp-size 4 --nnodes 2' },
      { tp: 4, vsOnlySameLayout: true, label: '--tp-size 4 (one process)' });
  const results = [];
  for (const l of layouts) {
    const run = await launch(model, l);
    let got;
    try {
      got = await outputs(run.base, vocab);
    } catch (e) {
      check(false, `${name} ${l.label}: ${e.message}\n${run.nodes.map((n) => n.log).join('\n')}`);
      for (const n of run.nodes) n.proc.kill('SIGKILL');
      continue;
    }
    const codes = await stop(run);
    check(codes.every((c) => c === 0), `${name} ${l.label}: SIGTERM to node 0 ends every node with 0 (got ${codes.join(', ')})`);
    check(got.every((o) => o.length === 12), `${name} ${l.label}: 12 tokens per prompt`);
    results.push({ l, got });
  }
  const ref = results.find((r) => r.l.tp === 1);
  // The comparison means something only when the prompts lead to different continuations.
  check(ref && new Set(ref.got.map((o) => JSON.stringify(o))).size > 1, `${name}: the prompts give different outputs`);
  if (DEVICE !== 'cpu') console.log(`SKIPPED on ${DEVICE}: comparison with --tp-size 1 (reductions round differently)`);
  for (const r of DEVICE === 'cpu' ? results : []) {
    if (r === ref || r.l.vsOnlySameLayout) continue;
    const same = ref && JSON.stringify(r.got) === JSON.stringify(ref.got);
    check(same, `${name} ${r.l.label}: greedy outputs identical to --tp-size 1` +
      (same ? '' : `\n  tp1: ${JSON.stringify(ref?.got)}\n  got: ${JSON.stringify(r.got)}`));
  }
  // The multi-node runs against the one-process run of the same layout.
  const pairs = [['--tp-size 2 --nnodes 2', '--tp-size 2 (one process)'],
    ['--tp-size 2 --ep-size 2 --nnodes 2', '--tp-size 2 --ep-size 2 (one process)']];
  if (twoRanksPerNode) pairs.push(['--tp-size 4 --nnodes 2', '--tp-size 4 (one process)']);
  for (const [a, b] of pairs) {
    const x = results.find((r) => r.l.label === a), y = results.find((r) => r.l.label === b);
    check(x && y && JSON.stringify(x.got) === JSON.stringify(y.got), `${name} ${a}: identical to ${b}`);
  }
}

async function failureCases(model) {
  // Node 0 without its peer: the missing rank is named after --dist-timeout.
  {
    const addr = `127.0.0.1:${await freePort()}`;
    const t0 = Date.now();
    const n0 = start(serveArgs(model, ['--tp-size', '2', '--nnodes', '2', '--node-rank', '0', '--dist-init-addr', addr,
      '--dist-timeout', '3']), 'node 0 alone');
    const e = await Promise.race([n0.exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    const s = (Date.now() - t0) / 1000;
    check(e.code !== 0 && e.code !== 'timeout' && /node rank 1 of 2 missing/.test(n0.log) && s >= 2.5,
      `node 0 without node 1 exits non-zero after --dist-timeout 3 naming rank 1 (${e.code}, ${s.toFixed(1)} s): ${n0.log.trim().split('\n').pop()}`);
  }
  // Node 1 without node 0.
  {
    const addr = `127.0.0.1:${await freePort()}`;
    const n1 = start(serveArgs(model, ['--tp-size', '2', '--nnodes', '2', '--node-rank', '1', '--dist-init-addr', addr,
      '--dist-timeout', '2']), 'node 1 alone');
    const e = await Promise.race([n1.exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    check(e.code !== 0 && e.code !== 'timeout' && /node 0 at --dist-init-addr .* did not answer within --dist-timeout 2 s/.test(n1.log),
      `node 1 without node 0 exits non-zero saying node 0 did not answer (${e.code}): ${n1.log.trim().split('\n').pop()}`);
  }
  // Node 1 killed mid-serving.
  {
    const run = await launch(model, { tp: 2, nnodes: 2, timeout: 20 });
    const first = await generate(run.base, [1, 2, 3], 4).then(() => true, () => false);
    check(first, 'two nodes serve a request before node 1 is killed');
    const inflight = generate(run.base, [5, 6, 7, 8], 200).then((j) => JSON.stringify(j.meta_info.finish_reason), (e) => e.message);
    await new Promise((r) => setTimeout(r, 300));
    run.nodes[1].proc.kill('SIGKILL');
    const outcome = await inflight;
    check(!/"length"/.test(outcome), `the request in flight when node 1 dies does not complete normally: ${outcome}`);
    const health = await fetch(`${run.base}/health_generate`).then((r) => r.status, (e) => `unreachable (${e.cause?.code ?? e.message})`);
    check(health !== 200, `/health_generate fails once node 1 is gone: ${health}`);
    const e = await Promise.race([run.nodes[0].exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    check(e.code !== 0 && e.code !== 'timeout' && /node rank 1/.test(run.nodes[0].log),
      `node 0 exits non-zero naming node rank 1 (${e.code ?? e.signal}): ${run.nodes[0].log.split('\n').filter((l) => /node rank 1/.test(l)).pop()}`);
  }
  // Node 1 killed while idle: the next request fails at once, node 0 exits naming node rank 1.
  {
    const run = await launch(model, { tp: 2, nnodes: 2, timeout: 20 });
    run.nodes[1].proc.kill('SIGKILL');
    await run.nodes[1].exited;
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    const health = await fetch(`${run.base}/health_generate`).then((r) => r.status, (e) => `unreachable (${e.cause?.code ?? e.message})`);
    check(health !== 200 && Date.now() - t0 < 15000, `/health_generate fails when node 1 died while idle: ${health}`);
    const e = await Promise.race([run.nodes[0].exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    check(e.code !== 0 && e.code !== 'timeout' && /node rank 1 went away/.test(run.nodes[0].log),
      `node 0 exits non-zero naming node rank 1 after it died while idle (${e.code ?? e.signal})`);
  }
  // Node 0 killed: node 1 exits non-zero naming node 0.
  {
    const run = await launch(model, { tp: 2, nnodes: 2, timeout: 20 });
    run.nodes[0].proc.kill('SIGKILL');
    const e = await Promise.race([run.nodes[1].exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 30000))]);
    check(e.code !== 0 && e.code !== 'timeout' && /lost node 0/.test(run.nodes[1].log),
      `node 1 exits non-zero when node 0 goes away (${e.code}): ${run.nodes[1].log.trim().split('\n').pop()}`);
  }
  // What multi-node does not support is refused with the reason.
  {
    const r = spawnSync(dsserve, serveArgs(model, ['--tp-size', '3', '--nnodes', '2', '--dist-init-addr', '127.0.0.1:1']), { encoding: 'utf8' });
    check(r.status !== 0 && /multiple of --nnodes/.test(r.stderr), '--tp-size 3 --nnodes 2 is refused');
    const g = spawnSync(dsserve, ['generate', '--model-path', model, '--device', 'cpu', '--input-ids', '1,2', '--nnodes', '2'], { encoding: 'utf8' });
    check(g.status !== 0 && /generate runs on one node/.test(g.stderr + g.stdout), '`generate --nnodes 2` is refused saying it runs on one node');
  }
}

const tiny = path.join(work, 'tiny');
const init = spawnSync(dsserve, ['init-tiny-model', tiny, '--fp8', '--seed', '3'], { stdio: 'inherit' });
if (init.status !== 0) { console.error('init-tiny-model failed'); process.exit(1); }
await compareLayouts(tiny, 'random tiny model', { twoRanksPerNode: DEVICE === 'cpu' || Number(process.env.DSSERVE_E2E_GPUS) >= 4 });
const fixtures = process.env.DSSERVE_FIXTURES || path.join(repo, '..', 'shared', 'fixtures');
for (const f of ['tiny-v3-fp8', 'tiny-v3-bf16']) {
  const dir = path.join(fixtures, f);
  if (fs.existsSync(path.join(dir, 'config.json'))) await compareLayouts(dir, `fixture ${f}`);
  else console.log(`SKIPPED: fixture ${f} absent (set $DSSERVE_FIXTURES or provide ../shared/fixtures)`);
}
await failureCases(tiny);
if (failures) {
  console.error(`multi-node e2e: ${failures} check(s) failed`);
  process.exit(1);
}
console.log('multi-node e2e: all checks passed');
