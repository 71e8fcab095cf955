// PRIVATE to tools/: option helpers shared by the subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <initializer_list>
#include <string>

#include "flashkm/error.h"
#include "flashkm/io.h"
#include "flashkm/kmeans.h"

namespace flashkm {
namespace cli {

/// A CLI11 check that accepts what parse (one of flashkm::parse_metric, parse_device, ...)
/// accepts, so the library stays the one place that knows the names; a rejected value is a
/// usage error (exit code 2). names is shown in --help, e.g. "l2|ip".
template <typename Enum>
CLI::Validator enum_validator(Enum (*parse)(const std::string&), const std::string& names) {
  return CLI::Validator(
      [parse, names](std::string& value) -> std::string {
        try {
          parse(value);
          return {};
        } catch (const Error&) {
          return "'" + value + "' is not one of " + names;
        }
      },
      names);
}

/// --device auto|cpu|cuda, validated by flashkm::parse_device; its default is device's value.
CLI::Option* add_device_option(CLI::App& app, std::string& device);

/// --threads N >= 0 (0: all hardware threads); its default is threads's value.
CLI::Option* add_threads_option(CLI::App& app, int& threads);

/// --init: "random", "kmeans++", or a path with a vector-file extension.
CLI::Validator init_validator();

/// Init::Random / Init::KMeansPlusPlus for their names, Init::Given for anything else (a path).
Init init_from_string(const std::string& value);

/// Throws flashkm::Error unless path's extension is one of allowed, naming the option.
void check_output_format(const std::string& path, const char* option,
                         std::initializer_list<FileFormat> allowed);

}  // namespace cli
}  // namespace flashkm
