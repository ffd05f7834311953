// Requests that used to crash, leak or mislead, against the shared server: fan-out beyond what the
// server can queue is a 400 naming the limit, and fifty of them leave the server's memory where it
// was; duplicate and batch-shared request ids are 400s; a number beyond a double is a 400; error
// bodies carry OpenAI's shape (code a string or null); `Expect: 100-continue` is answered; an
// HTTP/1.0 client gets its stream unchunked, ended by the close.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BASE, API_KEY, post, get, parseSSE, expectErrorBody, rawExchange, rssBytes } from './common.mjs';

const PID = Number(process.env.DSSERVE_PID);

test('fan-out beyond the queue is a 400 naming the limit', async () => {
  let r = await post('/v1/completions', { prompt: Array(1000).fill('hi'), n: 128, max_tokens: 1 });
  assert.equal(r.status, 400);
  let j = await r.json();
  expectErrorBody(assert, j);
  assert.equal(j.error.code, 'too_many_sequences');
  assert.equal(j.error.param, 'n');
  assert.match(j.error.message, /128000 sequences \(1000 prompts x n 128\).*--max-queued-requests/);
  r = await post('/generate', { text: Array(50000).fill('a'), sampling_params: { max_new_tokens: 1 } });
  assert.equal(r.status, 400);
  j = await r.json();
  assert.equal(j.error.code, 'too_many_sequences');
  assert.equal(j.error.param, 'text');
});

test('fifty rejected fan-out requests leave the memory within 10% of where it was', async () => {
  const body = { prompt: Array(1000).fill('hi'), n: 128, max_tokens: 1 };
  const batch = { text: Array(50000).fill('a'), sampling_params: { max_new_tokens: 1 } };
  for (let i = 0; i < 5; i++) {  // allocator warm-up, both kinds of request (the server's threads each get an arena)
    await (await post('/v1/completions', body)).text();
    await (await post('/generate', batch)).text();
  }
  const before = await rssBytes(PID);
  for (let i = 0; i < 50; i++) {
    const r = await post('/v1/completions', body);
    assert.equal(r.status, 400);
    await r.text();
  }
  for (let i = 0; i < 5; i++) {
    const r = await post('/generate', batch);
    assert.equal(r.status, 400);
    await r.text();
  }
  const after = await rssBytes(PID);
  assert.ok(after <= before * 1.1, `RSS grew from ${before} to ${after} bytes`);
  assert.equal((await get('/health')).status, 200);
});

test('a request id in flight, or shared by a batch, is refused', async () => {
  const first = post('/generate', { text: 'long', rid: 'dup-rid-1', stream: true,
                                    sampling_params: { max_new_tokens: 200, ignore_eos: true } });
  const r1 = await first;
  assert.equal(r1.status, 200);
  const reader = r1.body.getReader();
  await reader.read();  // the first event: the request is in flight
  const r2 = await post('/generate', { text: 'again', rid: 'dup-rid-1', sampling_params: { max_new_tokens: 1 } });
  assert.equal(r2.status, 400);
  const j2 = await r2.json();
  assert.equal(j2.error.code, 'duplicate_request_id');
  assert.equal(j2.error.param, 'rid');
  await reader.cancel();
  const r3 = await post('/generate', { text: ['a', 'b'], rid: 'shared', sampling_params: { max_new_tokens: 1 } });
  assert.equal(r3.status, 400);
  assert.equal((await r3.json()).error.param, 'rid');
  const r4 = await post('/generate', { text: ['a', 'b'], rid: ['same', 'same'], sampling_params: { max_new_tokens: 1 } });
  assert.equal(r4.status, 400);
  assert.equal((await r4.json()).error.code, 'duplicate_request_id');
});

test('numbers beyond a double are a 400, not a 500', async () => {
  for (const [route, text] of [['/v1/chat/completions', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}'],
                               ['/v1/completions', '{"prompt": "x", "max_tokens": 1e400}'],
                               ['/generate', '{"text": "x", "sampling_params": {"temperature": -1e999}}'],
                               ['/v1/completions', '{"prompt": "x", "max_tokens": 1e300}']]) {
    const r = await post(route, text, { raw: true });
    assert.equal(r.status, 400, `${route} ${text}`);
    expectErrorBody(assert, await r.json());
  }
});

test('error bodies: code is a string or null, with type and param', async () => {
  const cases = [
    [await post('/v1/chat/completions', { messages: [] }), 400],
    [await post('/v1/nope', {}), 404],
    [await post('/generate', { text: 'x' }, { key: 'wrong' }), 401],
    [await get('/v1/models/no-such-model'), 404],
  ];
  for (const [r, status] of cases) {
    assert.equal(r.status, status);
    const j = await r.json();
    expectErrorBody(assert, j);
    assert.ok(j.error.code === null || typeof j.error.code === 'string', `code ${JSON.stringify(j.error.code)}`);
    assert.equal(typeof j.error.type, 'string');
  }
});

function auth() { return API_KEY ? `authorization: Bearer ${API_KEY}\r\n` : ''; }

test('Expect: 100-continue is answered before the body', async () => {
  const body = JSON.stringify({ text: 'Hi', sampling_params: { max_new_tokens: 2 } });
  const head = `POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${auth()}` +
               `content-length: ${body.length}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n`;
  const r = await rawExchange(BASE, [head, body], { waitFor: [/100 Continue/, body] });
  assert.match(r.data, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
  assert.match(r.data, /"output_ids"/);
});

test('an HTTP/1.0 client gets its stream without chunked encoding', async () => {
  const body = JSON.stringify({ text: 'Hi', stream: true, sampling_params: { max_new_tokens: 4 } });
  const head = `POST /generate HTTP/1.0\r\ncontent-type: application/json\r\n${auth()}content-length: ${body.length}\r\n\r\n`;
  const r = await rawExchange(BASE, [head + body]);
  assert.ok(r.closed, 'the server ends an HTTP/1.0 stream by closing');
  const split = r.data.indexOf('\r\n\r\n');
  const headers = r.data.slice(0, split).toLowerCase();
  assert.match(headers, /^http\/1\.1 200 ok/);
  assert.doesNotMatch(headers, /transfer-encoding/);
  const events = parseSSE(r.data.slice(split + 4));
  assert.equal(events.at(-1), '[DONE]');
  assert.ok(events.length >= 2);
});

test('completions echo: text_offset counts no BOS', async () => {
  const r = await post('/v1/completions', { prompt: 'Hello world', echo: true, logprobs: 1, max_tokens: 3 });
  assert.equal(r.status, 200);
  const c = (await r.json()).choices[0];
  assert.ok(c.text.startsWith('Hello world'));
  const { tokens, text_offset } = c.logprobs;
  assert.equal(text_offset[0], 0);
  assert.equal(text_offset[1], 0, 'the first prompt word starts the text');
  for (let i = 1; i <= 2; i++)  // the prompt's words (generated tokens may be parts of characters)
    assert.equal(c.text.slice(text_offset[i], text_offset[i] + tokens[i].length), tokens[i], `token ${i}`);
  assert.deepEqual(tokens.slice(1, 3), ['Hello', ' world']);
});
