#include "tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"

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

Status CheckVocabBasics(const Vocab& vocab, std::string_view kind) {
  const size_t n = vocab.tokens.size();
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(std::string(kind), " vocabulary has no tokens"));
  if (n > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary of ", n, " tokens is too large"));
  }
  if (vocab.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary has ", n, " tokens but ",
                                                   vocab.token_types.size(), " token types"));
  }
  const std::pair<const char*, int32_t> ids[] = {{"bos", vocab.bos_id},
                                                 {"eos", vocab.eos_id},
                                                 {"eot", vocab.eot_id},
                                                 {"unknown", vocab.unk_id},
                                                 {"padding", vocab.pad_id}};
  for (const auto& [what, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " token id ", id, " is out of range for a vocabulary of ", n, " tokens"));
    }
  }
  if (vocab.add_bos && vocab.bos_id < 0) {
    return absl::InvalidArgumentError("vocabulary asks to add BOS but has no BOS token id");
  }
  if (vocab.add_eos && vocab.eos_id < 0) {
    return absl::InvalidArgumentError("vocabulary asks to add EOS but has no EOS token id");
  }
  return absl::OkStatus();
}

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
