#include "server/openai_request.h"

#include <cmath>
#include <limits>

#include "server/api_error.h"
#include "server/request_fields.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

// Token ids: a non-empty array of integers in [0, vocab).
StatusOr<std::vector<int32_t>> ReadTokenIds(const json& j, const std::string& field,
                                            const RequestLimits& limits) {
  if (j.empty()) return InvalidArgumentFor(field, absl::StrCat("'", field, "' is empty"));
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size - 1 : std::numeric_limits<int32_t>::max();
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string f = Join(field, i);
    if (!j[i].is_number_integer()) return WrongType(f, "a token id (integer)", j[i]);
    ASSIGN_OR_RETURN(int64_t id, ReadInt(j[i], f, 0, hi));
    ids.push_back(static_cast<int32_t>(id));
  }
  if (limits.context_length > 0 && static_cast<int64_t>(ids.size()) >= limits.context_length) {
    return InvalidArgumentFor(
        field, absl::StrCat("the prompt has ", ids.size(), " tokens, which does not fit the context of ",
                            limits.context_length, " tokens (one more is needed to generate)"));
  }
  return ids;
}

Status ReadPrompt(const json& body, const RequestLimits& limits, OpenAiRequest& out) {
  const json* p = Find(body, "prompt");
  if (p == nullptr) return InvalidArgumentFor("prompt", "'prompt' is required");
  if (p->is_string()) {
    if (p->get_ref<const std::string&>().empty()) {
      return InvalidArgumentFor("prompt", "'prompt' is empty");
    }
    out.prompt_text = p->get<std::string>();
    return absl::OkStatus();
  }
  if (!p->is_array()) {
    return WrongType("prompt", "a string, an array of token ids or a list of one of them", *p);
  }
  if (p->empty()) return InvalidArgumentFor("prompt", "'prompt' is empty");
  const json& first = (*p)[0];
  if (first.is_string() || first.is_array()) {
    // A list of prompts (strings or token-id arrays).
    if (p->size() > 1) {
      return InvalidArgumentFor(
          "prompt", absl::StrCat("'prompt' lists ", p->size(),
                                 " prompts; this server takes one prompt per request (n = 1): "
                                 "send one request per prompt"));
    }
    if (first.is_string()) {
      if (first.get_ref<const std::string&>().empty()) {
        return InvalidArgumentFor("prompt[0]", "'prompt[0]' is empty");
      }
      out.prompt_text = first.get<std::string>();
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(out.prompt_tokens, ReadTokenIds(first, "prompt[0]", limits));
    return absl::OkStatus();
  }
  if (!first.is_number()) {
    return WrongType("prompt[0]", "a string, a token id or an array of token ids", first);
  }
  ASSIGN_OR_RETURN(out.prompt_tokens, ReadTokenIds(*p, "prompt", limits));
  return absl::OkStatus();
}

// Content: a string, or an array of {type: "text", text} parts joined without separators (as
// OpenAI and vLLM do), or null for an assistant turn that only calls tools.
Status ReadContent(const json& msg, const std::string& field, ChatMessage& m) {
  const std::string cf = Join(field, "content");
  const json* c = Find(msg, "content");
  if (c == nullptr) {
    if (m.role == "assistant") return absl::OkStatus();
    return InvalidArgumentFor(cf, absl::StrCat("'", cf, "' is required for a ", m.role, " message"));
  }
  if (c->is_string()) {
    m.content = c->get<std::string>();
    return absl::OkStatus();
  }
  if (!c->is_array()) return WrongType(cf, "a string or an array of content parts", *c);
  for (size_t i = 0; i < c->size(); ++i) {
    const std::string pf = Join(cf, i);
    const json& part = (*c)[i];
    if (!part.is_object()) return WrongType(pf, "an object", part);
    const json* type = Find(part, "type");
    if (type == nullptr) return InvalidArgumentFor(Join(pf, "type"), absl::StrCat("'", pf, ".type' is required"));
    ASSIGN_OR_RETURN(std::string t, ReadString(*type, Join(pf, "type")));
    if (t != "text") {
      return InvalidArgumentFor(Join(pf, "type"),
                                absl::StrCat("'", Join(pf, "type"), "' is '", t,
                                             "'; only 'text' content parts are supported"));
    }
    const json* text = Find(part, "text");
    if (text == nullptr) return InvalidArgumentFor(Join(pf, "text"), absl::StrCat("'", pf, ".text' is required"));
    ASSIGN_OR_RETURN(std::string s, ReadString(*text, Join(pf, "text")));
    m.content += s;
  }
  return absl::OkStatus();
}

Status ReadMessages(const json& body, const RequestLimits& limits, OpenAiRequest& out) {
  const json* ms = Find(body, "messages");
  if (ms == nullptr) return InvalidArgumentFor("messages", "'messages' is required");
  if (!ms->is_array()) return WrongType("messages", "an array of messages", *ms);
  if (ms->empty()) return InvalidArgumentFor("messages", "'messages' is empty");
  if (ms->size() > limits.max_messages) {
    return InvalidArgumentFor("messages", absl::StrCat("'messages' has ", ms->size(),
                                                       " messages; the limit is ", limits.max_messages));
  }
  out.messages.reserve(ms->size());
  for (size_t i = 0; i < ms->size(); ++i) {
    const std::string f = Join("messages", i);
    const json& msg = (*ms)[i];
    if (!msg.is_object()) return WrongType(f, "an object", msg);
    ChatMessage m;
    const json* role = Find(msg, "role");
    if (role == nullptr) return InvalidArgumentFor(Join(f, "role"), absl::StrCat("'", f, ".role' is required"));
    ASSIGN_OR_RETURN(m.role, ReadString(*role, Join(f, "role")));
    if (m.role == "developer") m.role = "system";
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      return InvalidArgumentFor(
          Join(f, "role"), absl::StrCat("'", f, ".role' is '", m.role,
                                        "'; it must be system, developer, user, assistant or tool"));
    }
    RETURN_IF_ERROR(ReadContent(msg, f, m));
    if (const json* name = Find(msg, "name")) {
      ASSIGN_OR_RETURN(m.name, ReadString(*name, Join(f, "name")));
    }
    if (const json* tc = Find(msg, "tool_calls")) {
      if (!tc->is_array()) return WrongType(Join(f, "tool_calls"), "an array", *tc);
      // A placeholder: KeepKeyOrder moves the client's array in, keys in their order.
      m.tool_calls = nlohmann::ordered_json::array();
    }
    if (const json* id = Find(msg, "tool_call_id")) {
      ASSIGN_OR_RETURN(m.tool_call_id, ReadString(*id, Join(f, "tool_call_id")));
    }
    out.messages.push_back(std::move(m));
  }
  return absl::OkStatus();
}

}  // namespace

