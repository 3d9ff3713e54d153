#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace prefixd {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Copies `size` bytes of `fd` into fresh anonymous memory aligned to 2 MiB and advised to use
// huge pages, then makes it read-only. The mapping's length goes to *mapped_bytes.
StatusOr<const uint8_t*> CopyToRam(int fd, const std::string& path, size_t size,
                                   size_t* mapped_bytes) {
  const size_t bytes = (size + kHugePage - 1) / kHugePage * kHugePage;
  // Over-allocate by one huge page, then trim both ends so the copy starts on a 2 MiB boundary.
  void* raw = ::mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes >> 20, " MiB to load '", path, "' into RAM: ",
        std::strerror(errno), "; use --weights mmap to use the file in place"));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) ::munmap(raw, aligned - start);
  const size_t tail = start + bytes + kHugePage - (aligned + bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  uint8_t* data = reinterpret_cast<uint8_t*>(aligned);
  ::madvise(data, bytes, MADV_HUGEPAGE);  // a hint: without THP the copy still works
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pread(fd, data + done, std::min<size_t>(size - done, size_t{64} << 20),
                              static_cast<off_t>(done));
    if (n <= 0) {
      const int err = n == 0 ? EIO : errno;
      if (n < 0 && err == EINTR) continue;
      ::munmap(data, bytes);
      return absl::InternalError(
          absl::StrCat("cannot read '", path, "' at byte ", done, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::mprotect(data, bytes, PROT_READ);
  *mapped_bytes = bytes;
  return data;
}

}  // namespace

StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path,
                                                       Residence residence) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat("cannot open '", path, "': ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  size_t mapped_bytes = size;
  if (size > 0 && residence == Residence::kRam) {
    StatusOr<const uint8_t*> copy = CopyToRam(fd, path, size, &mapped_bytes);
    ::close(fd);
    if (!copy.ok()) return copy.status();
    return std::unique_ptr<MappedFile>(new MappedFile(path, *copy, size, mapped_bytes));
  }
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot mmap '", path, "': ", std::strerror(err)));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return std::unique_ptr<MappedFile>(new MappedFile(path, data, size, mapped_bytes));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), mapped_bytes_);
}

}  // namespace prefixd
