// The structured-output cases the e2e suite sends (structured.test.mjs): 30 JSON schemas, 20
// regexes and 10 EBNF grammars. Every case bounds its output (maxLength, maxItems, number bounds,
// bounded repetition, optional recursion) so that a random-weight model, which writes noise, still
// finishes within max_tokens: only the grammar makes its output valid. No case states an expected
// output: ajv, Node's RegExp and a parser built from the grammar decide.

const str = (max, min = 0) => ({ type: 'string', minLength: min, maxLength: max });

export const SCHEMAS = [
  { type: 'object', properties: { name: str(8), age: { type: 'integer', minimum: 0, maximum: 120 } }, required: ['name', 'age'], additionalProperties: false },
  { type: 'object', properties: { ok: { type: 'boolean' }, note: { type: 'null' } }, required: ['ok'] },
  { type: 'object', properties: { color: { enum: ['red', 'green', 'blue'] }, shade: { enum: [1, 2.5, null, 'dark'] } }, required: ['color', 'shade'] },
  { type: 'array', items: { type: 'integer', minimum: -50, maximum: 50 }, minItems: 1, maxItems: 5 },
  { type: 'object', properties: { tags: { type: 'array', items: str(6, 1), maxItems: 3 }, id: { type: 'integer', exclusiveMinimum: 0, maximum: 999999 } }, required: ['tags', 'id'] },
  { type: 'object', properties: { point: { type: 'object', properties: { x: { type: 'number', minimum: -1, maximum: 1 }, y: { type: 'number', minimum: -1, maximum: 1 } }, required: ['x', 'y'] } }, required: ['point'] },
  { type: 'object', properties: { price: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 100 }, qty: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['price', 'qty'] },
  { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2,4}$' } }, required: ['code'] },
  { type: 'object', properties: { zip: { type: 'string', pattern: '^\\d{5}(-\\d{4})?$' }, state: { type: 'string', pattern: '^[A-Z]{2}$' } }, required: ['zip', 'state'] },
  { type: 'object', properties: { day: { type: 'string', format: 'date' }, at: { type: 'string', format: 'date-time' } }, required: ['day', 'at'] },
  { type: 'object', properties: { email: { type: 'string', format: 'email' }, id: { type: 'string', format: 'uuid' } }, required: ['email', 'id'] },
  { $defs: { node: { type: 'object', properties: { v: { type: 'integer', minimum: 0, maximum: 9 }, next: { $ref: '#/$defs/node' } }, required: ['v'], additionalProperties: false } }, $ref: '#/$defs/node' },
  { type: 'object', properties: { label: str(5), children: { type: 'array', items: { $ref: '#' }, maxItems: 1 } }, required: ['label'] },
  { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'string', maxLength: 4 }, { type: 'boolean' }] },
  { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number', minimum: 0, maximum: 10 } }, required: ['kind', 'r'] },
  { oneOf: [{ type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 5 } }, required: ['a'], additionalProperties: false }, { type: 'object', properties: { b: str(3) }, required: ['b'], additionalProperties: false }] },
  { allOf: [{ type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 100 } }, required: ['a'] }, { properties: { a: { maximum: 10 }, b: { type: 'boolean' } }, required: ['b'] }] },
  { type: 'array', prefixItems: [{ type: 'string', maxLength: 3 }, { type: 'integer', minimum: 1, maximum: 3 }, { type: 'boolean' }], items: false, minItems: 2 },
  { type: 'object', properties: { meta: { type: 'object', additionalProperties: { type: 'integer', minimum: 0, maximum: 9 } } }, required: ['meta'] },
  { type: 'object', properties: { a: str(3), b: str(3), c: str(3), d: str(3) }, required: ['c'] },
  { type: ['string', 'null'], maxLength: 6 },
  { type: 'object', properties: { matrix: { type: 'array', items: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: 2, maxItems: 2 }, minItems: 2, maxItems: 2 } }, required: ['matrix'] },
  { type: 'object', properties: { user: { type: 'object', properties: { name: str(6, 1), roles: { type: 'array', items: { enum: ['admin', 'dev', 'ops'] }, minItems: 1, maxItems: 3 } }, required: ['name', 'roles'] }, active: { type: 'boolean' } }, required: ['user', 'active'] },
  { type: 'integer', minimum: -1000, maximum: 1000 },
  { type: 'number', minimum: 0.25, maximum: 0.75 },
  { type: 'object', properties: { temp: { type: 'number', minimum: -40.5, exclusiveMaximum: 60 }, unit: { enum: ['C', 'F'] } }, required: ['temp', 'unit'] },
  { definitions: { leaf: { type: 'object', properties: { w: { type: 'number', minimum: 0, maximum: 1 } }, required: ['w'] } }, type: 'object', properties: { left: { $ref: '#/definitions/leaf' }, right: { $ref: '#/definitions/leaf' } }, required: ['left', 'right'] },
  { type: 'object', properties: { ip: { type: 'string', format: 'ipv4' }, t: { type: 'string', format: 'time' } }, required: ['ip', 't'] },
  { type: 'object', properties: { steps: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 3 }, op: { enum: ['add', 'sub'] } }, required: ['n', 'op'] }, minItems: 1, maxItems: 2 } }, required: ['steps'] },
  { type: 'object', properties: { title: { type: 'string', pattern: '^[A-Za-z ]{1,10}$' }, score: { type: 'integer', minimum: 0, maximum: 5 }, extra: { type: ['integer', 'null'], minimum: 0, maximum: 3 } }, required: ['title', 'score', 'extra'] },
];

