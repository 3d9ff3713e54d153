// The inputs of `prefixd replay`: Mooncake-format traces and the request logs that
// `prefixd serve --request-log` writes (src/engine/request_log.h has the format).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "cache/cache_replayer.h"
#include "cache/trace_replay.h"
#include "engine/request_log.h"

namespace prefixd {

// Mooncake JSON lines: timestamp, input_length, output_length, hash_ids. Errors name the file,
// the line and what is wrong with it.
StatusOr<std::vector<TraceRequest>> ReadTrace(const std::string& path);

// One request line of a request log.
struct LoggedRequest {
  std::string salt;
  std::vector<int32_t> tokens;  // prompt, then the computed generated tokens (hashed)
  int64_t num_prompt = 0;
  int64_t num_computed = 0;
  std::vector<int64_t> message_starts;
  std::optional<ScopeSpec> scope;
  // What the server reported.
  int64_t cached_tokens = 0;
  int64_t host_tokens = 0, disk_tokens = 0, partial_tokens = 0;
};

struct RequestLogFile {
  RequestLogHeader header;
  std::vector<LoggedRequest> requests;  // in the order they finished
};

// Reads a request log. Errors name the file, the line and the field.
StatusOr<RequestLogFile> ReadRequestLog(const std::string& path);

}  // namespace prefixd
