// A checker for GBNF grammars, built in the test from the grammar text alone: the text is read
// here (rules `name ::= body`, string literals with escapes, character classes, `.`, groups, | and
// the quantifiers * + ? {m} {m,} {m,n}) and turned into a nearley grammar, whose Earley parser then
// decides whether a whole text is in the language. Independent of the server's own EBNF reader.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.resolve(process.env.DSSERVE_NODE_MODULES, 'x.js'));
const nearley = require('nearley');

const ESC = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', b: '\b', '0': '\0' };

function readGrammar(text) {
  let pos = 0;
  const rules = [];
  const isName = (c) => c !== undefined && /[A-Za-z0-9_-]/.test(c);
  const space = () => {
    for (;;) {
      while (pos < text.length && /\s/.test(text[pos])) pos++;
      if (text[pos] === '#') while (pos < text.length && text[pos] !== '\n') pos++;
      else return;
    }
  };
  const name = () => {
    const s = pos;
    while (isName(text[pos])) pos++;
    if (s === pos) throw new Error(`rule name expected at ${pos}`);
    return text.slice(s, pos);
  };
  const ruleStarts = () => /^[A-Za-z0-9_-]+\s*::=/.test(text.slice(pos));
  const char = () => {
    if (text[pos] !== '\\') return text[pos++];
    const e = text[pos + 1];
    pos += 2;
    if (e in ESC) return ESC[e];
    const hex = { x: 2, u: 4, U: 8 }[e];
    if (hex) {
      const cp = parseInt(text.slice(pos, pos + hex), 16);
      pos += hex;
      return String.fromCodePoint(cp);
    }
    return e;
  };
  const primary = () => {
    const c = text[pos];
    if (c === '"' || c === "'") {
      pos++;
      let s = '';
      while (text[pos] !== c) s += char();
      pos++;
      return { lit: s };
    }
    if (c === '[') {
      pos++;
      const neg = text[pos] === '^';
      if (neg) pos++;
      const ranges = [];
      while (text[pos] !== ']') {
        const lo = char();
        let hi = lo;
        if (text[pos] === '-' && text[pos + 1] !== ']') {
          pos++;
          hi = char();
        }
        ranges.push([lo.codePointAt(0), hi.codePointAt(0)]);
      }
      pos++;
      return { cls: ranges, neg };
    }
    if (c === '.') {
      pos++;
      return { cls: [], neg: true };
    }
    if (c === '(') {
      pos++;
      const e = alternation(true);
      space();
      pos++;  // ')'
      return e;
    }
    return { ref: name() };
  };
  const quantified = (e) => {
    for (;;) {
      const c = text[pos];
      if (c === '*') { pos++; e = { rep: e, min: 0, max: -1 }; }
      else if (c === '+') { pos++; e = { rep: e, min: 1, max: -1 }; }
      else if (c === '?') { pos++; e = { rep: e, min: 0, max: 1 }; }
      else if (c === '{') {
        const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(text.slice(pos));
        pos += m[0].length;
        const min = Number(m[1]);
        e = { rep: e, min, max: m[2] === undefined ? min : m[3] === '' ? -1 : Number(m[3]) };
      } else return e;
    }
  };
  const sequence = (nested) => {
    const items = [];
    for (;;) {
      space();
      if (pos >= text.length || text[pos] === '|' || text[pos] === ')') break;
      if (!nested && ruleStarts()) break;
      items.push(quantified(primary()));
    }
    return { seq: items };
  };
  const alternation = (nested) => {
    const alts = [sequence(nested)];
    while (text[pos] === '|') {
      pos++;
      alts.push(sequence(nested));
    }
    return { alt: alts };
  };
  space();
  while (pos < text.length) {
    const n = name();
    space();
    pos += 3;  // '::='
    rules.push([n, alternation(false)]);
    space();
  }
  return rules;
}

// GBNF text -> a function telling whether a whole text is in the grammar's language.
export function gbnfParser(text) {
  const rules = [];
  let fresh = 0;
  const none = () => null;
  const add = (name, symbols) => rules.push({ name, symbols, postprocess: none });
  // Symbols for an expression (new nonterminals where needed).
  const symbols = (e) => {
    if (e.lit !== undefined) return [...e.lit].map((ch) => ({ literal: ch }));
    if (e.cls) {
      const inRanges = (ch) => e.cls.some(([lo, hi]) => ch.codePointAt(0) >= lo && ch.codePointAt(0) <= hi);
      return [{ test: (ch) => inRanges(ch) !== e.neg }];
    }
    if (e.ref) return [e.ref];
    if (e.seq) return e.seq.flatMap(symbols);
    const n = `_${fresh++}`;
    if (e.alt) {
      for (const a of e.alt) add(n, symbols(a));
    } else if (e.rep) {
      const item = symbols(e.rep);
      if (e.max < 0) {  // n -> item{min} tail, tail -> | tail item
        const tail = `_${fresh++}`;
        add(tail, []);
        add(tail, [tail, ...item]);
        add(n, [...Array(e.min).fill(item).flat(), tail]);
      } else {
        for (let k = e.min; k <= e.max; k++) add(n, Array(k).fill(item).flat());
      }
    }
    return [n];
  };
  for (const [name, body] of readGrammar(text)) for (const a of body.alt) add(name, symbols(a));
  const grammar = nearley.Grammar.fromCompiled({ ParserRules: rules, ParserStart: 'root' });
  return (input) => {
    const p = new nearley.Parser(grammar);
    try {
      p.feed(input);
    } catch {
      return false;
    }
    return p.results.length > 0;
  };
}
