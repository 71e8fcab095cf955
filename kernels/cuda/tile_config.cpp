#include "kernels/cuda/tile_config.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace flashkm {
namespace detail {
namespace cuda {

int select_assign_shape(int cc_major, long long k, const TileConfig& user) {
  if (user.rows > 0 || user.centroids > 0) {
    std::string supported;
    for (int i = 0; i < kNumAssignShapes; ++i) {
      if (kAssignShapes[i].rows == user.rows && kAssignShapes[i].centroids == user.centroids)
        return i;
      supported += (i ? ", " : "") + std::to_string(kAssignShapes[i].rows) + "x" +
                   std::to_string(kAssignShapes[i].centroids);
    }
    FLASHKM_THROW("CUDA tile config rows=%d centroids=%d is not compiled; expected one of %s",
                  user.rows, user.centroids, supported.c_str());
  }
  if (k <= 32) return 2;
  if (k <= 64) return 1;
  return cc_major == 9 ? 0 : 1;
}

AssignMath select_math(int cc_major, int cc_minor) {
  const AssignMath tensor =
      cc_major == 9 && cc_minor == 0 ? AssignMath::Fp16Wgmma : AssignMath::Fp16Mma;
  if (const char* env = std::getenv("FLASHKM_CUDA_MATH")) {
    if (std::strcmp(env, "ffma") == 0) return AssignMath::Ffma;
    if (std::strcmp(env, "fp16") == 0) return tensor;
    if (std::strcmp(env, "fp16-sync") == 0) return AssignMath::Fp16Mma;
    FLASHKM_THROW("FLASHKM_CUDA_MATH=%s: expected ffma, fp16 or fp16-sync", env);
  }
  return cc_major >= 8 ? tensor : AssignMath::Ffma;
}

int select_mma_shape(long long k, const TileConfig& user) {
  if (user.rows > 0 || user.centroids > 0) {
    std::string supported;
    for (int i = 0; i < kNumMmaShapes; ++i) {
      if (kMmaShapes[i].rows == user.rows && kMmaShapes[i].centroids == user.centroids) return i;
      supported += (i ? ", " : "") + std::to_string(kMmaShapes[i].rows) + "x" +
                   std::to_string(kMmaShapes[i].centroids);
    }
    FLASHKM_THROW(
        "CUDA tensor-core tile config rows=%d centroids=%d is not compiled; expected "
        "one of %s",
        user.rows, user.centroids, supported.c_str());
  }
  return k <= 64 ? 1 : 0;
}

std::string describe(const AssignTiles& t) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%dx%d (depth %d, %dx%d per thread)", t.rows, t.centroids,
                t.depth, t.thread_rows, t.thread_cols);
  return buf;
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