Status ReadCommonFields(const json& body, const RequestLimits& limits, OpenAiRequest& out) {
  if (const json* v = Find(body, "model")) {
    ASSIGN_OR_RETURN(out.model, ReadString(*v, "model"));
  }
  const int64_t max_limit = limits.context_length > 0 ? limits.context_length : std::numeric_limits<int32_t>::max();
  // Precedence: max_completion_tokens, then max_tokens, then n_predict.
  if (const json* v = Find(body, "n_predict")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "n_predict", -1, max_limit));
    if (n >= 0) out.max_tokens = static_cast<int32_t>(n);
  }
  for (const char* field : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = Find(body, field)) {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, field, 0, max_limit));
      out.max_tokens = static_cast<int32_t>(n);
    }
  }
  if (const json* v = Find(body, "temperature")) {
    ASSIGN_OR_RETURN(double t, ReadNumber(*v, "temperature", 0, 2));
    out.temperature = static_cast<float>(t);
  }
  if (const json* v = Find(body, "top_p")) {
    ASSIGN_OR_RETURN(double p, ReadNumber(*v, "top_p", 0, 1));
    out.top_p = static_cast<float>(p);
  }
  if (const json* v = Find(body, "top_k")) {
    ASSIGN_OR_RETURN(int64_t k, ReadInt(*v, "top_k", -1, std::numeric_limits<int32_t>::max()));
    out.top_k = k < 0 ? 0 : static_cast<int32_t>(k);
  }
  if (const json* v = Find(body, "min_p")) {
    ASSIGN_OR_RETURN(double p, ReadNumber(*v, "min_p", 0, 1));
    out.min_p = static_cast<float>(p);
  }
  for (const char* field : {"frequency_penalty", "presence_penalty"}) {
    if (const json* v = Find(body, field)) {  // accepted for compatibility, not applied
      ASSIGN_OR_RETURN(double unused, ReadNumber(*v, field, -2, 2));
      (void)unused;
    }
  }
  if (const json* v = Find(body, "seed")) {
    ASSIGN_OR_RETURN(int64_t s, ReadInt(*v, "seed", std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
    out.seed = static_cast<uint64_t>(s);
  }
  if (const json* v = Find(body, "stop")) {
    if (v->is_string()) {
      if (!v->get_ref<const std::string&>().empty()) out.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 4) {
        return InvalidArgumentFor("stop", absl::StrCat("'stop' has ", v->size(),
                                                       " strings; at most 4 are allowed"));
      }
      for (size_t i = 0; i < v->size(); ++i) {
        ASSIGN_OR_RETURN(std::string s, ReadString((*v)[i], Join("stop", i)));
        if (!s.empty()) out.stop.push_back(std::move(s));
      }
    } else {
      return WrongType("stop", "a string or an array of strings", *v);
    }
  }
  if (const json* v = Find(body, "n")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "n", std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
    if (n != 1) {
      return InvalidArgumentFor("n", absl::StrCat("'n' is ", n, "; only n = 1 is supported"));
    }
  }
  if (const json* v = Find(body, "ignore_eos")) {
    ASSIGN_OR_RETURN(out.ignore_eos, ReadBool(*v, "ignore_eos"));
  }
  if (const json* v = Find(body, "stream")) {
    ASSIGN_OR_RETURN(out.stream, ReadBool(*v, "stream"));
  }
  if (const json* v = Find(body, "stream_options")) {
    if (!v->is_object()) return WrongType("stream_options", "an object", *v);
    if (const json* u = Find(*v, "include_usage")) {
      ASSIGN_OR_RETURN(out.include_usage, ReadBool(*u, "stream_options.include_usage"));
    }
  }
  if (const json* v = Find(body, "cache_salt")) {
    ASSIGN_OR_RETURN(out.cache_salt, ReadString(*v, "cache_salt"));
  }
  if (const json* v = Find(body, "prefix_cache")) {
    if (!v->is_object()) return WrongType("prefix_cache", "an object", *v);
    if (const json* s = Find(*v, "scope")) {
      ASSIGN_OR_RETURN(std::string scope, ReadString(*s, "prefix_cache.scope"));
      auto spec = ParseScopeSpec(scope);
      if (!spec.ok()) {
        return InvalidArgumentFor("prefix_cache.scope",
                                  absl::StrCat("'prefix_cache.scope': ", spec.status().message()));
      }
      out.prefix_cache.scope = *spec;
    }
    if (const json* w = Find(*v, "window")) {
      ASSIGN_OR_RETURN(int64_t window,
                       ReadInt(*w, "prefix_cache.window", 1, ScopePolicy::kMaxHistory));
      out.prefix_cache.window = static_cast<int>(window);
    }
    // A window sets how many recent prompts "auto" compares with; alone it means auto.
    if (out.prefix_cache.window) {
      if (!out.prefix_cache.scope) out.prefix_cache.scope = ScopeSpec{};
      if (out.prefix_cache.scope->mode == ScopeSpec::Mode::kAuto) {
        out.prefix_cache.scope->window = *out.prefix_cache.window;
      }
    }
  }
  return absl::OkStatus();
}

