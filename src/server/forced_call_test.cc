#include "server/forced_call.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "server/api_error.h"
#include "server/json_schema_grammar.h"
#include "server/tool_call_parser.h"

namespace prefixd {
namespace {

using ojson = nlohmann::ordered_json;

// ---- The reference: a plain JSON schema validator for the supported keywords. ----

int64_t CodePoints(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool HasType(const ojson& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "number") return v.is_number();
  if (type == "integer") return v.is_number_integer();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  return false;
}

// Whether `v` is valid for `schema`; `why` says where it is not.
bool Validates(const ojson& v, const ojson& schema, std::string* why) {
  auto fail = [why](std::string w) {
    *why = std::move(w);
    return false;
  };
  if (schema.is_boolean()) return schema.get<bool>() || fail("false schema");
  if (auto c = schema.find("const"); c != schema.end() && *c != v) return fail("const " + v.dump());
  if (auto e = schema.find("enum"); e != schema.end()) {
    bool found = false;
    for (const ojson& x : *e) found = found || x == v;
    if (!found) return fail("enum " + v.dump());
  }
  if (auto t = schema.find("type"); t != schema.end()) {
    bool ok = false;
    if (t->is_string()) ok = HasType(v, *t);
    for (const ojson& x : t->is_array() ? *t : ojson::array()) ok = ok || HasType(v, x);
    if (!ok) return fail("type of " + v.dump());
  }
  if (v.is_string()) {
    const int64_t n = CodePoints(v.get<std::string>());
    if (n < schema.value("minLength", 0) || n > schema.value("maxLength", int64_t{1} << 40)) return fail("length");
  }
  if (v.is_array()) {
    const int64_t n = static_cast<int64_t>(v.size());
    if (n < schema.value("minItems", 0) || n > schema.value("maxItems", int64_t{1} << 40)) return fail("items");
    if (auto items = schema.find("items"); items != schema.end()) {
      for (const ojson& x : v) {
        if (!Validates(x, *items, why)) return false;
      }
    }
  }
  if (v.is_object()) {
    for (const ojson& r : schema.value("required", ojson::array())) {
      if (!v.contains(r.get<std::string>())) return fail("missing " + r.get<std::string>());
    }
    const ojson props = schema.value("properties", ojson::object());
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (!Validates(x, props[k], why)) return false;
      } else if (auto ap = schema.find("additionalProperties"); ap != schema.end()) {
        if (ap->is_boolean() && !ap->get<bool>()) return fail("extra key " + k);
        if (ap->is_object() && !Validates(x, *ap, why)) return false;
      }
    }
  }
  return true;
}

// ---- Random schemas ----

ojson RandomSchema(std::mt19937& rng, int depth) {
  auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  const int kind = depth >= 3 ? pick(7) : pick(11);
  switch (kind) {
    case 0: {
      ojson s = {{"type", "string"}};
      if (pick(3) > 0) s["maxLength"] = pick(8);
      if (pick(3) == 0) s["minLength"] = std::min(pick(3), s.value("maxLength", 8));
      return s;
    }
    case 1: return {{"type", "number"}, {"description", "a number"}};
    case 2: return {{"type", "integer"}};
    case 3: return {{"type", "boolean"}};
    case 4: return {{"type", "null"}};
    case 5: {
      // Values that are prefixes of each other ("a"/"ab", 1/10), of mixed types.
      static const std::vector<ojson> pool = {"a", "ab", "b\"q", 1, 10, 1.5, true, nullptr, "\xc3\xa9t\xc3\xa9"};
      ojson e = ojson::array();
      for (const ojson& x : pool) {
        if (pick(2) == 0) e.push_back(x);
      }
      if (e.empty()) e.push_back("only");
      return {{"enum", e}};
    }
    case 6: return {{"type", ojson::array({"string", "null"})}, {"maxLength", 4}};
    case 7:
    case 8: {
      ojson s = {{"type", "object"}};
      ojson props = ojson::object();
      ojson required = ojson::array();
      static const std::vector<std::string> names = {"a", "ab", "city", "c\"q", "x y", "\xc3\xa9", "n"};
      for (const std::string& n : names) {
        if (pick(3) != 0) continue;
        props[n] = RandomSchema(rng, depth + 1);
        if (pick(2) == 0) required.push_back(n);
      }
      if (pick(4) != 0 || !props.empty()) s["properties"] = props;
      if (!required.empty()) s["required"] = required;
      if (props.empty() && pick(2) == 0) {
        s["additionalProperties"] = pick(2) == 0 ? ojson(false) : ojson({{"type", "integer"}});
      }
      return s;
    }
    case 9: {
      ojson s = {{"type", "array"}, {"items", RandomSchema(rng, depth + 1)}};
      const int max = pick(4);
      s["maxItems"] = max;
      if (pick(2) == 0) s["minItems"] = std::min(max, pick(3));
      return s;
    }
    default: return ojson::object();  // any value
  }
}

