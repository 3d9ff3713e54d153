// Mutex and MutexLock: a std::mutex with Abseil's lock annotations.
//
// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer, so absl::Mutex's
// lock and unlock (a futex protocol inside the library) are invisible to TSan, which then
// reports every access guarded by one as a race. std::mutex goes through pthread, which TSan
// intercepts. The annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED...) work on this
// class exactly as on absl::Mutex, so Clang's -Wthread-safety still checks the locking.
//
// Thread safety: as std::mutex. Not recursive; no reader/writer split (none of its users need
// one).
#pragma once

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace prefixd {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // A no-op that tells the analysis the lock is held (for code it cannot follow).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // For std::condition_variable_any and std::unique_lock.
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope, as absl::MutexLock does.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace prefixd
