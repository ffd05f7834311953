// Invalid UTF-8 from a client: a byte that is not UTF-8 anywhere in a JSON body (a string value, a
// key, /generate text, stop, model, rid) or in the URL path is a 400 with a JSON error body that
// names the offset, never a crash; the server keeps serving afterwards.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { BASE, API_KEY, get, expectErrorBody } from './common.mjs';

// Sends one raw HTTP/1.1 request (head and body as Buffers) and returns { status, body }.
function rawRequest(head, body = Buffer.alloc(0)) {
  const url = new URL(BASE);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(url.port), url.hostname);
    const chunks = [];
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d+)/.exec(text);
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: m ? Number(m[1]) : 0, body: split >= 0 ? text.slice(split + 4) : '' });
    });
    sock.write(Buffer.concat([head, body]));
  });
}

function post(path, body) {
  const auth = API_KEY ? `authorization: Bearer ${API_KEY}\r\n` : '';
  const head = Buffer.from(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${auth}` +
                           `content-length: ${body.length}\r\nconnection: close\r\n\r\n`, 'latin1');
  return rawRequest(head, body);
}

// The JSON text with the byte 0xff (or another invalid sequence) where `@` stands.
const withBad = (json, bad = [0xff]) => {
  const [a, b] = json.split('@');
  return Buffer.concat([Buffer.from(a), Buffer.from(bad), Buffer.from(b)]);
};

const cases = [
  ['/generate', '@', 'a lone byte'],
  ['/generate', '{"text": "hi @", "sampling_params": {"max_new_tokens": 1}}', '/generate text'],
  ['/generate', '{"text": "hi", "rid": "r@"}', 'rid'],
  ['/generate', '{"text": "hi", "sampling_params": {"stop": ["@"]}}', 'stop'],
  ['/v1/chat/completions', '{"model": "m@", "messages": [{"role": "user", "content": "hi"}]}', 'model'],
  ['/v1/chat/completions', '{"messages": [{"role": "user", "content": "a@b"}], "max_tokens": 1}', 'content'],
  ['/v1/chat/completions', '{"messages": [], "k@": 1}', 'a key'],
  ['/v1/completions', '{"prompt": "@", "max_tokens": 1}', 'prompt'],
];

for (const [route, json, what] of cases) {
  test(`invalid UTF-8 in ${what} (${route}) is a 400 and the server lives`, async () => {
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const r = await post(route, withBad(json, bad));
      assert.equal(r.status, 400, `${what} ${bad}: ${r.body}`);
      const j = JSON.parse(r.body);  // the body itself is valid JSON (and so valid UTF-8)
      expectErrorBody(assert, j);
      assert.match(j.error.message, /not valid UTF-8: invalid byte 0x[0-9a-f]{2} at offset \d+/);
    }
    assert.equal((await get('/health')).status, 200);
  });
}

test('invalid UTF-8 in the URL path is a 400 and the server lives', async () => {
  const auth = API_KEY ? `authorization: Bearer ${API_KEY}\r\n` : '';
  for (const path of [[0x2f, 0xff], [0x2f, 0x67, 0x65, 0x6e, 0xc0, 0xaf]]) {
    const head = Buffer.concat([Buffer.from('GET '), Buffer.from(path),
                                Buffer.from(` HTTP/1.1\r\nhost: x\r\n${auth}connection: close\r\n\r\n`)]);
    const r = await rawRequest(head);
    assert.equal(r.status, 400, r.body);
    expectErrorBody(assert, JSON.parse(r.body));
  }
  assert.equal((await get('/health')).status, 200);
});
