#include "tokenizer/jinja_lexer.h"

#include <cctype>

namespace prefixd::jinja {

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// trim_blocks / lstrip_blocks as @huggingface/jinja approximates them: spaces and tabs before
// a block or comment tag at the start of a line go, and so does the newline right after a
// block or comment tag. One trailing newline of the source goes too (keep_trailing_newline off).
std::string Preprocess(std::string_view source) {
  if (!source.empty() && source.back() == '\n') source.remove_suffix(1);
  auto opens_block = [&](size_t i) {
    return i + 1 < source.size() && source[i] == '{' &&
           (source[i + 1] == '#' || source[i + 1] == '%' || source[i + 1] == '-');
  };
  // lstrip_blocks: drop spaces and tabs between a line start and a block or comment tag.
  std::string stripped;
  stripped.reserve(source.size());
  for (size_t i = 0; i < source.size();) {
    if (i == 0 || source[i - 1] == '\n') {
      size_t j = i;
      while (j < source.size() && (source[j] == ' ' || source[j] == '\t')) ++j;
      if (opens_block(j)) i = j;
    }
    stripped += source[i++];
  }
  // trim_blocks: drop the newline right after a block or comment tag.
  std::string out;
  out.reserve(stripped.size());
  for (size_t i = 0; i < stripped.size(); ++i) {
    if (stripped[i] == '\n' && i >= 2 && stripped[i - 1] == '}' &&
        (stripped[i - 2] == '#' || stripped[i - 2] == '%' || stripped[i - 2] == '-')) {
      continue;
    }
    out += stripped[i];
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      if (!in_tag_) {
        RETURN_IF_ERROR(LexText());
      } else {
        RETURN_IF_ERROR(LexInTag());
      }
    }
    if (in_tag_) return Error("a tag opened here is never closed (missing '%}' or '}}')", open_line_);
    out_.push_back({TokenKind::kEnd, "", line_});
    return std::move(out_);
  }

 private:
  Status Error(std::string_view what, int line) const {
    return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", std::string(what)));
  }
  bool At(std::string_view s) const { return src_.compare(pos_, s.size(), s) == 0; }
  void Advance(size_t n) {
    for (size_t i = 0; i < n && pos_ < src_.size(); ++i) {
      if (src_[pos_] == '\n') ++line_;
      ++pos_;
    }
  }
  void StripTrailingText() {
    if (out_.empty() || out_.back().kind != TokenKind::kText) return;
    std::string& t = out_.back().text;
    while (!t.empty() && IsSpace(t.back())) t.pop_back();
    if (t.empty()) out_.pop_back();
  }
  void SkipSpace() {
    while (pos_ < src_.size() && IsSpace(src_[pos_])) Advance(1);
  }

  Status LexText() {
    const size_t start = pos_;
    const int line = line_;
    while (pos_ < src_.size() && !(src_[pos_] == '{' && pos_ + 1 < src_.size() &&
                                   (src_[pos_ + 1] == '{' || src_[pos_ + 1] == '%' || src_[pos_ + 1] == '#'))) {
      Advance(1);
    }
    if (pos_ > start) out_.push_back({TokenKind::kText, src_.substr(start, pos_ - start), line});
    if (pos_ >= src_.size()) return absl::OkStatus();
    const char kind = src_[pos_ + 1];
    const bool strip = pos_ + 2 < src_.size() && src_[pos_ + 2] == '-';
    if (strip) StripTrailingText();
    open_line_ = line_;
    Advance(strip ? 3 : 2);
    if (kind == '#') return LexComment();
    out_.push_back({kind == '{' ? TokenKind::kExprOpen : TokenKind::kStmtOpen, kind == '{' ? "{{" : "{%", line_});
    in_tag_ = true;
    close_ = kind == '{' ? "}}" : "%}";
    depth_ = 0;
    return absl::OkStatus();
  }

  Status LexComment() {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return Error("a comment '{#' is never closed with '#}'", open_line_);
    const bool strip_after = end > pos_ && src_[end - 1] == '-';
    Advance(end + 2 - pos_);
    if (strip_after) SkipSpace();
    return absl::OkStatus();
  }

  Status LexInTag() {
    SkipSpace();
    if (pos_ >= src_.size()) return absl::OkStatus();
    // Close: "-%}" / "%}" (or "}}" outside any brace opened inside the expression).
    const bool dash = At("-") && src_.compare(pos_ + 1, 2, close_) == 0;
    if ((dash || At(close_)) && depth_ == 0) {
      Advance(dash ? 3 : 2);
      out_.push_back({close_ == "}}" ? TokenKind::kExprClose : TokenKind::kStmtClose, close_, line_});
      in_tag_ = false;
      if (dash) SkipSpace();
      return absl::OkStatus();
    }
    const char c = src_[pos_];
    if (c == '\'' || c == '"') return LexString(c);
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = pos_;
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) {
        Advance(1);
      }
      out_.push_back({TokenKind::kName, src_.substr(start, pos_ - start), line_});
      return absl::OkStatus();
    }
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                 "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
    for (const char* op : kOps) {
      if (At(op)) {
        if (*op == '{' || *op == '[' || *op == '(') ++depth_;
        if ((*op == '}' || *op == ']' || *op == ')') && depth_ > 0) --depth_;
        Advance(std::string_view(op).size());
        out_.push_back({TokenKind::kOperator, op, line_});
        return absl::OkStatus();
      }
    }
    return Error(absl::StrCat("unexpected character '", std::string(1, c), "' inside a tag"), line_);
  }

  Status LexString(char quote) {
    const int line = line_;
    Advance(1);
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) return Error("a string literal is never closed", line);
      const char c = src_[pos_];
      if (c == quote) break;
      if (c == '\\' && pos_ + 1 < src_.size()) {
        const char e = src_[pos_ + 1];
        switch (e) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case 'r': value += '\r'; break;
          case 'b': value += '\b'; break;
          case 'f': value += '\f'; break;
          case 'v': value += '\v'; break;
          case '0': value += '\0'; break;
          case '\\': value += '\\'; break;
          case '\'': value += '\''; break;
          case '"': value += '"'; break;
          default: return Error(absl::StrCat("unknown escape '\\", std::string(1, e), "' in a string"), line_);
        }
        Advance(2);
        continue;
      }
      value += c;
      Advance(1);
    }
    Advance(1);
    out_.push_back({TokenKind::kString, std::move(value), line});
    return absl::OkStatus();
  }

  Status LexNumber() {
    const size_t start = pos_;
    while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) Advance(1);
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      Advance(1);
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) Advance(1);
    }
    out_.push_back({is_float ? TokenKind::kFloat : TokenKind::kInteger, src_.substr(start, pos_ - start), line_});
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  int open_line_ = 1;
  bool in_tag_ = false;
  std::string close_;
  int depth_ = 0;  // brackets opened inside the current tag: "}}" inside `{'a': {}}` is not a close
  std::vector<Token> out_;
};

}  // namespace

StatusOr<std::vector<Token>> Tokenize(std::string_view source) { return Lexer(Preprocess(source)).Run(); }

}  // namespace prefixd::jinja
