// `prefixd make-model` flag handling that the library's tests (model_maker_test) cannot see:
// `--vocab-from FILE` without `--vocab` takes FILE's vocabulary size, not the synthetic default.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "model/gguf_file.h"

namespace prefixd {
namespace {

namespace fs = std::filesystem;

class MakeModelCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("prefixd-make-model-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `prefixd make-model ARGS`, returning its exit status.
  int MakeModel(const std::string& args) {
    const std::string cmd = std::string(PREFIXD_BINARY) +
                            " make-model --layers 1 --embd 32 --heads 2 --kv-heads 2 --ff 64 " +
                            args + " 2>" + (dir_ / "stderr.txt").string();
    return std::system(cmd.c_str());
  }
  uint64_t VocabSize(const std::string& path) {
    auto file = GgufFile::Open(path);
    EXPECT_TRUE(file.ok()) << file.status();
    if (!file.ok()) return 0;
    return (*file)->GetStringArray("tokenizer.ggml.tokens").value().size();
  }
  fs::path dir_;
};

TEST_F(MakeModelCli, VocabFromWithoutVocabTakesTheFilesSize) {
  if (!fs::exists(PREFIXD_BINARY)) GTEST_SKIP() << PREFIXD_BINARY << " is not built";
  // A source larger than the synthetic default (512), so the default cannot pass by accident.
  const std::string src = (dir_ / "src.gguf").string();
  ASSERT_EQ(MakeModel("--vocab 700 --out " + src), 0);
  ASSERT_EQ(VocabSize(src), 700u);

  const std::string out = (dir_ / "out.gguf").string();
  ASSERT_EQ(MakeModel("--vocab-from " + src + " --out " + out), 0);
  auto file = GgufFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("llama.vocab_size").value(), 700u);
  EXPECT_EQ(VocabSize(out), 700u);

  // An explicit --vocab still pads, and one below the source's size is still refused.
  ASSERT_EQ(MakeModel("--vocab-from " + src + " --vocab 800 --out " + out), 0);
  EXPECT_EQ(VocabSize(out), 800u);
  EXPECT_NE(MakeModel("--vocab-from " + src + " --vocab 600 --out " + out), 0);
}

}  // namespace
}  // namespace prefixd
