// PRIVATE to kernels/: CPU backend pieces that tests and benchmarks reach directly.
#pragma once

#include <cstdint>

#include "flashkm/kmeans.h"
#include "kernels/cpu/assign_cpu.h"

namespace flashkm {
namespace detail {
namespace cpu {

/// Rows of a fixed reduction block: per-block sums (inertia, counts) are added in block order,
/// so the totals do not depend on tile sizes or thread counts. Tiles never exceed a block.
constexpr int64_t kAssignBlock = 1024;

/// The CPU tile shape actually used.
struct CpuTiles {
  int64_t rows = 0;       ///< rows packed and assigned together (<= kAssignBlock)
  int64_t centroids = 0;  ///< centroids per L2-resident block (multiple of kPanel)
};

/// The selector: user values where given (rounded to valid ones), defaults otherwise.
CpuTiles select_cpu_tiles(Isa isa, int64_t d, int64_t k, const TileConfig& user);

/// Half-width of the error window of a row's fast values (see cpu_engine.cpp).
double certify_bound(Metric metric, int64_t d, double x_norm, double max_centroid_norm);

}  // namespace cpu
}  // namespace detail
}  // namespace flashkm
