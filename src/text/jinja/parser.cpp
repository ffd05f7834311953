// Recursive-descent Jinja2 parser (see parser.h). Precedence, loosest first: conditional, or, and,
// not, comparisons and in, + -, ~, * / // %, **, unary - +, then postfix (. [] () | is).
#include "text/jinja/parser.h"

#include <set>

#include "core/error.h"

namespace dsserve::text::jinja {
namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& name) : t_(tokens), name_(name) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& next_token() { return t_[i_++]; }
  bool is_op(const char* op) const { return cur().kind == TokenKind::kOperator && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == TokenKind::kName && cur().text == n; }
  [[noreturn]] void error(const std::string& what) const { fail("{} line {}: {}", name_, cur().line, what); }
  std::string describe(const Token& t) const {
    switch (t.kind) {
      case TokenKind::kText: return "template text";
      case TokenKind::kVarBegin: return "'{{'";
      case TokenKind::kVarEnd: return "'}}'";
      case TokenKind::kBlockBegin: return "'{%'";
      case TokenKind::kBlockEnd: return "'%}'";
      case TokenKind::kEnd: return "end of template";
      case TokenKind::kString: return "string '" + t.text + "'";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) error(fmt::format("expected '{}', found {}", op, describe(cur())));
    ++i_;
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::kName) error(fmt::format("expected a name, found {}", describe(cur())));
    return next_token().text;
  }
  void expect_block_end(const std::string& tag) {
    if (cur().kind != TokenKind::kBlockEnd)
      error(fmt::format("expected '%}}' to close '{{% {} %}}', found {}", tag, describe(cur())));
    ++i_;
  }
  template <typename T>
  std::unique_ptr<T> node(int line) {
    auto n = std::make_unique<T>();
    n->line = line;
    return n;
  }

  // Statements until a block tag whose keyword is in `ends`; that keyword is stored in `end`.
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    Body body;
    while (true) {
      const Token& tok = cur();
      if (tok.kind == TokenKind::kEnd) {
        if (!ends.empty()) {
          std::string want;
          for (const auto& e : ends) want += (want.empty() ? "" : " or ") + ("'{% " + e + " %}'");
          error("unexpected end of template, expected " + want);
        }
        end.clear();
        return body;
      }
      if (tok.kind == TokenKind::kText) {
        auto s = node<TextStmt>(tok.line);
        s->text = tok.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (tok.kind == TokenKind::kVarBegin) {
        ++i_;
        auto s = node<OutputStmt>(tok.line);
        s->expr = parse_expression();
        if (cur().kind != TokenKind::kVarEnd) error(fmt::format("expected '}}}}', found {}", describe(cur())));
        ++i_;
        body.push_back(std::move(s));
      } else if (tok.kind == TokenKind::kBlockBegin) {
        ++i_;
        const std::string keyword = expect_name();
        if (ends.count(keyword)) {
          end = keyword;
          return body;
        }
        body.push_back(parse_statement(keyword, tok.line));
      } else {
        error("unexpected " + describe(tok));
      }
    }
  }

  StmtPtr parse_statement(const std::string& keyword, int line) {
    if (keyword == "if") return parse_if(line);
    if (keyword == "for") return parse_for(line);
    if (keyword == "set") return parse_set(line);
    if (keyword == "break" || keyword == "continue") {
      auto s = node<LoopControlStmt>(line);
      s->is_break = keyword == "break";
      expect_block_end(keyword);
      return s;
    }
    static const std::set<std::string> kKnownUnsupported = {
        "macro", "call", "filter", "include", "import", "from", "extends", "block", "raw", "with", "autoescape", "do", "trans"};
    if (kKnownUnsupported.count(keyword))
      fail("{} line {}: unsupported construct '{{% {} %}}'", name_, line, keyword);
    fail("{} line {}: unknown or misplaced tag '{{% {} %}}'", name_, line, keyword);
  }

  StmtPtr parse_if(int line) {
    auto s = node<IfStmt>(line);
    ExprPtr cond = parse_expression();
    expect_block_end("if");
    while (true) {
      std::string end;
      Body body = parse_body({"elif", "else", "endif"}, end);
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") {
        cond = parse_expression();
        expect_block_end("elif");
        continue;
      }
      if (end == "else") {
        expect_block_end("else");
        s->otherwise = parse_body({"endif"}, end);
      }
      expect_block_end("endif");
      return s;
    }
  }

  StmtPtr parse_for(int line) {
    auto s = node<ForStmt>(line);
    s->targets.push_back(expect_name());
    while (is_op(",")) {
      ++i_;
      s->targets.push_back(expect_name());
    }
    if (!is_name("in")) error(fmt::format("expected 'in' in for loop, found {}", describe(cur())));
    ++i_;
    s->iterable = parse_expression(/*allow_conditional=*/false);
    if (is_name("if")) {
      ++i_;
      s->filter = parse_expression(false);
    }
    if (is_name("recursive")) error("unsupported construct 'recursive' for loop");
    expect_block_end("for");
    std::string end;
    s->body = parse_body({"else", "endfor"}, end);
    if (end == "else") {
      expect_block_end("else");
      s->otherwise = parse_body({"endfor"}, end);
    }
    expect_block_end("endfor");
    return s;
  }

  StmtPtr parse_set(int line) {
    auto s = node<SetStmt>(line);
    s->name = expect_name();
    if (is_op(".")) {
      ++i_;
      s->attribute = expect_name();
    } else if (is_op(",")) {
      s->unpack.push_back(s->name);
      while (is_op(",")) {
        ++i_;
        s->unpack.push_back(expect_name());
      }
    }
    if (is_op("=")) {
      ++i_;
      s->value = parse_expression();
      expect_block_end("set");
      return s;
    }
    if (!s->attribute.empty() || !s->unpack.empty()) error("expected '=' in set");
    if (is_op("|")) error("unsupported construct: filtered block set");
    expect_block_end("set");
    std::string end;
    s->block = parse_body({"endset"}, end);
    expect_block_end("endset");
    return s;
  }

  // ------------------------------------------------------------------ expressions
  ExprPtr parse_expression(bool allow_conditional = true) {
    ExprPtr e = parse_or();
    while (allow_conditional && is_name("if")) {
      const int line = cur().line;
      ++i_;
      auto c = node<ConditionalExpr>(line);
      c->then = std::move(e);
      c->condition = parse_or();
      if (is_name("else")) {
        ++i_;
        c->otherwise = parse_expression();
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, int line) {
    auto b = node<BinaryExpr>(line);
    b->op = op;
    b->left = std::move(l);
    b->right = std::move(r);
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const int line = next_token().line;
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const int line = next_token().line;
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = node<UnaryExpr>(next_token().line);
      u->op = "not";
      u->operand = parse_not();
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      const int line = cur().line;
      if (cur().kind == TokenKind::kOperator &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        const std::string op = next_token().text;
        e = binary(op, std::move(e), parse_math1(), line);
      } else if (is_name("in")) {
        ++i_;
        e = binary("in", std::move(e), parse_math1(), line);
      } else if (is_name("not") && t_[i_ + 1].kind == TokenKind::kName && t_[i_ + 1].text == "in") {
        i_ += 2;
        e = binary("not in", std::move(e), parse_math1(), line);
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = next_token();
      e = binary(op.text, std::move(e), parse_concat(), op.line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = next_token().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = next_token();
      e = binary(op.text, std::move(e), parse_pow(), op.line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = next_token().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = node<UnaryExpr>(cur().line);
      u->op = next_token().text;
      u->operand = parse_unary(false);
      e = std::move(u);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters_and_tests(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& tok = cur();
    switch (tok.kind) {
      case TokenKind::kName: {
        ++i_;
        auto lit = node<LiteralExpr>(tok.line);
        if (tok.text == "true" || tok.text == "True") lit->value = Value(true);
        else if (tok.text == "false" || tok.text == "False") lit->value = Value(false);
        else if (tok.text == "none" || tok.text == "None") lit->value = Value(None{});
        else {
          auto n = node<NameExpr>(tok.line);
          n->name = tok.text;
          return n;
        }
        return lit;
      }
      case TokenKind::kString: {
        std::string s;
        while (cur().kind == TokenKind::kString) s += next_token().text;  // adjacent literals join
        auto lit = node<LiteralExpr>(tok.line);
        lit->value = Value(std::move(s));
        return lit;
      }
      case TokenKind::kInteger: {
        ++i_;
        auto lit = node<LiteralExpr>(tok.line);
        lit->value = integer_literal(tok);
        return lit;
      }
      case TokenKind::kFloat: {
        ++i_;
        auto lit = node<LiteralExpr>(tok.line);
        try {
          lit->value = Value(std::stod(tok.text));
        } catch (const std::exception&) {
          fail("{} line {}: float literal {} out of range", name_, tok.line, tok.text);
        }
        return lit;
      }
      case TokenKind::kOperator:
        if (tok.text == "(") {
          ++i_;
          if (is_op(")")) {  // empty tuple
            ++i_;
            auto l = node<ListExpr>(tok.line);
            l->is_tuple = true;
            return l;
          }
          ExprPtr e = parse_expression();
          if (is_op(",")) {  // tuple, represented as a list
            auto l = node<ListExpr>(tok.line);
            l->is_tuple = true;
            l->items.push_back(std::move(e));
            while (is_op(",")) {
              ++i_;
              if (is_op(")")) break;
              l->items.push_back(parse_expression());
            }
            e = std::move(l);
          }
          expect_op(")");
          return e;
        }
        if (tok.text == "[") {
          ++i_;
          auto l = node<ListExpr>(tok.line);
          while (!is_op("]")) {
            l->items.push_back(parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("]");
          return l;
        }
        if (tok.text == "{") {
          ++i_;
          auto d = node<DictExpr>(tok.line);
          while (!is_op("}")) {
            ExprPtr k = parse_expression();
            expect_op(":");
            d->items.emplace_back(std::move(k), parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("}");
          return d;
        }
        break;
      default:
        break;
    }
    error(fmt::format("expected an expression, found {}", describe(tok)));
  }

  Arguments parse_call_arguments() {  // after '('
    Arguments args;
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) error("unsupported construct: *args / **kwargs in a call");
      if (cur().kind == TokenKind::kName && t_[i_ + 1].kind == TokenKind::kOperator && t_[i_ + 1].text == "=") {
        std::string key = next_token().text;
        ++i_;
        args.keyword.emplace_back(std::move(key), parse_expression());
      } else {
        if (!args.keyword.empty()) error("positional argument after keyword argument");
        args.positional.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
    return args;
  }

  Value integer_literal(const Token& tok) {
    try {
      return Value(static_cast<int64_t>(std::stoll(tok.text)));
    } catch (const std::exception&) {
      fail("{} line {}: integer literal {} out of range", name_, tok.line, tok.text);
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const int line = cur().line;
      if (is_op(".")) {
        ++i_;
        auto a = node<AttributeExpr>(line);
        a->object = std::move(e);
        if (cur().kind == TokenKind::kInteger) {  // foo.0 is foo[0]
          auto idx = node<IndexExpr>(line);
          auto lit = node<LiteralExpr>(line);
          lit->value = integer_literal(next_token());
          idx->object = std::move(a->object);
          idx->index = std::move(lit);
          e = std::move(idx);
          continue;
        }
        a->name = expect_name();
        e = std::move(a);
      } else if (is_op("[")) {
        ++i_;
        ExprPtr start, stop, step;
        bool is_slice = false;
        if (!is_op(":")) start = parse_expression();
        if (is_op(":")) {
          is_slice = true;
          ++i_;
          if (!is_op("]") && !is_op(":")) stop = parse_expression();
          if (is_op(":")) {
            ++i_;
            if (!is_op("]")) step = parse_expression();
          }
        }
        expect_op("]");
        if (is_slice) {
          auto s = node<SliceExpr>(line);
          s->object = std::move(e);
          s->start = std::move(start);
          s->stop = std::move(stop);
          s->step = std::move(step);
          e = std::move(s);
        } else {
          auto idx = node<IndexExpr>(line);
          idx->object = std::move(e);
          idx->index = std::move(start);
          e = std::move(idx);
        }
      } else if (is_op("(")) {
        ++i_;
        auto c = node<CallExpr>(line);
        c->callee = std::move(e);
        c->args = parse_call_arguments();
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filters_and_tests(ExprPtr e) {
    while (true) {
      const int line = cur().line;
      if (is_op("|")) {
        ++i_;
        auto f = node<FilterExpr>(line);
        f->value = std::move(e);
        f->name = expect_name();
        if (is_op("(")) {
          ++i_;
          f->args = parse_call_arguments();
        }
        e = std::move(f);
      } else if (is_name("is")) {
        ++i_;
        auto t = node<TestExpr>(line);
        if (is_name("not")) {
          ++i_;
          t->negated = true;
        }
        t->value = std::move(e);
        t->name = expect_name();
        if (is_op("(")) {
          ++i_;
          t->args = parse_call_arguments();
        } else if ((cur().kind == TokenKind::kName && !is_name("else") && !is_name("or") && !is_name("and") &&
                    !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is")) ||
                   cur().kind == TokenKind::kString || cur().kind == TokenKind::kInteger ||
                   cur().kind == TokenKind::kFloat || is_op("[") || is_op("{")) {
          t->args.positional.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        ++i_;
        auto c = node<CallExpr>(line);
        c->callee = std::move(e);
        c->args = parse_call_arguments();
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& t_;
  const std::string& name_;
  size_t i_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& name) { return Parser(tokens, name).parse_template(); }

}  // namespace dsserve::text::jinja
