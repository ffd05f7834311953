// Jinja2 subset tests: each construct against the output of Python jinja2 (tests/text/data/
// jinja_cases.json, made by make_jinja_cases.py), runtime errors where jinja2 raises, and parse
// errors that name the line and the construct.
#include <gtest/gtest.h>

#include "core/error.h"
#include "text/jinja/template.h"
#include "text/text_test_util.h"

namespace dsserve::text::jinja {
namespace {

std::string data_dir() { return std::string(DSSERVE_SOURCE_DIR) + "/tests/text/data"; }

TEST(Jinja, MatchesPythonJinja2OnEveryConstruct) {
  const auto cases = nlohmann::ordered_json::parse(test::read_text_file(data_dir() + "/jinja_cases.json"));
  ASSERT_GT(cases.size(), 50u);
  for (const auto& c : cases) {
    const std::string src = c["template"];
    LexOptions opt{c["trim_blocks"].get<bool>(), c["lstrip_blocks"].get<bool>()};
    SCOPED_TRACE(src + (opt.trim_blocks ? " [trim]" : ""));
    if (c.contains("parse_error")) {
      EXPECT_THROW(Template(src, "t", opt), Error);
      continue;
    }
    Template t(src, "t", opt);
    if (c.contains("error")) {
      EXPECT_THROW(t.render(c["vars"]), Error);
      continue;
    }
    std::string out;
    try {
      out = t.render(c["vars"]);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    EXPECT_EQ(out, c["expected"].get<std::string>());
  }
}

std::string parse_error(const std::string& src) {
  try {
    Template t(src, "chat_template");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string render_error(const std::string& src, const nlohmann::ordered_json& vars) {
  try {
    Template(src, "chat_template").render(vars);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(Jinja, UnsupportedSyntaxNamesLineAndConstruct) {
  EXPECT_EQ(parse_error("a\nb\n{% macro greet(n) %}hi{% endmacro %}"),
            "chat_template line 3: unsupported construct '{% macro %}'");
  EXPECT_EQ(parse_error("{% include 'other.jinja' %}"), "chat_template line 1: unsupported construct '{% include %}'");
  EXPECT_EQ(parse_error("\n{% if x %}open"), "chat_template line 2: unexpected end of template, expected '{% elif %}' or '{% else %}' or '{% endif %}'");
  EXPECT_EQ(parse_error("{{ x $ y }}"), "chat_template line 1: unexpected character '$' in tag");
  EXPECT_EQ(parse_error("{{ x |}}"), "chat_template line 1: expected a name, found '}}'");
  EXPECT_EQ(parse_error("x\n{% for a in b recursive %}{% endfor %}"), "chat_template line 2: unsupported construct 'recursive' for loop");
  EXPECT_EQ(parse_error("{% frobnicate %}"), "chat_template line 1: unknown or misplaced tag '{% frobnicate %}'");
  EXPECT_EQ(parse_error("{{ 'abc }}"), "chat_template line 1: unterminated string literal");
}

TEST(Jinja, RenderErrorsNameLine) {
  EXPECT_EQ(render_error("\n\n{{ x | frob }}", {}), "chat_template line 3: unsupported filter 'frob'");
  EXPECT_EQ(render_error("{{ m.content.split() }}", {}), "chat_template line 1: 'm' is undefined (reading attribute 'content')");
  EXPECT_EQ(render_error("{{ 1 + 'a' }}", {}), "chat_template line 1: unsupported operand types for +: 'int' and 'str'");
  EXPECT_EQ(render_error("{{ raise_exception('Only user and assistant roles') }}", {}),
            "chat_template line 1: template raised an exception: Only user and assistant roles");
  EXPECT_EQ(render_error("{{ 'x'.frob() }}", {}), "chat_template line 1: unknown method 'frob' of str");
  EXPECT_EQ(render_error("{% set x = 1 %}{% set x.y = 2 %}", {}),
            "chat_template line 1: cannot assign attribute 'y' on 'x': not a namespace()");
  // A namespace that would hold itself (directly or inside a list or dict) is refused: reference
  // counting would never free it and printing it would never end.
  EXPECT_EQ(render_error("{% set ns = namespace(x=0) %}{% set ns.x = ns %}", {}),
            "chat_template line 1: cannot assign attribute 'x' on 'ns': the value holds the namespace itself");
  EXPECT_EQ(render_error("{% set ns = namespace(x=0) %}\n{% set ns.x = [1, {'a': [ns]}] %}", {}),
            "chat_template line 2: cannot assign attribute 'x' on 'ns': the value holds the namespace itself");
  EXPECT_EQ(render_error("{% set ns = namespace(x=0) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}{% endfor %}", {}),
            "chat_template line 1: cannot assign attribute 'x' on 'ns': the value nests 257 levels deep (at most 256)");
  // Another namespace inside one is fine, as is the same value twice.
  const nlohmann::ordered_json none = nlohmann::ordered_json::object();
  EXPECT_EQ(Template("{% set a = namespace(n=1) %}{% set b = namespace(x=0) %}{% set b.x = [a, a] %}{{ b.x[1].n }}")
                .render(none),
            "1");
}

TEST(Jinja, InsertionOrderOfJsonObjectsIsKept) {
  Template t("{{ d | tojson }}");
  auto vars = nlohmann::ordered_json::parse(R"({"d": {"z": 1, "a": {"y": 2, "b": 3}}})");
  EXPECT_EQ(t.render(vars), R"({"z": 1, "a": {"y": 2, "b": 3}})");
}

// A template comes from a request or a checkpoint: out-of-range literals, integer overflow and
// unbounded work are errors that name the line, never a crash, a hang or an exhausted memory.
TEST(Jinja, ArithmeticAndWorkAreBounded) {
  EXPECT_EQ(parse_error("{{ ns.77777777777777777777777 }}"), "chat_template line 1: integer literal 77777777777777777777777 out of range");
  EXPECT_EQ(parse_error("{{ 99999999999999999999 }}"), "chat_template line 1: integer literal 99999999999999999999 out of range");
  EXPECT_EQ(parse_error("{{ 1e999 }}"), "chat_template line 1: float literal 1e999 out of range");
  EXPECT_EQ(render_error("{{ 9223372036854775807 + 1 }}", {}), "chat_template line 1: integer overflow in 9223372036854775807 + 1");
  EXPECT_EQ(render_error("{{ 3037000500 * 3037000500 }}", {}), "chat_template line 1: integer overflow in 3037000500 * 3037000500");
  EXPECT_EQ(render_error("{{ 2 ** 64 }}", {}), "chat_template line 1: integer overflow in 2 ** 64");
  EXPECT_EQ(render_error("{{ 1 // 0 }}", {}), "chat_template line 1: division by zero in '//'");
  EXPECT_EQ(render_error("{{ 'ab' * 100000000 }}", {}), "chat_template line 1: string repetition longer than 16777216 bytes");
  EXPECT_EQ(render_error("{% for i in range(99999999999) %}{% endfor %}", {}),
            "chat_template line 1: range(0, 99999999999, 1) has more than 4194304 items");
  EXPECT_EQ(render_error("{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}", {}),
            "chat_template line 1: more than 4194304 loop iterations: the template does too much work");
  EXPECT_EQ(render_error("{{ 'x' | replace('', 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy') | replace('', 'y' * 1000000) }}", {}),
            "chat_template line 1: replace: the result could exceed 16777216 bytes");
  EXPECT_EQ(render_error("{{ 'a,b'.split('') }}", {}), "chat_template line 1: split: empty separator");
  Template small("{% for i in range(11) %}{{ i }}{% endfor %}", "small");
  small.set_limits(RenderLimits{.max_iterations = 10, .max_output = 100});
  try {
    small.render(nlohmann::ordered_json::object());
    ADD_FAILURE() << "11 iterations rendered under a bound of 10";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "small line 1: more than 10 loop iterations: the template does too much work");
  }
  Template wide("{{ 'x' * 101 }}", "wide");
  wide.set_limits(RenderLimits{.max_iterations = 10, .max_output = 100});
  EXPECT_THROW(wide.render(nlohmann::ordered_json::object()), Error);
  // A truncated UTF-8 sequence in a string is one U+FFFD, never a read past its end.
  EXPECT_EQ(Template("{{ 'a\xE4\xB8'[1] }}{{ 'a\xE4\xB8' | length }}").render(nlohmann::ordered_json::object()), "\xEF\xBF\xBD" "3");
  Template t("{{ 2 ** 62 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 3 - 5 }} {{ range(10, 0, -3) | list }} {{ True + 1 }}");
  EXPECT_EQ(t.render(nlohmann::ordered_json::object()), "4611686018427387904 -4 2 3.5 -2 [10, 7, 4, 1] 2");
}

}  // namespace
}  // namespace dsserve::text::jinja
