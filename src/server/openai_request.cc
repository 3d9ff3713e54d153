#include "server/openai_request.h"

#include <limits>

#include "absl/strings/str_join.h"
#include "server/api_error.h"
#include "server/json_body.h"

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
    const std::string f = JsonPathJoin(field, i);
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
  const json* p = FindField(body, "prompt");
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
  const std::string cf = JsonPathJoin(field, "content");
  const json* c = FindField(msg, "content");
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
    const std::string pf = JsonPathJoin(cf, i);
    const json& part = (*c)[i];
    if (!part.is_object()) return WrongType(pf, "an object", part);
    const json* type = FindField(part, "type");
    if (type == nullptr) return InvalidArgumentFor(JsonPathJoin(pf, "type"), absl::StrCat("'", pf, ".type' is required"));
    ASSIGN_OR_RETURN(std::string t, ReadString(*type, JsonPathJoin(pf, "type")));
    if (t != "text") {
      return InvalidArgumentFor(JsonPathJoin(pf, "type"),
                                absl::StrCat("'", JsonPathJoin(pf, "type"), "' is '", t,
                                             "'; only 'text' content parts are supported"));
    }
    const json* text = FindField(part, "text");
    if (text == nullptr) return InvalidArgumentFor(JsonPathJoin(pf, "text"), absl::StrCat("'", pf, ".text' is required"));
    ASSIGN_OR_RETURN(std::string s, ReadString(*text, JsonPathJoin(pf, "text")));
    m.content += s;
  }
  return absl::OkStatus();
}

Status ReadMessages(const json& body, const RequestLimits& limits, OpenAiRequest& out) {
  const json* ms = FindField(body, "messages");
  if (ms == nullptr) return InvalidArgumentFor("messages", "'messages' is required");
  if (!ms->is_array()) return WrongType("messages", "an array of messages", *ms);
  if (ms->empty()) return InvalidArgumentFor("messages", "'messages' is empty");
  if (ms->size() > limits.max_messages) {
    return InvalidArgumentFor("messages", absl::StrCat("'messages' has ", ms->size(),
                                                       " messages; the limit is ", limits.max_messages));
  }
  out.messages.reserve(ms->size());
  for (size_t i = 0; i < ms->size(); ++i) {
    const std::string f = JsonPathJoin("messages", i);
    const json& msg = (*ms)[i];
    if (!msg.is_object()) return WrongType(f, "an object", msg);
    ChatMessage m;
    const json* role = FindField(msg, "role");
    if (role == nullptr) return InvalidArgumentFor(JsonPathJoin(f, "role"), absl::StrCat("'", f, ".role' is required"));
    ASSIGN_OR_RETURN(m.role, ReadString(*role, JsonPathJoin(f, "role")));
    if (m.role == "developer") m.role = "system";
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      return InvalidArgumentFor(
          JsonPathJoin(f, "role"), absl::StrCat("'", f, ".role' is '", m.role,
                                        "'; it must be system, developer, user, assistant or tool"));
    }
    RETURN_IF_ERROR(ReadContent(msg, f, m));
    if (const json* name = FindField(msg, "name")) {
      ASSIGN_OR_RETURN(m.name, ReadString(*name, JsonPathJoin(f, "name")));
    }
    if (const json* tc = FindField(msg, "tool_calls")) {
      if (!tc->is_array()) return WrongType(JsonPathJoin(f, "tool_calls"), "an array", *tc);
      // A placeholder: KeepKeyOrder moves the client's array in, keys in their order.
      m.tool_calls = nlohmann::ordered_json::array();
    }
    if (const json* id = FindField(msg, "tool_call_id")) {
      ASSIGN_OR_RETURN(m.tool_call_id, ReadString(*id, JsonPathJoin(f, "tool_call_id")));
    }
    out.messages.push_back(std::move(m));
  }
  return absl::OkStatus();
}

}  // namespace

