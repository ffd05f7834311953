// Shared by the e2e tests: the server's address and key (set by run_e2e.mjs), the official OpenAI
// SDK client, and small fetch helpers.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

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
