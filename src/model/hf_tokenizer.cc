#include "model/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"

namespace prefixd {
namespace {

using nlohmann::json;

// llama.cpp's token types (llama_token_type).
constexpr int32_t kTokenNormal = 1;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenUserDefined = 4;
constexpr int32_t kTokenUnused = 5;

// Split regexes of known tokenizer.json files and the pre-tokenizer names llama.cpp gives
// them (convert_hf_to_gguf.py identifies them by hashing the tokens of a test text; the regex
// is what actually differs, and it is in the file).
constexpr std::pair<const char*, const char*> kKnownRegexes[] = {
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
    {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "gpt2"},
};

StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a JSON object"));
  }
  return j;
}

Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("'", path, "': ", what));
}

// Whether a pre_tokenizer (or one of a Sequence's) has the given type.
bool HasPreTokenizer(const json& pre, const std::string& type) {
  if (!pre.is_object()) return false;
  if (pre.value("type", "") == type) return true;
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array()) {
    for (const json& p : pre["pretokenizers"]) {
      if (HasPreTokenizer(p, type)) return true;
    }
  }
  return false;
}

// The regex of the first Split pre-tokenizer, if any.
std::optional<std::string> SplitRegex(const json& pre) {
  if (!pre.is_object()) return std::nullopt;
  if (pre.value("type", "") == "Split" && pre.contains("pattern") && pre["pattern"].is_object() &&
      pre["pattern"].contains("Regex") && pre["pattern"]["Regex"].is_string()) {
    return pre["pattern"]["Regex"].get<std::string>();
  }
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array()) {
    for (const json& p : pre["pretokenizers"]) {
      if (auto r = SplitRegex(p)) return r;
    }
  }
  return std::nullopt;
}

StatusOr<std::string> RecognisePre(const std::string& path, const json& tok) {
  const json pre = tok.contains("pre_tokenizer") ? tok["pre_tokenizer"] : json();
  if (!HasPreTokenizer(pre, "ByteLevel")) {
    return Bad(path, "pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer");
  }
  if (const std::optional<std::string> regex = SplitRegex(pre)) {
    const std::string name = PreNameForHfRegex(*regex);
    if (name.empty()) {
      return Bad(path, absl::StrCat("unrecognised pre-tokenizer regex ", *regex,
                                    "; name it with --tokenizer-pre (e.g. llama-bpe, qwen2, "
                                    "gpt2, default)"));
    }
    return name;
  }
  return std::string("gpt2");  // ByteLevel with its own (GPT-2) regex
}

// The text of a config's special token entry: a string, an AddedToken object
// ({"content": ...}), or null/absent (nullopt).
std::optional<std::string> TokenText(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// Whether the post-processor adds `token` at the start (TemplateProcessing's "single").
bool PostProcessorStartsWith(const json& tok, const std::string& token) {
  if (!tok.contains("post_processor") || !tok["post_processor"].is_object()) return false;
  const json& post = tok["post_processor"];
  if (post.value("type", "") != "TemplateProcessing" || !post.contains("single") ||
      !post["single"].is_array() || post["single"].empty()) {
    return false;
  }
  const json& first = post["single"][0];
  return first.is_object() && first.contains("SpecialToken") &&
         first["SpecialToken"].is_object() && first["SpecialToken"].value("id", "") == token;
}

// Fills `tokens` and `types` (indexed by id) from the vocabulary and the added tokens.
Status ReadTokens(const std::string& path, const json& tok, std::vector<std::string>& tokens,
                  std::vector<int32_t>& types) {
  const json& model = tok["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Bad(path, "model.vocab is not an object of token -> id");
  }
  const json& vocab = model["vocab"];
  std::vector<std::pair<int64_t, std::pair<std::string, int32_t>>> entries;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      return Bad(path, absl::StrCat("model.vocab[\"", it.key(), "\"] is not an integer id"));
    }
    entries.push_back({it.value().get<int64_t>(), {it.key(), kTokenNormal}});
  }
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const json& added : tok["added_tokens"]) {
      if (!added.is_object() || !added.contains("id") || !added["id"].is_number_integer() ||
          !added.contains("content") || !added["content"].is_string()) {
        return Bad(path, "an added_tokens entry lacks an integer id or a string content");
      }
      const int32_t type = added.value("special", false) ? kTokenControl : kTokenUserDefined;
      entries.push_back({added["id"].get<int64_t>(), {added["content"].get<std::string>(), type}});
    }
  }
  int64_t max_id = -1;
  for (const auto& [id, entry] : entries) {
    if (id < 0 || id >= (int64_t{1} << 24)) {
      return Bad(path, absl::StrCat("token '", entry.first, "' has id ", id, ", out of range"));
    }
    max_id = std::max(max_id, id);
  }
  tokens.assign(max_id + 1, "");
  types.assign(max_id + 1, 0);
  for (const auto& [id, entry] : entries) {
    // An added token may repeat a vocabulary entry (GPT-2's <|endoftext|>): it then keeps its
    // text and takes the added token's type.
    if (types[id] != 0 && tokens[id] != entry.first) {
      return Bad(path, absl::StrCat("id ", id, " is used by both '", tokens[id], "' and '",
                                    entry.first, "'"));
    }
    tokens[id] = entry.first;
    if (types[id] == 0 || entry.second != kTokenNormal) types[id] = entry.second;
  }
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (types[id] == 0) {
      tokens[id] = absl::StrCat("[PAD", id, "]");
      types[id] = kTokenUnused;
    }
  }
  return absl::OkStatus();
}