ojson RandomArguments(std::mt19937& rng) {
  ojson s = RandomSchema(rng, 1);
  while (!s.is_object() || !s.contains("type") || s["type"] != "object") s = RandomSchema(rng, 1);
  return s;
}

// ---- A random "model": a vocabulary of pieces and random logits ----

std::vector<std::string> TestVocab(std::mt19937& rng) {
  std::vector<std::string> v = {""};  // a control token: never allowed
  for (int b = 1; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  const std::vector<std::string> pieces = {
      "<tool_call>", "<tool", "_call", ">\n", "\n</tool_call>", "</", "tool_call>", "{\"name\": \"", "{\"", "name",
      "\": ", "\", \"", "arguments", "parameters", "\": {", "\"}", "}}", "}\n", "}}\n", ", ", "\", ", "true", "false",
      "null", "nul", "12", "3.", ".5", "-0", "[\"", "\"]", "], ", "\\n", "\\u00e9", "\\ud83d", "\\\"", "\xc3\xa9",
      "\xf0\x9f\x98\x80", "\xe2\x82", "city", "\"city\": \"", "Paris", " Paris", "ab", "\"a\": ", "\"n\": ", "x y",
      "get", "_weather", "\"get_weather\"", "\"f\", \"arguments\": ", "1", "10", "1.5"};
  v.insert(v.end(), pieces.begin(), pieces.end());
  // And random runs of the JSON alphabet.
  const std::string alphabet = "{}[]\":, abn0123456789.-\\tue";
  std::uniform_int_distribution<size_t> ch(0, alphabet.size() - 1);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    const int len = std::uniform_int_distribution<int>(2, 5)(rng);
    for (int k = 0; k < len; ++k) s.push_back(alphabet[ch(rng)]);
    v.push_back(s);
  }
  return v;
}

std::vector<ojson> RandomTools(std::mt19937& rng, std::vector<ojson>* schemas) {
  static const std::vector<std::string> names = {"f", "get_weather", "get", "g\"x", "search"};
  std::vector<ojson> tools;
  std::set<std::string> used;
  const int n = std::uniform_int_distribution<int>(1, 3)(rng);
  while (static_cast<int>(tools.size()) < n) {
    const std::string name = names[std::uniform_int_distribution<size_t>(0, names.size() - 1)(rng)];
    if (!used.insert(name).second) continue;
    schemas->push_back(RandomArguments(rng));
    tools.push_back({{"type", "function"}, {"function", {{"name", name}, {"parameters", schemas->back()}}}});
  }
  return tools;
}

// Feeds `text` to a fresh matcher: whether every byte is taken, and whether it ends whole.
std::pair<bool, bool> Match(const std::shared_ptr<const CallGrammar>& g, const std::string& text) {
  CallMatcher m(g);
  for (char c : text) {
    if (!m.Feed(static_cast<uint8_t>(c))) return {false, false};
  }
  return {true, m.IsComplete()};
}

