// PRIVATE to index/ and the index subcommands in tools/: a ProgressCallback for terminals.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

#include "flashkm/index.h"

namespace flashkm {
namespace index {

/// Rewrites one status line on stderr ("stage done/total") when stderr is a terminal; a no-op
/// callback otherwise, so logs and pipes stay clean.
inline ProgressCallback terminal_progress() {
  if (!::isatty(STDERR_FILENO)) return nullptr;
  return [](const std::string& stage, int64_t done, int64_t total) {
    std::fprintf(stderr, "\r%-16s %lld/%lld%s", stage.c_str(), (long long)done, (long long)total,
                 done >= total ? "\n" : "");
    std::fflush(stderr);
  };
}

}  // namespace index
}  // namespace flashkm
