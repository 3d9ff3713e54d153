// prefixd: an LLM inference server whose heart is a prefix KV cache.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "base/log.h"

int main(int argc, char** argv) {
  CLI::App app{"prefixd: LLM inference with a prefix KV cache"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
  std::function<int()> run;
  prefixd::AddGenerateCommand(app, &run);
  prefixd::AddBenchModelCommand(app, &run);
  prefixd::AddMakeModelCommand(app, &run);
  prefixd::AddServeCommand(app, &run);
  prefixd::AddTokenizeCommand(app, &run);
  prefixd::AddRenderChatCommand(app, &run);
  prefixd::AddReplayCommand(app, &run);
  CLI11_PARSE(app, argc, argv);
  prefixd::SetLogLevel(log_level);
  return run ? run() : 0;
}
