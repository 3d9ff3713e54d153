// The lexer of prefixd's Jinja subset (the part of Jinja that model chat templates use).
//
// Source text -> a flat list of tokens: raw text between tags, the tag delimiters, and the
// names, literals and operators inside `{{ }}` and `{% %}`. Whitespace control follows the
// Hugging Face chat-template environment (trim_blocks and lstrip_blocks on, one trailing
// newline dropped), the same preprocessing that @huggingface/jinja applies, so that both give
// the same text: `{%-` / `{{-` / `{#-` strip whitespace before the tag, `-%}` / `-}}` / `-#}`
// after it; comments `{# #}` vanish.
//
// Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace prefixd::jinja {

enum class TokenKind {
  kText,        // raw template text, already whitespace-controlled
  kExprOpen,    // {{
  kExprClose,   // }}
  kStmtOpen,    // {%
  kStmtClose,   // %}
  kName,        // identifiers and keywords (if, for, and, not, true, none, ...)
  kString,      // a string literal, escapes decoded
  kInteger,
  kFloat,
  kOperator,    // + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
  kEnd,
};

struct Token {
  TokenKind kind;
  std::string text;  // the text, name, decoded string or operator spelling
  int line = 1;      // 1-based line in the source, for error messages
};

// Tokenizes `source`. InvalidArgument (with the line) for an unterminated tag, comment or
// string, or a character that cannot start a token.
StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace prefixd::jinja
