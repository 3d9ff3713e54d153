#include "tokenizer/normalizer.h"

#include <gtest/gtest.h>

#include <string>

namespace prefixd {
namespace {

TEST(Normalizer, ParsesNames) {
  EXPECT_EQ(ParseNormalizer("").value(), Normalizer::kNone);
  EXPECT_EQ(ParseNormalizer("nfc").value(), Normalizer::kNfc);
  EXPECT_FALSE(ParseNormalizer("nfkc").ok());
}

TEST(Normalizer, NfcComposesDecomposedAccents) {
  EXPECT_EQ(NormalizeNfc("caf" "e\xCC\x81"), "caf\xC3\xA9");            // e + U+0301 -> é
  EXPECT_EQ(NormalizeNfc("A\xCC\x8A"), "\xC3\x85");                       // A + ring -> Å
  EXPECT_EQ(NormalizeNfc("\xE1\xBA\xA1\xCC\x82"), "\xE1\xBA\xAD");        // ạ + ̂ -> ậ
  // Canonical reordering: dot below (ccc 220) before circumflex (ccc 230), then composed.
  EXPECT_EQ(NormalizeNfc("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");
  EXPECT_EQ(NormalizeNfc("caf\xC3\xA9"), "caf\xC3\xA9");                  // already NFC
}

TEST(Normalizer, NfcComposesHangulJamo) {
  // U+1100 U+1161 (ᄀ + ᅡ) -> U+AC00 (가); with a final U+11A8 (ᆨ) -> U+AC01 (각).
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");
}

TEST(Normalizer, NfcAppliesSingletonsButNeverCompatibilityMappings) {
  EXPECT_EQ(NormalizeNfc("\xE2\x84\xAB"), "\xC3\x85");  // U+212B ANGSTROM SIGN -> U+00C5
  EXPECT_EQ(NormalizeNfc("\xE2\x84\xA6"), "\xCE\xA9");  // U+2126 OHM SIGN -> U+03A9
  // Compatibility characters are NFKC's business, not NFC's: all kept as they are.
  for (const std::string s : {"\xEF\xAC\x81" /* ﬁ */, "\xE2\x91\xA0" /* ① */,
                              "\xEF\xBC\xA1" /* fullwidth Ａ */, "x\xC2\xB2" /* x² */,
                              "\xE3\x8C\x80" /* ㌀ */, "\xC2\xA0" /* no-break space */}) {
    EXPECT_EQ(NormalizeNfc(s), s);
  }
}

TEST(Normalizer, KeepsAsciiInvalidBytesAndNul) {
  EXPECT_EQ(NormalizeNfc(""), "");
  EXPECT_EQ(NormalizeNfc("plain ascii\n"), "plain ascii\n");
  const std::string nul("a\0b", 3);
  EXPECT_EQ(NormalizeNfc(nul), nul);
  // A stray continuation byte and a truncated sequence stay; the valid runs around them are
  // still normalized.
  EXPECT_EQ(NormalizeNfc("e\xCC\x81\x80" "e\xCC\x81\xC3"), "\xC3\xA9\x80\xC3\xA9\xC3");
}

}  // namespace
}  // namespace prefixd