// The text parses into exactly one call, to one of `tools`, whose arguments validate.
void ExpectValidCall(ToolCallSyntax syntax, const std::string& text, const ojson& tools, const std::string& forced) {
  const ParsedToolCalls parsed = ParseToolCalls(syntax, text);
  ASSERT_EQ(parsed.calls.size(), 1u) << text;
  EXPECT_EQ(parsed.text, "") << text;
  const ParsedToolCalls::Call& call = parsed.calls[0];
  if (!forced.empty()) {
    EXPECT_EQ(call.name, forced);
  }
  const ojson* schema = nullptr;
  for (const ojson& t : tools) {
    if (t["function"]["name"] == call.name) schema = &t["function"]["parameters"];
  }
  ASSERT_NE(schema, nullptr) << "unknown tool " << call.name << " in " << text;
  const ojson args = ojson::parse(call.arguments, nullptr, false);
  ASSERT_FALSE(args.is_discarded()) << call.arguments;
  std::string why;
  EXPECT_TRUE(Validates(args, *schema, &why)) << why << "\nschema " << schema->dump() << "\nargs " << call.arguments;
}

// Random schemas, a random vocabulary and random logits: every output ends whole within the
// bound, and parses into a call valid for its schema; every step had an allowed token.
TEST(ForcedCall, RandomModelsWriteValidCallsRandomized) {
  std::mt19937 rng(2024);
  const std::vector<std::string> vocab = TestVocab(rng);
  auto texts = std::make_shared<TokenTexts>(vocab);
  int num_calls = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<ojson> schemas;
    const ojson tools = RandomTools(rng, &schemas);
    const ToolCallSyntax syntax = round % 2 == 0 ? ToolCallSyntax::kHermes : ToolCallSyntax::kLlama3;
    const std::string forced = round % 3 == 0 ? tools[0]["function"]["name"].get<std::string>() : "";
    auto grammar = BuildCallGrammar(syntax, tools, forced, "function.parameters");
    ASSERT_TRUE(grammar.ok()) << grammar.status() << "\n" << tools.dump();
    auto constraint = MakeCallConstraint(texts, *grammar);
    SamplingParams p;
    p.temperature = round % 4 == 0 ? 0.0f : 1.0f;
    p.top_k = round % 5 == 0 ? 20 : 0;
    p.top_p = round % 7 == 0 ? 0.9f : 1.0f;
    p.seed = static_cast<uint64_t>(round);
    Sampler sampler(p);
    // A random model that leans towards closing strings and brackets, so outputs stay short.
    std::normal_distribution<float> noise(0, 2);
    std::string text;
    int steps = 0;
    for (; steps < 20000 && !constraint->IsComplete(); ++steps) {
      std::vector<float> logits(vocab.size());
      for (size_t i = 0; i < vocab.size(); ++i) {
        logits[i] = noise(rng) + (vocab[i].find_first_of("\"]}") != std::string::npos ? 4.0f : 0.0f);
      }
      const int32_t token = sampler.Sample(logits, constraint.get());
      ASSERT_GE(token, 0) << "no token allowed after: " << text;
      constraint->Accept(token);
      text += vocab[static_cast<size_t>(token)];
      if (text.size() < 2000 || constraint->IsComplete()) {  // quadratic: long outputs are checked at the end
        const auto [taken, whole] = Match(*grammar, text);
        ASSERT_TRUE(taken) << "a partial output is not a prefix: " << text;
        ASSERT_EQ(whole, constraint->IsComplete());
      }
    }
    ASSERT_TRUE(constraint->IsComplete()) << "no end after " << steps << " tokens: " << text;
    ExpectValidCall(syntax, text, tools, forced);
    ++num_calls;

    // Soundness: a one-byte change the matcher still takes whole must be a valid call too.
    for (int m = 0; m < 20; ++m) {
      std::string mutated = text;
      const size_t at = std::uniform_int_distribution<size_t>(0, mutated.size() - 1)(rng);
      const char c = "{}[]\":, a0.-\\e\xc3"[std::uniform_int_distribution<int>(0, 15)(rng)];
      switch (m % 3) {
        case 0: mutated[at] = c; break;
        case 1: mutated.erase(at, 1); break;
        default: mutated.insert(at, 1, c); break;
      }
      const auto [taken, whole] = Match(*grammar, mutated);
      if (taken && whole) ExpectValidCall(syntax, mutated, tools, forced);
    }
  }
  EXPECT_EQ(num_calls, 400);
}

