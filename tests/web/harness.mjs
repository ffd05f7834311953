// Shared by the chat-page browser tests: starts `dsserve serve` on the default model (models/demo,
// as `make run` does; port 0), launches Debian's chromium headless through puppeteer-core with a
// fresh profile, records every request a page makes (so a test can check none leaves the server),
// and saves screenshots under DSSERVE_WEB_ARTIFACTS. Environment (set by tests/CMakeLists.txt):
// DSSERVE_BIN, DSSERVE_REPO, DSSERVE_WEB_ARTIFACTS, optionally DSSERVE_CHROMIUM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { serve } from '../serve_process.mjs';

const BIN = process.env.DSSERVE_BIN;
const REPO = process.env.DSSERVE_REPO;
export const ARTIFACTS = process.env.DSSERVE_WEB_ARTIFACTS || path.join(os.tmpdir(), 'dsserve-web-artifacts');
if (!BIN || !REPO) throw new Error('DSSERVE_BIN and DSSERVE_REPO must be set (ctest -R web_ui sets them)');
const NODE_MODULES = path.join(REPO, 'third_party/npm/node_modules');
const CHROMIUM = process.env.DSSERVE_CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: scripts/setup.sh installs Debian's chromium`);
const puppeteerPath = path.join(NODE_MODULES, 'puppeteer-core/lib/esm/puppeteer/puppeteer-core.js');
if (!fs.existsSync(puppeteerPath)) throw new Error(`${puppeteerPath} not found: run scripts/setup.sh`);
const { default: puppeteer } = await import(pathToFileURL(puppeteerPath).href);

fs.mkdirSync(ARTIFACTS, { recursive: true });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dsserve-web-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

// The model `make run` serves: the trained demo model shipped in models/demo.
export const MODEL_NAME = 'demo';
const MODEL_DIR = path.join(REPO, 'models/demo');
if (!fs.existsSync(path.join(MODEL_DIR, 'config.json'))) throw new Error(`${MODEL_DIR} not found`);

// Starts `dsserve serve` with extra flags; resolves {base, log(), stop()} once /health answers 200.
export async function startServer(extraArgs = []) {
  const s = await serve(BIN, ['--model-path', MODEL_DIR, '--device', 'cpu', '--host', '127.0.0.1', '--port', '0',
    '--served-model-name', MODEL_NAME, ...extraArgs]);
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`${s.url}/health`)).status === 200) break; } catch {}
    await sleep(100);
  }
  return { base: s.url, log: s.log, stop: () => s.stop(15000) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() until it returns a truthy value; throws with `what` after timeoutMs.
export async function until(fn, what, timeoutMs = 10000, everyMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export async function launchBrowser() {
  const userDataDir = fs.mkdtempSync(path.join(work, 'profile-'));
  return puppeteer.launch({
    executablePath: CHROMIUM,
    userDataDir,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--window-size=1280,860'],
    defaultViewport: { width: 1280, height: 860 },
  });
}

// A new page that records every request URL, page error and console error.
export async function openPage(browser, base) {
  const page = await browser.newPage();
  const requests = [];
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.foreignRequests = () => requests.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith('data:'));
  page.requests = requests;
  page.errors = errors;
  return page;
}

export async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

// Server numbers straight from the server (not through the page).
export async function serverState(base, key) {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const info = await (await fetch(`${base}/get_server_info`, { headers })).json();
  return info.internal_states[0];
}

export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.split(' ').at(-1));
}

// The page's state of one conversation as stored in localStorage.
export async function storedConversations(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('dsserve.conversations') || '[]'));
}

// Types into the composer and sends with Enter.
export async function sendMessage(page, text) {
  await page.click('#input');
  await page.type('#input', text);
  await page.keyboard.press('Enter');
}

// Waits until no answer streams (the Stop button is hidden again).
export async function waitIdle(page, timeoutMs = 60000) {
  await page.waitForFunction(() => document.getElementById('stop').hidden && !document.querySelector('.streaming'),
    { timeout: timeoutMs, polling: 50 });
}

// Opens the settings dialog, sets the given fields (name -> value), saves.
export async function setSettings(page, fields) {
  await page.click('#open-settings');
  await page.waitForSelector('#settings-dialog[open]');
  for (const [name, value] of Object.entries(fields)) {
    await page.$eval(`#settings-form [name="${name}"]`, (e, v) => { e.value = v; }, String(value));
  }
  await page.click('#save-settings');
  await page.waitForFunction(() => !document.getElementById('settings-dialog').open);
}
