// Sort-inverse centroid update: CUB radix sort of point ids by label, segment boundaries
// (also the pruning pass's), then exact sums (kernels/exact_sum.h) with integer atomics only;
// later updates move only the rows whose label changed. No float atomics: the limbs, and so
// the means, do not depend on the order of anything.
#include <algorithm>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/block_scan.cuh"
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

// Exact sums (kernels/exact_sum.h) of sorted rows: a block takes kAccRows consecutive
// sorted positions (those that count: all, or the rows that moved), a thread one
// coordinate. A run of equal labels is summed in a float64 register, exactly, for values
// whose ulp is at least 2^fmt.fast (all but the rare tiny ones, which go to register limbs),
// and flushed into the cluster's limbs with integer atomics when the label changes.
// Integer sums do not depend on the order of the atomics, so no thread waits on a long
// chain (the float64 chain of the largest cluster took 0.26 ms at 1M x 128, K 1024, run
// 59). kAccBatch loads are in flight before their values are added.
constexpr int kAccRows = kExactRunValues;
constexpr int kAccThreads = 128;
constexpr int kAccBatch = 8;

template <int L>
__device__ __forceinline__ void add_limbs(long long (&acc)[L], float v, int base) {
  int digit;
  int64_t lo, hi;
  exact_parts(v, base, &digit, &lo, &hi);
#pragma unroll
  for (int l = 0; l < L; ++l) acc[l] += (l == digit ? lo : 0) + (l == digit + 1 ? hi : 0);
}

// Adds (or subtracts) the float64 run and the register limbs to one sum and clears them.
template <int L>
__device__ __forceinline__ void flush_run(double& run, long long (&acc)[L], bool subtract,
                                          const ExactFormat& f, unsigned long long* limbs) {
  if (run != 0) {
    const int64_t m = static_cast<int64_t>(ldexp(run, -f.fast));  // below 2^53: exact
    int digit;
    int64_t p[3];
    exact_scaled_parts(m, f.fast - f.base, &digit, &p[0], &p[1], &p[2]);
#pragma unroll
    for (int q = 0; q < 3; ++q)  // subtracting negates the parts, as the tiny values' below
      if (p[q] != 0)
        atomicAdd(limbs + digit + q, static_cast<unsigned long long>(subtract ? -p[q] : p[q]));
    run = 0;
  }
#pragma unroll
  for (int l = 0; l < L; ++l) {
    if (acc[l] != 0)
      atomicAdd(limbs + l, static_cast<unsigned long long>(subtract ? -acc[l] : acc[l]));
    acc[l] = 0;
  }
}

template <int L>
__global__ void __launch_bounds__(kAccThreads)
    exact_accumulate_kernel(const float* __restrict__ x, int d, const int* __restrict__ keys,
                            const int* __restrict__ ids, int64_t rows,
                            const int* __restrict__ other, bool subtract, ExactFormat f,
                            unsigned long long* __restrict__ limbs) {
  static_assert(kAccRows == 2 * kAccThreads, "two positions a thread while compacting");
  __shared__ int skey[kAccRows], sid[kAccRows];
  __shared__ int warp_total[kAccThreads / 32];
  // Compaction of the positions that count, in order (runs of a label stay together): each
  // thread looks at two neighbouring positions, then an exclusive scan places them.
  const int tid = threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.x) * kAccRows;
  int key[2], id[2], keep[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t p = r0 + 2 * tid + h;
    keep[h] = 0;
    if (p < rows) {
      key[h] = keys[p];
      id[h] = ids[p];
      keep[h] = other == nullptr || other[id[h]] != key[h];
    }
  }
  int n;
  int before = block_exclusive_sum<kAccThreads>(keep[0] + keep[1], warp_total, &n);
#pragma unroll
  for (int h = 0; h < 2; ++h)
    if (keep[h]) {
      skey[before] = key[h];
      sid[before] = id[h];
      ++before;
    }
  __syncthreads();
  const int j = blockIdx.y * blockDim.x + tid;
  if (n == 0 || j >= d) return;
  double run = 0;
  long long acc[L];
