#include "server/anthropic_request.h"

#include "server/api_error.h"
#include "server/json_body.h"

namespace prefixd {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Where a tool_use block's `input` went: out.messages[message].tool_calls[call], read from
// the body's messages[body_message].content[block]. Filled in with the key order kept.
struct InputRef {
  size_t message, call, body_message, block;
};

struct Conversion {
  OpenAiRequest out;
  std::vector<InputRef> inputs;
};

// The block's `type`, required.
StatusOr<std::string> BlockType(const json& block, const std::string& field) {
  if (!block.is_object()) return WrongType(field, "a content block (an object)", block);
  const json* type = FindField(block, "type");
  if (type == nullptr) return Missing(JsonPathJoin(field, "type"));
  return ReadString(*type, JsonPathJoin(field, "type"));
}

Status UnsupportedBlock(const std::string& field, const std::string& type, std::string_view allowed) {
  return InvalidArgumentFor(JsonPathJoin(field, "type"), absl::StrCat("'", JsonPathJoin(field, "type"), "' is '", type,
                                                              "'; only ", std::string(allowed), " blocks are supported here"));
}

// A text block's text.
StatusOr<std::string> BlockText(const json& block, const std::string& field) {
  const json* text = FindField(block, "text");
  if (text == nullptr) return Missing(JsonPathJoin(field, "text"));
  return ReadString(*text, JsonPathJoin(field, "text"));
}

// A string, or an array of text blocks joined without separators (system, tool_result content).
StatusOr<std::string> ReadTextOrBlocks(const json& v, const std::string& field) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) return WrongType(field, "a string or an array of text blocks", v);
  std::string joined;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string bf = JsonPathJoin(field, i);
    ASSIGN_OR_RETURN(std::string type, BlockType(v[i], bf));
    if (type != "text") return UnsupportedBlock(bf, type, "text");
    ASSIGN_OR_RETURN(std::string text, BlockText(v[i], bf));
    joined += text;
  }
  return joined;
}

// A block's cache_control: a breakpoint where the block sits (cache_retention.h).
Status NoteCacheControl(const json& block, const std::string& field, const CacheBreakpoint& where, Conversion& c) {
  return ReadCacheControl(block, field, where, c.out.retention);
}

// Where a block of chat message `message` ends: its text up to byte `content_end`, and
// `tool_call` (-1: none).
CacheBreakpoint InMessage(size_t message, size_t content_end, int64_t tool_call = -1) {
  CacheBreakpoint bp;
  bp.where = CacheBreakpoint::Where::kMessage;
  bp.index = static_cast<int64_t>(message);
  bp.content_end = static_cast<int64_t>(content_end);
  bp.tool_call = tool_call;
  return bp;
}

// The cache_control of text blocks joined into chat message `message` (system, tool_result
// content): each ends where its text does in the joined content.
Status NoteContentCacheControl(const json& content, const std::string& field, size_t message, Conversion& c) {
  if (!content.is_array()) return absl::OkStatus();
  size_t end = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    if (const json* text = FindField(content[i], "text"); text != nullptr && text->is_string()) {
      end += text->get_ref<const std::string&>().size();
    }
    RETURN_IF_ERROR(NoteCacheControl(content[i], JsonPathJoin(field, i), InMessage(message, end), c));
  }
  return absl::OkStatus();
}

Status ReadUserBlocks(const json& blocks, const std::string& field, Conversion& c) {
  std::string text;
  bool has_text = false;
  auto flush_text = [&] {
    if (has_text) c.out.messages.push_back(ChatMessage{"user", std::move(text), "", nullptr, ""});
    text.clear();
    has_text = false;
  };
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string bf = JsonPathJoin(field, i);
    ASSIGN_OR_RETURN(std::string type, BlockType(blocks[i], bf));
    if (type == "text") {
      ASSIGN_OR_RETURN(std::string t, BlockText(blocks[i], bf));
      text += t;
      has_text = true;
      // The run of text is flushed as the next message.
      RETURN_IF_ERROR(NoteCacheControl(blocks[i], bf, InMessage(c.out.messages.size(), text.size()), c));
    } else if (type == "tool_result") {
      flush_text();
      ChatMessage m{"tool", "", "", nullptr, ""};
      const json* id = FindField(blocks[i], "tool_use_id");
      if (id == nullptr) return Missing(JsonPathJoin(bf, "tool_use_id"));
      ASSIGN_OR_RETURN(m.tool_call_id, ReadString(*id, JsonPathJoin(bf, "tool_use_id")));
      if (const json* content = FindField(blocks[i], "content")) {
        ASSIGN_OR_RETURN(m.content, ReadTextOrBlocks(*content, JsonPathJoin(bf, "content")));
        RETURN_IF_ERROR(NoteContentCacheControl(*content, JsonPathJoin(bf, "content"), c.out.messages.size(), c));
      }
      // The whole result: up to the end of its content.
      RETURN_IF_ERROR(NoteCacheControl(blocks[i], bf, InMessage(c.out.messages.size(), m.content.size()), c));
      if (const json* e = FindField(blocks[i], "is_error")) {
        ASSIGN_OR_RETURN(bool unused, ReadBool(*e, JsonPathJoin(bf, "is_error")));
        (void)unused;
      }
      c.out.messages.push_back(std::move(m));
    } else {
      return UnsupportedBlock(bf, type, "text and tool_result");
    }
  }
  // A user turn of text alone (or of nothing) is one user message.
  if (has_text || blocks.empty()) {
    has_text = true;
    flush_text();
  }
  return absl::OkStatus();
}

