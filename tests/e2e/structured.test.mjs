// Structured output end to end on the random-weight tiny model (noise, so only the grammar makes an
// output valid): 1,000 seeded /generate requests over 30 JSON schemas (greedy and temperature 1)
// validated by ajv; 20 regexes checked with Node's RegExp; 10 EBNF grammars checked by an Earley
// parser (nearley) built here from the grammar text; the OpenAI SDK's response_format with a JSON
// schema, streaming and not; forced tool calls; and the 400s for bad grammars with their position.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';

import { client, MODEL, post } from './common.mjs';
import { GRAMMARS, REGEXES, SCHEMAS } from './structured_cases.mjs';
import { gbnfParser } from './gbnf_parser.mjs';

const require = createRequire(path.resolve(process.env.DSSERVE_NODE_MODULES, 'x.js'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

// Runs fn over items with at most `limit` in flight; results in order.
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

async function generate(sampling_params, text) {
  const r = await post('/generate', { text, sampling_params });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  return body;
}

test('1,000 seeded requests over 30 JSON schemas all validate (greedy and temperature 1)', async () => {
  const validators = SCHEMAS.map((s) => ajv.compile(s));
  const cases = Array.from({ length: 1000 }, (_, i) => i);
  const failures = [];
  let lengthStops = 0;
  await pool(cases, 128, async (i) => {
    const k = i % SCHEMAS.length;
    const greedy = i % 2 === 0;
    const sp = { json_schema: JSON.stringify(SCHEMAS[k]), max_new_tokens: 256, temperature: greedy ? 0 : 1, sampling_seed: i };
    const out = await generate(sp, `Request ${i}: answer in JSON.`);
    if (out.meta_info.finish_reason.type !== 'stop') lengthStops++;
    let value;
    try {
      value = JSON.parse(out.text);
    } catch (e) {
      failures.push(`#${i} schema ${k}: not JSON (${out.meta_info.finish_reason.type}): ${out.text}`);
      return;
    }
    if (!validators[k](value)) failures.push(`#${i} schema ${k}: ${out.text} -> ${ajv.errorsText(validators[k].errors)}`);
  });
  assert.deepEqual(failures, [], `${failures.length} of 1000 invalid`);
  assert.equal(lengthStops, 0);
});

test('20 regexes: every output matches in Node', async () => {
  const runs = REGEXES.flatMap((re, k) => [0, 1, 2].map((j) => ({ re, k, j })));
  const failures = [];
  await pool(runs, 60, async ({ re, k, j }) => {
    const out = await generate({ regex: re, max_new_tokens: 64, temperature: j === 0 ? 0 : 1, sampling_seed: 100 + j },
                               `Regex ${k}.${j}:`);
    if (!new RegExp(`^(?:${re})$`, 'u').test(out.text)) failures.push(`${re} (${j}): ${JSON.stringify(out.text)} (${out.meta_info.finish_reason.type})`);
  });
  assert.deepEqual(failures, []);
});

test('10 EBNF grammars: every output parses with a parser built from the grammar', async () => {
  const parsers = GRAMMARS.map((g) => gbnfParser(g));
  const runs = GRAMMARS.flatMap((g, k) => [0, 1, 2].map((j) => ({ g, k, j })));
  const failures = [];
  await pool(runs, 30, async ({ g, k, j }) => {
    const out = await generate({ ebnf: g, max_new_tokens: 96, temperature: j === 0 ? 0 : 1, sampling_seed: 200 + j },
                               `Grammar ${k}.${j}:`);
    if (!parsers[k](out.text)) failures.push(`grammar ${k} (${j}): ${JSON.stringify(out.text)} (${out.meta_info.finish_reason.type})`);
  });
  assert.deepEqual(failures, []);
});

test('the Earley checker rejects what the grammar does not produce', () => {
  const p = gbnfParser(GRAMMARS[0]);
  assert.ok(p('[1,20,300]'));
  assert.ok(!p('[01]'));
  assert.ok(!p('[1,2,3,4,5]'));
});

const personSchema = {
  type: 'object',
  properties: { name: { type: 'string', minLength: 1, maxLength: 10 }, age: { type: 'integer', minimum: 0, maximum: 150 },
                email: { type: 'string', format: 'email' } },
  required: ['name', 'age', 'email'], additionalProperties: false,
};
const responseFormat = { type: 'json_schema', json_schema: { name: 'person', schema: personSchema, strict: true } };
const validatePerson = ajv.compile(personSchema);

test('OpenAI SDK: response_format json_schema, not streaming (n = 2)', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Describe a person.' }], response_format: responseFormat,
    max_tokens: 128, temperature: 1, seed: 5, n: 2, separate_reasoning: false,
  });
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, 'stop');
    const v = JSON.parse(c.message.content);
    assert.ok(validatePerson(v), `${c.message.content}: ${ajv.errorsText(validatePerson.errors)}`);
  }
});

