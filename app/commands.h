// Each subcommand registers its flags on the CLI and, when chosen, sets `run`.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace prefixd {

void AddGenerateCommand(CLI::App& app, std::function<int()>* run);
void AddBenchModelCommand(CLI::App& app, std::function<int()>* run);
void AddMakeModelCommand(CLI::App& app, std::function<int()>* run);
void AddServeCommand(CLI::App& app, std::function<int()>* run);
void AddTokenizeCommand(CLI::App& app, std::function<int()>* run);
void AddRenderChatCommand(CLI::App& app, std::function<int()>* run);
void AddReplayCommand(CLI::App& app, std::function<int()>* run);

}  // namespace prefixd
