// Must be found by layering_test's scan: a server file that names a cache header, which the
// server sees only through the engine's types (engine/request_scope.h). Never compiled.
#include "cache/scope_policy.h"
