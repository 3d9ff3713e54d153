// A read-only memory map of a whole file. Model weights are used in place from the map.
//
// Or, with Residence::kRam, a read-only private copy in anonymous memory backed by 2 MiB
// pages where the kernel has them: decode streams every weight once per token, and with 4 KiB
// page-cache pages the TLB misses cost about a fifth of the memory bandwidth (measured on the
// 2-core EPYC: 25 vs 31 GB/s). It costs the copy at start-up and memory the kernel cannot
// reclaim, so the caller chooses (prefixd's --weights flag).
//
// Thread safety: immutable after Open; safe to read from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace prefixd {

enum class Residence { kMapped, kRam };

class MappedFile {
 public:
  // Maps `path` read-only (or copies it, see above). NotFound / PermissionDenied / Internal
  // with the path and errno text; ResourceExhausted when a kRam copy finds no memory.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path,
                                                   Residence residence = Residence::kMapped);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size, size_t mapped_bytes)
      : path_(std::move(path)), data_(data), size_(size), mapped_bytes_(mapped_bytes) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
  size_t mapped_bytes_;  // what to munmap: size_, or the rounded-up anonymous copy
};

}  // namespace prefixd
