// PRIVATE to kernels/cuda: a block-wide exclusive prefix sum of one int a thread (the
// pruning pass's tiles and groups, the update's compaction of moved rows).
#pragma once

#include <cuda_runtime.h>

namespace flashkm {
namespace detail {
namespace cuda {

// Exclusive prefix of `mine` over the threads of a block of kBlock (warp_sum: kBlock / 32
// ints of shared memory); also returns the block's total in *total (every thread). Called by
// every thread of the block; it synchronizes, so it may be called again with the same warp_sum.
template <int kBlock>
__device__ __forceinline__ int block_exclusive_sum(int mine, int* warp_sum, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = mine;
  for (int off = 1; off < 32; off *= 2) {
    const int v = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += v;
  }
  if (lane == 31) warp_sum[warp] = incl;
  __syncthreads();
  int before = incl - mine, all = 0;
  for (int w = 0; w < kBlock / 32; ++w) {
    if (w < warp) before += warp_sum[w];
    all += warp_sum[w];
  }
  *total = all;
  __syncthreads();  // warp_sum is read by every thread before it is written again
  return before;
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