Status AddToolsBytes(const nlohmann::ordered_json& part, const std::string& field,
                     const RequestLimits& limits, size_t& bytes) {
  bytes += part.dump().size();
  if (bytes <= limits.max_tools_bytes) return absl::OkStatus();
  return InvalidArgumentFor(field, absl::StrCat("'tools', 'tool_calls' and 'chat_template_kwargs' together exceed ",
                                                limits.max_tools_bytes, " bytes (at '", field, "'); the limit is ",
                                                limits.max_tools_bytes, " bytes"));
}

Status ToolChoiceUnsupported(const std::string& field, std::string_view choice) {
  return InvalidArgumentFor(
      field, absl::StrCat("'", field, "' is ", std::string(choice),
                          ": forcing a tool call is not supported (the chat template cannot constrain "
                          "generation); send 'auto' (the model decides) or 'none' (no calls are parsed)"));
}

namespace {

// tool_choice: "auto" | "none"; "required" and a named function are refused.
Status ReadToolChoice(const json& body, OpenAiRequest& out) {
  const json* v = Find(body, "tool_choice");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_object()) return ToolChoiceUnsupported("tool_choice", "a named function");
  ASSIGN_OR_RETURN(std::string choice, ReadString(*v, "tool_choice"));
  if (choice == "auto") {
    out.tool_choice = ToolChoice::kAuto;
  } else if (choice == "none") {
    out.tool_choice = ToolChoice::kNone;
  } else if (choice == "required") {
    return ToolChoiceUnsupported("tool_choice", "'required'");
  } else {
    return InvalidArgumentFor("tool_choice", absl::StrCat("'tool_choice' is '", choice,
                                                          "'; it must be auto, none, required or an object"));
  }
  return absl::OkStatus();
}

