#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace prefixd {

namespace {

// NFC of a run of valid UTF-8 (utf8proc_map with an explicit length, so NUL bytes are kept).
void AppendNfc(std::string_view run, std::string& out) {
  if (run.empty()) return;
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                   static_cast<utf8proc_ssize_t>(run.size()), &mapped,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0 || mapped == nullptr) {
    out.append(run);  // cannot happen for a valid run; keep the text rather than lose it
  } else {
    out.append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  }
  std::free(mapped);
}

}  // namespace

StatusOr<Normalizer> ParseNormalizer(std::string_view name) {
  if (name.empty()) return Normalizer::kNone;
  if (name == "nfc") return Normalizer::kNfc;
  return absl::InvalidArgumentError(
      absl::StrCat("normalizer '", std::string(name), "' is not supported (supported: nfc, or none)"));
}

std::string NormalizeNfc(std::string_view text) {
  bool ascii = true;
  for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t run_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp;
    const utf8proc_ssize_t len =
        utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + i,
                         static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (len > 0) {
      i += static_cast<size_t>(len);
      continue;
    }
    // An invalid byte: normalize the valid run before it, keep the byte as it is.
    AppendNfc(text.substr(run_begin, i - run_begin), out);
    out.push_back(text[i]);
    ++i;
    run_begin = i;
  }
  AppendNfc(text.substr(run_begin), out);
  return out;
}

}  // namespace prefixd
