#include "tokenizer/utf8_sanitizer.h"

namespace prefixd {
namespace {

void AppendUnit(std::string_view bytes, const Utf8Unit& unit, std::string& out) {
  out.append(unit.valid ? bytes.substr(0, unit.length) : kReplacementCharacter);
}

}  // namespace

Utf8Unit NextUtf8Unit(std::string_view bytes) {
  const auto lead = static_cast<uint8_t>(bytes[0]);
  if (lead < 0x80) return {1, true, true};
  // Unicode table 3-7: the continuation bytes each lead allows. The second byte's range is
  // narrower after E0, ED, F0 and F4 (no overlong forms, surrogates or code points past
  // U+10FFFF), which is why a subpart can end at the second byte.
  int needed = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    needed = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    needed = 2;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    needed = 3;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return {1, false, true};  // a continuation byte, C0, C1 or F5..FF: never a lead
  }
  size_t length = 1;
  for (int k = 0; k < needed; ++k, ++length) {
    if (length == bytes.size()) return {length, false, false};
    const auto c = static_cast<uint8_t>(bytes[length]);
    if (c < lo || c > hi) return {length, false, true};
    lo = 0x80;
    hi = 0xBF;
  }
  return {length, true, true};
}

std::string ReplaceInvalidUtf8(std::string_view bytes, std::vector<int64_t>* offsets) {
  std::string out;
  out.reserve(bytes.size());
  if (offsets != nullptr) offsets->assign(bytes.size() + 1, -1);
  for (size_t pos = 0; pos < bytes.size();) {
    const Utf8Unit unit = NextUtf8Unit(bytes.substr(pos));
    if (offsets != nullptr) {
      (*offsets)[pos] = static_cast<int64_t>(out.size());
      // Inside a valid character the bytes are kept, so each has its place.
      if (unit.valid) {
        for (size_t k = 1; k < unit.length; ++k) (*offsets)[pos + k] = static_cast<int64_t>(out.size() + k);
      }
    }
    AppendUnit(bytes.substr(pos), unit, out);
    pos += unit.length;
  }
  if (offsets != nullptr) offsets->back() = static_cast<int64_t>(out.size());
  return out;
}

std::string Utf8Sanitizer::Push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  const std::string_view text(pending_);
  size_t pos = 0;
  while (pos < text.size()) {
    const Utf8Unit unit = NextUtf8Unit(text.substr(pos));
    if (!unit.complete) break;  // the next piece decides it
    AppendUnit(text.substr(pos), unit, out);
    pos += unit.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8Sanitizer::Finish() {
  // What is held is one incomplete sequence: one maximal subpart.
  std::string out = pending_.empty() ? "" : std::string(kReplacementCharacter);
  pending_.clear();
  return out;
}

}  // namespace prefixd
