// Raw HTTP against the native and operational routes: /generate (single, batch, ids, logprobs,
// streaming), /health, /health_generate, /metrics, /get_model_info, /get_server_info,
// /flush_cache, and bad input: 401, 413, malformed JSON, wrong types, 404; a client that
// disconnects mid-stream has its request aborted.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import { BASE, API_KEY, post, get, parseSSE, expectErrorBody } from './common.mjs';

test('/generate: text, meta_info', async () => {
  const r = await post('/generate', { text: 'The capital of France is', sampling_params: { max_new_tokens: 5, temperature: 0 } });
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(typeof j.text, 'string');
  assert.equal(j.output_ids.length, 5);
  const m = j.meta_info;
  assert.deepEqual(m.finish_reason, { type: 'length', length: 5 });
  assert.equal(m.completion_tokens, 5);
  assert.ok(m.prompt_tokens > 0);
  assert.equal(typeof m.cached_tokens, 'number');
  assert.ok(m.e2e_latency > 0);
});

test('/generate: batch of input_ids with per-item sampling and logprobs', async () => {
  const r = await post('/generate', {
    input_ids: [[0, 1000, 2000], [0, 3000]],
    sampling_params: [{ max_new_tokens: 2 }, { max_new_tokens: 3 }],
    return_logprob: true, logprob_start_len: 0, top_logprobs_num: 2, return_text_in_logprobs: true,
  });
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.length, 2);
  assert.equal(j[0].meta_info.completion_tokens, 2);
  assert.equal(j[1].meta_info.completion_tokens, 3);
  const m = j[1].meta_info;
  assert.equal(m.output_token_logprobs.length, 3);
  assert.equal(m.output_token_logprobs[0].length, 3);
  assert.equal(m.input_token_logprobs.length, 2);
  assert.equal(m.output_top_logprobs[0].length, 2);
});

test('/generate: streaming ends with a finish reason and [DONE]', async () => {
  const r = await post('/generate', { text: 'Hi', sampling_params: { max_new_tokens: 4 }, stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/event-stream/);
  const events = parseSSE(await r.text());
  assert.equal(events[events.length - 1], '[DONE]');
  const last = events[events.length - 2];
  assert.equal(last.meta_info.completion_tokens, 4);
  assert.equal(last.meta_info.finish_reason.type, 'length');
});

test('/health, /health_generate, /get_model_info, /get_server_info, /flush_cache, /v1/models', async () => {
  assert.equal((await fetch(`${BASE}/health`)).status, 200);  // open without the key
  assert.equal((await fetch(`${BASE}/health_generate`)).status, 200);
  const info = await (await get('/get_model_info')).json();
  assert.equal(info.is_generation, true);
  const s = await (await get('/get_server_info')).json();
  assert.equal(s.port, 0);
  assert.equal(s.api_key, '<set>');
  assert.equal(typeof s.internal_states[0].num_running_reqs, 'number');
  assert.equal((await post('/flush_cache', {})).status, 200);
  const models = await (await get('/v1/models')).json();
  assert.equal(models.data[0].id, 'tiny-v3');
});

test('/metrics: Prometheus text with the serving metrics', async () => {
  const r = await fetch(`${BASE}/metrics`);
  assert.equal(r.status, 200);
  const t = await r.text();
  for (const name of ['sglang:num_running_reqs', 'sglang:num_queue_reqs', 'sglang:token_usage', 'sglang:cache_hit_rate',
    'sglang:prompt_tokens_total', 'sglang:generation_tokens_total', 'sglang:time_to_first_token_seconds_bucket',
    'sglang:time_per_output_token_seconds_bucket', 'sglang:e2e_request_latency_seconds_count'])
    assert.ok(t.includes(name), `${name} missing`);
});

test('401 without or with a wrong bearer token', async () => {
  for (const key of [null, 'nope']) {
    const r = await post('/generate', { text: 'x' }, { key });
    assert.equal(r.status, 401);
    expectErrorBody(assert, await r.json());
  }
});

test('413 for a body over the limit; the connection pool keeps working', async () => {
  const r = await post('/generate', JSON.stringify({ text: 'a'.repeat(2 << 20) }), { raw: true });
  assert.equal(r.status, 413);
  expectErrorBody(assert, await r.json());
  assert.equal((await fetch(`${BASE}/health`)).status, 200);
});

test('400 for malformed JSON, wrong types, bad sampling values; 404 and 405', async () => {
  const cases = [
    ['/generate', '{"text": "x",', true],
    ['/generate', { text: 5 }],
    ['/generate', { text: 'x', sampling_params: { temperature: 'hot' } }],
    ['/generate', { text: 'x', sampling_params: { top_p: 0 } }],
    ['/generate', { text: 'x', sampling_params: { max_new_tokens: -1 } }],
    ['/generate', { text: 'x', sampling_params: { unknown_knob: 1 } }],
    ['/generate', { input_ids: [0, 99999999] }],
    ['/v1/completions', { prompt: 'x', logprobs: 9 }],
    ['/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'structural_tag' } }],
    ['/v1/chat/completions', [1, 2]],
  ];
  for (const [route, body, raw] of cases) {
    const r = await post(route, raw ? body : JSON.stringify(body), { raw: true });
    assert.equal(r.status, 400, `${route} ${JSON.stringify(body)}`);
    expectErrorBody(assert, await r.json());
  }
  assert.equal((await get('/no/such/route')).status, 404);
  assert.equal((await get('/generate')).status, 405);
});

test('a client disconnecting mid-stream has its request aborted', async () => {
  const body = JSON.stringify({ text: 'Tell me a long story', sampling_params: { max_new_tokens: 400, ignore_eos: true }, stream: true });
  const url = new URL(`${BASE}/generate`);
  await new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: '/generate', method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, 'content-length': Buffer.byteLength(body) } }, (res) => {
      let n = 0;
      res.on('data', () => { if (++n === 3) { req.destroy(); resolve(); } });
      res.on('error', () => {});
    });
    req.on('error', () => {});
    req.end(body);
    setTimeout(() => reject(new Error('no stream data')), 30000);
  });
  // The engine must drop the request: no running or queued requests shortly after.
  let running = -1;
  for (let i = 0; i < 50; i++) {
    const s = await (await get('/get_server_info')).json();
    running = s.internal_states[0].num_running_reqs + s.internal_states[0].num_queue_reqs;
    if (running === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(running, 0, 'the aborted request is still running');
});
