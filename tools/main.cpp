// The `flashkm` executable: a CLI11 app whose subcommands come from the registry in command.h.
#include <algorithm>
#include <cstdio>
#include <exception>

#include "command.h"
#include "flashkm/error.h"

namespace flashkm {
namespace cli {

std::vector<CommandInfo>& command_registry() {
  // A function-local static: registrars in other translation units may run before any
  // namespace-scope object of this one is constructed.
  static std::vector<CommandInfo> registry;
  return registry;
}

}  // namespace cli
}  // namespace flashkm

int main(int argc, char** argv) {
  using flashkm::cli::Command;
  using flashkm::cli::CommandInfo;

  CLI::App app{"flashkm: exact k-means on CPUs and NVIDIA GPUs, and IVF indexes built with it"};
  app.name("flashkm");
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");

  std::vector<CommandInfo> infos = flashkm::cli::command_registry();
  std::sort(infos.begin(), infos.end(),
            [](const CommandInfo& a, const CommandInfo& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::unique_ptr<Command>>> commands;
  for (const CommandInfo& info : infos) {
    CLI::App* sub = app.add_subcommand(info.name, info.description);
    std::unique_ptr<Command> cmd = info.make();
    cmd->setup(*sub);
    commands.emplace_back(sub, std::move(cmd));
  }

  try {
    app.parse(argc, argv);
    for (auto& [sub, cmd] : commands) {
      if (sub->parsed()) return cmd->run();
    }
    return 2;  // unreachable: require_subcommand(1) made the parse fail
  } catch (const CLI::ParseError& e) {
    // --help / --version exit 0 through CLI11; every other parse error is a usage error.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const flashkm::Error& e) {
    std::fprintf(stderr, "flashkm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flashkm: error: %s\n", e.what());
    return 1;
  }
}
