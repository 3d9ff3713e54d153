#include "server/forced_call.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "server/api_error.h"
#include "server/completion_stream.h"
#include "server/json_schema_grammar.h"
#include "server/server_test_util.h"
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

// ---- Several calls (parallel tool calls) ----

// Whether every byte of `text` is taken, and whether the text may end there.
std::pair<bool, bool> MatchMayEnd(const std::shared_ptr<const CallGrammar>& g, const std::string& text) {
  CallMatcher m(g);
  for (char c : text) {
    if (!m.Feed(static_cast<uint8_t>(c))) return {false, false};
  }
  return {true, m.CanEnd()};
}

// The text parses into 1..max_calls calls and nothing else, each to one of `tools` with
// arguments valid for its schema. Returns the number of calls.
size_t ExpectValidCalls(ToolCallSyntax syntax, const std::string& text, const ojson& tools, const std::string& forced,
                        size_t max_calls) {
  const ParsedToolCalls parsed = ParseToolCalls(syntax, text);
  EXPECT_GE(parsed.calls.size(), 1u) << text;
  EXPECT_LE(parsed.calls.size(), max_calls) << text;
  EXPECT_EQ(parsed.text, "") << text;
  for (const ParsedToolCalls::Call& call : parsed.calls) {
    if (!forced.empty()) {
      EXPECT_EQ(call.name, forced);
    }
    const ojson* schema = nullptr;
    for (const ojson& t : tools) {
      if (t["function"]["name"] == call.name) schema = &t["function"]["parameters"];
    }
    if (schema == nullptr) {
      ADD_FAILURE() << "unknown tool " << call.name << " in " << text;
      continue;
    }
    const ojson args = ojson::parse(call.arguments, nullptr, false);
    std::string why;
    EXPECT_TRUE(!args.is_discarded() && Validates(args, *schema, &why)) << why << "\nargs " << call.arguments;
  }
  return parsed.calls.size();
}

TEST(ForcedCall, HowManyCallsEachFamilyMayWrite) {
  EXPECT_EQ(MaxForcedCalls(ToolCallSyntax::kHermes, /*parallel=*/true, /*end_id=*/2), kMaxParallelCalls);
  EXPECT_EQ(MaxForcedCalls(ToolCallSyntax::kHermes, /*parallel=*/false, 2), 1);
  EXPECT_EQ(MaxForcedCalls(ToolCallSyntax::kHermes, true, /*end_id=*/-1), 1);  // it could never stop between calls
  EXPECT_EQ(MaxForcedCalls(ToolCallSyntax::kLlama3, true, 2), 1);  // Llama 3's templates refuse a second call
}

// Calls the constraint wrote, joined as the template joins them: up to max_calls taken, the
// text may end after each whole call and nowhere else, and nothing but "\n" goes between.
TEST(ForcedCall, SequencesOfCallsJoinWithTheTemplatesSeparator) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "get", "parameters":
      {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
      {"type": "function", "function": {"name": "put", "parameters": {"type": "object"}}}])");
  const auto three = *BuildCallGrammar(ToolCallSyntax::kHermes, tools, "", "function.parameters", 3);
  const std::vector<std::string> calls = {
      "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"q\": \"a\"}}\n</tool_call>",
      "<tool_call>\n{\"name\": \"put\", \"arguments\": {}}\n</tool_call>",
      "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"q\": \"}\\n</tool_call>\"}}\n</tool_call>"};
  std::string text;
  for (size_t i = 0; i < calls.size(); ++i) {
    text += (i > 0 ? "\n" : "") + calls[i];
    EXPECT_EQ(MatchMayEnd(three, text), std::make_pair(true, true)) << text;
    EXPECT_EQ(Match(three, text).second, i + 1 == calls.size()) << "complete only at the third call";
    EXPECT_EQ(MatchMayEnd(three, text.substr(0, text.size() - 1)), std::make_pair(true, false));
    EXPECT_EQ(ParseToolCalls(ToolCallSyntax::kHermes, text).calls.size(), i + 1);
  }
  EXPECT_FALSE(Match(three, text + "\n").first);  // a fourth is over the bound
  EXPECT_EQ(MatchMayEnd(three, calls[0] + "\n"), std::make_pair(true, false));
  EXPECT_FALSE(Match(three, calls[0] + "\n\n" + calls[1]).first);
  EXPECT_FALSE(Match(three, calls[0] + calls[1]).first);
  EXPECT_FALSE(Match(three, calls[0] + " ").first);
  // One call only: whole and complete after it, nothing may follow.
  const auto one = *BuildCallGrammar(ToolCallSyntax::kHermes, tools, "", "function.parameters", 1);
  EXPECT_EQ(Match(one, calls[0]), std::make_pair(true, true));
  EXPECT_FALSE(Match(one, calls[0] + "\n").first);
  // A named tool binds every call.
  const auto named = *BuildCallGrammar(ToolCallSyntax::kHermes, tools, "get", "function.parameters", 3);
  EXPECT_EQ(MatchMayEnd(named, calls[0] + "\n" + calls[2]), std::make_pair(true, true));
  EXPECT_FALSE(Match(named, calls[0] + "\n" + calls[1]).first);
}

