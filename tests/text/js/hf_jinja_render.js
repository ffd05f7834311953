// Renders templates with @huggingface/jinja (npm) for comparison with the C++ Jinja2 subset.
// Usage: node hf_jinja_render.js NODE_MODULES IN.json OUT.json
//   IN: array of {template, vars}; OUT: array of rendered strings (or {"error": message}).
const path = require("path");
const fs = require("fs");
const { Template } = require(path.join(process.argv[2], "@huggingface/jinja"));
const cases = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = cases.map((c) => {
  try {
    return new Template(c.template).render(c.vars);
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
fs.writeFileSync(process.argv[4], JSON.stringify(out));