Status ReadChatExtras(const json& body, OpenAiRequest& out) {
  RETURN_IF_ERROR(ReadToolChoice(body, out));
  if (const json* v = Find(body, "tools")) {
    if (!v->is_array()) return WrongType("tools", "an array", *v);
    out.tools = nlohmann::ordered_json::array();  // placeholder, as tool_calls
  }
  if (const json* v = Find(body, "chat_template_kwargs")) {
    if (!v->is_object()) return WrongType("chat_template_kwargs", "an object", *v);
    out.chat_template_kwargs = nlohmann::ordered_json::object();
  }
  return absl::OkStatus();
}

}  // namespace

std::string JsonPathAt(std::string_view text, size_t offset) {
  struct Frame {
    bool object = false;
    bool expect_key = false;
    std::string key;
    size_t index = 0;
  };
  std::vector<Frame> stack;
  std::string partial_key;
  bool in_key_string = false;
  const size_t end = std::min(offset, text.size());
  size_t i = 0;
  while (i < end) {
    const char c = text[i];
    if (c == '"') {
      const bool is_key = !stack.empty() && stack.back().object && stack.back().expect_key;
      std::string s;
      size_t j = i + 1;
      bool closed = false;
      for (; j < text.size(); ++j) {
        if (j >= end) break;
        if (text[j] == '\\') {
          if (j + 1 < text.size()) s += text[j + 1];
          ++j;
          continue;
        }
        if (text[j] == '"') {
          closed = true;
          break;
        }
        s += text[j];
      }
      if (!closed) {  // the offset lies inside this string
        if (is_key) {
          in_key_string = true;
          partial_key = s;
        }
        break;
      }
      if (is_key) stack.back().key = std::move(s);
      i = j + 1;
      continue;
    }
    switch (c) {
      case '{': stack.push_back(Frame{true, true, "", 0}); break;
      case '[': stack.push_back(Frame{false, false, "", 0}); break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ',':
        if (!stack.empty()) {
          if (stack.back().object) {
            stack.back().expect_key = true;
            stack.back().key.clear();
          } else {
            ++stack.back().index;
          }
        }
        break;
      case ':':
        if (!stack.empty() && stack.back().object) stack.back().expect_key = false;
        break;
      default: break;
    }
    ++i;
  }
  std::string path;
  for (size_t k = 0; k < stack.size(); ++k) {
    const Frame& f = stack[k];
    const bool last = k + 1 == stack.size();
    if (f.object) {
      std::string key = f.key;
      if (last && in_key_string) key = partial_key;
      if (key.empty()) break;
      path = Join(path, key);
    } else {
      path = Join(path, f.index);
    }
  }
  return path;
}

