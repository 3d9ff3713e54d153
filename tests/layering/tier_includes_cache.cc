// Must NOT compile: tier/ is below cache/ (ARCHITECTURE.md, Layers), so an upward include
// fails. Built only by layering_test (check.cmake), which expects the failure.
#include "cache/prefix_cache.h"
