// The chat page's controller: wires the composer, the conversation list, the settings and API-key
// dialogs, the theme and the status panel to the stream of /v1/chat/completions. One answer streams
// at a time; Stop aborts its fetch, which closes the connection, and the server frees the request.
import { ApiError, listModels, setApiKey, streamChat } from './api.js';
import { editorElement, fillAssistant, renderConversation } from './chat_view.js';
import { startStatus } from './status.js';
import * as store from './store.js';

const $ = (id) => document.getElementById(id);
const ui = {
  sidebar: $('sidebar'), conversations: $('conversations'), newChat: $('new-chat'), messages: $('messages'),
  empty: $('empty'), input: $('input'), send: $('send'), stop: $('stop'), composer: $('composer'),
  model: $('model'), banner: $('banner'), settingsDialog: $('settings-dialog'), settingsForm: $('settings-form'),
  settingsError: $('settings-error'), forgetKey: $('forget-key'), keyDialog: $('key-dialog'), keyForm: $('key-form'),
  keyInput: $('key-input'), keyReason: $('key-reason'),
};

const state = {
  conversations: store.loadConversations(),
  current: null,
  settings: store.loadSettings(),
  busy: null,          // {conversation, message, controller} while an answer streams
  nodes: [],           // message elements of the current conversation
};

// ---- theme ----------------------------------------------------------------------------------

