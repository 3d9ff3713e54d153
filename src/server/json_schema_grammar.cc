#include "server/json_schema_grammar.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/api_error.h"
#include "server/json_body.h"

namespace prefixd {

namespace {

using ojson = nlohmann::ordered_json;
using Slot = GrammarNode::TypeSlot;

// Keywords that describe a value without restricting it, or hold definitions only a $ref
// (refused) could use.
const std::set<std::string>& IgnoredKeywords() {
  static const std::set<std::string> k = {
      "description", "title", "default", "examples", "format", "$schema", "$id", "$comment",
      "$defs", "definitions", "deprecated", "readOnly", "writeOnly", "nullable"};
  return k;
}

const std::set<std::string>& SupportedKeywords() {
  static const std::set<std::string> k = {"type", "enum", "const", "properties", "required",
                                          "additionalProperties", "items", "minItems", "maxItems",
                                          "minLength", "maxLength"};
  return k;
}

Status Refuse(const std::string& path, absl::string_view why) {
  return InvalidArgumentFor(path, absl::StrCat("'", path, "': ", why,
                                               "; forcing a tool call needs a schema the constraint "
                                               "can enforce: simplify it, or send tool_choice auto"));
}

StatusOr<int32_t> ReadCount(const ojson& schema, const char* key, const std::string& path, int32_t dflt,
                            int32_t cap) {
  auto it = schema.find(key);
  if (it == schema.end()) return dflt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    return Refuse(JsonPathJoin(path, key), "must be a non-negative integer");
  }
  if (it->get<int64_t>() > cap) {
    return Refuse(JsonPathJoin(path, key), absl::StrCat("is above ", cap, ", the most the constraint allows"));
  }
  return static_cast<int32_t>(it->get<int64_t>());
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(CallGrammar& g) : g_(g) {}

  StatusOr<int32_t> Compile(const ojson& schema, const std::string& path, int depth, bool object_only);
  // Any JSON value, nested at most `depth` levels.
  int32_t AnyValue(int depth);

 private:
  StatusOr<int32_t> CompileType(const std::string& type, const ojson& schema, const std::string& path, int depth);
  StatusOr<int32_t> CompileObject(const ojson& schema, const std::string& path, int depth);
  StatusOr<int32_t> CompileArray(const ojson& schema, const std::string& path, int depth);
  StatusOr<int32_t> CompileString(const ojson& schema, const std::string& path);
  int32_t Number(bool integer);

