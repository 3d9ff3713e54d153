// Must NOT compile: kv/ and tier/ are siblings, so a sideways include fails. Built only by
// layering_test (check.cmake), which expects the failure.
#include "tier/tier_store.h"
