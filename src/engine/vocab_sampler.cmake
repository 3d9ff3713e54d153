# The engine's text helpers: the vocabulary loader (GGUF metadata -> Vocab) and the sampler.
# Included from src/engine/CMakeLists.txt.
prefixd_library(prefixd_engine_text
  SOURCES vocab_loader.cc sampler.cc
  DEPS prefixd_model prefixd_tokenizer prefixd_base)
prefixd_test(tokenizer_reference_test SOURCES tokenizer_reference_test.cc
  DEPS prefixd_engine_text nlohmann_json::nlohmann_json)
prefixd_test(sampler_test SOURCES sampler_test.cc DEPS prefixd_engine_text)
prefixd_test(vocab_loader_test SOURCES vocab_loader_test.cc DEPS prefixd_engine_text)