// The constraint through two calls, token by token: the end token is refused inside a call and
// allowed between calls; taken, it completes the output.
TEST(ForcedCall, TheEndTokenIsAllowedOnlyBetweenCalls) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])");
  const std::vector<std::string> vocab = {"", "<tool_call>\n{\"name\": \"f\", \"arguments\": ", "{}", "}\n</tool_call>", "\n",
                                          "}"};
  auto texts = std::make_shared<TokenTexts>(vocab);
  const int32_t end = 0;
  auto constraint = MakeCallConstraint(texts, *BuildCallGrammar(ToolCallSyntax::kHermes, tools, "f", "function.parameters",
                                                                kMaxParallelCalls),
                                       end);
  std::string text;
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 1, 2, 3};
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(constraint->Allows(end), i == 3) << "only after the first call: " << text;
    ASSERT_TRUE(constraint->Allows(tokens[i])) << text << " + " << vocab[static_cast<size_t>(tokens[i])];
    constraint->Accept(tokens[i]);
    text += vocab[static_cast<size_t>(tokens[i])];
  }
  ASSERT_TRUE(constraint->Allows(end));
  std::vector<int32_t> allowed;
  constraint->ListAllAllowed(&allowed);
  std::sort(allowed.begin(), allowed.end());
  EXPECT_EQ(allowed, (std::vector<int32_t>{end, 4}));  // the end, or "\n" and a third call
  EXPECT_FALSE(constraint->IsComplete());
  constraint->Accept(end);
  EXPECT_TRUE(constraint->IsComplete());
  EXPECT_FALSE(constraint->Allows(4));
  EXPECT_EQ(ParseToolCalls(ToolCallSyntax::kHermes, text).calls.size(), 2u);
}

// Random schemas and a random model that may end after any call: every output is 1..max_calls
// valid calls; fewer than the bound only where the model took the end token.
TEST(ForcedCall, RandomModelsWriteValidSequencesOfCallsRandomized) {
  std::mt19937 rng(77);
  const std::vector<std::string> vocab = TestVocab(rng);
  auto texts = std::make_shared<TokenTexts>(vocab);
  const int32_t end = 0;  // TestVocab's control token
  std::vector<int> num_with_calls(kMaxParallelCalls + 1);
  for (int round = 0; round < 200; ++round) {
    std::vector<ojson> schemas;
    const ojson tools = RandomTools(rng, &schemas);
    const std::string forced = round % 3 == 0 ? tools[0]["function"]["name"].get<std::string>() : "";
    const int max_calls = std::uniform_int_distribution<int>(1, kMaxParallelCalls)(rng);
    auto grammar = BuildCallGrammar(ToolCallSyntax::kHermes, tools, forced, "function.parameters", max_calls);
    ASSERT_TRUE(grammar.ok()) << grammar.status();
    auto constraint = MakeCallConstraint(texts, *grammar, end);
    SamplingParams p;
    p.temperature = round % 4 == 0 ? 0.0f : 1.0f;
    p.seed = static_cast<uint64_t>(round);
    Sampler sampler(p);
    std::normal_distribution<float> noise(0, 2);
    std::string text;
    bool took_end = false;
    for (int steps = 0; steps < 40000 && !constraint->IsComplete(); ++steps) {
      std::vector<float> logits(vocab.size());
      for (size_t i = 0; i < vocab.size(); ++i) {
        logits[i] = noise(rng) + (vocab[i].find_first_of("\"]}") != std::string::npos ? 4.0f : 0.0f);
      }
      logits[end] = noise(rng) + 3.0f;  // as likely as "\n" and its kin: sometimes ends, sometimes goes on
      const int32_t token = sampler.Sample(logits, constraint.get());
      ASSERT_GE(token, 0) << "no token allowed after: " << text;
      constraint->Accept(token);
      if (token == end) {
        took_end = true;
        ASSERT_EQ(MatchMayEnd(*grammar, text), std::make_pair(true, true)) << "ended where it may not: " << text;
      } else {
        text += vocab[static_cast<size_t>(token)];
      }
    }
    ASSERT_TRUE(constraint->IsComplete()) << text;
    const size_t n = ExpectValidCalls(ToolCallSyntax::kHermes, text, tools, forced, static_cast<size_t>(max_calls));
    if (n < static_cast<size_t>(max_calls)) {
      EXPECT_TRUE(took_end) << "fewer calls than the bound without the end token: " << text;
    }
    ++num_with_calls[std::min<size_t>(n, kMaxParallelCalls)];
  }
  // Both outcomes happen: one call, and several.
  EXPECT_GT(num_with_calls[1], 0);
  int several = 0;
  for (int n = 2; n <= kMaxParallelCalls; ++n) several += num_with_calls[n];
  EXPECT_GT(several, 0);
}

