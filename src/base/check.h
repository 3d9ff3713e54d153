// CHECK for broken invariants: they stop the process loudly with what the invariant means.
// Not for recoverable failures (return a Status) or normal outcomes (return std::optional).
#pragma once

#include <cstdio>
#include <cstdlib>

#define PREFIXD_CHECK(cond, msg)                                                       \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, \
                   msg, #cond);                                                        \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