#pragma unroll
  for (int l = 0; l < L; ++l) acc[l] = 0;
  int cur = skey[0];
  for (int q0 = 0; q0 < n; q0 += kAccBatch) {
    float v[kAccBatch];
#pragma unroll
    for (int u = 0; u < kAccBatch; ++u) v[u] = q0 + u < n ? x[int64_t(sid[q0 + u]) * d + j] : 0.0f;
#pragma unroll
    for (int u = 0; u < kAccBatch; ++u) {
      if (q0 + u >= n) break;
      const int k = skey[q0 + u];
      if (k != cur) {
        flush_run<L>(run, acc, subtract, f, limbs + (int64_t(cur) * d + j) * L);
        cur = k;
      }
      const uint32_t bits = __float_as_uint(v[u]);
      if ((bits & 0x7fffffffu) == 0 || float_ulp_exp(bits) >= f.fast) {
        run += double(v[u]);
      } else {
        add_limbs<L>(acc, v[u], f.base);
      }
    }
  }
  flush_run<L>(run, acc, subtract, f, limbs + (int64_t(cur) * d + j) * L);
}

// The rows whose label differs from prev (the labels the limbs hold), each read once: a
// warp takes 32 rows, then moves each changed row's values out of its old cluster's limbs
// and into the new one's, a lane per coordinate, with integer atomics (4 a value). For rows
// read across the bus (fp16 rows: the float32 rows mapped from host memory), reading a moved
// row once costs less than the two sorted passes, which read it twice.
__global__ void exact_moved_kernel(const float* __restrict__ x, int d, int64_t rows,
                                   const int* __restrict__ labels, const int* __restrict__ prev,
                                   ExactFormat f, unsigned long long* __restrict__ limbs) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t r0 = warp * 32; r0 < rows; r0 += warps * 32) {
    const int64_t i = r0 + lane;
    int from = 0, to = 0;
    if (i < rows) {
      to = labels[i];
      from = prev[i];
    }
    unsigned moved = __ballot_sync(0xffffffffu, from != to);
    while (moved) {
      const int src = __ffs(moved) - 1;
      moved &= moved - 1;
      const int a = __shfl_sync(0xffffffffu, from, src);
      const int b = __shfl_sync(0xffffffffu, to, src);
      const float* row = x + (r0 + src) * d;
      for (int j = lane; j < d; j += 32) {
        int digit;
        int64_t lo, hi;
        exact_parts(row[j], f.base, &digit, &lo, &hi);
        unsigned long long* pa = limbs + (int64_t(a) * d + j) * f.limbs + digit;
        unsigned long long* pb = limbs + (int64_t(b) * d + j) * f.limbs + digit;
        if (lo != 0) {
          atomicAdd(pa, static_cast<unsigned long long>(-lo));
          atomicAdd(pb, static_cast<unsigned long long>(lo));
        }
        if (hi != 0) {
          atomicAdd(pa + 1, static_cast<unsigned long long>(-hi));
          atomicAdd(pb + 1, static_cast<unsigned long long>(hi));
        }
      }
    }
  }
}

__global__ void segment_counts_kernel(const int* __restrict__ seg_begin,
                                      const int* __restrict__ seg_end, int k,
                                      long long* __restrict__ counts) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < k) counts[c] += seg_end[c] - seg_begin[c];
}

// Also renormalises each sum (exact_renormalize): the same value with every limb but the
// top one in [0, 2^32). Runs and values added in one grouping and taken out in another (the
// moved rows) leave carries that do not cancel limb by limb, only in value: without this,
// the low limbs of a long fit would drift until they overflow. After it, an update may add
// up to 2^31 contributions below 2^32 to a limb.
__global__ void exact_means_kernel(unsigned long long* __restrict__ limbs,
                                   const long long* __restrict__ counts, int k, int d, int n_limbs,
                                   int base, float* __restrict__ means) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(k) * d) return;
  int64_t* sum = reinterpret_cast<int64_t*>(limbs) + i * n_limbs;
  int64_t carry = 0;
  for (int l = 0; l + 1 < n_limbs; ++l) {
    const int64_t t = sum[l] + carry;
    sum[l] = t & 0xffffffffLL;
    carry = t >> 32;
  }
  sum[n_limbs - 1] += carry;
  const long long cnt = counts[i / d];
  if (cnt <= 0) return;
  means[i] = __double2float_rn(__ddiv_rn(exact_to_double(sum, n_limbs, base), double(cnt)));
}

__global__ void exponent_range_kernel(const float* __restrict__ x, int64_t count,
                                      int* __restrict__ range) {
  int lo = 1 << 20, hi = -(1 << 20);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const uint32_t bits = __float_as_uint(x[i]);
    if ((bits & 0x7fffffffu) == 0) continue;
    const int u = float_ulp_exp(bits);
    lo = min(lo, u);
    hi = max(hi, u);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMin(range, lo);
    atomicMax(range + 1, hi);
  }
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

