// The shipped demo model (models/demo) end to end on the CPU: `dsserve serve` without and with
// --speculative-algorithm EAGLE answers recognisable King James text through /generate (raw
// fetch), /v1/completions and /v1/chat/completions (the official OpenAI SDK), greedily; the EAGLE
// server returns exactly the plain server's tokens and reports its acceptance length.
// Run by CTest (e2e_demo_model) with DSSERVE_BIN and DSSERVE_REPO set.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { serve } from '../serve_process.mjs';

const repo = process.env.DSSERVE_REPO;
const bin = process.env.DSSERVE_BIN;
if (!repo || !bin) throw new Error('DSSERVE_BIN and DSSERVE_REPO must be set (CTest e2e_demo_model sets them)');
const modelDir = path.join(repo, 'models/demo');
const { default: OpenAI } = await import(
  pathToFileURL(path.join(repo, 'third_party/npm/node_modules/openai/index.mjs')).href);

async function startServer(extra) {
  // The model's own context length (config.json), as `make run` serves it.
  const s = await serve(bin, ['--model-path', modelDir, '--device', 'cpu', '--host', '127.0.0.1', '--port', '0',
    '--max-total-tokens', '8192', '--served-model-name', 'demo', ...extra]);
  return { ...s, base: s.url, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 }) };
}

async function generate(base, text, maxNewTokens) {
  const r = await fetch(`${base}/generate`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text, sampling_params: { max_new_tokens: maxNewTokens, temperature: 0 } }),
  });
  assert.equal(r.status, 200);
  return r.json();
}

// Greedy completions of the demo model a reader recognises (prompt -> expected start).
const COMPLETIONS = [
  ['In the beginning God created', ' the heaven and the earth.'],
  ['The LORD is my shepherd;', ' I shall not want.'],
  ['For God so loved the world,', ' that he gave his only begotten Son'],
];
const CHATS = [
  ['Recite John 3:16.', 'For God so loved the world, that he gave his only begotten Son'],
  ['Recite Psalm 23:1.', 'The LORD is my shepherd; I shall not want.'],
  ['Continue this verse: Yea, though I walk', 'Yea, though I walk through the valley of the shadow of death'],
];

const servers = {};
let plainIds = null;

for (const [name, flags] of [
  ['plain', []],
  ['EAGLE', ['--speculative-algorithm', 'EAGLE', '--speculative-num-steps', '3', '--speculative-eagle-topk', '1',
             '--speculative-num-draft-tokens', '4']],
]) {
  describe(`demo model, ${name}`, () => {
    before(async () => { servers[name] = await startServer(flags); });
    after(async () => {
      const s = servers[name];
      if (s) { s.proc.kill('SIGTERM'); await new Promise((r) => s.proc.on('exit', r)); }
    });

    test('/generate continues Genesis 1:1', async () => {
      const out = await generate(servers[name].base, COMPLETIONS[0][0], 12);
      assert.ok(out.text.startsWith(COMPLETIONS[0][1]), `got ${JSON.stringify(out.text)}`);
      if (name === 'plain') plainIds = out.output_ids;
      else assert.deepEqual(out.output_ids, plainIds, 'EAGLE must return the plain greedy tokens');
    });

    test('/v1/completions continues famous verses', async () => {
      for (const [prompt, want] of COMPLETIONS) {
        const r = await servers[name].client.completions.create({ model: 'demo', prompt, max_tokens: 16, temperature: 0 });
        assert.ok(r.choices[0].text.startsWith(want), `${prompt} -> ${JSON.stringify(r.choices[0].text)}`);
      }
    });

    // max_tokens 1024: what the chat page asks for by default, which must fit the context.
    test('/v1/chat/completions recites requested verses', async () => {
      for (const [ask, want] of CHATS) {
        const r = await servers[name].client.chat.completions.create({
          model: 'demo', messages: [{ role: 'user', content: ask }], max_tokens: 1024, temperature: 0 });
        assert.equal(r.choices[0].finish_reason, 'stop', `${ask}: the answer should end with EOS`);
        assert.ok(r.choices[0].message.content.includes(want), `${ask} -> ${JSON.stringify(r.choices[0].message.content)}`);
      }
    });

    if (name === 'EAGLE') {
      test('the MTP layer drafts well: acceptance length above 1.5', async () => {
        const info = await (await fetch(`${servers[name].base}/get_server_info`)).json();
        const a = info.internal_states[0].avg_spec_accept_length;
        assert.ok(a > 1.5, `avg_spec_accept_length ${a}`);
      });
    }
  });
}
