#include "base/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

namespace prefixd {
namespace {

std::string WriteTemp(const std::vector<uint8_t>& bytes) {
  const std::string path = std::filesystem::temp_directory_path() /
                           ("prefixd-mapped-" + std::to_string(::getpid()) + "-" +
                            std::to_string(bytes.size()));
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Both residences give the file's bytes exactly, for sizes below, at and past 2 MiB pages.
TEST(MappedFile, MappedAndRamCopiesHoldTheFileBytes) {
  std::mt19937 rng(4);
  for (size_t size : {size_t{1}, size_t{4097}, size_t{2} << 20, (size_t{2} << 20) + 3,
                      size_t{5} << 20}) {
    std::vector<uint8_t> bytes(size);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const std::string path = WriteTemp(bytes);
    for (Residence r : {Residence::kMapped, Residence::kRam}) {
      auto file = MappedFile::Open(path, r);
      ASSERT_TRUE(file.ok()) << file.status();
      ASSERT_EQ((*file)->bytes().size(), size);
      EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), (*file)->bytes().begin()))
          << "size " << size << (r == Residence::kRam ? " ram" : " mapped");
      if (r == Residence::kRam) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>((*file)->bytes().data()) % (size_t{2} << 20), 0u)
            << "the RAM copy starts on a huge-page boundary";
      }
    }
    std::filesystem::remove(path);
  }
}

TEST(MappedFile, MissingFileIsNotFoundEitherWay) {
  for (Residence r : {Residence::kMapped, Residence::kRam}) {
    auto file = MappedFile::Open("/nonexistent/prefixd-model.gguf", r);
    EXPECT_TRUE(absl::IsNotFound(file.status())) << file.status();
  }
}

}  // namespace
}  // namespace prefixd
