// The README's first client: streams a chat completion from a running `dsserve serve` (`make run`)
// with the official OpenAI SDK. Run: cd third_party/npm && node example.mjs
// OPENAI_BASE_URL and OPENAI_API_KEY point it at another server (e.g. one started with --api-key).
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:30000/v1',
  apiKey: process.env.OPENAI_API_KEY ?? 'unused-without---api-key',
});
const stream = await client.chat.completions.create({
  model: 'default', messages: [{ role: 'user', content: 'Recite John 3:16.' }], max_tokens: 64, temperature: 0,
  stream: true, stream_options: { include_usage: true },
});
let usage;
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  if (chunk.usage) usage = chunk.usage;
}
process.stdout.write(`\n[${usage.prompt_tokens} prompt tokens, ${usage.completion_tokens} completion tokens]\n`);
