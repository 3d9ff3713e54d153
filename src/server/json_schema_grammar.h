// AddJsonSchema: a tool's JSON schema (`parameters`, Anthropic's `input_schema`) compiled into
// CallGrammar nodes (call_grammar.h) that accept exactly the JSON texts, in the grammar's fixed
// layout, that the schema accepts, within the bounds below.
//
// Supported: `type` (a name or a list of names: object, array, string, number, integer,
// boolean, null), `enum`, `const`, `properties` (in the schema's order; each may be left out
// unless `required`), `required`, `additionalProperties` (only used for an object without
// `properties`: its values' schema; otherwise no property beyond `properties` is written),
// `items`, `minItems`/`maxItems`, `minLength`/`maxLength`. Ignored, since they do not restrict
// the value: `description`, `title`, `default`, `examples`, `format` (an annotation in JSON
// Schema 2020-12), `$schema`, `$id`, `$comment`, `$defs`/`definitions`, `deprecated`,
// `readOnly`, `writeOnly`. A schema without `type` (or `true`, or `{}`) is any JSON value.
// Anything else (`$ref`, `anyOf`, `oneOf`, `allOf`, `not`, `pattern`, `minimum`, ...) is refused:
// InvalidArgument naming the keyword's JSON path, so the client gets a 400 saying what the
// constraint cannot enforce.
//
// Bounds, so the language is finite: strings at most maxLength or kDefaultMaxStringChars
// characters; arrays at most maxItems or kDefaultMaxItems items; objects of any keys at most
// kDefaultMaxItems members; numbers at most kMaxIntegerDigits digits before the point and
// kMaxFractionDigits after; any-value nesting kAnyValueDepth levels; schemas nested at most
// kMaxSchemaDepth levels.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "server/call_grammar.h"

namespace prefixd {

inline constexpr int32_t kDefaultMaxStringChars = 256;
inline constexpr int32_t kMaxStringChars = 4096;
inline constexpr int32_t kDefaultMaxItems = 8;
inline constexpr int32_t kMaxItems = 64;
inline constexpr int32_t kAnyValueDepth = 3;
inline constexpr int kMaxSchemaDepth = 16;

// Adds the nodes for `schema` to `grammar` and returns its root node. `path` names the schema
// in errors ("tools[0].function.parameters"). With `object_only`, the value must be an object
// (a tool's arguments): another type is refused.
StatusOr<int32_t> AddJsonSchema(const nlohmann::ordered_json& schema, const std::string& path,
                                bool object_only, CallGrammar& grammar);

}  // namespace prefixd