Status ReadAssistantBlocks(const json& blocks, const std::string& field, size_t body_message, Conversion& c) {
  ChatMessage m{"assistant", "", "", nullptr, ""};
  const size_t message = c.out.messages.size();
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string bf = JsonPathJoin(field, i);
    ASSIGN_OR_RETURN(std::string type, BlockType(blocks[i], bf));
    if (type == "text") {
      ASSIGN_OR_RETURN(std::string t, BlockText(blocks[i], bf));
      m.content += t;
      // Text after a call keeps the calls before it too (templates print the text first).
      const int64_t last_call = m.tool_calls.is_null() ? -1 : static_cast<int64_t>(m.tool_calls.size()) - 1;
      RETURN_IF_ERROR(NoteCacheControl(blocks[i], bf, InMessage(message, m.content.size(), last_call), c));
    } else if (type == "tool_use") {
      const json* id = FindField(blocks[i], "id");
      const json* name = FindField(blocks[i], "name");
      const json* input = FindField(blocks[i], "input");
      if (id == nullptr) return Missing(JsonPathJoin(bf, "id"));
      if (name == nullptr) return Missing(JsonPathJoin(bf, "name"));
      if (input == nullptr) return Missing(JsonPathJoin(bf, "input"));
      ASSIGN_OR_RETURN(std::string call_id, ReadString(*id, JsonPathJoin(bf, "id")));
      ASSIGN_OR_RETURN(std::string call_name, ReadString(*name, JsonPathJoin(bf, "name")));
      if (!input->is_object()) return WrongType(JsonPathJoin(bf, "input"), "an object", *input);
      if (m.tool_calls.is_null()) m.tool_calls = ordered_json::array();
      // `arguments` is filled in by KeepInputOrder, from the body read with its key order.
      m.tool_calls.push_back(ordered_json{{"id", call_id},
                                          {"type", "function"},
                                          {"function", {{"name", call_name}, {"arguments", ""}}}});
      c.inputs.push_back(InputRef{message, m.tool_calls.size() - 1, body_message, i});
      RETURN_IF_ERROR(NoteCacheControl(blocks[i], bf,
                                       InMessage(message, m.content.size(), static_cast<int64_t>(m.tool_calls.size()) - 1), c));
    } else {
      return UnsupportedBlock(bf, type, "text and tool_use");
    }
  }
  c.out.messages.push_back(std::move(m));
  return absl::OkStatus();
}

Status ReadSystem(const json& body, Conversion& c) {
  const json* v = FindField(body, "system");
  if (v == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string text, ReadTextOrBlocks(*v, "system"));
  if (v->is_array() && v->empty()) return absl::OkStatus();
  RETURN_IF_ERROR(NoteContentCacheControl(*v, "system", c.out.messages.size(), c));
  c.out.messages.push_back(ChatMessage{"system", std::move(text), "", nullptr, ""});
  return absl::OkStatus();
}

