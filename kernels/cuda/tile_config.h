// PRIVATE to kernels/cuda: tile shapes of the FlashAssign kernel, as data.
//
// Every shape computes each fast value with the same fmaf chain over d in order 0..d-1 and
// merges per-row candidates with the same (value, index) order, so all shapes give
// bit-identical labels, fix-up counts and distances; only speed differs.
#pragma once

#include <string>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace detail {
namespace cuda {

/// One compiled FlashAssign shape. A block of (rows / thread_rows) x (centroids /
/// thread_cols) threads owns `rows` points and streams all centroids through shared memory
/// `centroids` at a time, `depth` coordinates per stage; each thread keeps a thread_rows x
/// thread_cols register tile of dot products and a running (best, index, second) per row.
struct AssignTiles {
  int rows;
  int centroids;
  int depth;
  int thread_rows;
  int thread_cols;
  const char* chosen_by;  ///< the benchmark (or reason) that put this row in the table
};

/// All compiled shapes (the kernel is instantiated for exactly these).
constexpr AssignTiles kAssignShapes[] = {
    {128, 128, 8, 8, 8,
     "first shape run (bench_kmeans_cuda, H200, FLASHKM_CUDA_MATH=ffma, "
     "1M x128 K1024: 13.8 TFLOP/s); not yet compared with others"},
    {64, 64, 8, 8, 8, "K <= 64 (less padding), and other architectures; untimed"},
    {32, 32, 8, 4, 4, "K <= 32, and the tests' tiny-tile runs; untimed"},
};
constexpr int kNumAssignShapes = sizeof(kAssignShapes) / sizeof(kAssignShapes[0]);

/// Arithmetic of the first assignment pass.
enum class AssignMath {
  Ffma,       ///< fp32 CUDA cores: the CPU's exact fmaf chain
  Fp16Mma,    ///< fp16 tensor cores through mma.sync, three products (Exact) or one (Fast)
  Fp16Wgmma,  ///< the same products through Hopper's wgmma (compute capability 9.0 only)
};

/// One compiled tensor-core shape: a block of warps_m x warps_n warps owns `rows` points and
/// streams centroids `centroids` at a time through shared memory, kMmaDepth halves a stage.
struct MmaTiles {
  int rows;
  int centroids;
  int warps_m;
  int warps_n;
  const char* chosen_by;
};

constexpr MmaTiles kMmaShapes[] = {
    {128, 128, 2, 4,
     "first shape run (bench_kmeans_cuda, H200, 1M x128 K1024, depth 64 beat "
     "32: 7.73 vs 8.31 ms assign); not yet compared with others"},
    {64, 64, 2, 2, "K <= 64, and the tests' shape-invariance runs; untimed"},
};
constexpr int kNumMmaShapes = sizeof(kMmaShapes) / sizeof(kMmaShapes[0]);

/// wgmma on compute capability 9.0, mma.sync on other devices with fp16 tensor cores (sm_80
/// and later), else FFMA. The environment variable FLASHKM_CUDA_MATH overrides it: ffma,
/// fp16 (the device's best tensor-core pass), fp16-sync (mma.sync). Tests and benchmarks
/// compare them; results other than the fix-up count are identical.
AssignMath select_math(int cc_major, int cc_minor);

/// Like select_assign_shape, for the tensor-core shapes.
int select_mma_shape(long long k, const TileConfig& user);

/// The selector: the shape matching user.rows / user.centroids when both are set (throws
/// flashkm::Error naming the supported pairs otherwise), else a shape chosen from the
/// compute capability and k. Returns an index into kAssignShapes.
int select_assign_shape(int cc_major, long long k, const TileConfig& user);

std::string describe(const AssignTiles& t);

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