std::shared_ptr<const CallGrammar> Weather(ToolCallSyntax syntax) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters":
      {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
       "unit": {"enum": ["c", "f"]}, "tags": {"type": "array", "items": {"type": "number"}, "maxItems": 2}},
       "required": ["city"]}}}])");
  return *BuildCallGrammar(syntax, tools, "", "function.parameters");
}

TEST(ForcedCall, TheCallsFixedLayoutAndSchema) {
  const auto hermes = Weather(ToolCallSyntax::kHermes);
  const std::string open = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ";
  const std::string close = "}\n</tool_call>";
  auto whole = [&](const std::string& args) { return Match(hermes, open + args + close); };
  EXPECT_EQ(whole(R"({"city": "Paris"})"), std::make_pair(true, true));
  EXPECT_EQ(whole(R"({"city": "Paris", "days": 3, "unit": "f", "tags": [1.5, -2]})"), std::make_pair(true, true));
  EXPECT_EQ(whole(R"({"city": "\u00e9\n\"", "tags": []})"), std::make_pair(true, true));
  EXPECT_FALSE(whole(R"({"days": 3})").first);                  // city is required
  EXPECT_FALSE(whole(R"({"city": "P", "city": "Q"})").first);   // no property twice
  EXPECT_FALSE(whole(R"({"days": 3, "city": "P"})").first);     // the schema's order
  EXPECT_FALSE(whole(R"({"city": 1})").first);                  // a string
  EXPECT_FALSE(whole(R"({"city": "P", "days": 1.5})").first);   // an integer
  EXPECT_FALSE(whole(R"({"city": "P", "unit": "k"})").first);   // the enum
  EXPECT_FALSE(whole(R"({"city": "P", "tags": [1, 2, 3]})").first);  // maxItems
  EXPECT_FALSE(whole(R"({"city": "P", "other": 1})").first);    // no property outside the schema
  EXPECT_FALSE(whole(R"({"city":"P"})").first);                 // the fixed layout
  EXPECT_FALSE(whole(R"({"city": "\ud800"})").first);           // no lone surrogate
  EXPECT_FALSE(whole("{\"city\": \"\xc3\"}").first);            // no broken UTF-8
  EXPECT_FALSE(whole("{\"city\": \"a\nb\"}").first);            // no raw control byte
  EXPECT_EQ(Match(hermes, open + R"({"city": "P"})"), std::make_pair(true, false));  // a prefix, not whole
  EXPECT_FALSE(Match(hermes, open + R"({"city": "P"})" + close + " ").first);  // nothing after the call
  // The bounds: 15 digits before the point, 6 after.
  EXPECT_TRUE(whole(R"({"city": "P", "tags": [123456789012345.123456]})").first);
  EXPECT_FALSE(whole(R"({"city": "P", "tags": [1234567890123456]})").first);
  EXPECT_FALSE(whole(R"({"city": "P", "tags": [1.1234567]})").first);

  const auto llama = Weather(ToolCallSyntax::kLlama3);
  EXPECT_EQ(Match(llama, R"({"name": "get_weather", "parameters": {"city": "Paris"}})"), std::make_pair(true, true));
  EXPECT_FALSE(Match(llama, R"({"name": "get_weather", "arguments": {"city": "Paris"}})").first);
}

