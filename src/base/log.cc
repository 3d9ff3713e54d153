#include "base/log.h"

namespace prefixd {

void SetLogLevel(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace prefixd
