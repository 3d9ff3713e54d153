#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace prefixd {

void SetLogLevel(const std::string& level) {
  // Logs go to stderr: stdout carries what commands print (JSON of bench-model, tokenize's
  // ids, generate's text), which a log line must never interleave with.
  static const bool once = [] {
    spdlog::set_default_logger(spdlog::stderr_color_mt("prefixd"));
    return true;
  }();
  (void)once;
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace prefixd