function applyTheme() {
  const t = state.settings.theme;
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

function effectiveTheme() {
  const t = document.documentElement.dataset.theme;
  if (t) return t;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

$('toggle-theme').addEventListener('click', () => {
  state.settings.theme = effectiveTheme() === 'dark' ? 'light' : 'dark';
  store.saveSettings(state.settings);
  applyTheme();
});

// ---- banner ---------------------------------------------------------------------------------

function showBanner(text) {
  ui.banner.textContent = text;
  ui.banner.hidden = !text;
}

// ---- conversations --------------------------------------------------------------------------

function persist() {
  if (!store.saveConversations(state.conversations)) showBanner('The browser refused to store the conversations (storage full?).');
}

function sortedConversations() {
  return [...state.conversations].sort((a, b) => b.updated - a.updated);
}

function renderList() {
  const frag = document.createDocumentFragment();
  for (const c of sortedConversations()) {
    const item = document.createElement('div');
    item.className = 'conversation' + (state.current && c.id === state.current.id ? ' active' : '');
    item.dataset.id = c.id;
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'open';
    open.textContent = c.title;
    open.title = c.title;
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete icon';
    del.textContent = '×';
    del.title = 'Delete this conversation';
    del.setAttribute('aria-label', `Delete ${c.title}`);
    item.append(open, del);
    frag.append(item);
  }
  ui.conversations.replaceChildren(frag);
}

function renderMessages() {
  const conv = state.current;
  const streamingIndex = state.busy && state.busy.conversation === conv ? conv.messages.indexOf(state.busy.message) : -1;
  if (!conv || conv.messages.length === 0) {
    ui.messages.replaceChildren(ui.empty);
    state.nodes = [];
    return;
  }
  state.nodes = renderConversation(ui.messages, conv, { busy: !!state.busy, streamingIndex });
}

function scrollToEnd(force = false) {
  const m = ui.messages;
  if (force || m.scrollHeight - m.scrollTop - m.clientHeight < 120) m.scrollTop = m.scrollHeight;
}

function selectConversation(conv) {
  state.current = conv;
  store.saveCurrentId(conv ? conv.id : null);
  renderList();
  renderMessages();
  scrollToEnd(true);
  ui.sidebar.classList.remove('open');
}

function startNewConversation() {
  const empty = state.conversations.find((c) => c.messages.length === 0);
  selectConversation(empty || null);
  ui.input.focus();
}

function deleteConversation(id) {
  const conv = state.conversations.find((c) => c.id === id);
  if (!conv) return;
  if (state.busy && state.busy.conversation === conv) state.busy.controller.abort();
  state.conversations = state.conversations.filter((c) => c !== conv);
  persist();
  if (state.current === conv) selectConversation(sortedConversations()[0] || null);
  else renderList();
}

ui.newChat.addEventListener('click', startNewConversation);
ui.conversations.addEventListener('click', (e) => {
  const item = e.target.closest('.conversation');
  if (!item) return;
  if (e.target.closest('.delete')) deleteConversation(item.dataset.id);
  else selectConversation(state.conversations.find((c) => c.id === item.dataset.id) || null);
});
$('toggle-sidebar').addEventListener('click', () => ui.sidebar.classList.toggle('open'));

// ---- generation -----------------------------------------------------------------------------

function requestBody(conv) {
  const s = state.settings;
  const messages = [];
  if (s.system_prompt.trim()) messages.push({ role: 'system', content: s.system_prompt });
  for (const m of conv.messages) {
    if (m.role === 'assistant') {
      if (m.error && !m.content && !(m.tool_calls && m.tool_calls.length)) continue;  // a failed turn
      const a = { role: 'assistant', content: m.content || '' };
      if (m.tool_calls && m.tool_calls.length) a.tool_calls = m.tool_calls;
      messages.push(a);
    } else {
      messages.push({ role: m.role, content: m.content });
    }
  }
  const body = { model: ui.model.value || s.model || 'default', messages };
  for (const k of ['temperature', 'top_p']) if (String(s[k]).trim() !== '') body[k] = Number(s[k]);
  if (String(s.max_tokens).trim() !== '') body.max_tokens = Number(s.max_tokens);
  if (s.extra_json.trim()) Object.assign(body, JSON.parse(s.extra_json));
  return body;
}

// Merges a streamed tool_calls delta (OpenAI: by index; name and id once, arguments in pieces).
function mergeToolCalls(msg, deltas) {
  msg.tool_calls = msg.tool_calls || [];
  for (const d of deltas) {
    const i = d.index ?? msg.tool_calls.length;
    const call = msg.tool_calls[i] || (msg.tool_calls[i] = { id: '', type: 'function', function: { name: '', arguments: '' } });
    if (d.id) call.id = d.id;
    if (d.type) call.type = d.type;
    if (d.function) {
      if (d.function.name) call.function.name += d.function.name;
      if (d.function.arguments) call.function.arguments += d.function.arguments;
    }
  }
}

function setBusy(busy) {
  state.busy = busy;
  ui.send.hidden = !!busy;
  ui.stop.hidden = !busy;
  document.body.classList.toggle('busy', !!busy);
}

async function generate(conv) {
  let body;
  try {
    body = requestBody(conv);
  } catch (e) {
    showBanner(`The extra request fields in the settings are not valid JSON: ${e.message}`);
    return;
  }
  showBanner('');
  const msg = { role: 'assistant', content: '', reasoning_content: '', stats: {} };
  conv.messages.push(msg);
  conv.updated = Date.now();
  const controller = new AbortController();
  setBusy({ conversation: conv, message: msg, controller });
  if (state.current === conv) { renderMessages(); scrollToEnd(true); }
  renderList();

  const t0 = performance.now();
  let tFirst = null, tLast = null, chunks = 0, frame = 0;
  const redraw = () => {
    frame = 0;
    if (state.current !== conv) return;
    const node = state.nodes[conv.messages.indexOf(msg)];
    if (node) fillAssistant(node, msg, { streaming: true });
    scrollToEnd();
  };
  try {
    const finish = await streamChat(body, {
      signal: controller.signal,
      onDelta(delta) {
        const text = (delta.content || '') + (delta.reasoning_content || '');
        if (delta.content) msg.content += delta.content;
        if (delta.reasoning_content) msg.reasoning_content += delta.reasoning_content;
        if (delta.tool_calls) mergeToolCalls(msg, delta.tool_calls);
        if (text || delta.tool_calls) {
          const now = performance.now();
          if (tFirst === null) { tFirst = now; msg.stats.ttft_s = (now - t0) / 1000; status.refresh(); }
          tLast = now;
          msg.stats.chunks = ++chunks;
          if (!frame) frame = requestAnimationFrame(redraw);
        }
      },
      onUsage(usage) { msg.stats.usage = usage; },
    });
    msg.stats.finish_reason = finish;
  } catch (e) {
    if (e.name === 'AbortError') {
      msg.stats.stopped = true;
    } else if (e instanceof ApiError) {
      msg.error = e.status === 401 ? `The server refused the API key: ${e.message}` : `Error ${e.status}: ${e.message}`;
      if (e.status === 401) askForKey(e);
    } else {
      msg.error = `The request failed: ${e.message}`;
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    const n = msg.stats.usage ? msg.stats.usage.completion_tokens : chunks;
    if (tFirst !== null && tLast > tFirst && n > 1) msg.stats.tokens_per_s = (n - 1) / ((tLast - tFirst) / 1000);
    if (!msg.reasoning_content) delete msg.reasoning_content;
    conv.updated = Date.now();
    conv.title = store.titleOf(conv);
    setBusy(null);
    persist();
    renderList();
    if (state.current === conv) { renderMessages(); scrollToEnd(); }
    status.refresh();
  }
}

function send(text) {
  if (state.busy || !text.trim()) return;
  let conv = state.current;
  if (!conv) {
    conv = store.newConversation();
    state.conversations.push(conv);
    state.current = conv;
    store.saveCurrentId(conv.id);
  }
  conv.messages.push({ role: 'user', content: text });
  conv.title = store.titleOf(conv);
  ui.input.value = '';
  generate(conv);
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send(ui.input.value);
});
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send(ui.input.value);
  }
});
ui.stop.addEventListener('click', () => { if (state.busy) state.busy.controller.abort(); });

