// The conversation view: one element per message. User turns are plain text (the last one can be
// edited and sent again); assistant turns show the reasoning (reasoning_content) in a collapsible
// block, the answer as markdown, tool calls as such, an error if the request failed, and the numbers
// of the answer (time to first token, tokens per second, token counts from usage). Text always goes
// in as text nodes (markdown.js builds elements, never parses HTML).
import { renderMarkdown } from './markdown.js';

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label, action, title) {
  const b = el('button', 'link-button', label);
  b.type = 'button';
  b.dataset.action = action;
  if (title) b.title = title;
  return b;
}

const fmt = (x, digits) => (Number.isFinite(x) ? x.toFixed(digits) : '–');

// "TTFT 0.21 s · 38.4 tok/s · 24 prompt (16 cached) + 64 completion tokens · stopped"
export function statsText(stats) {
  if (!stats) return '';
  const parts = [];
  if (stats.ttft_s !== undefined) parts.push(`TTFT ${fmt(stats.ttft_s, 2)} s`);
  if (stats.tokens_per_s !== undefined) parts.push(`${fmt(stats.tokens_per_s, 1)} tok/s`);
  if (stats.usage) {
    const u = stats.usage;
    const cached = u.prompt_tokens_details && u.prompt_tokens_details.cached_tokens;
    parts.push(`${u.prompt_tokens} prompt${cached ? ` (${cached} cached)` : ''} + ${u.completion_tokens} completion tokens`);
  } else if (stats.chunks) {
    parts.push(`${stats.chunks} chunks`);
  }
  if (stats.stopped) parts.push('stopped');
  else if (stats.finish_reason && stats.finish_reason !== 'stop') parts.push(`finish: ${stats.finish_reason}`);
  return parts.join(' · ');
}

function toolCallsElement(calls) {
  const box = el('div', 'tool-calls');
  for (const call of calls) {
    const item = el('div', 'tool-call');
    const head = el('div', 'tool-call-head');
    head.append(el('span', 'tool-badge', 'tool call'), el('code', 'tool-name', (call.function && call.function.name) || '?'));
    let args = (call.function && call.function.arguments) || '';
    try { args = JSON.stringify(JSON.parse(args), null, 2); } catch { /* partial or not JSON: as sent */ }
    const pre = el('pre');
    pre.append(el('code', null, args));
    item.append(head, pre);
    box.append(item);
  }
  return box;
}

// Fills an assistant message element from its message object (called again while it streams).
export function fillAssistant(node, msg, { streaming = false, last = false, busy = false } = {}) {
  const wasOpen = node.querySelector('details.reasoning')?.open;
  node.replaceChildren();
  node.classList.toggle('streaming', streaming);
  if (msg.reasoning_content) {
    const details = el('details', 'reasoning');
    details.open = wasOpen ?? (streaming && !msg.content);
    const summary = el('summary', null, streaming && !msg.content ? 'Thinking…' : 'Reasoning');
    details.append(summary, renderMarkdown(msg.reasoning_content));
    node.append(details);
  }
  if (msg.content) node.append(renderMarkdown(msg.content));
  if (msg.tool_calls && msg.tool_calls.length) node.append(toolCallsElement(msg.tool_calls));
  if (streaming && !msg.content && !msg.reasoning_content) node.append(el('div', 'typing', '…'));
  if (msg.error) node.append(el('div', 'error message-error', msg.error));
  const foot = el('div', 'message-foot');
  foot.append(el('span', 'stats', statsText(msg.stats)));
  if (!streaming) {
    foot.append(button('Copy', 'copy-message', 'Copy the answer'));
    if (last && !busy) foot.append(button('Regenerate', 'regenerate', 'Answer the last message again'));
  }
  node.append(foot);
}

function userElement(msg, { last, busy }) {
  const node = el('div', 'message user');
  node.append(el('div', 'user-text', msg.content));
  if (last && !busy) {
    const foot = el('div', 'message-foot');
    foot.append(button('Edit', 'edit', 'Edit this message and send it again'));
    node.append(foot);
  }
  return node;
}

// An inline editor replacing the last user message; onSave(text) sends it again.
export function editorElement(text, { onSave, onCancel }) {
  const form = el('form', 'message user editing');
  const area = el('textarea');
  area.value = text;
  area.rows = Math.min(12, Math.max(2, text.split('\n').length));
  area.setAttribute('aria-label', 'Edit message');
  const bar = el('div', 'message-foot');
  const save = el('button', 'primary', 'Save & send');
  save.type = 'submit';
  const cancel = el('button', null, 'Cancel');
  cancel.type = 'button';
  cancel.addEventListener('click', onCancel);
  bar.append(save, cancel);
  form.append(area, bar);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (area.value.trim()) onSave(area.value);
  });
  queueMicrotask(() => area.focus());
  return form;
}

// Renders every message of `conversation` into `container`; returns the element of each message.
export function renderConversation(container, conversation, { busy = false, streamingIndex = -1 } = {}) {
  const nodes = [];
  const msgs = conversation ? conversation.messages : [];
  let lastUser = -1;
  msgs.forEach((m, i) => { if (m.role === 'user') lastUser = i; });
  const frag = document.createDocumentFragment();
  msgs.forEach((m, i) => {
    let node;
    if (m.role === 'user') {
      node = userElement(m, { last: i === lastUser, busy });
    } else {
      node = el('div', 'message assistant');
      fillAssistant(node, m, { streaming: i === streamingIndex, last: i === msgs.length - 1, busy });
    }
    node.dataset.index = String(i);
    nodes.push(node);
    frag.append(node);
  });
  container.replaceChildren(frag);
  return nodes;
}