StatusOr<std::vector<std::string>> ReadMerges(const std::string& path, const json& tok) {
  const json& model = tok["model"];
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Bad(path, "model.merges is not an array");
  }
  const json& merges = model["merges"];
  std::vector<std::string> out;
  out.reserve(merges.size());
  for (const json& m : merges) {
    // Older files write "a b", newer ones ["a", "b"].
    if (m.is_string()) {
      out.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return Bad(path, absl::StrCat("model.merges[", out.size(), "] is not \"a b\" or [a, b]"));
    }
  }
  return out;
}

// Writes the special token ids, add_bos/add_eos and the chat template from the config.
Status SetSpecialTokens(const HfTokenizerSource& source, const json& tok, const json& config,
                        const absl::flat_hash_map<std::string, int32_t>& id_of, GgufWriter& w) {
  const std::string& path = source.tokenizer_json;
  const std::pair<const char*, const char*> specials[] = {
      {"bos_token", "tokenizer.ggml.bos_token_id"},
      {"eos_token", "tokenizer.ggml.eos_token_id"},
      {"pad_token", "tokenizer.ggml.padding_token_id"}};
  std::optional<std::string> bos_text;
  std::optional<std::string> eos_text;
  for (const auto& [config_key, gguf_key] : specials) {
    const std::optional<std::string> text = TokenText(config, config_key);
    if (!text) continue;
    const auto it = id_of.find(*text);
    if (it == id_of.end()) {
      return Bad(source.tokenizer_config,
                 absl::StrCat(config_key, " '", *text, "' is not a token of '", path, "'"));
    }
    w.Set(gguf_key, GgufValue::U32(static_cast<uint32_t>(it->second)));
    if (std::string(config_key) == "bos_token") bos_text = text;
    if (std::string(config_key) == "eos_token") eos_text = text;
  }
  // Without an explicit flag, BOS/EOS are added exactly when the tokenizer's post-processor
  // adds them (Llama 3's tokenizer.json template starts with <|begin_of_text|>).
  const bool add_bos = config.contains("add_bos_token") && config["add_bos_token"].is_boolean()
                           ? config["add_bos_token"].get<bool>()
                           : bos_text && PostProcessorStartsWith(tok, *bos_text);
  const bool add_eos = config.contains("add_eos_token") && config["add_eos_token"].is_boolean()
                           ? config["add_eos_token"].get<bool>()
                           : false;
  if (add_bos && !bos_text) {
    return Bad(source.tokenizer_config, "add_bos_token is true but bos_token is not set");
  }
  if (add_eos && !eos_text) {
    return Bad(source.tokenizer_config, "add_eos_token is true but eos_token is not set");
  }
  w.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos));
  w.Set("tokenizer.ggml.add_eos_token", GgufValue::Bool(add_eos));
  if (config.contains("chat_template")) {
    const json& t = config["chat_template"];
    if (t.is_string()) {
      w.Set("tokenizer.chat_template", GgufValue::String(t.get<std::string>()));
    } else if (t.is_array()) {
      // Named templates ([{name, template}]): the "default" one is the chat template.
      for (const json& named : t) {
        if (named.is_object() && named.value("name", "") == "default" &&
            named.contains("template") && named["template"].is_string()) {
          w.Set("tokenizer.chat_template", GgufValue::String(named["template"].get<std::string>()));
        }
      }
    }
  }
  return absl::OkStatus();
}