Status ReadCommonFields(const json& body, const RequestLimits& limits, OpenAiRequest& out) {
  if (const json* v = FindField(body, "model")) {
    ASSIGN_OR_RETURN(out.model, ReadString(*v, "model"));
  }
  const int64_t max_limit = limits.context_length > 0 ? limits.context_length : std::numeric_limits<int32_t>::max();
  // Precedence: max_completion_tokens, then max_tokens, then n_predict.
  if (const json* v = FindField(body, "n_predict")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "n_predict", -1, max_limit));
    if (n >= 0) out.max_tokens = static_cast<int32_t>(n);
  }
  for (const char* field : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = FindField(body, field)) {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, field, 0, max_limit));
      out.max_tokens = static_cast<int32_t>(n);
    }
  }
  if (const json* v = FindField(body, "temperature")) {
    ASSIGN_OR_RETURN(double t, ReadNumber(*v, "temperature", 0, 2));
    out.temperature = static_cast<float>(t);
  }
  if (const json* v = FindField(body, "top_p")) {
    ASSIGN_OR_RETURN(double p, ReadNumber(*v, "top_p", 0, 1));
    out.top_p = static_cast<float>(p);
  }
  if (const json* v = FindField(body, "top_k")) {
    ASSIGN_OR_RETURN(int64_t k, ReadInt(*v, "top_k", -1, std::numeric_limits<int32_t>::max()));
    out.top_k = k < 0 ? 0 : static_cast<int32_t>(k);
  }
  if (const json* v = FindField(body, "min_p")) {
    ASSIGN_OR_RETURN(double p, ReadNumber(*v, "min_p", 0, 1));
    out.min_p = static_cast<float>(p);
  }
  for (const char* field : {"frequency_penalty", "presence_penalty"}) {
    if (const json* v = FindField(body, field)) {  // accepted for compatibility, not applied
      ASSIGN_OR_RETURN(double unused, ReadNumber(*v, field, -2, 2));
      (void)unused;
    }
  }
  if (const json* v = FindField(body, "seed")) {
    ASSIGN_OR_RETURN(int64_t s, ReadInt(*v, "seed", std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
    out.seed = static_cast<uint64_t>(s);
  }
  if (const json* v = FindField(body, "stop")) {
    if (v->is_string()) {
      if (!v->get_ref<const std::string&>().empty()) out.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 4) {
        return InvalidArgumentFor("stop", absl::StrCat("'stop' has ", v->size(),
                                                       " strings; at most 4 are allowed"));
      }
      for (size_t i = 0; i < v->size(); ++i) {
        ASSIGN_OR_RETURN(std::string s, ReadString((*v)[i], JsonPathJoin("stop", i)));
        if (!s.empty()) out.stop.push_back(std::move(s));
      }
    } else {
      return WrongType("stop", "a string or an array of strings", *v);
    }
  }
  if (const json* v = FindField(body, "n")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "n", std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max()));
    if (n != 1) {
      return InvalidArgumentFor("n", absl::StrCat("'n' is ", n, "; only n = 1 is supported"));
    }
  }
  if (const json* v = FindField(body, "ignore_eos")) {
    ASSIGN_OR_RETURN(out.ignore_eos, ReadBool(*v, "ignore_eos"));
  }
  if (const json* v = FindField(body, "stream")) {
    ASSIGN_OR_RETURN(out.stream, ReadBool(*v, "stream"));
  }
  if (const json* v = FindField(body, "stream_options")) {
    if (!v->is_object()) return WrongType("stream_options", "an object", *v);
    if (const json* u = FindField(*v, "include_usage")) {
      ASSIGN_OR_RETURN(out.include_usage, ReadBool(*u, "stream_options.include_usage"));
    }
  }
  if (const json* v = FindField(body, "cache_salt")) {
    ASSIGN_OR_RETURN(out.cache_salt, ReadString(*v, "cache_salt"));
  }
  RETURN_IF_ERROR(ReadOpenAiRetention(body, out.retention));
  if (const json* v = FindField(body, "prefix_cache")) {
    if (!v->is_object()) return WrongType("prefix_cache", "an object", *v);
    if (const json* s = FindField(*v, "scope")) {
      ASSIGN_OR_RETURN(std::string scope, ReadString(*s, "prefix_cache.scope"));
      auto spec = ParseRequestScope(scope);
      if (!spec.ok()) {
        return InvalidArgumentFor("prefix_cache.scope",
                                  absl::StrCat("'prefix_cache.scope': ", spec.status().message()));
      }
      out.prefix_cache.scope = *spec;
    }
    if (const json* w = FindField(*v, "window")) {
      ASSIGN_OR_RETURN(int64_t window,
                       ReadInt(*w, "prefix_cache.window", 1, kMaxRequestScopeWindow));
      out.prefix_cache.window = static_cast<int>(window);
    }
    if (const json* r = FindField(*v, "retention")) RETURN_IF_ERROR(ReadTokenRetention(*r, out.retention));
    // A window sets how many recent prompts "auto" compares with; alone it means auto.
    if (out.prefix_cache.window) {
      if (!out.prefix_cache.scope) out.prefix_cache.scope = RequestScope{};
      if (out.prefix_cache.scope->mode == RequestScope::Mode::kAuto) {
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

Status CheckForcedTool(const OpenAiRequest& request, const std::string& name_field) {
  if (request.tool_choice != ToolChoice::kRequired && request.tool_choice != ToolChoice::kNamed) {
    return absl::OkStatus();
  }
  if (!request.tools.is_array() || request.tools.empty()) {
    return InvalidArgumentFor("tool_choice", "'tool_choice' forces a tool call, but the request offers no "
                                             "tools; send 'tools' or leave tool_choice out");
  }
  if (request.tool_choice == ToolChoice::kRequired) return absl::OkStatus();
  std::vector<std::string> names;
  for (const auto& tool : request.tools) {
    const auto& function = tool.contains("function") ? tool["function"] : tool;
    if (!function.is_object() || !function.contains("name") || !function["name"].is_string()) continue;
    names.push_back(function["name"].get<std::string>());
    if (names.back() == request.tool_choice_name) return absl::OkStatus();
  }
  return InvalidArgumentFor(name_field, absl::StrCat("'", name_field, "' is '", request.tool_choice_name,
                                                     "', which is not among the request's tools (",
                                                     absl::StrJoin(names, ", "), ")"));
}

namespace {

// tool_choice: "auto" | "none" | "required" | {type: "function", function: {name}}.
Status ReadToolChoice(const json& body, OpenAiRequest& out) {
  const json* v = FindField(body, "tool_choice");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_object()) {
    const json* type = FindField(*v, "type");
    if (type == nullptr) return Missing("tool_choice.type");
    ASSIGN_OR_RETURN(std::string t, ReadString(*type, "tool_choice.type"));
    if (t != "function") {
      return InvalidArgumentFor("tool_choice.type", absl::StrCat("'tool_choice.type' is '", t,
                                                                 "'; a named tool choice is {\"type\": \"function\", "
                                                                 "\"function\": {\"name\": ...}}"));
    }
    const json* function = FindField(*v, "function");
    if (function == nullptr) return Missing("tool_choice.function");
    if (!function->is_object()) return WrongType("tool_choice.function", "an object", *function);
    const json* name = FindField(*function, "name");
    if (name == nullptr) return Missing("tool_choice.function.name");
    ASSIGN_OR_RETURN(out.tool_choice_name, ReadString(*name, "tool_choice.function.name"));
    out.tool_choice = ToolChoice::kNamed;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string choice, ReadString(*v, "tool_choice"));
  if (choice == "auto") {
    out.tool_choice = ToolChoice::kAuto;
  } else if (choice == "none") {
    out.tool_choice = ToolChoice::kNone;
  } else if (choice == "required") {
    out.tool_choice = ToolChoice::kRequired;
  } else {
    return InvalidArgumentFor("tool_choice", absl::StrCat("'tool_choice' is '", choice,
                                                          "'; it must be auto, none, required or an object"));
  }
  return absl::OkStatus();
}

Status ReadChatExtras(const json& body, OpenAiRequest& out) {
  RETURN_IF_ERROR(ReadToolChoice(body, out));
  if (const json* v = FindField(body, "parallel_tool_calls")) {
    ASSIGN_OR_RETURN(out.parallel_tool_calls, ReadBool(*v, "parallel_tool_calls"));
  }
  if (const json* v = FindField(body, "tools")) {
    if (!v->is_array()) return WrongType("tools", "an array", *v);
    out.tools = nlohmann::ordered_json::array();  // placeholder, as tool_calls
  }
  if (const json* v = FindField(body, "chat_template_kwargs")) {
    if (!v->is_object()) return WrongType("chat_template_kwargs", "an object", *v);
    out.chat_template_kwargs = nlohmann::ordered_json::object();
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body, const RequestLimits& limits) {
  ASSIGN_OR_RETURN(json j, ParseJsonObject(body, limits.max_json_depth));
  OpenAiRequest out;
  out.kind = ApiKind::kCompletion;
  RETURN_IF_ERROR(ReadPrompt(j, limits, out));
  RETURN_IF_ERROR(ReadCommonFields(j, limits, out));
  if (const json* v = FindField(j, "logprobs")) {
    if (v->is_boolean()) return WrongType("logprobs", "an integer between 0 and 5", *v);
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "logprobs", 0, 5));
    out.logprobs = true;
    out.top_logprobs = static_cast<int32_t>(n);
  }
  if (const json* v = FindField(j, "echo")) {
    ASSIGN_OR_RETURN(bool echo, ReadBool(*v, "echo"));
    if (echo) return InvalidArgumentFor("echo", "'echo' = true is not supported");
  }
  if (const json* v = FindField(j, "best_of")) {
    ASSIGN_OR_RETURN(int64_t n, ReadInt(*v, "best_of", 1, 1));
    (void)n;
  }
  if (const json* v = FindField(j, "suffix")) {
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
  RETURN_IF_ERROR(CheckForcedTool(out, "tool_choice.function.name"));
  if (const json* v = FindField(j, "logprobs")) {
    ASSIGN_OR_RETURN(out.logprobs, ReadBool(*v, "logprobs"));
  }
  if (const json* v = FindField(j, "top_logprobs")) {
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
  const bool has_messages = FindField(j, "messages") != nullptr;
  const bool has_prompt = FindField(j, "prompt") != nullptr;
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
  if (const json* v = FindField(j, "model")) {
    ASSIGN_OR_RETURN(out.model, ReadString(*v, "model"));
  }
  if (const json* v = FindField(j, "cache_salt")) {
    ASSIGN_OR_RETURN(out.cache_salt, ReadString(*v, "cache_salt"));
  }
  if (const json* v = FindField(j, "tokens")) {
    ASSIGN_OR_RETURN(out.probe_tokens, ReadBool(*v, "tokens"));
  }
  if (const json* v = FindField(j, "block_hashes")) {
    ASSIGN_OR_RETURN(out.probe_block_hashes, ReadBool(*v, "block_hashes"));
  }
  return out;
}

}  // namespace prefixd
