// The chat page in a real browser (Debian's chromium, headless, through puppeteer-core) against a real
// `dsserve serve` on the default model (models/demo, CPU): first load (size, headers, no request off the
// server), streaming, stop (the server frees the request), reload, conversation list, regenerate,
// edit-and-resend, settings, theme, status panel, and model output containing HTML shown as text.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  MODEL_NAME, launchBrowser, metric, openPage, screenshot, sendMessage, serverState, setSettings, sleep, startServer,
  storedConversations, until, waitIdle,
} from './harness.mjs';

let server, browser, page;
// Short answers for the tests that only need one to exist.
const SHORT = { system_prompt: '', temperature: '', top_p: '', max_tokens: 16, extra_json: '' };

before(async () => {
  server = await startServer(['--enable-metrics']);
  browser = await launchBrowser();
  page = await openPage(browser, server.base);
});

after(async () => {
  if (page) {
    assert.deepEqual(page.foreignRequests(), [], 'every request of the page goes to the server');
    assert.deepEqual(page.errors, [], 'no script error, console error or CSP violation');
  }
  if (browser) await browser.close();
  if (server) await server.stop();
});

const lastAssistant = () => page.$eval('.message.assistant:last-of-type', (e) => e.innerText).catch(() => '');

test('first load: at most 200 KB transferred, CSP without inline script, nothing from elsewhere', async () => {
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  let transferred = 0;
  const encodings = {};
  cdp.on('Network.loadingFinished', (e) => { transferred += e.encodedDataLength; });
  cdp.on('Network.responseReceived', (e) => {
    const h = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    encodings[e.response.url] = h['content-encoding'] || 'identity';
  });
  const res = await page.goto(server.base + '/', { waitUntil: 'networkidle0' });
  assert.equal(res.status(), 200);
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, /connect-src 'self'/);
  await page.waitForFunction(() => document.querySelector('#model option'));
  assert.equal(await page.$eval('#model', (e) => e.value), MODEL_NAME);
  assert.ok(transferred > 0 && transferred <= 200 * 1024, `first load transferred ${transferred} bytes`);
  assert.equal(encodings[`${server.base}/assets/main.js`], 'gzip', 'assets are sent gzip-compressed');
  assert.ok(page.requests.some((u) => u.endsWith('/assets/marked.esm.js')), 'the markdown parser comes from the server');
  console.log(`first load: ${transferred} bytes transferred in ${page.requests.length} requests: ${page.requests.map((u) => u.slice(server.base.length)).join(' ')}`);
  await cdp.detach();
  await screenshot(page, '01-empty');
});

test('a sent message streams back token by token, with TTFT, tokens/s and usage', async () => {
  await setSettings(page, { max_tokens: 64, temperature: 0.8, extra_json: '{"ignore_eos": true}' });
  // Records the answer's visible length at every DOM change while it streams.
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const m = document.querySelector('.message.assistant.streaming .markdown');
      if (m) window.__lengths.push(m.textContent.length);
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
  });
  await sendMessage(page, 'Hello! Tell me something.');
  await page.waitForSelector('.message.assistant.streaming');
  assert.equal(await page.$eval('#stop', (e) => e.hidden), false, 'Stop shows while the answer streams');
  await waitIdle(page);
  const lengths = await page.evaluate(() => window.__lengths);
  const distinct = [...new Set(lengths)].filter((n) => n > 0);
  assert.ok(distinct.length >= 3, `the answer grew in at least 3 steps, saw ${JSON.stringify(distinct.slice(0, 20))}`);
  for (let i = 1; i < distinct.length; i++) assert.ok(distinct[i] > distinct[i - 1], 'the streamed text only grows');
  const stats = await page.$eval('.message.assistant .stats', (e) => e.textContent);
  assert.match(stats, /^TTFT \d+\.\d\d s · \d+\.\d tok\/s · \d+ prompt \+ 64 completion tokens · finish: length$/);
  const [conv] = await storedConversations(page);
  assert.equal(conv.messages.length, 2);
  assert.equal(conv.messages[0].content, 'Hello! Tell me something.');
  assert.equal(conv.messages[1].stats.usage.completion_tokens, 64);
  assert.ok(conv.messages[1].content.length > 0);
  assert.equal(await page.$eval('.conversation.active .open', (e) => e.textContent), 'Hello! Tell me something.');
  await screenshot(page, '02-answer');
});