void segment_bounds(int64_t rows, int k, const UpdateScratch& s, cudaStream_t stream) {
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(s.seg_begin, 0, sizeof(int) * k, stream));
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(s.seg_end, 0, sizeof(int) * k, stream));
  if (rows == 0) return;
  segment_bounds_kernel<<<unsigned((rows + 255) / 256), 256, 0, stream>>>(s.keys_out, rows,
                                                                          s.seg_begin, s.seg_end);
  FLASHKM_CUDA_CHECK_LAUNCH(segment_bounds_kernel);
}

template <int L>
void launch_accumulate(const float* x, int64_t rows, int d, const int* keys, const int* ids,
                       const int* other, bool subtract, ExactFormat f, unsigned long long* limbs,
                       cudaStream_t stream) {
  const int threads = kAccThreads;
  const dim3 grid(unsigned((rows + kAccRows - 1) / kAccRows),
                  unsigned((d + threads - 1) / threads));
  exact_accumulate_kernel<L>
      <<<grid, threads, 0, stream>>>(x, d, keys, ids, rows, other, subtract, f, limbs);
  FLASHKM_CUDA_CHECK_LAUNCH(exact_accumulate_kernel);
}

void segment_counts(int k, const UpdateScratch& s, long long* counts, cudaStream_t stream) {
  segment_counts_kernel<<<unsigned((k + 255) / 256), 256, 0, stream>>>(s.seg_begin, s.seg_end, k,
                                                                       counts);
  FLASHKM_CUDA_CHECK_LAUNCH(segment_counts_kernel);
}

void accumulate_sorted(const float* x, int64_t rows, int d, const int* keys, const int* ids,
                       const int* other, bool subtract, ExactFormat f, unsigned long long* limbs,
                       cudaStream_t stream) {
  if (rows == 0) return;
  switch (f.limbs) {
#define FLASHKM_LIMBS_CASE(L) \
  case L:                     \
    return launch_accumulate<L>(x, rows, d, keys, ids, other, subtract, f, limbs, stream);
    FLASHKM_LIMBS_CASE(3)
    FLASHKM_LIMBS_CASE(4)
    FLASHKM_LIMBS_CASE(5)
    FLASHKM_LIMBS_CASE(6)
    FLASHKM_LIMBS_CASE(7)
    FLASHKM_LIMBS_CASE(8)
    FLASHKM_LIMBS_CASE(9)
    FLASHKM_LIMBS_CASE(10)
#undef FLASHKM_LIMBS_CASE
    default:
      FLASHKM_THROW("exact sums: %d limbs, expected 3 .. %d", f.limbs, kExactMaxLimbs);
  }
}

void accumulate_moved(const float* x, int64_t rows, int d, const int* labels, const int* prev,
                      ExactFormat f, unsigned long long* limbs, int sm_count, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t want = (rows + 255) / 256;
  const unsigned blocks = unsigned(std::min<int64_t>(want, int64_t(sm_count) * 8));
  exact_moved_kernel<<<blocks, 256, 0, stream>>>(x, d, rows, labels, prev, f, limbs);
  FLASHKM_CUDA_CHECK_LAUNCH(exact_moved_kernel);
}

void compute_means(unsigned long long* limbs, const long long* counts, int k, int d,
                   ExactFormat fmt, float* means, cudaStream_t stream) {
  const int64_t total = int64_t(k) * d;
  exact_means_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(limbs, counts, k, d,
                                                                        fmt.limbs, fmt.base, means);
  FLASHKM_CUDA_CHECK_LAUNCH(exact_means_kernel);
}

ExactFormat exact_format_device(const float* x, int64_t count, int* scratch, cudaStream_t stream) {
  const int init[2] = {1 << 20, -(1 << 20)};
  FLASHKM_CUDA_CHECK(cudaMemcpyAsync(scratch, init, sizeof init, cudaMemcpyHostToDevice, stream));
  if (count > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>((count + 255) / 256, 4096));
    exponent_range_kernel<<<blocks, 256, 0, stream>>>(x, count, scratch);
    FLASHKM_CUDA_CHECK_LAUNCH(exponent_range_kernel);
  }
  int range[2];
  FLASHKM_CUDA_CHECK(cudaMemcpyAsync(range, scratch, sizeof range, cudaMemcpyDeviceToHost, stream));
  FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return exact_format(range[0], range[1]);
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
