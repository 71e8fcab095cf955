// k-means++ seeding on the GPU, bit-identical to the CPU's Engine::kmeanspp (kernels/init.cpp).
//
// Each of the k - 1 steps updates every point's squared distance to its nearest chosen centroid
// (float64, the fma chain of detail::exact_l2) and sums it per block of kBlock rows in row
// order, both on the device; the host then draws with kmeanspp_draw, as the CPU does, which
// walks the block sums in order and scans the one block it lands in. The draws, distances and sums
// are the CPU's operations in the CPU's order, so both backends pick the same points.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kmeanspp.h"
#include "kernels/engine.h"

namespace flashkm {
namespace detail {
namespace cuda {

namespace {

// Rows of one reduction block: Engine::kmeanspp's.
constexpr int kBlock = int(kKMeansPPBlock);
// Threads of a CUDA block; each walks the rows of its block in kBlock / kThreads slices.
constexpr int kThreads = 256;
// Columns staged per step: a kThreads x kCols tile, padded against bank conflicts.
constexpr int kCols = 32;

// dmin[i] = min(dmin[i], |x_i - c|^2) for the rows of block blockIdx.x, then bsum[block] = the
// sum of its dmin in row order (one thread, sequential: the CPU's order). Rows are staged in
// shared memory a column tile at a time so the global reads are coalesced while each thread
// runs its row's fma chain in column order.
__global__ void __launch_bounds__(kThreads)
    kmeanspp_step_kernel(const float* __restrict__ x, int64_t n, int d, const float* __restrict__ c,
                         double* __restrict__ dmin, double* __restrict__ bsum) {
  __shared__ float tile[kThreads][kCols + 1];
  __shared__ double row_min[kBlock];
  const int64_t b0 = int64_t(blockIdx.x) * kBlock;
  const int rows_in_block = n - b0 < kBlock ? int(n - b0) : kBlock;
  for (int s0 = 0; s0 < rows_in_block; s0 += kThreads) {
    const int rows = min(kThreads, rows_in_block - s0);
    const int64_t r0 = b0 + s0;
    double acc = 0;
    for (int j0 = 0; j0 < d; j0 += kCols) {
      const int cols = min(kCols, d - j0);
      __syncthreads();
      for (int e = threadIdx.x; e < rows * kCols; e += kThreads) {
        const int r = e / kCols, j = e % kCols;
        if (j < cols) tile[r][j] = x[(r0 + r) * d + j0 + j];
      }
      __syncthreads();
      if (threadIdx.x < rows) {
        for (int j = 0; j < cols; ++j) {
          const double t = __dsub_rn(double(tile[threadIdx.x][j]), double(c[j0 + j]));
          acc = __fma_rn(t, t, acc);
        }
      }
    }
    if (threadIdx.x < rows) {
      const int64_t i = r0 + threadIdx.x;
      const double m = fmin(dmin[i], acc);
      dmin[i] = m;
      row_min[s0 + threadIdx.x] = m;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int r = 0; r < rows_in_block; ++r) s = __dadd_rn(s, row_min[r]);
    bsum[blockIdx.x] = s;
  }
}

__global__ void fill_kernel(double* p, int64_t n, double v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

}  // namespace

void kmeanspp_device(const float* x_host, const float* x_dev, int64_t n, int64_t d, int64_t k,
                     uint64_t seed, cudaStream_t stream, double* dmin, double* bsum,
                     float* centroids) {
  FLASHKM_THROW_IF_NOT(n >= 1 && d >= 1 && k >= 1 && k <= n,
                       "kmeanspp_device: n = %lld, d = %lld, k = %lld", (long long)n, (long long)d,
                       (long long)k);
  std::mt19937_64 rng(seed);
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  fill_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(dmin, n, HUGE_VAL);
  FLASHKM_CUDA_CHECK_LAUNCH(fill_kernel);
  std::vector<double> host_bsum(nblocks), host_dmin(kBlock);
  // The one block a draw lands in is copied back on demand.
  auto block_dmin = [&](int64_t b) {
    const int64_t i0 = b * kBlock, i1 = std::min(n, (b + 1) * kBlock);
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(host_dmin.data(), dmin + i0, sizeof(double) * (i1 - i0),
                                       cudaMemcpyDeviceToHost, stream));
    FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
    return static_cast<const double*>(host_dmin.data());
  };

  int64_t pick = static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
  for (int64_t c = 0; c < k; ++c) {
    if (x_host != nullptr) {
      std::memcpy(centroids + c * d, x_host + pick * d, sizeof(float) * d);
    } else {
      FLASHKM_CUDA_CHECK(cudaMemcpyAsync(centroids + c * d, x_dev + pick * d, sizeof(float) * d,
                                         cudaMemcpyDeviceToHost, stream));
      FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    if (c + 1 == k) break;
    // The chosen point is already on the device: its row of x is the centroid.
    kmeanspp_step_kernel<<<unsigned(nblocks), kThreads, 0, stream>>>(x_dev, n, int(d),
                                                                     x_dev + pick * d, dmin, bsum);
    FLASHKM_CUDA_CHECK_LAUNCH(kmeanspp_step_kernel);
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(host_bsum.data(), bsum, sizeof(double) * nblocks,
                                       cudaMemcpyDeviceToHost, stream));
    FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
    pick = kmeanspp_draw(rng, host_bsum.data(), nblocks, n, kBlock, block_dmin);
  }
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
