// Unicode normalization of text before byte-level BPE, as Hugging Face's tokenizers apply a
// tokenizer.json's "normalizer". Only NFC (canonical composition: "e" + U+0301 -> "é", Hangul
// jamo -> syllables, singletons such as U+212B ANGSTROM SIGN -> U+00C5) is supported; NFC never
// applies compatibility mappings (U+FB01 "ﬁ" stays "ﬁ", "①" stays "①"). The tables are
// Debian's libutf8proc, not ours.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace prefixd {

enum class Normalizer { kNone, kNfc };

// "" -> kNone, "nfc" -> kNfc; InvalidArgument for any other name.
StatusOr<Normalizer> ParseNormalizer(std::string_view name);

// `text` in Normalization Form C. ASCII is returned as it is without a copy through the
// library. Bytes that are not valid UTF-8 are kept as they are: each maximal valid run around
// them is normalized on its own (Hugging Face only ever sees valid UTF-8).
std::string NormalizeNfc(std::string_view text);

}  // namespace prefixd