namespace {

// nlohmann's DOM builder behind a depth check. nlohmann's parser keeps its own stack on the
// heap, but everything that walks the tree afterwards (copies, conversions between json and
// ordered_json, the chat template's tojson) recurses: a body nesting 60,000 arrays overflowed
// the stack. The check runs as each array or object opens, so a deep body is refused before
// any of it is built past the limit. A callback parser (json::parse with a parser_callback_t)
// would see `depth` too, but keeps a second stack per value and cannot stop the parse.
template <typename Json>
class DepthLimitedSax {
 public:
  DepthLimitedSax(Json& root, int max_depth) : dom_(root, /*allow_exceptions=*/false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(typename Json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(typename Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(typename Json::number_float_t v, const typename Json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(typename Json::string_t& v) { return dom_.string(v); }
  bool binary(typename Json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return Open() && dom_.start_object(n); }
  bool key(typename Json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Open() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t byte, const std::string& /*token*/, const nlohmann::detail::exception& e) {
    error_byte_ = byte;
    error_what_ = e.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  std::size_t error_byte() const { return error_byte_; }
  const std::string& error_what() const { return error_what_; }

 private:
  bool Open() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  int max_depth_;
  int depth_ = 0;  // arrays and objects open at the current position
  bool too_deep_ = false;
  std::size_t error_byte_ = 0;  // parse errors: 1-based byte where the parser stopped
  std::string error_what_;
};

// The byte offset of the bracket that opens nesting level `level` (1 = the top-level
// value), skipping strings; npos when the text never nests that deep. For the error message
// of a body refused as too deep: one linear pass.
size_t OffsetOfLevel(std::string_view text, int level) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth == level) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::string_view::npos;
}

template <typename Json>
StatusOr<Json> ParseLimited(std::string_view body, int max_depth) {
  Json j;
  DepthLimitedSax<Json> sax(j, max_depth);
  bool ok = false;
  try {
    ok = Json::sax_parse(body.begin(), body.end(), &sax);
  } catch (const std::exception& e) {
    return InvalidArgumentFor("", absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  if (sax.too_deep()) {
    const size_t at = OffsetOfLevel(body, max_depth + 1);
    const std::string path = at == std::string_view::npos ? "" : JsonPathAt(body, at);
    return InvalidArgumentFor(
        path, absl::StrCat("the request body nests arrays and objects more than ", max_depth,
                           " levels deep", path.empty() ? "" : absl::StrCat(" (in '", path, "')"),
                           "; the limit is ", max_depth));
  }
  if (!ok) {
    const size_t at = sax.error_byte() > 0 ? sax.error_byte() - 1 : 0;
    const std::string path = JsonPathAt(body, at);
    std::string what = sax.error_what();
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep what follows.
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return InvalidArgumentFor(
        path, absl::StrCat("the request body is not valid JSON",
                           path.empty() ? "" : absl::StrCat(" (in '", path, "')"), ": ", what));
  }
  if (!j.is_object()) {
    return InvalidArgumentFor("", absl::StrCat("the request body must be a JSON object, got ", TypeName(j)));
  }
  return j;
}

}  // namespace

StatusOr<json> ParseJsonObject(std::string_view body, int max_depth) {
  return ParseLimited<json>(body, max_depth);
}

StatusOr<nlohmann::ordered_json> ParseOrderedJsonObject(std::string_view body, int max_depth) {
  return ParseLimited<nlohmann::ordered_json>(body, max_depth);
}

StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body, const RequestLimits& limits) {
  ASSIGN_OR_RETURN(json j, ParseJsonObject(body, limits.max_json_depth));
  OpenAiRequest out;
  out.kind = ApiKind::kCompletion;
  RETURN_IF_ERROR(ReadPrompt(j, limits, out));
  RETURN_IF_ERROR(ReadCommonFields(j, limits, out));
  if (const json* v = Find(j, "logprobs")) {
    if (v->is_boolean()) return WrongType("logprobs", "an integer between 0 and 5", *v);
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "logprobs", 0, 5));
    out.logprobs = true;
    out.top_logprobs = static_cast<int32_t>(n);
  }
  if (const json* v = Find(j, "echo")) {
    ASSIGN_OR_RETURN(bool echo, ReadBool(*v, "echo"));
    if (echo) return InvalidArgumentFor("echo", "'echo' = true is not supported");
  }
  if (const json* v = Find(j, "best_of")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "best_of", 1, 1));
    (void)n;
  }
  if (const json* v = Find(j, "suffix")) {
    ASSIGN_OR_RETURN(std::string s, ReadString(*v, "suffix"));
    if (!s.empty()) return InvalidArgumentFor("suffix", "'suffix' (insertion) is not supported");
  }
  return out;
}