export const REGEXES = [
  '[a-z]{1,8}', '\\d{3}-\\d{4}', '(yes|no|maybe)', '[A-Z][a-z]{0,5}( [A-Z][a-z]{0,5}){0,2}', '0x[0-9a-f]{2,6}',
  '\\d{1,3}(\\.\\d{1,3}){3}', '(ab|cd){1,4}x?', '[a-z]{1,5}@[a-z]{1,5}\\.(com|org)', '-?\\d{1,4}(\\.\\d{1,2})?', '[^\\n"]{1,12}',
  '(\\w{1,4}_){1,3}\\w{1,2}', '#[0-9A-Fa-f]{6}', '[01]{4,8}', '(red|green|blue)-(\\d|[1-9]\\d)', '\\s{0,2}[a-z]{2}\\s{0,2}',
  '\\[(\\d,){0,3}\\d\\]', '[a-c]{2}[x-z]{2}', 'v\\d\\.\\d{1,2}\\.\\d{1,2}', '(?:[A-Z]{2}\\d){1,3}', '[\\u4e00-\\u4e0f]{1,4}',
];

export const GRAMMARS = [
  'root ::= "[" (num ("," num){0,3})? "]"\nnum ::= [1-9] [0-9]{0,2} | "0"\n',
  'root ::= greeting " " name "!"\ngreeting ::= "hi" | "hello" | "hey"\nname ::= [A-Z] [a-z]{1,6}\n',
  'root ::= expr\nexpr ::= term (("+" | "-") term){0,3}\nterm ::= [0-9]{1,2} | "(" [0-9]{1,2} ("*" [0-9]{1,2}){0,2} ")"\n',
  'root ::= "{" pair ("," pair){0,2} "}"\npair ::= key ":" value\nkey ::= [a-z]{1,4}\nvalue ::= [0-9]{1,3} | "true" | "false"\n',
  'root ::= line{1,3}\nline ::= word (" " word){0,3} "\\n"\nword ::= [a-z]{1,5}\n',
  'root ::= "<" tag ">" text "</" tag ">"\ntag ::= "b" | "i" | "em"\ntext ::= [a-z ]{0,10}\n',
  'root ::= list\nlist ::= "(" (item (" " item){0,2})? ")"\nitem ::= [a-z]{1,3} | list\n',
  'root ::= date "T" time\ndate ::= [0-9]{4} "-" [01] [0-9] "-" [0-3] [0-9]\ntime ::= [0-2] [0-9] ":" [0-5] [0-9]\n',
  'root ::= ("SELECT " cols " FROM " ident (" WHERE " ident " = " [0-9]{1,3})?)\ncols ::= "*" | ident (", " ident){0,2}\nident ::= [a-z] [a-z_]{0,6}\n',
  'root ::= bool (" and " bool){0,2}\nbool ::= "true" | "false" | "not " bool | "(" bool ")"\n',
];
