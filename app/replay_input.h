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

// One request of a request log (version 1: a line; version 2: its request and finish lines).
struct LoggedRequest {
  int64_t seq = -1;  // version 2: the engine's sequence id
  std::string salt;
  std::vector<int32_t> tokens;  // prompt, then the generated tokens (hashed)
  int64_t num_prompt = 0;
  int64_t num_computed = 0;
  std::vector<int64_t> message_starts;
  std::optional<ScopeSpec> scope;
  std::vector<RetentionRange> retention;  // version 2
  bool finished = false;                  // version 2: its finish line was read
  // What the server reported.
  int64_t cached_tokens = 0;
  int64_t host_tokens = 0, disk_tokens = 0, partial_tokens = 0;
};

// One engine operation of a version 2 log (engine/request_log.h), except request lines.
struct LoggedOp {
  enum class Kind { kTime, kReads, kAdmit, kWrite, kPrompt, kFinish, kEnable, kClear };
  Kind kind = Kind::kTime;
  int line = 0;          // in the file, for messages
  size_t request = 0;    // index in RequestLogFile::requests (admit, write, prompt, finish)
  int64_t value = 0;     // time: ms; reads, admit: known tokens; write: len; enable: 1 on, 0 off
  int64_t hit = 0;       // admit: the server's hit
  int64_t disk_blocks = 0;  // admit
  bool ok = true;        // write
  std::vector<size_t> preempted;  // write: indexes in requests
  std::string tier;      // clear
};

struct RequestLogFile {
  int version = 1;
  RequestLogHeader header;
  // Version 1: in the order they finished. Version 2: in the order of their first admission;
  // `finish_order` lists the finished ones as they finished.
  std::vector<LoggedRequest> requests;
  std::vector<size_t> finish_order;
  std::vector<LoggedOp> ops;  // version 2
};

// Reads a request log. Errors name the file, the line and the field.
StatusOr<RequestLogFile> ReadRequestLog(const std::string& path);

}  // namespace prefixd
