// The OpenAI surface as the official SDK meets it: /v1/models/{id} (and 404 for another id),
// system_fingerprint on completions and chunks, assistant messages without a null tool_calls, and
// /v1/responses (instructions, input as a string or messages, max_output_tokens, usage; streamed
// events through the SDK's stream helper).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, MODEL, OpenAI, post } from './common.mjs';

test('models.retrieve: the served model by id, 404 for another', async () => {
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError &&
                       e.code === 'model_not_found');
});

test('chat: system_fingerprint in the completion and in every chunk', async () => {
  const c = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
  assert.match(c.system_fingerprint, /^fp_[0-9a-f]+$/);
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }],
                                                        max_tokens: 4, stream: true });
  for await (const chunk of stream) assert.equal(chunk.system_fingerprint, c.system_fingerprint);
});

test('chat: no tool call, no tool_calls field (never null)', async () => {
  const r = await post('/v1/chat/completions', {
    messages: [{ role: 'user', content: 'Say hi' }], max_tokens: 4, temperature: 0,
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }],
  });
  const j = await r.json();
  const msg = j.choices[0].message;
  if (j.choices[0].finish_reason !== 'tool_calls') assert.ok(!('tool_calls' in msg), JSON.stringify(msg));
  for (const choice of j.choices) assert.notEqual(choice.message.tool_calls, null);
});

test('responses: text with instructions and usage', async () => {
  const r = await client.responses.create({ model: MODEL, instructions: 'Answer briefly.', input: 'Hello!',
                                            max_output_tokens: 8 });
  assert.equal(r.object, 'response');
  assert.ok(['completed', 'incomplete'].includes(r.status));
  if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.equal(typeof r.output_text, 'string');
  assert.ok(r.usage.output_tokens >= 1 && r.usage.output_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
});

test('responses: input as messages, streamed', async () => {
  const stream = client.responses.stream({
    model: MODEL, max_output_tokens: 6,
    input: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: [{ type: 'input_text', text: 'Hi' }] }],
  });
  let deltas = '';
  const types = [];
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.output_text.delta') deltas += e.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(types[0], 'response.created');
  assert.ok(types.includes('response.output_text.done'));
  assert.equal(final.output_text, deltas);
  assert.ok(final.usage.output_tokens >= 1);
});

test('responses: unsupported features are 400s naming the field', async () => {
  await assert.rejects(client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_1' }),
                       (e) => e.status === 400 && e.param === 'previous_response_id');
  await assert.rejects(client.responses.create({ model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }),
                       (e) => e.status === 400);
});
