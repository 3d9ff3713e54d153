// Must compile: a layer sees its own folder and every layer below it, transitively (server ->
// engine -> cache -> tier -> kv -> base). Built only by layering_test, the control that shows
// the failures above are the layering's and not a broken setup.
#include "base/status.h"
#include "cache/prefix_cache.h"
#include "engine/engine.h"
#include "kv/block_key.h"
#include "server/metrics.h"
#include "tier/tier_store.h"
