#include "tokenizer/jinja_parser.h"

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_lexer.h"

namespace prefixd::jinja {

namespace {

// Errors inside the recursive descent unwind as ParseError and become one Status in Parse().
struct ParseError {
  std::string message;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body ParseTemplate() {
    std::string end;
    Body body = ParseBody({}, &end);
    return body;
  }

 private:
  [[noreturn]] void Fail(const std::string& what, int line) const {
    throw ParseError{absl::StrCat("chat template line ", line, ": ", what)};
  }
  const Token& Peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& Next() {
    const Token& t = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return t;
  }
  bool IsOp(std::string_view op, size_t k = 0) const {
    return Peek(k).kind == TokenKind::kOperator && Peek(k).text == op;
  }
  bool IsName(std::string_view n, size_t k = 0) const {
    return Peek(k).kind == TokenKind::kName && Peek(k).text == n;
  }
  void ExpectOp(std::string_view op) {
    if (!IsOp(op)) Fail(absl::StrCat("expected '", std::string(op), "' but found '", Peek().text, "'"), Peek().line);
    Next();
  }
  std::string ExpectName() {
    if (Peek().kind != TokenKind::kName) Fail(absl::StrCat("expected a name but found '", Peek().text, "'"), Peek().line);
    return Next().text;
  }
  void ExpectStmtClose() {
    if (Peek().kind != TokenKind::kStmtClose) {
      Fail(absl::StrCat("expected '%}' but found '", Peek().text, "'"), Peek().line);
    }
    Next();
  }