namespace {

// The chat template prints tools and tool calls with tojson, in the order the client wrote
// their keys (as Python's dicts keep it); `json` sorts keys, so read those parts again with
// an order-keeping parse and move them (no copy of a client's tree) into the request. Only
// requests that carry them pay for the second parse. The parts' serialized sizes together
// must stay within limits.max_tools_bytes.
Status KeepKeyOrder(std::string_view body, const RequestLimits& limits, OpenAiRequest& out) {
  bool any = !out.tools.is_null() || !out.chat_template_kwargs.is_null();
  for (const ChatMessage& m : out.messages) any = any || !m.tool_calls.is_null();
  if (!any) return absl::OkStatus();
  // Cannot fail: the same body parsed already, under the same depth limit.
  ASSIGN_OR_RETURN(nlohmann::ordered_json j, ParseOrderedJsonObject(body, limits.max_json_depth));
  size_t bytes = 0;
  auto take = [&](nlohmann::ordered_json& from, nlohmann::ordered_json& to, const std::string& field) -> Status {
    to = std::move(from);
    return AddToolsBytes(to, field, limits, bytes);
  };
  if (!out.tools.is_null()) RETURN_IF_ERROR(take(j["tools"], out.tools, "tools"));
  if (!out.chat_template_kwargs.is_null()) {
    RETURN_IF_ERROR(take(j["chat_template_kwargs"], out.chat_template_kwargs, "chat_template_kwargs"));
  }
  for (size_t i = 0; i < out.messages.size(); ++i) {
    if (out.messages[i].tool_calls.is_null()) continue;
    RETURN_IF_ERROR(take(j["messages"][i]["tool_calls"], out.messages[i].tool_calls,
                         absl::StrCat("messages[", i, "].tool_calls")));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body, const RequestLimits& limits) {
  ASSIGN_OR_RETURN(json j, ParseJsonObject(body, limits.max_json_depth));
  OpenAiRequest out;
  out.kind = ApiKind::kChat;
  RETURN_IF_ERROR(ReadMessages(j, limits, out));
  RETURN_IF_ERROR(ReadCommonFields(j, limits, out));
  RETURN_IF_ERROR(ReadChatExtras(j, out));
  RETURN_IF_ERROR(KeepKeyOrder(body, limits, out));
  if (const json* v = Find(j, "logprobs")) {
    ASSIGN_OR_RETURN(out.logprobs, ReadBool(*v, "logprobs"));
  }
  if (const json* v = Find(j, "top_logprobs")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "top_logprobs", 0, 20));
    if (n > 0 && !out.logprobs) {
      return InvalidArgumentFor("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    out.top_logprobs = static_cast<int32_t>(n);
  }
  return out;
}

StatusOr<OpenAiRequest> ParseProbeRequest(std::string_view body, const RequestLimits& limits) {
  ASSIGN_OR_RETURN(json j, ParseJsonObject(body, limits.max_json_depth));
  OpenAiRequest out;
  const bool has_messages = Find(j, "messages") != nullptr;
  const bool has_prompt = Find(j, "prompt") != nullptr;
  if (has_messages == has_prompt) {
    return InvalidArgumentFor(has_messages ? "prompt" : "messages",
                              "the probe needs exactly one of 'messages' and 'prompt'");
  }
  if (has_messages) {
    out.kind = ApiKind::kChat;
    RETURN_IF_ERROR(ReadMessages(j, limits, out));
    RETURN_IF_ERROR(ReadChatExtras(j, out));
    RETURN_IF_ERROR(KeepKeyOrder(body, limits, out));
  } else {
    out.kind = ApiKind::kCompletion;
    RETURN_IF_ERROR(ReadPrompt(j, limits, out));
  }
  if (const json* v = Find(j, "model")) {
    ASSIGN_OR_RETURN(out.model, ReadString(*v, "model"));
  }
  if (const json* v = Find(j, "cache_salt")) {
    ASSIGN_OR_RETURN(out.cache_salt, ReadString(*v, "cache_salt"));
  }
  if (const json* v = Find(j, "tokens")) {
    ASSIGN_OR_RETURN(out.probe_tokens, ReadBool(*v, "tokens"));
  }
  return out;
}

}  // namespace prefixd
