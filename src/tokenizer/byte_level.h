// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as one printable
// Unicode character, so that token texts never hold spaces, control bytes or broken UTF-8.
// Bytes that are printable Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for
// themselves; the other 68 bytes, in increasing order, map to U+0100, U+0101, ... (so a space
// is 'Ġ' U+0120 and a newline 'Ċ' U+010A).
//
// Thread safety: pure functions over constant tables.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace prefixd {

// The UTF-8 text of the character that stands for `byte`.
std::string_view ByteToUnicode(uint8_t byte);

// The byte-level spelling of `bytes` (any bytes): one alphabet character per byte.
std::string ByteLevelEncode(std::string_view bytes);

// The bytes a byte-level token text stands for. A character outside the alphabet (or bytes
// that are not valid UTF-8) is copied through unchanged, as llama.cpp does, so that a
// malformed vocabulary entry still decodes to something visible.
std::string ByteLevelDecode(std::string_view text);

}  // namespace prefixd
