// PRIVATE to tools/: the subcommand registry of the `flashkm` executable.
//
// Adding a subcommand touches no existing file: create tools/cmd_<name>.cpp with a class
// derived from flashkm::cli::Command and, in the same namespace as that class, one line
//
//   FLASHKM_REGISTER_COMMAND(BuildCommand, "build", "Build an IVF index from vectors");
//
// (cmd_kmeans.cpp is the example to copy; options.h has the shared option helpers).
// tools/CMakeLists.txt globs cmd_*.cpp into the executable (re-globbed on every build), and
// main.cpp turns each registered command into a CLI11 subcommand. A command that includes
// flashkm/index.h or flashkm/faiss.h (or index/, plugin/, faiss/ headers) is built only when
// that layer is, and the executable then links flashkm_index / flashkm_faiss. The registrar
// runs during static initialisation, which is why command files are compiled into the
// executable itself rather than a static library (the linker would drop their unreferenced
// objects).
//
// Lifecycle: main() creates every command, calls setup() on its subcommand, parses argv, and
// calls run() on the one that was chosen. Exit codes: run()'s return value (0 on success);
// 1 when run() throws flashkm::Error (printed as "flashkm: error: <message>" on stderr);
// 2 for usage errors, i.e. a CLI11 parse error or a CLI::ValidationError thrown from run().
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flashkm {
namespace cli {

class Command {
 public:
  virtual ~Command() = default;
  /// Declares options on app (already named and described), binding them to members.
  virtual void setup(CLI::App& app) = 0;
  /// Does the work after a successful parse; returns the process exit code.
  virtual int run() = 0;
};

struct CommandInfo {
  std::string name;
  std::string description;
  std::function<std::unique_ptr<Command>()> make;
};

/// All registered commands, in registration order (main sorts them by name).
std::vector<CommandInfo>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string description,
                   std::function<std::unique_ptr<Command>()> make) {
    command_registry().push_back({std::move(name), std::move(description), std::move(make)});
  }
};

}  // namespace cli
}  // namespace flashkm

#define FLASHKM_REGISTER_COMMAND(Type, name, description)                 \
  static const ::flashkm::cli::CommandRegistrar flashkm_registrar_##Type( \
      name, description, [] { return std::unique_ptr<::flashkm::cli::Command>(new Type()); })
