// Logging goes through spdlog (stderr). Keep it out of hot loops: one debug line in a step
// loop costs more than the step on small models.
#pragma once

#include <spdlog/spdlog.h>

namespace prefixd {

// Sets the global level from a name: trace, debug, info, warn, error, off.
void SetLogLevel(const std::string& level);

}  // namespace prefixd
