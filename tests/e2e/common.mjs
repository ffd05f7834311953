// Shared by the e2e tests: the server's address and key (set by run_e2e.mjs), the official OpenAI
// SDK client, and small fetch helpers.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { serve } from '../serve_process.mjs';

export const BASE = process.env.DSSERVE_URL;
export const API_KEY = process.env.DSSERVE_API_KEY;
if (!BASE) throw new Error('DSSERVE_URL is not set: run through run_e2e.mjs');
const { default: OpenAI } = await import(pathToFileURL(path.join(process.env.DSSERVE_NODE_MODULES, 'openai/index.mjs')).href);
export { OpenAI };
export const MODEL = 'tiny-v3';
export const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120000 });

export async function post(route, body, { key = API_KEY, raw = false } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  return fetch(`${BASE}${route}`, { method: 'POST', headers, body: raw ? body : JSON.stringify(body) });
}

export async function get(route, { key = API_KEY } = {}) {
  const headers = {};
  if (key) headers.authorization = `Bearer ${key}`;
  return fetch(`${BASE}${route}`, { headers });
}

// Parses an SSE body into the JSON of each `data:` event (and the literal "[DONE]").
export function parseSSE(text) {
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => {
    const d = e.slice(6);
    return d === '[DONE]' ? d : JSON.parse(d);
  });
}

export function expectErrorBody(assert, body) {
  assert.ok(body.error, `expected an error body, got ${JSON.stringify(body)}`);
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(k in body.error, `error.${k} missing`);
  assert.equal(typeof body.error.message, 'string');
}

// Starts another `dsserve serve` on the run's tiny model (127.0.0.1, a free port) with these
// flags; resolves to { url, proc, exited, log(), stop() } once it listens (tests/serve_process.mjs).
// `wrap` prefixes the command (e.g. ['prlimit', '--nofile=64']).
export async function startServer(flags, { wrap = [], readyTimeoutMs = 60000 } = {}) {
  const args = ['--model-path', process.env.DSSERVE_MODEL_DIR, '--device', process.env.DSSERVE_E2E_DEVICE || 'cpu',
    '--host', '127.0.0.1', '--port', '0', '--served-model-name', 'tiny-v3', ...flags];
  return serve(process.env.DSSERVE_BIN, args, { wrap, readyTimeoutMs });
}

// One raw HTTP exchange over a socket: writes `parts` (Buffers or strings) in order, `gapMs`
// apart, and resolves with everything the server sent until it closed (or timeoutMs passed).
export async function rawExchange(url, parts, { gapMs = 0, timeoutMs = 30000, waitFor = null } = {}) {
  const net = await import('node:net');
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    const chunks = [];
    let closed = false;
    const timer = setTimeout(() => { sock.destroy(); resolve({ data: Buffer.concat(chunks).toString('latin1'), closed: false }); }, timeoutMs);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => { closed = true; clearTimeout(timer); resolve({ data: Buffer.concat(chunks).toString('latin1'), closed }); });
    sock.on('connect', async () => {
      for (const p of parts) {
        if (waitFor) {  // e.g. wait for "100 Continue" before the body
          const [pattern, before] = waitFor;
          if (p === before) {
            const t0 = Date.now();
            while (!Buffer.concat(chunks).toString('latin1').match(pattern) && Date.now() - t0 < 5000)
              await new Promise((r) => setTimeout(r, 10));
          }
        }
        if (sock.destroyed) break;
        sock.write(p);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

// The server's resident memory in bytes (Linux /proc).
export async function rssBytes(pid) {
  const fs = await import('node:fs');
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) * 1024;
}
