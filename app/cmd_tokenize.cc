// `prefixd tokenize`: the model's tokenizer on the command line. Reads UTF-8 text on standard
// input and prints its token ids as a JSON array. Only the GGUF's tokenizer metadata is read,
// not the weights.
//
//   --jsonl    each input line is a JSON string; prints one JSON array per line (batch mode,
//              one process for a whole corpus)
//   --decode   the reverse: each input line is a JSON array of ids; prints the text of each as
//              a JSON string (bytes that are not valid UTF-8 become U+FFFD)
#include <iostream>
#include <iterator>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/common.h"
#include "engine/vocab_loader.h"
#include "model/gguf_file.h"

namespace prefixd {

namespace {

struct TokenizeFlags {
  std::string model;
  bool no_special = false;
  bool add_bos = false;
  bool no_bos = false;
  bool jsonl = false;
  bool decode = false;
};

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int DecodeLines(const Tokenizer& tok) {
  int line_number = 0;
  for (std::string line; std::getline(std::cin, line);) {
    ++line_number;
    const nlohmann::json ids = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!ids.is_array()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, " of standard input is not a JSON array of ids")));
    }
    std::string text;
    for (const nlohmann::json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= tok.vocab_size()) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "line ", line_number, ": ", id.dump(), " is not a token id of this vocabulary (0..",
            tok.vocab_size() - 1, ")")));
      }
      text += tok.Piece(static_cast<int32_t>(id.get<int64_t>()));
    }
    std::cout << Dump(text) << "\n";
  }
  return 0;
}

int RunTokenize(const TokenizeFlags& f) {
  if (f.add_bos && f.no_bos) {
    return Fail(absl::InvalidArgumentError("--add-bos and --no-bos contradict each other"));
  }
  auto file = GgufFile::Open(f.model);
  if (!file.ok()) return Fail(file.status());
  auto vocab = LoadVocab(**file);
  if (!vocab.ok()) return Fail(vocab.status());
  auto tok = Tokenizer::Create(*std::move(vocab));
  if (!tok.ok()) return Fail(tok.status());
  if (f.decode) return DecodeLines(**tok);

  EncodeOptions options;
  options.parse_special = !f.no_special;
  if (f.add_bos) options.add_bos = true;
  if (f.no_bos) options.add_bos = false;
  if (!f.jsonl) {
    const std::string text((std::istreambuf_iterator<char>(std::cin)),
                           std::istreambuf_iterator<char>());
    std::cout << Dump((*tok)->Encode(text, options)) << "\n";
    return 0;
  }
  int line_number = 0;
  for (std::string line; std::getline(std::cin, line);) {
    ++line_number;
    const nlohmann::json text = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!text.is_string()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, " of standard input is not a JSON string")));
    }
    std::cout << Dump((*tok)->Encode(text.get<std::string>(), options)) << "\n";
  }
  return 0;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Print the token ids of standard input (UTF-8 text) as a JSON array");
  cmd->add_option("-m,--model", f->model, "GGUF model file (only its vocabulary is read)")
      ->required();
  cmd->add_flag("--no-special", f->no_special,
                "Treat special-token text (<|im_start|>, <s>, ...) as plain text");
  cmd->add_flag("--add-bos", f->add_bos, "Add BOS whatever the vocabulary says");
  cmd->add_flag("--no-bos", f->no_bos, "Do not add BOS whatever the vocabulary says");
  cmd->add_flag("--jsonl", f->jsonl,
                "Each input line is a JSON string; print one JSON array of ids per line");
  cmd->add_flag("--decode", f->decode,
                "Each input line is a JSON array of ids; print its text as a JSON string");
  cmd->callback([f, run] { *run = [f] { return RunTokenize(*f); }; });
}

}  // namespace prefixd