test('OpenAI SDK: response_format json_schema, streaming', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Describe a person.' }], response_format: responseFormat,
    max_tokens: 128, temperature: 0, stream: true, separate_reasoning: false,
  });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'stop');
  assert.ok(validatePerson(JSON.parse(text)), text);
});

test('OpenAI SDK: response_format json_object gives an object whenever it stops', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Any JSON object.' }], response_format: { type: 'json_object' },
    max_tokens: 96, temperature: 0, separate_reasoning: false,
  });
  const c = r.choices[0];
  if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.message.content), 'object');
  else assert.equal(c.finish_reason, 'length');
  assert.ok(c.message.content.startsWith('{'), c.message.content);
});

const tools = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', minLength: 1, maxLength: 8 }, unit: { enum: ['C', 'F'] } }, required: ['city', 'unit'], additionalProperties: false } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false } } },
];
const toolValidators = Object.fromEntries(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));

test('tool_choice "required" and a named function force valid DeepSeek-V3 tool calls', async () => {
  const runs = [];
  for (const [tool_choice, names] of [['required', ['get_weather', 'add']], [{ type: 'function', function: { name: 'add' } }, ['add']]])
    for (const seed of [1, 2]) runs.push({ tool_choice, names, seed });
  await Promise.all(runs.map(async ({ tool_choice, names, seed }) => {
    {
      const r = await client.chat.completions.create({
        model: MODEL, messages: [{ role: 'user', content: 'Use a tool.' }], tools, tool_choice,
        max_tokens: 256, temperature: 1, seed, separate_reasoning: false, parallel_tool_calls: false,
      });
      const c = r.choices[0];
      assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(c));
      assert.equal(c.message.tool_calls.length, 1);
      const call = c.message.tool_calls[0];
      assert.ok(names.includes(call.function.name), call.function.name);
      const args = JSON.parse(call.function.arguments);
      assert.ok(toolValidators[call.function.name](args), call.function.arguments);
    }
  }));
});

test('SGLang fields on the OpenAI routes; n > 1 on /generate batches', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Code:', max_tokens: 16, temperature: 1, seed: 3, regex: '[A-Z]{3}-\\d{2}' });
  assert.match(r.choices[0].text, /^[A-Z]{3}-\d{2}$/);
  const out = await generate({ json_schema: JSON.stringify(SCHEMAS[2]), max_new_tokens: 64, temperature: 1 }, ['a', 'b', 'c']);
  assert.equal(out.length, 3);
  const v = ajv.compile(SCHEMAS[2]);
  for (const o of out) assert.ok(v(JSON.parse(o.text)), o.text);
});

test('stop strings still cut constrained output', async () => {
  const out = await generate({ regex: 'ab(cd){3}ef', stop: ['cd'], max_new_tokens: 16, temperature: 0 }, 'x');
  assert.equal(out.text, 'ab');
  assert.equal(out.meta_info.finish_reason.matched, 'cd');
});

test('bad grammars are 400s naming the field and the position', async () => {
  const cases = [
    [{ json_schema: JSON.stringify({ type: 'object', properties: { n: { type: 'number', multipleOf: 3 } } }) }, 'sampling_params.json_schema', '/properties/n/multipleOf'],
    [{ json_schema: '{"type": "object",' }, 'sampling_params.json_schema', 'offset'],
    [{ regex: 'a(b' }, 'sampling_params.regex', 'offset 3'],
    [{ regex: '(a)\\1' }, 'sampling_params.regex', 'offset 3'],
    [{ ebnf: 'root ::= "a" missing\n' }, 'sampling_params.ebnf', 'line 1, column 14'],
    [{ regex: 'a', ebnf: 'root ::= "a"' }, 'sampling_params.ebnf', 'both constrain'],
  ];
  for (const [sp, param, needle] of cases) {
    const r = await post('/generate', { text: 'x', sampling_params: sp });
    const body = await r.json();
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(body.error.param, param);
    assert.ok(body.error.message.includes(needle), body.error.message);
  }
  const r = await post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true } } } });
  const body = await r.json();
  assert.equal(r.status, 400);
  assert.equal(body.error.param, 'response_format.json_schema.schema');
  assert.ok(body.error.message.includes('uniqueItems'), body.error.message);
});