  CallGrammar& g_;
};

int32_t SchemaCompiler::Number(bool integer) {
  GrammarNode n;
  n.kind = GrammarNode::Kind::kNumber;
  n.integer = integer;
  return g_.Add(std::move(n));
}

int32_t SchemaCompiler::AnyValue(int depth) {
  std::array<int32_t, GrammarNode::kNumSlots> slots;
  slots.fill(-1);
  GrammarNode s;
  s.kind = GrammarNode::Kind::kString;
  s.max_count = kDefaultMaxStringChars;
  slots[Slot::kStringSlot] = g_.Add(s);
  slots[Slot::kNumberSlot] = Number(false);
  slots[Slot::kBooleanSlot] = g_.AddChoice({{"false", -1}, {"true", -1}});
  slots[Slot::kNullSlot] = g_.AddLiteral("null");
  if (depth > 0) {
    const int32_t inner = AnyValue(depth - 1);
    GrammarNode map;
    map.kind = GrammarNode::Kind::kMap;
    map.key = slots[Slot::kStringSlot];
    map.item = inner;
    map.max_count = kDefaultMaxItems;
    slots[Slot::kObjectSlot] = g_.Add(std::move(map));
    GrammarNode array;
    array.kind = GrammarNode::Kind::kArray;
    array.item = inner;
    array.max_count = kDefaultMaxItems;
    slots[Slot::kArraySlot] = g_.Add(std::move(array));
  }
  return g_.AddUnion(slots);
}

StatusOr<int32_t> SchemaCompiler::Compile(const ojson& schema, const std::string& path, int depth,
                                          bool object_only) {
  if (depth > kMaxSchemaDepth) return Refuse(path, absl::StrCat("nests deeper than ", kMaxSchemaDepth, " levels"));
  if (schema.is_boolean()) {
    if (!schema.get<bool>()) return Refuse(path, "is false: no value can follow it");
    return object_only ? CompileType("object", ojson::object(), path, depth) : AnyValue(kAnyValueDepth);
  }
  if (!schema.is_object()) return Refuse(path, "must be a JSON schema object");
  for (const auto& [key, value] : schema.items()) {
    if (SupportedKeywords().count(key) || IgnoredKeywords().count(key)) continue;
    return Refuse(JsonPathJoin(path, key), absl::StrCat("'", key, "' is not supported by constrained decoding"));
  }
  if (auto e = schema.find("const"); e != schema.end()) {
    return g_.AddLiteral(e->dump());
  }
  if (auto e = schema.find("enum"); e != schema.end()) {
    if (!e->is_array() || e->empty()) return Refuse(JsonPathJoin(path, "enum"), "must be a non-empty array");
    std::vector<std::pair<std::string, int32_t>> values;
    for (const ojson& v : *e) values.push_back({v.dump(), -1});
    return g_.AddChoice(std::move(values));
  }
  std::vector<std::string> types;
  if (auto t = schema.find("type"); t == schema.end()) {
    if (object_only || schema.contains("properties")) {
      types = {"object"};
    } else {
      return AnyValue(kAnyValueDepth);
    }
  } else if (t->is_string()) {
    types = {t->get<std::string>()};
  } else if (t->is_array() && !t->empty() && std::all_of(t->begin(), t->end(), [](const ojson& x) { return x.is_string(); })) {
    for (const ojson& x : *t) types.push_back(x.get<std::string>());
  } else {
    return Refuse(JsonPathJoin(path, "type"), "must be a type name or a non-empty array of them");
  }
  std::array<int32_t, GrammarNode::kNumSlots> slots;
  slots.fill(-1);
  for (const std::string& type : types) {
    if (object_only && type != "object") {
      return Refuse(JsonPathJoin(path, "type"), "a tool's arguments must be an object (type 'object')");
    }
    ASSIGN_OR_RETURN(int32_t node, CompileType(type, schema, path, depth));
    const Slot slot = type == "string"  ? Slot::kStringSlot
                      : type == "number" || type == "integer" ? Slot::kNumberSlot
                      : type == "boolean" ? Slot::kBooleanSlot
                      : type == "null"    ? Slot::kNullSlot
                      : type == "object"  ? Slot::kObjectSlot
                                          : Slot::kArraySlot;
    // "number" takes integers too; with both listed, the wider one stays.
    if (slot == Slot::kNumberSlot && slots[slot] >= 0 && type == "integer") continue;
    slots[slot] = node;
  }
  return g_.AddUnion(slots);
}

StatusOr<int32_t> SchemaCompiler::CompileType(const std::string& type, const ojson& schema,
                                              const std::string& path, int depth) {
  if (type == "object") return CompileObject(schema, path, depth);
  if (type == "array") return CompileArray(schema, path, depth);
  if (type == "string") return CompileString(schema, path);
  if (type == "number") return Number(false);
  if (type == "integer") return Number(true);
  if (type == "boolean") return g_.AddChoice({{"false", -1}, {"true", -1}});
  if (type == "null") return g_.AddLiteral("null");
  return Refuse(JsonPathJoin(path, "type"), absl::StrCat("'", type, "' is not a JSON schema type"));
}

StatusOr<int32_t> SchemaCompiler::CompileObject(const ojson& schema, const std::string& path, int depth) {
  const auto props = schema.find("properties");
  const auto additional = schema.find("additionalProperties");
  std::set<std::string> required;
  if (auto r = schema.find("required"); r != schema.end()) {
    if (!r->is_array()) return Refuse(JsonPathJoin(path, "required"), "must be an array of property names");
    for (const ojson& name : *r) {
      if (!name.is_string()) return Refuse(JsonPathJoin(path, "required"), "must be an array of property names");
      if (props == schema.end() || !props->is_object() || !props->contains(name.get<std::string>())) {
        return Refuse(JsonPathJoin(path, "required"),
                      absl::StrCat("requires '", name.get<std::string>(), "', which 'properties' does not define"));
      }
      required.insert(name.get<std::string>());
    }
  }
  if (props == schema.end() || (props->is_object() && props->empty())) {
    // No properties: any keys, unless additionalProperties is false (then only {}).
    if (additional != schema.end() && additional->is_boolean() && !additional->get<bool>()) {
      GrammarNode empty;
      empty.kind = GrammarNode::Kind::kObject;
      empty.next_required = {0};
      return g_.Add(std::move(empty));
    }
    GrammarNode map;
    map.kind = GrammarNode::Kind::kMap;
    GrammarNode key;
    key.kind = GrammarNode::Kind::kString;
    key.max_count = kDefaultMaxStringChars;
    map.key = g_.Add(std::move(key));
    if (additional != schema.end() && additional->is_object()) {
      ASSIGN_OR_RETURN(map.item, Compile(*additional, JsonPathJoin(path, "additionalProperties"), depth + 1, false));
    } else {
      map.item = AnyValue(kAnyValueDepth - 1);
    }
    map.max_count = kDefaultMaxItems;
    return g_.Add(std::move(map));
  }
  if (!props->is_object()) return Refuse(JsonPathJoin(path, "properties"), "must be an object");
  GrammarNode obj;
  obj.kind = GrammarNode::Kind::kObject;
  const std::string props_path = JsonPathJoin(path, "properties");
  for (const auto& [name, sub] : props->items()) {
    GrammarNode::Property p;
    p.key = ojson(name).dump() + ": ";
    ASSIGN_OR_RETURN(p.value, Compile(sub, JsonPathJoin(props_path, name), depth + 1, false));
    p.required = required.count(name) > 0;
    obj.properties.push_back(std::move(p));
  }
  const size_t num = obj.properties.size();
  obj.next_required.assign(num + 1, static_cast<int32_t>(num));
  for (size_t i = num; i-- > 0;) {
    obj.next_required[i] = obj.properties[i].required ? static_cast<int32_t>(i) : obj.next_required[i + 1];
  }
  for (size_t i = 0; i < num; ++i) obj.key_order.push_back(static_cast<int32_t>(i));
  std::sort(obj.key_order.begin(), obj.key_order.end(), [&obj](int32_t a, int32_t b) {
    return obj.properties[static_cast<size_t>(a)].key < obj.properties[static_cast<size_t>(b)].key;
  });
  return g_.Add(std::move(obj));
}

StatusOr<int32_t> SchemaCompiler::CompileArray(const ojson& schema, const std::string& path, int depth) {
  GrammarNode array;
  array.kind = GrammarNode::Kind::kArray;
  ASSIGN_OR_RETURN(array.min_count, ReadCount(schema, "minItems", path, 0, kMaxItems));
  ASSIGN_OR_RETURN(array.max_count, ReadCount(schema, "maxItems", path, std::max(kDefaultMaxItems, array.min_count), kMaxItems));
  if (array.max_count < array.min_count) return Refuse(JsonPathJoin(path, "maxItems"), "is below minItems");
  if (auto items = schema.find("items"); items != schema.end()) {
    ASSIGN_OR_RETURN(array.item, Compile(*items, JsonPathJoin(path, "items"), depth + 1, false));
  } else {
    array.item = AnyValue(kAnyValueDepth - 1);
  }
  return g_.Add(std::move(array));
}

StatusOr<int32_t> SchemaCompiler::CompileString(const ojson& schema, const std::string& path) {
  GrammarNode s;
  s.kind = GrammarNode::Kind::kString;
  ASSIGN_OR_RETURN(s.min_count, ReadCount(schema, "minLength", path, 0, kMaxStringChars));
  ASSIGN_OR_RETURN(s.max_count, ReadCount(schema, "maxLength", path, std::max(kDefaultMaxStringChars, s.min_count),
                                          kMaxStringChars));
  if (s.max_count < s.min_count) return Refuse(JsonPathJoin(path, "maxLength"), "is below minLength");
  return g_.Add(std::move(s));
}

}  // namespace

StatusOr<int32_t> AddJsonSchema(const nlohmann::ordered_json& schema, const std::string& path, bool object_only,
                                CallGrammar& grammar) {
  SchemaCompiler compiler(grammar);
  return compiler.Compile(schema, path, 0, object_only);
}

}  // namespace prefixd
