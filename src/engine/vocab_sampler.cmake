# The engine's text helpers: the vocabulary loader (GGUF metadata -> Vocab), the sampler and
# the token constraint it honours.
# Included from src/engine/CMakeLists.txt.
prefixd_library(prefixd_engine_text
  SOURCES vocab_loader.cc sampler.cc token_constraint.cc
  DEPS prefixd_model prefixd_tokenizer prefixd_base)
prefixd_test(tokenizer_reference_test SOURCES tokenizer_reference_test.cc
  DEPS prefixd_engine_text nlohmann_json::nlohmann_json)
prefixd_test(sampler_test SOURCES sampler_test.cc DEPS prefixd_engine_text)
prefixd_test(token_constraint_test SOURCES token_constraint_test.cc DEPS prefixd_engine_text)
prefixd_test(vocab_loader_test SOURCES vocab_loader_test.cc DEPS prefixd_engine_text)
