// The chat page against a server started with --api-key, the deepseek-r1 reasoning parser (under
// which the demo model's whole output is reasoning_content: it never closes a think block) and EAGLE speculative decoding: the
// page asks for the key, a wrong key gets a clear message, the right one is sent on every API call,
// the reasoning streams into its own collapsible block, and the status panel shows the speculative
// acceptance. Also: --disable-web-ui leaves / unanswered.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { MODEL_NAME, launchBrowser, openPage, screenshot, sendMessage, setSettings, startServer, waitIdle } from './harness.mjs';

const KEY = 'web-test-key';
let server, browser, page;

before(async () => {
  server = await startServer(['--api-key', KEY, '--reasoning-parser', 'deepseek-r1',
    '--speculative-algorithm', 'EAGLE', '--speculative-num-steps', '3']);
  browser = await launchBrowser();
  page = await openPage(browser, server.base);
});

after(async () => {
  if (page) assert.deepEqual(page.foreignRequests(), [], 'every request of the page goes to the server');
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('the page loads without the key and asks for it', async () => {
  const res = await page.goto(server.base + '/', { waitUntil: 'networkidle0' });
  assert.equal(res.status(), 200);
  await page.waitForSelector('#key-dialog[open]');
  assert.match(await page.$eval('#key-reason', (e) => e.textContent), /started with --api-key: enter the key/);
  assert.match(await page.$eval('#banner', (e) => e.textContent), /API key needed: missing API key/);
  await screenshot(page, '10-key-needed');
});

test('a wrong key shows a clear message', async () => {
  await page.type('#key-input', 'not-the-key');
  await page.click('#key-save');
  await page.waitForFunction(() => /refused the saved API key/.test(document.getElementById('key-reason').textContent),
    { timeout: 10000 });
  assert.match(await page.$eval('#key-reason', (e) => e.textContent),
    /The server refused the saved API key \(incorrect API key provided\)\. Enter the key the server was started with \(--api-key\)\./);
  assert.equal(await page.$eval('#key-dialog', (e) => e.open), true);
  assert.match(await page.$eval('#banner', (e) => e.textContent), /incorrect API key provided/);
  await screenshot(page, '11-wrong-key');
});

test('the right key is kept and sent; reasoning streams into its own block', async () => {
  await page.$eval('#key-input', (e) => { e.value = ''; });
  await page.type('#key-input', KEY);
  await page.click('#key-save');
  await page.waitForFunction((name) => document.querySelector('#model option')?.value === name, { timeout: 10000 }, MODEL_NAME);
  assert.equal(await page.$eval('#key-dialog', (e) => e.open), false);
  assert.equal(await page.$eval('#banner', (e) => e.hidden), true);
  await page.waitForFunction(() => document.querySelector('#status-list dd[data-key="running"]'), { timeout: 10000 });

  const auth = [];
  page.on('request', (r) => { if (r.url().endsWith('/v1/chat/completions')) auth.push(r.headers().authorization); });
  await setSettings(page, { max_tokens: 96, extra_json: '{"ignore_eos": true}' });
  await sendMessage(page, 'Think first, then answer.');
  await page.waitForSelector('.message.assistant.streaming details.reasoning[open]');
  assert.equal(await page.$eval('details.reasoning summary', (e) => e.textContent), 'Thinking…');
  await page.waitForFunction(() => document.querySelector('details.reasoning .markdown')?.textContent.length > 30);
  await screenshot(page, '12-thinking');
  await waitIdle(page);
  assert.deepEqual(auth, [`Bearer ${KEY}`]);
  const reasoning = await page.$eval('details.reasoning .markdown', (e) => e.textContent);
  assert.ok(reasoning.length > 0, 'the reasoning block holds the streamed reasoning_content');
  assert.equal(await page.$eval('details.reasoning summary', (e) => e.textContent), 'Reasoning');
  assert.match(await page.$eval('.message.assistant .stats', (e) => e.textContent), /\+ 96 completion tokens/);
  // Speculative acceptance from /get_server_info (accepted drafts + 1 per verification, so >= 1).
  await page.waitForFunction(() => parseFloat(document.querySelector('#status-list dd[data-key="spec"]')?.textContent) >= 1,
    { timeout: 8000 });
  const spec = await page.$eval('#status-list dd[data-key="spec"]', (e) => e.textContent);
  assert.match(spec, /^\d+\.\d\d tok\/verify \(EAGLE\)$/);
  assert.ok(parseFloat(spec) >= 1, spec);
  await screenshot(page, '13-reasoning-done');

  // The key survives a reload.
  await page.reload({ waitUntil: 'networkidle0' });
  await page.waitForFunction((name) => document.querySelector('#model option')?.value === name, { timeout: 10000 }, MODEL_NAME);
  assert.equal(await page.$eval('#key-dialog', (e) => e.open), false);
  assert.ok(await page.$('details.reasoning'));
});

test('--disable-web-ui: no page on /, the API still answers', async () => {
  const plain = await startServer(['--disable-web-ui']);
  try {
    const root = await fetch(`${plain.base}/`);
    assert.equal(root.status, 404);
    assert.equal((await fetch(`${plain.base}/assets/main.js`)).status, 404);
    assert.equal((await fetch(`${plain.base}/v1/models`)).status, 200);
  } finally {
    await plain.stop();
  }
});
