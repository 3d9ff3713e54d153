// CPU time of the calling thread: what a piece of work cost the thread that ran it, unlike
// wall time, which a busy machine stretches with other processes' time slices.
#pragma once

#include <time.h>

namespace prefixd {

inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace prefixd
