#include "options.h"

#include <algorithm>

namespace flashkm {
namespace cli {

Init init_from_string(const std::string& value) {
  if (value == to_string(Init::Random)) return Init::Random;
  if (value == to_string(Init::KMeansPlusPlus)) return Init::KMeansPlusPlus;
  return Init::Given;
}

CLI::Validator init_validator() {
  const std::string names =
      std::string(to_string(Init::Random)) + "|" + to_string(Init::KMeansPlusPlus) + "|FILE";
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (init_from_string(value) != Init::Given) return {};
        try {
          format_from_path(value);
          return {};
        } catch (const Error&) {
          return "'" + value + "' is neither " + to_string(Init::Random) + ", " +
                 to_string(Init::KMeansPlusPlus) + " nor a centroid file (.fvecs, .bvecs or .npy)";
        }
      },
      names);
}

void check_output_format(const std::string& path, const char* option,
                         std::initializer_list<FileFormat> allowed) {
  std::string names;
  for (FileFormat f : allowed) {
    names += names.empty() ? "." : " or .";
    names += to_string(f);
  }
  bool known = true;
  FileFormat fmt = FileFormat::Npy;
  try {
    fmt = format_from_path(path);
  } catch (const Error&) {
    known = false;
  }
  FLASHKM_THROW_IF_NOT(known && std::find(allowed.begin(), allowed.end(), fmt) != allowed.end(),
                       "%s %s: unsupported output extension; expected a %s file", option,
                       path.c_str(), names.c_str());
}

CLI::Option* add_device_option(CLI::App& app, std::string& device) {
  return app
      .add_option("--device", device,
                  "auto (CUDA if built with it and a GPU is visible, else CPU), cpu, or cuda")
      ->capture_default_str()
      ->check(enum_validator(parse_device, "auto|cpu|cuda"));
}

CLI::Option* add_threads_option(CLI::App& app, int& threads) {
  return app.add_option("--threads", threads, "CPU worker threads (0: all hardware threads)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

}  // namespace cli
}  // namespace flashkm