Status ReadAnthropicMessages(const json& body, const RequestLimits& limits, Conversion& c) {
  const json* ms = FindField(body, "messages");
  if (ms == nullptr) return Missing("messages");
  if (!ms->is_array()) return WrongType("messages", "an array of messages", *ms);
  if (ms->empty()) return InvalidArgumentFor("messages", "'messages' is empty");
  if (ms->size() > limits.max_messages) {
    return InvalidArgumentFor("messages", absl::StrCat("'messages' has ", ms->size(), " messages; the limit is ",
                                                       limits.max_messages));
  }
  for (size_t i = 0; i < ms->size(); ++i) {
    const std::string f = JsonPathJoin("messages", i);
    const json& msg = (*ms)[i];
    if (!msg.is_object()) return WrongType(f, "an object", msg);
    const json* role_v = FindField(msg, "role");
    if (role_v == nullptr) return Missing(JsonPathJoin(f, "role"));
    ASSIGN_OR_RETURN(std::string role, ReadString(*role_v, JsonPathJoin(f, "role")));
    if (role != "user" && role != "assistant") {
      return InvalidArgumentFor(JsonPathJoin(f, "role"), absl::StrCat("'", JsonPathJoin(f, "role"), "' is '", role,
                                                              "'; it must be user or assistant (the system "
                                                              "prompt goes in 'system')"));
    }
    const std::string cf = JsonPathJoin(f, "content");
    const json* content = FindField(msg, "content");
    if (content == nullptr) return Missing(cf);
    if (content->is_string()) {
      c.out.messages.push_back(ChatMessage{role, content->get<std::string>(), "", nullptr, ""});
    } else if (!content->is_array()) {
      return WrongType(cf, "a string or an array of content blocks", *content);
    } else if (role == "user") {
      RETURN_IF_ERROR(ReadUserBlocks(*content, cf, c));
    } else {
      RETURN_IF_ERROR(ReadAssistantBlocks(*content, cf, i, c));
    }
    if (c.out.messages.size() > limits.max_messages) {
      return InvalidArgumentFor("messages", absl::StrCat("'messages' become more than ", limits.max_messages,
                                                         " messages once tool results are split out"));
    }
  }
  return absl::OkStatus();
}

// tools: custom tools only. Each becomes OpenAI's function shape; `parameters` is filled in
// by KeepInputOrder.
Status ReadTools(const json& body, Conversion& c) {
  const json* v = FindField(body, "tools");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array()) return WrongType("tools", "an array", *v);
  c.out.tools = ordered_json::array();
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string f = JsonPathJoin("tools", i);
    const json& tool = (*v)[i];
    if (!tool.is_object()) return WrongType(f, "an object", tool);
    if (const json* type = FindField(tool, "type")) {
      ASSIGN_OR_RETURN(std::string t, ReadString(*type, JsonPathJoin(f, "type")));
      if (t != "custom") {
        return InvalidArgumentFor(JsonPathJoin(f, "type"), absl::StrCat("'", JsonPathJoin(f, "type"), "' is '", t,
                                                                "'; only custom tools (name, description, "
                                                                "input_schema) are supported"));
      }
    }
    const json* name = FindField(tool, "name");
    if (name == nullptr) return Missing(JsonPathJoin(f, "name"));
    ASSIGN_OR_RETURN(std::string tool_name, ReadString(*name, JsonPathJoin(f, "name")));
    CacheBreakpoint where;
    where.where = CacheBreakpoint::Where::kTool;
    where.index = static_cast<int64_t>(i);
    RETURN_IF_ERROR(NoteCacheControl(tool, f, where, c));
    const json* schema = FindField(tool, "input_schema");
    if (schema == nullptr) return Missing(JsonPathJoin(f, "input_schema"));
    if (!schema->is_object()) return WrongType(JsonPathJoin(f, "input_schema"), "an object", *schema);
    ordered_json function = {{"name", tool_name}};
    if (const json* d = FindField(tool, "description")) {
      ASSIGN_OR_RETURN(std::string description, ReadString(*d, JsonPathJoin(f, "description")));
      function["description"] = description;
    }
    function["parameters"] = nullptr;
    c.out.tools.push_back(ordered_json{{"type", "function"}, {"function", std::move(function)}});
  }
  return absl::OkStatus();
}