// The tokenizer.ggml.normalizer to write for tokenizer.json's "normalizer": "" for none, "nfc"
// for NFC (alone or as the only step of a Sequence); anything else is refused, since the
// tokenizer would not apply it.
StatusOr<std::string> NormalizerName(const std::string& path, const json& tok) {
  if (!tok.contains("normalizer") || tok["normalizer"].is_null()) return std::string();
  const json& n = tok["normalizer"];
  std::vector<std::string> types;
  if (n.value("type", "") == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& step : n["normalizers"]) types.push_back(step.value("type", "?"));
  } else {
    types.push_back(n.value("type", "?"));
  }
  if (types.empty()) return std::string();
  if (types.size() == 1 && types[0] == "NFC") return std::string("nfc");
  return Bad(path, absl::StrCat("normalizer ", absl::StrJoin(types, ", "),
                                " is not supported (only NFC, or none)"));
}

}  // namespace

std::string PreNameForHfRegex(const std::string& regex) {
  for (const auto& [pattern, name] : kKnownRegexes) {
    if (regex == pattern) return name;
  }
  return "";
}

StatusOr<int> SetHfTokenizerVocab(const HfTokenizerSource& source, GgufWriter& w) {
  const std::string& path = source.tokenizer_json;
  ASSIGN_OR_RETURN(const json tok, ReadJson(path));
  json config = json::object();
  if (!source.tokenizer_config.empty()) {
    ASSIGN_OR_RETURN(config, ReadJson(source.tokenizer_config));
  }
  if (!tok.contains("model") || !tok["model"].is_object() ||
      tok["model"].value("type", "") != "BPE") {
    return Bad(path, "model.type is not \"BPE\" (only byte-level BPE tokenizers are supported)");
  }
  std::string pre = source.pre;
  if (pre.empty()) {
    ASSIGN_OR_RETURN(pre, RecognisePre(path, tok));
  }
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  RETURN_IF_ERROR(ReadTokens(path, tok, tokens, types));
  ASSIGN_OR_RETURN(std::vector<std::string> merges, ReadMerges(path, tok));

  const int num_tokens = static_cast<int>(tokens.size());
  // Special tokens by text: the added tokens first (that is where they live), then the rest.
  absl::flat_hash_map<std::string, int32_t> id_of;
  for (int32_t id = 0; id < num_tokens; ++id) {
    if (types[id] != kTokenNormal) id_of.emplace(tokens[id], id);
  }
  for (int32_t id = 0; id < num_tokens; ++id) id_of.emplace(tokens[id], id);

  w.Set("tokenizer.ggml.model", GgufValue::String("gpt2"));
  w.Set("tokenizer.ggml.pre", GgufValue::String(pre));
  // Not a llama.cpp key: prefixd's tokenizer applies it (tokenizer/normalizer.h).
  ASSIGN_OR_RETURN(const std::string normalizer, NormalizerName(path, tok));
  if (!normalizer.empty()) w.Set("tokenizer.ggml.normalizer", GgufValue::String(normalizer));
  w.Set("tokenizer.ggml.tokens", GgufValue::StringArray(std::move(tokens)));
  w.Set("tokenizer.ggml.token_type", GgufValue::I32Array(types));
  w.Set("tokenizer.ggml.merges", GgufValue::StringArray(std::move(merges)));
  RETURN_IF_ERROR(SetSpecialTokens(source, tok, config, id_of, w));
  return num_tokens;
}

}  // namespace prefixd
