// `prefixd render-chat -m MODEL FILE`: renders a chat with the model's own template and
// tokenizer, exactly as `serve` does for /v1/chat/completions, and prints what came out.
//
// FILE ("-": standard input) holds {"messages": [...], "tools": [...], "add_generation_prompt":
// true, "chat_template_kwargs": {...}} (all but messages optional). Messages and tools reach
// the template as written, key order kept. The output is one JSON object:
//
//   {"template": "jinja", "text": "...", "ids": [...], "message_starts": [...],
//    "generation_start": N, "message_offsets": [...], "generation_offset": N}
//
// with token indices (message_starts, generation_start) and byte offsets in text
// (message_offsets, generation_offset); see tokenizer/chat_template.h.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "app/commands.h"
#include "app/common.h"
#include "tokenizer/chat_template.h"

namespace prefixd {

namespace {

using Json = nlohmann::ordered_json;

struct RenderChatFlags {
  std::string model;
  std::string file;
};

StatusOr<ChatRenderInput> ParseInput(const std::string& text) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the chat file is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("the chat file must hold a JSON object");
  ChatRenderInput in;
  if (!j.contains("messages") || !j["messages"].is_array()) {
    return absl::InvalidArgumentError("the chat file needs \"messages\": an array of message objects");
  }
  for (const Json& m : j["messages"]) {
    if (!m.is_object()) return absl::InvalidArgumentError("each of \"messages\" must be an object");
  }
  in.messages = j["messages"];
  if (j.contains("tools") && !j["tools"].is_null()) {
    if (!j["tools"].is_array()) return absl::InvalidArgumentError("\"tools\" must be an array");
    in.tools = j["tools"];
  }
  if (j.contains("add_generation_prompt")) {
    if (!j["add_generation_prompt"].is_boolean()) {
      return absl::InvalidArgumentError("\"add_generation_prompt\" must be true or false");
    }
    in.add_generation_prompt = j["add_generation_prompt"].get<bool>();
  }
  if (j.contains("chat_template_kwargs") && !j["chat_template_kwargs"].is_null()) {
    if (!j["chat_template_kwargs"].is_object()) {
      return absl::InvalidArgumentError("\"chat_template_kwargs\" must be an object");
    }
    in.kwargs = j["chat_template_kwargs"];
  }
  return in;
}

int RunRenderChat(const RenderChatFlags& f) {
  // Standard output carries the JSON alone; warnings (a template falling back) go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("render-chat"));
  auto text = ReadTextFile(f.file);
  if (!text.ok()) return Fail(text.status());
  auto input = ParseInput(*text);
  if (!input.ok()) return Fail(input.status());
  auto loaded = LoadModelAndTokenizer(f.model);
  if (!loaded.ok()) return Fail(loaded.status());
  const Tokenizer& tok = *loaded->tokenizer;
  auto source = loaded->model->gguf().GetString("tokenizer.chat_template");
  const ChatTemplate tmpl = ChatTemplate::FromSource(source.ok() ? *source : "", tok.vocab());
  auto chat = tmpl.Render(*input);
  if (!chat.ok()) return Fail(chat.status());
  const std::vector<int32_t> ids = tok.Encode(chat->text, ChatEncodeOptions(*chat));

  Json out;
  out["template"] = chat->used_fallback ? "chatml" : tmpl.name();
  if (!tmpl.fallback_reason().empty()) out["fallback_reason"] = tmpl.fallback_reason();
  out["text"] = chat->text;
  out["ids"] = ids;
  const ChatTokenStarts starts = FindChatTokenStarts(tok, *chat, ids);
  out["message_starts"] = starts.message_starts;
  out["generation_start"] = starts.generation_start;
  out["message_offsets"] = chat->message_offsets;
  out["generation_offset"] = chat->generation_offset;
  std::printf("%s\n", out.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace

void AddRenderChatCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<RenderChatFlags>();
  CLI::App* cmd = app.add_subcommand("render-chat", "Render a chat with the model's template and tokenizer");
  cmd->add_option("-m,--model", f->model, "GGUF model file")->required();
  cmd->add_option("file", f->file, "JSON file with messages, tools, add_generation_prompt, chat_template_kwargs ('-': stdin)")
      ->required();
  cmd->callback([f, run] { *run = [f] { return RunRenderChat(*f); }; });
}

}  // namespace prefixd