// tool_choice: {type: auto | none | any | tool, name?, disable_parallel_tool_use?}.
Status ReadAnthropicToolChoice(const json& body, OpenAiRequest& out) {
  const json* v = FindField(body, "tool_choice");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_object()) return WrongType("tool_choice", "an object", *v);
  const json* type = FindField(*v, "type");
  if (type == nullptr) return Missing("tool_choice.type");
  ASSIGN_OR_RETURN(std::string t, ReadString(*type, "tool_choice.type"));
  if (const json* d = FindField(*v, "disable_parallel_tool_use")) {
    ASSIGN_OR_RETURN(bool disable, ReadBool(*d, "tool_choice.disable_parallel_tool_use"));
    out.parallel_tool_calls = !disable;
  }
  if (t == "auto") {
    out.tool_choice = ToolChoice::kAuto;
  } else if (t == "none") {
    out.tool_choice = ToolChoice::kNone;
  } else if (t == "any") {
    out.tool_choice = ToolChoice::kRequired;
  } else if (t == "tool") {
    const json* name = FindField(*v, "name");
    if (name == nullptr) return Missing("tool_choice.name");
    ASSIGN_OR_RETURN(out.tool_choice_name, ReadString(*name, "tool_choice.name"));
    out.tool_choice = ToolChoice::kNamed;
  } else {
    return InvalidArgumentFor("tool_choice.type", absl::StrCat("'tool_choice.type' is '", t,
                                                               "'; it must be auto, none, any or tool"));
  }
  return CheckForcedTool(out, "tool_choice.name");
}

Status ReadStopSequences(const json& body, OpenAiRequest& out) {
  const json* v = FindField(body, "stop_sequences");
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array()) return WrongType("stop_sequences", "an array of strings", *v);
  if (v->size() > kMaxStopSequences) {
    return InvalidArgumentFor("stop_sequences", absl::StrCat("'stop_sequences' has ", v->size(),
                                                             " strings; at most ", kMaxStopSequences,
                                                             " are allowed"));
  }
  for (size_t i = 0; i < v->size(); ++i) {
    ASSIGN_OR_RETURN(std::string s, ReadString((*v)[i], JsonPathJoin("stop_sequences", i)));
    if (!s.empty()) out.stop.push_back(std::move(s));
  }
  return absl::OkStatus();
}

// Tool schemas and tool_use inputs reach the template in the order the client wrote their
// keys (openai_request.cc's KeepKeyOrder says why): the body is read a second time with an
// order-keeping parse, only when it has either.
Status KeepInputOrder(std::string_view body, const RequestLimits& limits, Conversion& c) {
  if (c.out.tools.is_null() && c.inputs.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(ordered_json j, ParseOrderedJsonObject(body, limits.max_json_depth));
  size_t bytes = 0;
  if (!c.out.tools.is_null()) {
    for (size_t i = 0; i < c.out.tools.size(); ++i) {
      c.out.tools[i]["function"]["parameters"] = std::move(j["tools"][i]["input_schema"]);
    }
    RETURN_IF_ERROR(AddToolsBytes(c.out.tools, "tools", limits, bytes));
  }
  for (const InputRef& r : c.inputs) {
    const ordered_json& input = j["messages"][r.body_message]["content"][r.block]["input"];
    ordered_json& call = c.out.messages[r.message].tool_calls[r.call];
    call["function"]["arguments"] = input.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    RETURN_IF_ERROR(AddToolsBytes(call, absl::StrCat("messages[", r.body_message, "].content[", r.block, "]"),
                                  limits, bytes));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> ParseMessagesRequest(std::string_view body, const RequestLimits& limits,
                                             MessagesEndpoint endpoint) {
  ASSIGN_OR_RETURN(json j, ParseJsonObject(body, limits.max_json_depth));
  Conversion c;
  c.out.kind = ApiKind::kChat;
  c.out.tool_schema_field = "input_schema";
  if (endpoint == MessagesEndpoint::kCreate) {
    if (FindField(j, "max_tokens") == nullptr) return Missing("max_tokens");
    RETURN_IF_ERROR(ReadCommonFields(j, limits, c.out));
    if (c.out.max_tokens && *c.out.max_tokens < 1) {
      return InvalidArgumentFor("max_tokens", "'max_tokens' must be at least 1");
    }
    RETURN_IF_ERROR(ReadStopSequences(j, c.out));
    if (const json* v = FindField(j, "metadata"); v != nullptr && !v->is_object()) {
      return WrongType("metadata", "an object", *v);
    }
  } else if (const json* v = FindField(j, "model")) {
    ASSIGN_OR_RETURN(c.out.model, ReadString(*v, "model"));
  }
  RETURN_IF_ERROR(ReadSystem(j, c));
  RETURN_IF_ERROR(ReadAnthropicMessages(j, limits, c));
  RETURN_IF_ERROR(ReadTools(j, c));
  RETURN_IF_ERROR(ReadAnthropicToolChoice(j, c.out));
  RETURN_IF_ERROR(KeepInputOrder(body, limits, c));
  return std::move(c.out);
}

}  // namespace prefixd