// ---- Stop strings ----

OpenAiRequest ForcedWeatherRequest(std::vector<std::string> stop) {
  OpenAiRequest r;
  r.kind = ApiKind::kChat;
  r.tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters":
      {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])");
  r.tool_choice = ToolChoice::kRequired;
  r.stop = std::move(stop);
  return r;
}

TEST(ForcedCall, AForcedRequestIgnoresItsStopStrings) {
  int num_texts_calls = 0;
  auto texts = [&num_texts_calls] {
    ++num_texts_calls;
    return std::make_shared<const TokenTexts>(std::vector<std::string>{"", "a"});
  };
  OpenAiRequest r = ForcedWeatherRequest({"}", "Paris"});
  auto forced = PrepareForcedCall(r, ToolCallSyntax::kHermes, texts, 0);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_NE(forced->constraint, nullptr);
  EXPECT_TRUE(forced->stops.empty());
  r.tool_choice = ToolChoice::kAuto;  // not forced: the stop strings apply
  auto free = PrepareForcedCall(r, ToolCallSyntax::kHermes, texts, 0);
  ASSERT_TRUE(free.ok());
  EXPECT_EQ(free->constraint, nullptr);
  EXPECT_EQ(free->stops, (std::vector<std::string>{"}", "Paris"}));
  EXPECT_EQ(num_texts_calls, 1);  // the token texts only for the forced request
  r.tool_choice = ToolChoice::kRequired;
  EXPECT_FALSE(PrepareForcedCall(r, ToolCallSyntax::kNone, texts, 0).ok());  // the grammar's errors pass through
}

class ForcedCallStopsTest : public StoriesTokenizerTest {};

// The call's text through the request's CompletionStream, as the route makes it: the forced
// setup leaves the call whole where the request's own stop strings ("}", a word of an
// argument) would have cut it.
TEST_F(ForcedCallStopsTest, AStopStringInsideTheCallDoesNotCutIt) {
  const OpenAiRequest r = ForcedWeatherRequest({"}", "Paris"});
  auto texts = std::make_shared<const TokenTexts>(*tokenizer_);
  auto forced = PrepareForcedCall(r, ToolCallSyntax::kHermes, [&texts] { return texts; }, tokenizer_->eos_id());
  ASSERT_TRUE(forced.ok()) << forced.status();
  const std::string call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  EncodeOptions o;
  o.add_bos = false;
  o.add_eos = false;
  o.continuation = true;  // generated text: no SentencePiece space prefix
  std::vector<int32_t> tokens = tokenizer_->Encode(call, o);
  auto run = [&](std::vector<std::string> stops) {
    CompletionStream stream(*tokenizer_, std::move(stops), -1);
    for (int32_t t : tokens) {
      TokenEvent e;
      e.token = t;
      if (stream.Consume(e).stop_matched) break;
    }
    TokenEvent last;
    last.finished = true;
    last.finish = stream.stop_matched() ? FinishReason::kCancelled : FinishReason::kEos;
    stream.Consume(last);
    return std::make_pair(stream.text(), stream.stop_matched());
  };
  for (int32_t t : tokens) {
    ASSERT_TRUE(forced->constraint->Allows(t)) << tokenizer_->Piece(t);
    forced->constraint->Accept(t);
  }
  // Parallel calls are allowed (the default): the model ends the output with its end token.
  ASSERT_TRUE(forced->constraint->Allows(tokenizer_->eos_id()));
  forced->constraint->Accept(tokenizer_->eos_id());
  EXPECT_TRUE(forced->constraint->IsComplete());
  tokens.push_back(tokenizer_->eos_id());
  const auto [text, matched] = run(forced->stops);
  EXPECT_FALSE(matched);
  EXPECT_EQ(text, call);
  const ParsedToolCalls parsed = ParseToolCalls(ToolCallSyntax::kHermes, text);
  ASSERT_EQ(parsed.calls.size(), 1u);
  EXPECT_EQ(parsed.calls[0].arguments, "{\"city\": \"Paris\"}");
  // The request's own stop strings would have ended it inside the arguments.
  const auto [cut, cut_matched] = run(r.stop);
  EXPECT_TRUE(cut_matched);
  EXPECT_EQ(cut, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"");
}

}  // namespace
}  // namespace prefixd