test('Stop aborts the stream and the server frees the request at once', async () => {
  const abortedBefore = await metric(server.base, 'sglang:num_aborted_requests_total');
  await setSettings(page, { max_tokens: 3500, extra_json: '{"ignore_eos": true}' });
  await page.click('#new-chat');
  await sendMessage(page, 'Write a very long story.');
  await until(async () => (await serverState(server.base)).num_running_reqs === 1, 'the request to run');
  await until(async () => (await lastAssistant()).length > 40, 'some streamed text');
  // The status panel shows the running request (it refreshes every few seconds).
  await page.waitForFunction(() => document.querySelector('#status-list dd[data-key="running"]')?.textContent === '1',
    { timeout: 8000, polling: 100 });
  await screenshot(page, '03-streaming');
  await page.click('#stop');
  await waitIdle(page, 5000);
  const t0 = Date.now();
  await until(async () => {
    const s = await serverState(server.base);
    return s.num_running_reqs === 0 && s.num_queue_reqs === 0;
  }, 'no running or queued request after Stop', 2000, 20);
  console.log(`server idle ${Date.now() - t0} ms after the page stopped`);
  assert.equal(await metric(server.base, 'sglang:num_aborted_requests_total'), abortedBefore + 1);
  const generated = (await serverState(server.base)).generation_tokens_total;
  await sleep(500);
  assert.equal((await serverState(server.base)).generation_tokens_total, generated, 'nothing decodes after Stop');
  const stats = await page.$eval('.message.assistant:last-of-type .stats', (e) => e.textContent);
  assert.match(stats, /stopped$/);
  const conv = (await storedConversations(page)).find((c) => c.title === 'Write a very long story.');
  assert.equal(conv.messages.at(-1).stats.stopped, true);
  assert.ok(conv.messages.at(-1).content.length > 0, 'the text streamed before Stop is kept');
  await page.waitForFunction(() => document.querySelector('#status-list dd[data-key="running"]')?.textContent === '0',
    { timeout: 8000, polling: 100 });
  await screenshot(page, '04-stopped');
});

test('reload finds the conversations; switch and delete', async () => {
  await page.reload({ waitUntil: 'networkidle0' });
  const titles = () => page.$$eval('#conversations .open', (es) => es.map((e) => e.textContent));
  assert.deepEqual(await titles(), ['Write a very long story.', 'Hello! Tell me something.']);
  const shown = () => page.$$eval('#messages .message', (es) => es.map((e) =>
    `${e.classList[1]}: ${(e.querySelector('.user-text, .markdown')?.textContent ?? '').slice(0, 30)}`));
  let messages = await shown();
  assert.equal(messages.length, 2);
  assert.equal(messages[0], 'user: Write a very long story.');
  assert.match(await page.$eval('.message.assistant .stats', (e) => e.textContent), /stopped$/);

  await page.click('#conversations .conversation:nth-child(2) .open');
  messages = await shown();
  assert.equal(messages[0], 'user: Hello! Tell me something.');
  assert.match(await page.$eval('.message.assistant .stats', (e) => e.textContent), /64 completion tokens/);
  assert.equal(await page.$eval('.conversation.active .open', (e) => e.textContent), 'Hello! Tell me something.');
  await screenshot(page, '05-two-conversations');

  await page.hover('#conversations .conversation:nth-child(1)');
  await page.click('#conversations .conversation:nth-child(1) .delete');
  assert.deepEqual(await titles(), ['Hello! Tell me something.']);
  await page.reload({ waitUntil: 'networkidle0' });
  assert.deepEqual((await storedConversations(page)).map((c) => c.title), ['Hello! Tell me something.']);
  assert.deepEqual(await titles(), ['Hello! Tell me something.']);
  assert.equal((await shown())[0], 'user: Hello! Tell me something.');
});

