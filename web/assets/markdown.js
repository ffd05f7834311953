// Markdown to DOM, safe by construction: marked (npm, embedded beside this file) only parses; every
// element here is made with createElement and every piece of model text goes in as a text node, so
// raw HTML in a reply (<script>, <img onerror>, ...) shows as the characters it is. Links keep only
// http(s) and mailto targets; images are never loaded (the page makes no request off its server),
// they show as links.
import { Lexer } from './marked.esm.js';

const SAFE_LINK = /^(https?:|mailto:)/i;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function link(href, title, children) {
  if (!SAFE_LINK.test(String(href || '').trim())) {
    const span = el('span');
    span.append(...children);
    return span;
  }
  const a = el('a');
  a.href = href;
  a.rel = 'noopener noreferrer nofollow';
  a.target = '_blank';
  if (title) a.title = title;
  a.append(...children);
  return a;
}

function inline(tokens) {
  const out = [];
  for (const t of tokens || []) {
    switch (t.type) {
      case 'text':
        out.push(...(t.tokens ? inline(t.tokens) : [document.createTextNode(t.text)]));
        break;
      case 'escape':
      case 'html':
        out.push(document.createTextNode(t.text));
        break;
      case 'strong': { const e = el('strong'); e.append(...inline(t.tokens)); out.push(e); break; }
      case 'em': { const e = el('em'); e.append(...inline(t.tokens)); out.push(e); break; }
      case 'del': { const e = el('del'); e.append(...inline(t.tokens)); out.push(e); break; }
      case 'codespan': out.push(el('code', null, t.text)); break;
      case 'br': out.push(el('br')); break;
      case 'link': out.push(link(t.href, t.title, inline(t.tokens))); break;
      case 'image': out.push(link(t.href, t.title, [document.createTextNode(`[image: ${t.text || t.href}]`)])); break;
      case 'checkbox': out.push(checkbox(t.checked)); break;
      default: out.push(document.createTextNode(t.raw || ''));
    }
  }
  return out;
}

function checkbox(checked) {
  const c = el('input');
  c.type = 'checkbox';
  c.checked = !!checked;
  c.disabled = true;
  return c;
}

function codeBlock(t) {
  const wrap = el('div', 'code-block');
  const bar = el('div', 'code-bar');
  bar.append(el('span', 'code-lang', t.lang || 'text'));
  const copy = el('button', 'copy', 'Copy');
  copy.type = 'button';
  copy.dataset.copy = '';
  bar.append(copy);
  const pre = el('pre');
  pre.append(el('code', null, t.text));
  wrap.append(bar, pre);
  return wrap;
}

function table(t) {
  const tableEl = el('table');
  const head = el('thead');
  const hr = el('tr');
  t.header.forEach((cell, i) => {
    const th = el('th');
    if (t.align[i]) th.classList.add(`align-${t.align[i]}`);
    th.append(...inline(cell.tokens));
    hr.append(th);
  });
  head.append(hr);
  const body = el('tbody');
  for (const row of t.rows) {
    const tr = el('tr');
    row.forEach((cell, i) => {
      const td = el('td');
      if (t.align[i]) td.classList.add(`align-${t.align[i]}`);
      td.append(...inline(cell.tokens));
      tr.append(td);
    });
    body.append(tr);
  }
  tableEl.append(head, body);
  const scroll = el('div', 'table-scroll');
  scroll.append(tableEl);
  return scroll;
}

function blocks(tokens) {
  const out = [];
  for (const t of tokens || []) {
    switch (t.type) {
      case 'space': case 'def': break;
      case 'paragraph': { const p = el('p'); p.append(...inline(t.tokens)); out.push(p); break; }
      case 'text': {  // a tight list item's text
        const span = el('span');
        span.append(...(t.tokens ? inline(t.tokens) : [document.createTextNode(t.text)]));
        out.push(span);
        break;
      }
      case 'heading': { const h = el(`h${Math.min(6, t.depth + 2)}`); h.append(...inline(t.tokens)); out.push(h); break; }
      case 'code': out.push(codeBlock(t)); break;
      case 'blockquote': { const q = el('blockquote'); q.append(...blocks(t.tokens)); out.push(q); break; }
      case 'hr': out.push(el('hr')); break;
      case 'list': {
        const list = el(t.ordered ? 'ol' : 'ul');
        if (t.ordered && t.start !== '' && t.start !== 1) list.start = Number(t.start);
        for (const item of t.items) {
          const li = el('li');
          if (item.task) li.classList.add('task');
          li.append(...blocks(item.tokens));
          list.append(li);
        }
        out.push(list);
        break;
      }
      case 'checkbox': out.push(checkbox(t.checked)); break;
      case 'table': out.push(table(t)); break;
      case 'html': out.push(el('p', 'raw-html', t.text)); break;
      default: if (t.raw) out.push(el('p', null, t.raw));
    }
  }
  return out;
}

// Renders markdown source into a fresh element (class "markdown").
export function renderMarkdown(source) {
  const root = el('div', 'markdown');
  let tokens;
  try {
    tokens = Lexer.lex(source || '', { gfm: true });
  } catch {
    root.append(el('p', null, source));
    return root;
  }
  root.append(...blocks(tokens));
  return root;
}
