// Sort-inverse centroid update: CUB radix sort of point ids by label (stable, so ids stay
// ascending within a cluster), segment boundaries, then one thread per (cluster, coordinate)
// adding the cluster's points in ascending order in float64. No atomics.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernels.h"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

__global__ void iota_kernel(int* ids, int64_t rows) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows) ids[i] = int(i);
}

__global__ void segment_bounds_kernel(const int* __restrict__ keys, int64_t rows,
                                      int* __restrict__ seg_begin, int* __restrict__ seg_end) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= rows) return;
  const int key = keys[p];
  if (p == 0 || keys[p - 1] != key) seg_begin[key] = int(p);
  if (p == rows - 1 || keys[p + 1] != key) seg_end[key] = int(p + 1);
}

// The running sum of (c, j) continues across chunks, so a cluster's points are added in
// ascending point order over the whole data set, exactly like the CPU's
// `sum[j] += double(x[i][j])`. The chain itself is sequential; what is not is fetching its
// operands: the block stages kSumIds ids of the segment in shared memory, and each thread
// loads kSumBatch values ahead of adding them (one memory latency per batch, not per point).
constexpr int kSumIds = 256;
constexpr int kSumBatch = 16;

__global__ void segment_sum_kernel(const float* __restrict__ x, int d, const int* __restrict__ ids,
                                   const int* __restrict__ seg_begin,
                                   const int* __restrict__ seg_end, double* __restrict__ sums,
                                   long long* __restrict__ counts) {
  __shared__ int sid[kSumIds];
  const int c = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  const int b = seg_begin[c], e = seg_end[c];
  if (j == 0) counts[c] += e - b;
  const bool active = j < d;
  double acc = active ? sums[int64_t(c) * d + j] : 0.0;
  for (int p0 = b; p0 < e; p0 += kSumIds) {
    const int n = min(kSumIds, e - p0);
    __syncthreads();  // the previous batch of ids is consumed
    for (int q = threadIdx.x; q < n; q += blockDim.x) sid[q] = ids[p0 + q];
    __syncthreads();
    if (!active) continue;
    int q = 0;
    for (; q + kSumBatch <= n; q += kSumBatch) {
      float v[kSumBatch];
#pragma unroll
      for (int u = 0; u < kSumBatch; ++u) v[u] = x[int64_t(sid[q + u]) * d + j];
#pragma unroll
      for (int u = 0; u < kSumBatch; ++u) acc = __dadd_rn(acc, double(v[u]));
    }
    for (; q < n; ++q) acc = __dadd_rn(acc, double(x[int64_t(sid[q]) * d + j]));
  }
  if (active) sums[int64_t(c) * d + j] = acc;
}

__global__ void means_kernel(const double* __restrict__ sums, const long long* __restrict__ counts,
                             int k, int d, float* __restrict__ means) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(k) * d) return;
  const long long cnt = counts[i / d];
  if (cnt > 0) means[i] = __double2float_rn(__ddiv_rn(sums[i], double(cnt)));
}

int key_bits(int k) {
  int bits = 1;
  while (bits < 31 && (1LL << bits) < k) ++bits;
  return bits;
}

}  // namespace

size_t sort_temp_bytes(int64_t max_rows) {
  size_t bytes = 0;
  FLASHKM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, (const int*)nullptr,
                                                     (int*)nullptr, (const int*)nullptr,
                                                     (int*)nullptr, max_rows, 0, 31));
  return bytes;
}

void fill_iota(int* ids, int64_t rows, cudaStream_t stream) {
  if (rows == 0) return;
  iota_kernel<<<unsigned((rows + 255) / 256), 256, 0, stream>>>(ids, rows);
  FLASHKM_CUDA_CHECK_LAUNCH(iota_kernel);
}

void sort_by_label(const int* labels, int64_t rows, int k, const UpdateScratch& s,
                   cudaStream_t stream) {
  if (rows == 0) return;
  size_t temp = s.sort_temp_bytes;
  FLASHKM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      s.sort_temp, temp, labels, s.keys_out, s.ids_in, s.ids_out, rows, 0, key_bits(k), stream));
}

void accumulate_sorted(const float* x, int64_t rows, int d, int k, const UpdateScratch& s,
                       double* sums, long long* counts, cudaStream_t stream) {
  if (rows == 0) return;
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(s.seg_begin, 0, sizeof(int) * k, stream));
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(s.seg_end, 0, sizeof(int) * k, stream));
  segment_bounds_kernel<<<unsigned((rows + 255) / 256), 256, 0, stream>>>(s.keys_out, rows,
                                                                          s.seg_begin, s.seg_end);
  FLASHKM_CUDA_CHECK_LAUNCH(segment_bounds_kernel);
  const int threads = d >= 128 ? 128 : (d + 31) / 32 * 32;
  const dim3 grid(unsigned(k), unsigned((d + threads - 1) / threads));
  segment_sum_kernel<<<grid, threads, 0, stream>>>(x, d, s.ids_out, s.seg_begin, s.seg_end, sums,
                                                   counts);
  FLASHKM_CUDA_CHECK_LAUNCH(segment_sum_kernel);
}

void compute_means(const double* sums, const long long* counts, int k, int d, float* means,
                   cudaStream_t stream) {
  const int64_t total = int64_t(k) * d;
  means_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(sums, counts, k, d, means);
  FLASHKM_CUDA_CHECK_LAUNCH(means_kernel);
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
