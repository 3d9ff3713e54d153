#include "tokenizer/byte_level.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace prefixd {
namespace {

TEST(ByteLevel, SpaceAndNewlineUseGpt2Characters) {
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(ByteToUnicode('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(ByteToUnicode('a'), "a");
  EXPECT_EQ(ByteToUnicode(0xE9), "\xC3\xA9");  // printable Latin-1 stands for itself
  EXPECT_EQ(ByteToUnicode(0xAD), "\xC5\x83");  // soft hyphen: the 68th shifted byte, U+0143
}

TEST(ByteLevel, EveryByteHasItsOwnPrintableCharacter) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string text(ByteToUnicode(static_cast<uint8_t>(b)));
    EXPECT_TRUE(seen.insert(text).second) << b;
    EXPECT_NE(text.find_first_not_of(" \t\r\n"), std::string::npos) << b;
    EXPECT_EQ(ByteLevelDecode(text), std::string(1, static_cast<char>(b))) << b;
  }
}

TEST(ByteLevel, RandomBytesRoundTrip) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    std::string bytes(rng() % 40, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(bytes)), bytes);
  }
}

TEST(ByteLevel, CharactersOutsideTheAlphabetAreCopied) {
  // A space, a CJK character and a stray continuation byte are not alphabet characters.
  EXPECT_EQ(ByteLevelDecode("a b\xE4\xBD\xA0\x80"), "a b\xE4\xBD\xA0\x80");
  EXPECT_EQ(ByteLevelDecode("\xC4\xA0hi"), " hi");
}

}  // namespace
}  // namespace prefixd
