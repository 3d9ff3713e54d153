#include "tokenizer/byte_level.h"

#include <array>

namespace prefixd {
namespace {

// Code points 0x100 + k stand for the k-th byte (in increasing order) that is not printable.
constexpr uint32_t kFirstShifted = 0x100;
constexpr int kNumShifted = 68;

bool IsPrintableLatin1(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

std::string Utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {  // the alphabet stays below U+0800: two bytes
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

struct Tables {
  std::array<std::string, 256> byte_to_text;
  // The byte each code point below 0x100 + kNumShifted stands for, -1 when none.
  std::array<int, kFirstShifted + kNumShifted> code_point_to_byte;
  Tables() {
    code_point_to_byte.fill(-1);
    uint32_t next = kFirstShifted;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = IsPrintableLatin1(b) ? static_cast<uint32_t>(b) : next++;
      byte_to_text[b] = Utf8(cp);
      code_point_to_byte[cp] = b;
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

std::string_view ByteToUnicode(uint8_t byte) { return GetTables().byte_to_text[byte]; }

std::string ByteLevelEncode(std::string_view bytes) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out.append(t.byte_to_text[static_cast<uint8_t>(c)]);
  return out;
}

std::string ByteLevelDecode(std::string_view text) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c0 = static_cast<uint8_t>(text[i]);
    // Every alphabet character is one or two UTF-8 bytes; anything longer is copied.
    int cp = -1;
    size_t len = 1;
    if (c0 < 0x80) {
      cp = c0;
    } else if (c0 >= 0xC0 && c0 <= 0xDF && i + 1 < text.size() &&
               (static_cast<uint8_t>(text[i + 1]) & 0xC0) == 0x80) {
      cp = ((c0 & 0x1F) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3F);
      len = 2;
    }
    const int byte = cp >= 0 && cp < static_cast<int>(t.code_point_to_byte.size())
                         ? t.code_point_to_byte[cp]
                         : -1;
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace prefixd
