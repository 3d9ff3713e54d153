// Replays a version 2 request log (engine/request_log.h) operation by operation through a
// CacheReplayer: the engine's admissions, writes (with the sequences it preempted), completed
// prompts, finishes, kill-switch toggles, clears and clock times, in the order its thread made
// them. At the server's own budgets this reproduces the server's cached tokens, per tier,
// request by request, however the requests overlapped (cache/cache_replayer.h says what is
// exact and why). Where the replay's cache answers an operation differently from the server's
// (another hit, a write that found room where the server's did not), that is a divergence: it
// is counted, the first one described, and the replay goes on (operations that no longer
// apply are skipped and counted too).
#pragma once

#include <cstdint>
#include <string>

#include "app/replay_input.h"
#include "base/status.h"
#include "cache/cache_replayer.h"
#include "cache/trace_replay.h"

namespace prefixd {

struct OpReplay {
  ReplayResult result;  // by_request in the order the requests finished (finish_order)
  int64_t operations = 0;
  int64_t divergences = 0;
  std::string first_divergence;  // "line N: what differed"; empty when none
};

// The cache configuration a log's header describes: the server's own budgets.
StatusOr<ReplayConfig> ReplayConfigOf(const RequestLogHeader& header);

// Fails when the log contradicts itself before any divergence (an operation on a sequence in
// the wrong state, a sequence admitted with more tokens than its lines hold: a log cut short),
// with the line; after a divergence such operations are its consequences, skipped and counted.
StatusOr<OpReplay> ReplayLogOperations(const RequestLogFile& log, ReplayConfig config);

}  // namespace prefixd