TEST(ForcedCall, EnumValuesThatArePrefixesOfOthers) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "f", "parameters":
      {"type": "object", "properties": {"n": {"enum": [1, 10, "a", "ab"]}, "m": {"type": "integer"}}}}}])");
  const auto g = *BuildCallGrammar(ToolCallSyntax::kLlama3, tools, "f", "function.parameters");
  for (const char* v : {"1", "10", "\"a\"", "\"ab\""}) {
    const std::string text = std::string(R"({"name": "f", "parameters": {"n": )") + v + ", \"m\": 2}}";
    EXPECT_EQ(Match(g, text), std::make_pair(true, true)) << text;
  }
  EXPECT_FALSE(Match(g, R"({"name": "f", "parameters": {"n": 100}})").first);
}

TEST(ForcedCall, RefusalsNameTheSchemaPart) {
  struct Case {
    const char* parameters;
    const char* param;
  };
  const std::vector<Case> cases = {
      {R"({"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}})",
       "tools[0].function.parameters.properties.x.pattern"},
      {R"({"type": "object", "properties": {"x": {"$ref": "#/$defs/y"}}})", "tools[0].function.parameters.properties.x.$ref"},
      {R"({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}]}}})",
       "tools[0].function.parameters.properties.x.anyOf"},
      {R"({"type": "object", "properties": {"x": {"type": "integer", "minimum": 1}}})",
       "tools[0].function.parameters.properties.x.minimum"},
      {R"({"type": "string"})", "tools[0].function.parameters.type"},
      {R"({"type": "object", "properties": {"x": {"type": "date"}}})", "tools[0].function.parameters.properties.x.type"},
      {R"({"type": "object", "required": ["y"], "properties": {"x": {}}})", "tools[0].function.parameters.required"},
      {R"({"type": "object", "properties": {"x": {"type": "array", "maxItems": 1000}}})",
       "tools[0].function.parameters.properties.x.maxItems"},
      {R"({"type": "object", "properties": {"x": {"enum": []}}})", "tools[0].function.parameters.properties.x.enum"},
  };
  for (const Case& c : cases) {
    const ojson tools = {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", ojson::parse(c.parameters)}}}}};
    auto g = BuildCallGrammar(ToolCallSyntax::kHermes, tools, "", "function.parameters");
    ASSERT_FALSE(g.ok()) << c.parameters;
    EXPECT_EQ(HttpStatusFor(g.status()), 400);
    EXPECT_EQ(ParamOf(g.status()), c.param) << g.status();
  }
  // Anthropic's tools name their schema input_schema.
  const ojson tools = {{{"type", "function"},
                        {"function", {{"name", "f"}, {"parameters", ojson::parse(R"({"type": "object", "not": {}})")}}}}};
  auto a = BuildCallGrammar(ToolCallSyntax::kHermes, tools, "", "input_schema");
  EXPECT_EQ(ParamOf(a.status()), "tools[0].input_schema.not");
  // A template without a call syntax cannot force one.
  auto none = BuildCallGrammar(ToolCallSyntax::kNone, tools, "", "input_schema");
  EXPECT_EQ(ParamOf(none.status()), "tool_choice");
  EXPECT_NE(none.status().message().find("no tool-call syntax"), std::string::npos);
  // Annotations are ignored; a schema without type, or absent parameters, is any object.
  const ojson ok = {{{"type", "function"},
                     {"function", {{"name", "f"}, {"parameters", ojson::parse(R"({"type": "object", "description": "d",
                         "properties": {"x": {"type": "string", "format": "date", "title": "X"}}})")}}}},
                    {{"type", "function"}, {"function", {{"name", "g"}}}}};
  EXPECT_TRUE(BuildCallGrammar(ToolCallSyntax::kHermes, ok, "", "function.parameters").ok());
  const auto g = *BuildCallGrammar(ToolCallSyntax::kHermes, ok, "g", "function.parameters");
  EXPECT_EQ(Match(g, "<tool_call>\n{\"name\": \"g\", \"arguments\": {\"k\": [1, {\"z\": null}]}}\n</tool_call>"),
            std::make_pair(true, true));
}

}  // namespace
}  // namespace prefixd