// Regenerate, edit, copy: buttons inside the messages.
ui.messages.addEventListener('click', (e) => {
  const b = e.target.closest('button');
  if (!b) return;
  const node = b.closest('.message, .code-block');
  const conv = state.current;
  if (b.dataset.copy !== undefined) {
    copyText(b.closest('.code-block').querySelector('code').textContent, b);
    return;
  }
  const index = node && node.dataset.index !== undefined ? Number(node.dataset.index) : -1;
  switch (b.dataset.action) {
    case 'copy-message':
      copyText(conv.messages[index].content || '', b);
      break;
    case 'regenerate':
      if (state.busy || !conv) return;
      if (conv.messages.at(-1)?.role === 'assistant') conv.messages.pop();
      generate(conv);
      break;
    case 'edit': {
      if (state.busy || !conv) return;
      const editor = editorElement(conv.messages[index].content, {
        onSave(text) {
          conv.messages.splice(index);
          conv.messages.push({ role: 'user', content: text });
          conv.title = store.titleOf(conv);
          generate(conv);
        },
        onCancel: renderMessages,
      });
      node.replaceWith(editor);
      break;
    }
  }
});

function copyText(text, buttonEl) {
  const done = () => { buttonEl.textContent = 'Copied'; setTimeout(() => { buttonEl.textContent = 'Copy'; }, 1200); };
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => {});
}

// ---- settings -------------------------------------------------------------------------------

$('open-settings').addEventListener('click', () => {
  const f = ui.settingsForm.elements;
  for (const k of ['system_prompt', 'temperature', 'top_p', 'max_tokens', 'theme', 'extra_json']) f[k].value = state.settings[k];
  ui.settingsError.hidden = true;
  ui.forgetKey.hidden = !store.loadApiKey();
  ui.settingsDialog.showModal();
});

$('save-settings').addEventListener('click', (e) => {
  const f = ui.settingsForm.elements;
  const extra = f.extra_json.value.trim();
  if (extra) {
    let parsed;
    try { parsed = JSON.parse(extra); } catch (err) { parsed = err; }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || parsed instanceof Error) {
      e.preventDefault();
      ui.settingsError.textContent = 'Extra request fields must be a JSON object, e.g. {"top_k": 20}.';
      ui.settingsError.hidden = false;
      return;
    }
  }
  for (const k of ['system_prompt', 'temperature', 'top_p', 'max_tokens', 'theme', 'extra_json']) state.settings[k] = f[k].value;
  store.saveSettings(state.settings);
  applyTheme();
});

ui.forgetKey.addEventListener('click', () => {
  store.saveApiKey('');
  setApiKey('');
  ui.settingsDialog.close();
  loadModels();
});

ui.model.addEventListener('change', () => {
  state.settings.model = ui.model.value;
  store.saveSettings(state.settings);
});

// ---- API key --------------------------------------------------------------------------------

function askForKey(error) {
  if (ui.keyDialog.open) return;
  ui.keyReason.textContent = store.loadApiKey()
    ? `The server refused the saved API key (${error.message}). Enter the key the server was started with (--api-key).`
    : 'This server was started with --api-key: enter the key to use it.';
  ui.keyInput.value = '';
  ui.keyDialog.showModal();
}

ui.keyForm.addEventListener('submit', () => {
  const key = ui.keyInput.value.trim();
  if (!key) return;
  store.saveApiKey(key);
  setApiKey(key);
  loadModels();
  status.refresh();
});

// ---- start ----------------------------------------------------------------------------------

async function loadModels() {
  try {
    const res = await listModels();
    const ids = (res.data || []).map((m) => m.id);
    ui.model.replaceChildren(...ids.map((id) => {
      const o = document.createElement('option');
      o.value = id;
      o.textContent = id;
      return o;
    }));
    if (ids.includes(state.settings.model)) ui.model.value = state.settings.model;
    showBanner('');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showBanner(`API key needed: ${e.message}`);
      askForKey(e);
    } else {
      showBanner(`Cannot reach the server's /v1/models: ${e.message}`);
    }
  }
}

applyTheme();
setApiKey(store.loadApiKey());
const status = startStatus({ list: $('status-list'), state: $('status-state'), onAuthError: () => {} });
const savedId = store.loadCurrentId();
selectConversation(state.conversations.find((c) => c.id === savedId) || null);
loadModels();
window.addEventListener('pagehide', () => { if (state.busy) persist(); });
ui.input.focus();