test('regenerate replaces the last answer; edit-and-resend replaces the last user turn', async () => {
  await setSettings(page, SHORT);
  await page.click('#new-chat');
  await sendMessage(page, 'A second conversation');
  await waitIdle(page);
  const id = (await storedConversations(page)).find((c) => c.title === 'A second conversation').id;
  const conversation = async () => (await storedConversations(page)).find((c) => c.id === id);
  const firstAnswer = (await conversation()).messages[1].content;
  const chatBodies = [];
  const onRequest = (r) => { if (r.url().endsWith('/v1/chat/completions')) chatBodies.push(JSON.parse(r.postData())); };
  page.on('request', onRequest);
  await page.click('.message.assistant [data-action="regenerate"]');
  await page.waitForSelector('.message.assistant.streaming');
  await waitIdle(page);
  let msgs = (await conversation()).messages;
  assert.equal(msgs.length, 2, 'regenerate answers the same question again, no new turn');
  assert.equal(msgs[0].content, 'A second conversation');
  assert.ok(msgs[1].content.length > 0);
  assert.ok(msgs[1].stats.usage, 'the new answer has its own numbers');
  assert.deepEqual(chatBodies.at(-1).messages, [{ role: 'user', content: 'A second conversation' }]);
  console.log(`regenerated: ${JSON.stringify(firstAnswer.slice(0, 30))} -> ${JSON.stringify(msgs[1].content.slice(0, 30))}`);

  await page.click('.message.user [data-action="edit"]');
  await page.waitForSelector('form.message.editing textarea');
  await page.$eval('form.message.editing textarea', (e) => { e.value = ''; });
  await page.type('form.message.editing textarea', 'An edited question');
  await page.click('form.message.editing button[type="submit"]');
  await page.waitForSelector('.message.assistant.streaming');
  await waitIdle(page);
  msgs = (await conversation()).messages;
  assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant']);
  assert.equal(msgs[0].content, 'An edited question');
  assert.equal((await conversation()).title, 'An edited question');
  assert.deepEqual(chatBodies.at(-1).messages, [{ role: 'user', content: 'An edited question' }]);
  page.off('request', onRequest);
});

test('settings go into the request; the theme switches and stays after a reload', async () => {
  const bodies = [];
  const onRequest = (r) => { if (r.url().endsWith('/v1/chat/completions')) bodies.push(JSON.parse(r.postData())); };
  page.on('request', onRequest);
  await setSettings(page, { system_prompt: 'You are terse.', temperature: 0, top_p: 0.9, max_tokens: 8,
    extra_json: '{"ignore_eos": true}' });
  await sendMessage(page, 'Settings check');
  await waitIdle(page);
  page.off('request', onRequest);
  const body = bodies.at(-1);
  assert.equal(body.messages[0].role, 'system');
  assert.equal(body.messages[0].content, 'You are terse.');
  assert.equal(body.temperature, 0);
  assert.equal(body.top_p, 0.9);
  assert.equal(body.max_tokens, 8);
  assert.equal(body.model, MODEL_NAME);
  assert.equal(body.stream, true);
  assert.equal(body.ignore_eos, true, 'the extra request fields go into the request');
  assert.match(await lastAssistant(), /\+ 8 completion tokens/);

  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const before = await bg();
  const themeBefore = await page.evaluate(() => document.documentElement.dataset.theme || 'auto');
  await page.click('#toggle-theme');
  const themeAfter = await page.evaluate(() => document.documentElement.dataset.theme);
  assert.ok(themeAfter === 'dark' || themeAfter === 'light');
  assert.notEqual(themeAfter, themeBefore);
  assert.notEqual(await bg(), before, 'the background changes with the theme');
  await page.reload({ waitUntil: 'networkidle0' });
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), themeAfter, 'the theme is kept');
  await screenshot(page, `06-theme-${themeAfter}`);
  await page.click('#toggle-theme');
});

test('a reply containing HTML from the real model shows as text', async () => {
  // A regex constraint (through the page's extra request fields) makes the model write raw HTML
  // that must not become elements.
  const html = '<script>alert(1)</script><img src=x onerror=alert(2)><b>bold</b>';
  const regex = html.replace(/[()]/g, (c) => `\\${c}`);
  await setSettings(page, { temperature: 0, max_tokens: 200, extra_json: JSON.stringify({ regex }) });
  await page.click('#new-chat');
  await sendMessage(page, 'Write HTML');
  await waitIdle(page);
  const content = (await storedConversations(page)).find((c) => c.title === 'Write HTML').messages[1].content;
  assert.equal(content, html, 'the model wrote the HTML the constraint asked for');
  const shown = await page.$eval('.message.assistant > .markdown', (e) => e.textContent);
  assert.equal(shown.trim(), content.trim(), 'the answer shows exactly the characters the server sent');
  assert.equal(await page.$$eval('#messages script, #messages img, #messages b', (es) => es.length), 0);
});

