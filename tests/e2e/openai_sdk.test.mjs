// The official OpenAI Node SDK against dsserve: chat (plain, streaming, n, logprobs, stop, seed,
// SGLang extra fields), completions (string, ids, list, echo, logprobs, streaming), tools, reasoning
// content, usage, and the SDK's view of errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, MODEL, OpenAI, BASE } from './common.mjs';

const messages = [{ role: 'user', content: 'Say hello.' }];

test('chat completion: shape, usage, reasoning_content', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.ok(['length', 'stop'].includes(c.finish_reason));
  // --reasoning-parser deepseek-r1: without </think>, everything is reasoning.
  assert.equal(typeof c.message.reasoning_content, 'string');
  assert.equal(r.usage.completion_tokens, 6);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('chat: greedy is deterministic and the prefix cache reports cached tokens', async () => {
  const a = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 5, temperature: 0 });
  const b = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 5, temperature: 0 });
  assert.equal(a.choices[0].message.reasoning_content, b.choices[0].message.reasoning_content);
  assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0, 'second identical prompt should hit the prefix cache');
});

test('chat: seed makes sampling reproducible; n gives n choices', async () => {
  const req = { model: MODEL, messages, max_tokens: 5, temperature: 1, seed: 42, n: 3 };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.message.reasoning_content), b.choices.map((c) => c.message.reasoning_content));
  assert.equal(a.usage.completion_tokens, 15);
});

test('chat: max_completion_tokens, logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 4, logprobs: true, top_logprobs: 3, temperature: 0 });
  assert.equal(r.usage.completion_tokens, 4);
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 4);
  for (const e of lp) {
    assert.equal(typeof e.token, 'string');
    assert.ok(e.logprob <= 0);
    assert.ok(Array.isArray(e.bytes));
    assert.equal(e.top_logprobs.length, 3);
  }
});

test('chat: SGLang extra fields are accepted, separate_reasoning=false gives plain content', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 4, top_k: 5, min_p: 0.01, repetition_penalty: 1.1, ignore_eos: true,
    skip_special_tokens: false, separate_reasoning: false, stream_reasoning: true,
  });
  assert.equal(r.choices[0].message.reasoning_content, null);
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
});

test('chat: a stop string ends the output with finish_reason stop', async () => {
  // Find the greedy output first, then stop on a piece of it.
  const full = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, separate_reasoning: false });
  const text = full.choices[0].message.content;
  const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
  if (stop.trim().length === 0) return;
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, separate_reasoning: false, stop: [stop] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].matched_stop, stop);
  assert.ok(!r.choices[0].message.content.includes(stop));
  assert.ok(text.startsWith(r.choices[0].message.content));
});

test('streaming chat: role first, deltas, finish_reason, usage chunk, then done', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 6);
  const fin = chunks.filter((c) => c.choices.length && c.choices[0].finish_reason);
  assert.equal(fin.length, 1);
  assert.equal(fin[0].choices[0].finish_reason, 'length');
  const streamed = chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join('');
  const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0 });
  assert.equal(streamed, whole.choices[0].message.reasoning_content);
  for (const c of chunks) { assert.equal(c.object, 'chat.completion.chunk'); assert.equal(c.id, chunks[0].id); }
});

test('chat with tools: the request is accepted and the answer well-formed', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'auto', max_tokens: 5 });
  const c = r.choices[0];
  assert.ok(['length', 'stop', 'tool_calls'].includes(c.finish_reason));
  if (c.message.tool_calls) for (const t of c.message.tool_calls) { assert.equal(t.type, 'function'); JSON.parse(t.function.arguments); }
  const s = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools, max_tokens: 5, stream: true });
  let n = 0;
  for await (const chunk of s) n += chunk.choices.length;
  assert.ok(n > 0);
});

test('chat: a conversation with assistant tool_calls and a tool result renders', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 3,
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
    ],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }],
  });
  assert.equal(r.choices.length, 1);
});

test('completions: string, token ids, a list of prompts, echo and logprobs', async () => {
  const a = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
  assert.equal(a.object, 'text_completion');
  assert.equal(a.usage.completion_tokens, 5);
  const b = await client.completions.create({ model: MODEL, prompt: [0, 100, 200, 300], max_tokens: 3 });
  assert.equal(b.usage.prompt_tokens, 4);
  const c = await client.completions.create({ model: MODEL, prompt: ['one', 'two', 'three'], max_tokens: 2, n: 2 });
  assert.equal(c.choices.length, 6);
  assert.deepEqual(c.choices.map((x) => x.index), [0, 1, 2, 3, 4, 5]);
  const d = await client.completions.create({ model: MODEL, prompt: 'Echo me', max_tokens: 3, echo: true, logprobs: 2 });
  assert.ok(d.choices[0].text.startsWith('Echo me'));
  const lp = d.choices[0].logprobs;
  assert.equal(lp.tokens.length, lp.token_logprobs.length);
  assert.ok(lp.tokens.length >= 3 + 2);
  assert.equal(Object.keys(lp.top_logprobs[lp.top_logprobs.length - 1]).length, 2);
});

test('streaming completions with usage', async () => {
  const s = await client.completions.create({ model: MODEL, prompt: 'Hello', max_tokens: 4, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const c of s) chunks.push(c);
  assert.equal(chunks[chunks.length - 1].usage.completion_tokens, 4);
  assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason === 'length').length, 1);
});

test('models list', async () => {
  const m = await client.models.list();
  assert.deepEqual(m.data.map((x) => x.id), [MODEL]);
});

test('errors through the SDK: 400 with param, 401 without the key', async () => {
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages, temperature: 5 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.status, 400);
    assert.equal(e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (e) => e.status === 400);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages, max_tokens: 100000 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.code, 'context_length_exceeded');
    return true;
  });
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x '.repeat(600), max_tokens: 1 }), (e) => e.status === 400);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages, bogus_field: 1 }), (e) => e.status === 400 && e.param === 'bogus_field');
  const anon = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(anon.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});
