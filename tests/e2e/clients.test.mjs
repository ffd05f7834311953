// The server through the client libraries users reach for: the Vercel AI SDK (`ai` +
// `@ai-sdk/openai`: the provider's default model speaks the Responses API, `.chat()` chat
// completions) and LangChain JS (`@langchain/openai`: chat completions, the Responses API with
// useResponsesApi, and structured output by function calling, which a null tool_calls broke).
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { BASE, API_KEY, MODEL } from './common.mjs';

const nm = process.env.DSSERVE_NODE_MODULES;
const load = (p) => import(pathToFileURL(path.join(nm, p)).href);
const { generateText, streamText } = await load('ai/dist/index.mjs');
const { createOpenAI } = await load('@ai-sdk/openai/dist/index.mjs');
const { ChatOpenAI } = await load('@langchain/openai/dist/index.js');
const { z } = await load('zod/index.js');

const openai = createOpenAI({ baseURL: `${BASE}/v1`, apiKey: API_KEY });

test('AI SDK: generateText through the Responses API (the provider default)', async () => {
  const r = await generateText({ model: openai(MODEL), prompt: 'Hello!', maxOutputTokens: 8, maxRetries: 0 });
  assert.equal(typeof r.text, 'string');
  assert.ok(r.usage.outputTokens >= 1 && r.usage.outputTokens <= 8, JSON.stringify(r.usage));
  assert.ok(['stop', 'length'].includes(r.finishReason), r.finishReason);
});

test('AI SDK: streamText through the Responses API, with a system prompt', async () => {
  const r = streamText({ model: openai(MODEL), system: 'Be brief.', prompt: 'Hi', maxOutputTokens: 6, maxRetries: 0 });
  let text = '';
  for await (const part of r.textStream) text += part;
  assert.equal(text, await r.text);
  assert.ok((await r.usage).outputTokens >= 1);
});

test('AI SDK: chat completions with .chat()', async () => {
  const r = await generateText({ model: openai.chat(MODEL), prompt: 'Hello!', maxOutputTokens: 6, maxRetries: 0 });
  assert.equal(typeof r.text, 'string');
  assert.ok(r.usage.outputTokens >= 1);
});

const lc = (extra = {}) => new ChatOpenAI({ model: MODEL, apiKey: API_KEY, configuration: { baseURL: `${BASE}/v1` },
                                           maxTokens: 6, maxRetries: 0, ...extra });

test('LangChain: invoke and stream over chat completions', async () => {
  const m = await lc().invoke('Hello!');
  assert.equal(typeof m.content, 'string');
  assert.ok(m.usage_metadata.output_tokens >= 1);
  let text = '';
  for await (const chunk of await lc().stream('Hi')) text += chunk.content;
  assert.equal(typeof text, 'string');
});

test('LangChain: the Responses API (useResponsesApi)', async () => {
  const m = await lc({ useResponsesApi: true }).invoke('Hello!');
  assert.ok(m.usage_metadata.output_tokens >= 1, JSON.stringify(m.usage_metadata));
});

test('LangChain: withStructuredOutput by function calling does not throw on a plain reply', async () => {
  // A reply without tool calls parses to nothing; a null tool_calls made the parser throw
  // ("Cannot read properties of null (reading 'map')").
  const schema = z.object({ city: z.string() });
  const r = await lc().withStructuredOutput(schema, { method: 'functionCalling' }).invoke('Where is the Eiffel Tower?');
  assert.ok(r === undefined || r === null || typeof r.city === 'string', JSON.stringify(r));
});