test('HTML, markdown, reasoning and tool calls in a stored conversation render safely', async () => {
  const evil = [
    'Here is <script>window.__pwned = 1</script> and <img src="/pwned.png" onerror="window.__pwned = 2">.',
    '',
    '**bold** and `<b>code</b>` and [a link](javascript:window.__pwned=3) and [docs](https://example.org/docs).',
    '',
    '```html',
    '<iframe src="/pwned-frame"></iframe>',
    '```',
    '',
    '<div onmouseover="window.__pwned = 4">raw block html</div>',
  ].join('\n');
  await page.evaluate((content) => {
    const conv = {
      id: 'seeded', title: 'Seeded with HTML', updated: Date.now() + 1000, messages: [
        { role: 'user', content: 'Show me <b>HTML</b>' },
        { role: 'assistant', content, reasoning_content: 'Thinking about <i>tags</i> & entities',
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "<Paris>"}' } }],
          stats: { ttft_s: 0.05, tokens_per_s: 40, usage: { prompt_tokens: 10, completion_tokens: 20 } } },
      ],
    };
    const list = JSON.parse(localStorage.getItem('dsserve.conversations') || '[]');
    list.push(conv);
    localStorage.setItem('dsserve.conversations', JSON.stringify(list));
    localStorage.setItem('dsserve.current', JSON.stringify('seeded'));
  }, evil);
  await page.reload({ waitUntil: 'networkidle0' });
  await page.hover('.message.assistant a');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no model text ran as script');
  assert.equal(page.requests.filter((u) => /pwned/.test(u)).length, 0, 'no element from model text loaded anything');
  assert.equal(await page.$$eval('#messages script, #messages img, #messages iframe, #messages [onerror], #messages [onmouseover]',
    (es) => es.length), 0);
  assert.equal(await page.$eval('.message.user .user-text', (e) => e.textContent), 'Show me <b>HTML</b>');
  const text = await page.$eval('.message.assistant > .markdown', (e) => e.textContent);
  assert.ok(text.includes('<script>window.__pwned = 1</script>'));
  assert.ok(text.includes('<img src="/pwned.png" onerror="window.__pwned = 2">'));
  assert.ok(text.includes('<div onmouseover="window.__pwned = 4">raw block html</div>'));
  assert.equal(await page.$eval('.message.assistant strong', (e) => e.textContent), 'bold');
  assert.equal(await page.$eval('.message.assistant > .markdown p code', (e) => e.textContent), '<b>code</b>');
  assert.equal(await page.$eval('.code-block pre code', (e) => e.textContent), '<iframe src="/pwned-frame"></iframe>');
  assert.equal(await page.$eval('.code-block .code-lang', (e) => e.textContent), 'html');
  const links = await page.$$eval('.message.assistant a', (es) => es.map((a) => a.getAttribute('href')));
  assert.deepEqual(links, ['https://example.org/docs'], 'only http(s) links become links');
  // Reasoning: collapsed, text as text.
  assert.equal(await page.$eval('details.reasoning', (e) => e.open), false);
  assert.equal(await page.$eval('details.reasoning .markdown', (e) => e.textContent), 'Thinking about <i>tags</i> & entities');
  await page.click('details.reasoning summary');
  assert.equal(await page.$eval('details.reasoning', (e) => e.open), true);
  // Tool call: its own block with the function name and the arguments.
  assert.equal(await page.$eval('.tool-call .tool-name', (e) => e.textContent), 'get_weather');
  assert.equal(await page.$eval('.tool-call pre code', (e) => e.textContent), '{\n  "city": "<Paris>"\n}');
  await screenshot(page, '07-html-as-text');
});

test('the status panel shows the server numbers', async () => {
  const rows = await page.$$eval('#status-list dd', (es) => Object.fromEntries(es.map((e) => [e.dataset.key, e.textContent])));
  assert.equal(rows.running, '0');
  assert.equal(rows.queued, '0');
  assert.match(rows.kv, /^\d+(\.\d+)?% of \d+(\.\d+)?[KMB]? tokens$/);
  assert.match(rows['prefix-hit'], /^\d+(\.\d+)?%$/);
  assert.match(rows.decode, /^\d+\.\d tok\/s$/);
  assert.equal(rows.spec, undefined, 'no speculative row without --speculative-algorithm');
  const s = await serverState(server.base);
  assert.ok(s.prompt_tokens_total > 0);
});