  // Parses statements until `{% NAME` with NAME in `stops` (left unconsumed after the name,
  // returned in *stop) or the end of input (an error when `stops` is not empty).
  Body ParseBody(const std::vector<std::string>& stops, std::string* stop, int open_line = 0) {
    DepthGuard guard = Enter("blocks");
    Body body;
    while (true) {
      const Token& t = Peek();
      if (t.kind == TokenKind::kEnd) {
        if (!stops.empty()) {
          Fail(absl::StrCat("a block opened here is never closed: expected {% ", stops.back(), " %}"), open_line);
        }
        return body;
      }
      if (t.kind == TokenKind::kText) {
        auto s = NewStmt(StmtKind::kText, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        Next();
      } else if (t.kind == TokenKind::kExprOpen) {
        Next();
        auto s = NewStmt(StmtKind::kOutput, t.line);
        s->expr = ParseExpr();
        if (Peek().kind != TokenKind::kExprClose) Fail(absl::StrCat("expected '}}' but found '", Peek().text, "'"), Peek().line);
        Next();
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kStmtOpen) {
        Next();
        const std::string& name = Peek().text;
        for (const std::string& s : stops) {
          if (Peek().kind == TokenKind::kName && name == s) {
            *stop = Next().text;
            return body;
          }
        }
        if (auto s = ParseStatement()) body.push_back(std::move(s));
      } else {
        Fail(absl::StrCat("unexpected '", t.text, "'"), t.line);
      }
    }
  }

  std::unique_ptr<Stmt> ParseStatement() {
    const Token& kw = Peek();
    if (kw.kind != TokenKind::kName) Fail(absl::StrCat("expected a statement after '{%' but found '", kw.text, "'"), kw.line);
    const std::string name = Next().text;
    const int line = kw.line;
    if (name == "if") return ParseIf(line);
    if (name == "for") return ParseFor(line);
    if (name == "set") return ParseSet(line);
    if (name == "macro") return ParseMacro(line);
    if (name == "break" || name == "continue") {
      ExpectStmtClose();
      return NewStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
    }
    if (name == "generation" || name == "endgeneration") {
      ExpectStmtClose();
      return nullptr;
    }
    Fail(absl::StrCat("unknown statement '", name, "' (supported: if, for, set, macro, break, continue)"), line);
  }

  std::unique_ptr<Stmt> ParseIf(int line) {
    auto s = NewStmt(StmtKind::kIf, line);
    s->conditions.push_back(ParseExpr());
    ExpectStmtClose();
    while (true) {
      std::string stop;
      s->bodies.push_back(ParseBody({"elif", "else", "endif"}, &stop, line));
      if (stop == "elif") {
        s->conditions.push_back(ParseExpr());
        ExpectStmtClose();
      } else if (stop == "else") {
        ExpectStmtClose();
        s->bodies.push_back(ParseBody({"endif"}, &stop, line));
        ExpectStmtClose();
        return s;
      } else {
        ExpectStmtClose();
        return s;
      }
    }
  }

  std::unique_ptr<Stmt> ParseFor(int line) {
    auto s = NewStmt(StmtKind::kFor, line);
    s->targets.push_back(ExpectName());
    while (IsOp(",")) {
      Next();
      s->targets.push_back(ExpectName());
    }
    if (!IsName("in")) Fail("expected 'in' in a for statement", Peek().line);
    Next();
    s->expr = ParseTernaryFree();
    if (IsName("if")) {
      Next();
      s->cond = ParseExpr();
    }
    ExpectStmtClose();
    std::string stop;
    s->bodies.push_back(ParseBody({"else", "endfor"}, &stop, line));
    if (stop == "else") {
      ExpectStmtClose();
      s->bodies.push_back(ParseBody({"endfor"}, &stop, line));
    }
    ExpectStmtClose();
    return s;
  }

  std::unique_ptr<Stmt> ParseSet(int line) {
    auto s = NewStmt(StmtKind::kSet, line);
    s->targets.push_back(ExpectName());
    if (IsOp(".")) {
      Next();
      s->attr = ExpectName();
    }
    while (IsOp(",")) {
      Next();
      s->targets.push_back(ExpectName());
    }
    if (IsOp("=")) {
      Next();
      s->expr = ParseExpr();
      ExpectStmtClose();
      return s;
    }
    ExpectStmtClose();
    std::string stop;
    s->bodies.push_back(ParseBody({"endset"}, &stop, line));
    ExpectStmtClose();
    return s;
  }

  std::unique_ptr<Stmt> ParseMacro(int line) {
    auto s = NewStmt(StmtKind::kMacro, line);
    s->text = ExpectName();
    ExpectOp("(");
    while (!IsOp(")")) {
      std::string p = ExpectName();
      ExprPtr def;
      if (IsOp("=")) {
        Next();
        def = ParseExpr();
      }
      s->params.emplace_back(std::move(p), std::move(def));
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
    ExpectStmtClose();
    std::string stop;
    s->bodies.push_back(ParseBody({"endmacro"}, &stop, line));
    ExpectStmtClose();
    return s;
  }

  static std::unique_ptr<Stmt> NewStmt(StmtKind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  // ---- expressions, lowest precedence first ----
  ExprPtr Make(ExprKind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  ExprPtr Binary(std::string op, ExprPtr l, ExprPtr r, int line) {
    ExprPtr e = Make(ExprKind::kBinary, line);
    e->name = std::move(op);
    e->lhs = std::move(l);
    e->rhs = std::move(r);
    return e;
  }

  ExprPtr ParseExpr() {
    ExprPtr e = ParseOr();
    while (IsName("if")) {
      const int line = Next().line;
      ExprPtr t = Make(ExprKind::kTernary, line);
      ExprPtr cond = ParseOr();
      ExprPtr other;
      if (IsName("else")) {
        Next();
        other = ParseExpr();
      } else {
        other = Make(ExprKind::kLiteral, line);  // Jinja: undefined; empty output either way
        other->name = "undefined";
      }
      t->args.push_back(std::move(e));
      t->args.push_back(std::move(cond));
      t->args.push_back(std::move(other));
      e = std::move(t);
    }
    return e;
  }
  // A for loop's iterable stops before its `if` filter.
  ExprPtr ParseTernaryFree() { return ParseOr(); }

  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (IsName("or")) {
      const int line = Next().line;
      e = Binary("or", std::move(e), ParseAnd(), line);
    }
    return e;
  }
  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (IsName("and")) {
      const int line = Next().line;
      e = Binary("and", std::move(e), ParseNot(), line);
    }
    return e;
  }
  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard = Enter("expressions");
      const int line = Next().line;
      ExprPtr e = Make(ExprKind::kUnary, line);
      e->name = "not";
      e->lhs = ParseNot();
      return e;
    }
    return ParseCompare();
  }
  ExprPtr ParseCompare() {
    ExprPtr e = ParseAdd();
    while (true) {
      const int line = Peek().line;
      std::string op;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        return e;
      }
      e = Binary(op, std::move(e), ParseAdd(), line);
    }
  }
  ExprPtr ParseAdd() {
    ExprPtr e = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& t = Next();
      e = Binary(t.text, std::move(e), ParseConcat(), t.line);
    }
    return e;
  }
  ExprPtr ParseConcat() {
    ExprPtr e = ParseMul();
    while (IsOp("~")) {
      const int line = Next().line;
      e = Binary("~", std::move(e), ParseMul(), line);
    }
    return e;
  }
  ExprPtr ParseMul() {
    ExprPtr e = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& t = Next();
      e = Binary(t.text, std::move(e), ParsePow(), t.line);
    }
    return e;
  }
  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary();
    while (IsOp("**")) {
      const int line = Next().line;
      e = Binary("**", std::move(e), ParseUnary(), line);
    }
    return e;
  }
  ExprPtr ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      DepthGuard guard = Enter("expressions");
      const Token& t = Next();
      ExprPtr e = Make(ExprKind::kUnary, t.line);
      e->name = t.text;
      e->lhs = ParseUnary();
      return ParseFilters(std::move(e));
    }
    return ParseFilters(ParsePostfix(ParsePrimary()));
  }

  void ParseCallArgs(Expr& e) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        Next();
        e.kwargs.emplace_back(std::move(key), ParseExpr());
      } else {
        e.args.push_back(ParseExpr());
      }
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
  }

  ExprPtr ParseFilters(ExprPtr e) {
    while (true) {
      if (IsOp("|")) {
        Next();
        const Token& t = Peek();
        const std::string name = ExpectName();
        if (!IsKnownFilter(name)) Fail(absl::StrCat("unknown filter '", name, "'"), t.line);
        ExprPtr f = Make(ExprKind::kFilter, t.line);
        f->name = name;
        f->lhs = std::move(e);
        if (IsOp("(")) ParseCallArgs(*f);
        e = ParsePostfix(std::move(f));
      } else if (IsName("is")) {
        const int line = Next().line;
        ExprPtr t = Make(ExprKind::kTest, line);
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        // `none`, `true` and `false` are names here, not literals.
        const Token& nt = Peek();
        const std::string name = ExpectName();
        if (!IsKnownTest(name)) Fail(absl::StrCat("unknown test '", name, "'"), nt.line);
        t->name = name;
        t->lhs = std::move(e);
        if (IsOp("(")) {
          ParseCallArgs(*t);
        } else if (Peek().kind == TokenKind::kString || Peek().kind == TokenKind::kInteger ||
                   Peek().kind == TokenKind::kFloat) {
          t->args.push_back(ParsePrimary());  // `is divisibleby 3`, `is equalto 'x'`
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    while (true) {
      if (IsOp(".")) {
        const int line = Next().line;
        ExprPtr m = Make(ExprKind::kMember, line);
        m->name = ExpectName();
        m->lhs = std::move(e);
        e = std::move(m);
      } else if (IsOp("[")) {
        const int line = Next().line;
        ExprPtr parts[3];
        int n = 0;
        bool slice = false;
        while (!IsOp("]")) {
          if (IsOp(":")) {
            Next();
            slice = true;
            if (++n > 2) Fail("a slice has at most three parts", line);
            continue;
          }
          parts[n] = ParseExpr();
        }
        Next();
        ExprPtr x = Make(slice ? ExprKind::kSlice : ExprKind::kIndex, line);
        if (!slice && !parts[0]) Fail("empty subscript '[]'", line);
        for (auto& p : parts) x->args.push_back(std::move(p));
        if (!slice) x->args.resize(1);
        x->lhs = std::move(e);
        e = std::move(x);
      } else if (IsOp("(")) {
        ExprPtr c = Make(ExprKind::kCall, Peek().line);
        c->lhs = std::move(e);
        ParseCallArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr ParsePrimary() {
    DepthGuard guard = Enter("expressions");
    const Token& t = Next();
    ExprPtr e = Make(ExprKind::kLiteral, t.line);
    switch (t.kind) {
      case TokenKind::kString: {
        std::string s = t.text;
        while (Peek().kind == TokenKind::kString) s += Next().text;  // 'a' 'b' is 'ab'
        e->value = s;
        return e;
      }
      case TokenKind::kInteger: e->value = std::stoll(t.text); return e;
      case TokenKind::kFloat: e->value = std::stod(t.text); return e;
      case TokenKind::kName:
        if (t.text == "true" || t.text == "True") { e->value = true; return e; }
        if (t.text == "false" || t.text == "False") { e->value = false; return e; }
        if (t.text == "none" || t.text == "None") { e->value = nullptr; return e; }
        e->kind = ExprKind::kName;
        e->name = t.text;
        return e;
      case TokenKind::kOperator:
        if (t.text == "(") {
          ExprPtr inner = ParseExpr();
          if (IsOp(",")) {  // a tuple, read as a list
            ExprPtr list = Make(ExprKind::kList, t.line);
            list->args.push_back(std::move(inner));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              list->args.push_back(ParseExpr());
            }
            inner = std::move(list);
          }
          ExpectOp(")");
          return inner;
        }
        if (t.text == "[") {
          e->kind = ExprKind::kList;
          while (!IsOp("]")) {
            e->args.push_back(ParseExpr());
            if (!IsOp("]")) ExpectOp(",");
          }
          Next();
          return e;
        }
        if (t.text == "{") {
          e->kind = ExprKind::kDict;
          while (!IsOp("}")) {
            e->args.push_back(ParseExpr());
            ExpectOp(":");
            e->args.push_back(ParseExpr());
            if (!IsOp("}")) ExpectOp(",");
          }
          Next();
          return e;
        }
        break;
      default: break;
    }
    if (t.kind == TokenKind::kEnd) Fail("the template ends inside a tag", t.line);
    Fail(absl::StrCat("unexpected '", t.text, "' in an expression"), t.line);
  }

  // Nesting (blocks, parentheses, lists, calls, unary operators) recurses; a hostile template
  // must fail to parse, not overflow the stack.
  static constexpr int kMaxDepth = 200;
  struct DepthGuard {
    int* d;
    ~DepthGuard() { --*d; }
  };
  DepthGuard Enter(const char* what) {
    if (++depth_ > kMaxDepth) {
      --depth_;
      Fail(absl::StrCat(what, " nest deeper than ", kMaxDepth), Peek().line);
    }
    return DepthGuard{&depth_};
  }
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;  // blocks and primary expressions being parsed, nested
};

}  // namespace

StatusOr<Body> Parse(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  try {
    return Parser(std::move(tokens)).ParseTemplate();
  } catch (const ParseError& e) {
    return absl::InvalidArgumentError(e.message);
  }
}

}  // namespace prefixd::jinja
