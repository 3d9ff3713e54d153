#include "tokenizer/tokenizer.h"

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace prefixd {
namespace {

// Number of bytes at the end of `text` that begin a UTF-8 character but do not finish it:
// a lead byte followed by fewer continuation bytes than it announces. 0 when the text ends on
// a character boundary or on bytes that can never become a character (those are let through).
size_t IncompleteTail(const std::string& text) {
  const size_t n = text.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<uint8_t>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t len = 1;
    if (c >= 0xC0 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
    } else if (c >= 0xF0 && c <= 0xF7) {
      len = 4;
    }
    return back < len ? back : 0;
  }
  return 0;
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(Vocab vocab) {
  switch (vocab.kind) {
    case Vocab::Kind::kSentencePiece: {
      ASSIGN_OR_RETURN(std::unique_ptr<SpmTokenizer> spm, SpmTokenizer::Create(std::move(vocab)));
      return std::unique_ptr<Tokenizer>(std::move(spm));
    }
    case Vocab::Kind::kBytePairGpt2: {
      ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> bpe, BpeTokenizer::Create(std::move(vocab)));
      return std::unique_ptr<Tokenizer>(std::move(bpe));
    }
  }
  return absl::InvalidArgumentError("unknown vocabulary kind");
}

std::string StreamingDecoder::Push(int32_t id) {
  pending_ += tokenizer_.Piece(id);
  const size_t hold = IncompleteTail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string StreamingDecoder::Finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace prefixd
