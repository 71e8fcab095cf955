// FlashAssign on CUDA cores (fp32 FFMA), its certification, the float64 fix-up and the
// finalize pass. See kernels.h for the contract and kernels/engine.h for exactness.
#include <math_constants.h>

#include <algorithm>
#include <cfloat>
#include <climits>

#include "kernels/bounds.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/tile_config.h"
#include "kernels/cuda/topk.cuh"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

// Half-width of the error window of a row's fast values: the CPU backend's bound, from the
// same source (kernels/bounds.h). This file is compiled with -fmad=false, so nothing is
// contracted and host and device agree bit for bit.
__device__ __forceinline__ double certify_bound(bool ip, double d, double X, double C) {
  return ffma_certify_bound(ip, d, X, C);
}

// The centred value of one coordinate, as the CPU packs it: float(double(x) - shift).
__device__ __forceinline__ float centred(float x, double shift) {
  return __double2float_rn(__dsub_rn(double(x), shift));
}

__global__ void prepare_centroids_kernel(const float* __restrict__ raw,
                                         const double* __restrict__ shift, int k, int d, int kpad,
                                         bool l2, float* __restrict__ shifted_t,
                                         float* __restrict__ beta, float* __restrict__ raw_t,
                                         double* __restrict__ norm_sq) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= kpad) return;
  if (c >= k) {
    for (int t = 0; t < d; ++t) shifted_t[int64_t(t) * kpad + c] = 0.f;
    beta[c] = CUDART_INF_F;
    return;
  }
  double sq = 0;
  for (int t = 0; t < d; ++t) {
    const float v = raw[int64_t(c) * d + t];
    const float f = centred(v, shift[t]);
    shifted_t[int64_t(t) * kpad + c] = f;
    raw_t[int64_t(t) * k + c] = v;
    sq = __dadd_rn(sq, __dmul_rn(double(f), double(f)));
  }
  beta[c] = l2 ? __double2float_rn(sq) : 0.f;
  norm_sq[c] = sq;
}

__global__ void max_norm_kernel(const double* __restrict__ norm_sq, int k,
                                double* __restrict__ max_norm) {
  __shared__ double part[256];
  double m = 0;
  for (int c = threadIdx.x; c < k; c += blockDim.x) m = fmax(m, norm_sq[c]);
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] = fmax(part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) *max_norm = sqrt(part[0]);
}

__global__ void row_norms_kernel(const float* __restrict__ x, int64_t rows, int d,
                                 const double* __restrict__ shift, double* __restrict__ norms) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const float* xr = x + i * d;
  double sq = 0;
  for (int t = 0; t < d; ++t) {
    const float f = centred(xr[t], shift[t]);
    sq = __dadd_rn(sq, __dmul_rn(double(f), double(f)));
  }
  norms[i] = sqrt(sq);
}

// One block owns BM points and streams every centroid through shared memory, BN at a time,
// BK coordinates per stage. Thread (ty, tx) computes the dot products of rows ty*TM.. and
// columns tx*TN.. of each tile with a fmaf chain over the coordinates in ascending order
// (exactly the CPU's chain), then folds v = fmaf(alpha, dot, beta) into a running
// (best, index, second) per row. Columns reach a thread in ascending order, so strict '<'
// keeps the lowest index; the TX threads of a row then merge by (value, index), which gives
// the same state as one sequential fold over all k columns.
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN)) flash_assign_ffma(const AssignArgs a) {
  constexpr int TX = BN / TN;
  constexpr int NT = TX * (BM / TM);
  static_assert(TX <= 32 && 32 % TX == 0, "a row's threads must share a warp");
  constexpr int kApad = 4;  // keeps the transposing stores off one bank, rows 16-byte aligned
  __shared__ __align__(16) float As[BK][BM + kApad];
  __shared__ __align__(16) float Bs[BK][BN];

  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int d = a.d, k = a.c.k, kpad = a.c.kpad;
  const float alpha = a.inner_product ? -1.f : -2.f;

  TopK<kTop> top[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) top[i].clear();

  for (int n0 = 0; n0 < k; n0 += BN) {
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < d; k0 += BK) {
      for (int e = tid; e < BM * BK; e += NT) {
        const int r = e / BK, kk = e % BK;
        const int64_t row = m0 + r;
        const int j = k0 + kk;
        As[kk][r] = (row < a.rows && j < d) ? centred(a.x[row * d + j], a.shift[j]) : 0.f;
      }
      for (int e = tid; e < BN * BK; e += NT) {
        const int kk = e / BN, c = e % BN;
        const int j = k0 + kk;
        Bs[kk][c] = j < d ? a.c.shifted_t[int64_t(j) * kpad + n0 + c] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float ar[TM], br[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) ar[i] = As[kk][ty * TM + i];
#pragma unroll
        for (int j = 0; j < TN; ++j) br[j] = Bs[kk][tx * TN + j];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = __fmaf_rn(ar[i], br[j], acc[i][j]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int col = n0 + tx * TN + j;
      if (col < k) {
        const float b = a.c.beta[col];
#pragma unroll
        for (int i = 0; i < TM; ++i) top[i].insert_ascending(__fmaf_rn(alpha, acc[i][j], b), col);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int off = TX / 2; off > 0; off /= 2) top[i].merge_lane(off);

  if (tx != 0) return;
  const double C = a.certify ? *a.c.max_norm : 0;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = m0 + ty * TM + i;
    if (row >= a.rows) continue;
    const double X = a.certify ? a.xnorm[row] : 0;
    route_row(a, row, top[i], certify_bound(a.inner_product, double(d), X, C), X, C);
  }
}

// Values the float64 passes load ahead of the sequential fma chain that consumes them.
constexpr int kBatch = 16;

constexpr int kFixupThreads = 256;
constexpr int kFixupRows = 16;   // rows per block pass: each centroid load serves 16 rows
constexpr int kFixupChunk = 64;  // coordinates of those rows staged in shared memory at once

// kFixupRows uncertified rows per block pass (grid-stride over the device-side count): thread
// t evaluates the float64 formula of detail::exact_l2 / exact_ip (coordinates in ascending
// order, explicit fma) for centroids t, t + 256, ... against all the pass's rows, then each
// row's lexicographic minimum of (value, index) is reduced over the block.
__global__ void __launch_bounds__(kFixupThreads) fixup_kernel(const AssignArgs a) {
  __shared__ float xs[kFixupRows][kFixupChunk];
  __shared__ double warp_v[kFixupThreads / 32][kFixupRows];
  __shared__ int warp_i[kFixupThreads / 32][kFixupRows];
  const int count = *a.fix_count;
  const int d = a.d, k = a.c.k, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int t0 = blockIdx.x * kFixupRows; t0 < count; t0 += gridDim.x * kFixupRows) {
    const int nr = min(kFixupRows, count - t0);
    double bv[kFixupRows];
    int bi[kFixupRows];
#pragma unroll
    for (int r = 0; r < kFixupRows; ++r) {
      bv[r] = CUDART_INF;
      bi[r] = INT_MAX;
    }
    for (int c0 = 0; c0 < k; c0 += kFixupThreads) {
      const int c = c0 + tid;
      double acc[kFixupRows] = {};
      for (int j0 = 0; j0 < d; j0 += kFixupChunk) {
        __syncthreads();
        for (int e = tid; e < kFixupRows * kFixupChunk; e += kFixupThreads) {
          const int r = e / kFixupChunk, jj = e % kFixupChunk;
          xs[r][jj] =
              (r < nr && j0 + jj < d) ? a.x[int64_t(a.fix_list[t0 + r]) * d + j0 + jj] : 0.f;
        }
        __syncthreads();
        if (c < k) {
          const int jn = min(kFixupChunk, d - j0);
          // One coordinate of every row into every accumulator; coordinates ascend.
          auto step = [&](int jj, double cv) {
#pragma unroll
            for (int r = 0; r < kFixupRows; ++r) {
              if (a.inner_product) {
                acc[r] = __fma_rn(double(xs[r][jj]), cv, acc[r]);
              } else {
                const double df = __dsub_rn(double(xs[r][jj]), cv);
                acc[r] = __fma_rn(df, df, acc[r]);
              }
            }
          };
          int jj = 0;
          for (; jj + kBatch <= jn; jj += kBatch) {  // the batch's loads overlap
            float cv[kBatch];
#pragma unroll
            for (int u = 0; u < kBatch; ++u) cv[u] = a.c.raw_t[int64_t(j0 + jj + u) * k + c];
#pragma unroll
            for (int u = 0; u < kBatch; ++u) step(jj + u, double(cv[u]));
          }
          for (; jj < jn; ++jj) step(jj, double(a.c.raw_t[int64_t(j0 + jj) * k + c]));
        }
      }
      if (c < k) {
#pragma unroll
        for (int r = 0; r < kFixupRows; ++r) {
          const double v = a.inner_product ? -acc[r] : acc[r];
          if (v < bv[r]) {  // centroids reach a thread in ascending order
            bv[r] = v;
            bi[r] = c;
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kFixupRows; ++r) {
      for (int off = 16; off > 0; off /= 2)
        lex_min(bv[r], bi[r], __shfl_xor_sync(0xffffffffu, bv[r], off),
                __shfl_xor_sync(0xffffffffu, bi[r], off));
      if (lane == 0) {
        warp_v[warp][r] = bv[r];
        warp_i[warp][r] = bi[r];
      }
    }
    __syncthreads();
    if (tid < nr) {
      double v = warp_v[0][tid];
      int i = warp_i[0][tid];
      for (int w = 1; w < kFixupThreads / 32; ++w) lex_min(v, i, warp_v[w][tid], warp_i[w][tid]);
      a.cand[a.fix_list[t0 + tid]] = i;
    }
  }
}

constexpr int kWindowThreads = 256;
constexpr int kWindowRows = 32 / kTop;  // rows per warp: lane = kTop * row + candidate
static_assert(32 % kTop == 0 && (kTop & (kTop - 1)) == 0, "a row's lanes: a power of 2 in a warp");
constexpr int kWindowChunk = 32;  // coordinates staged per step

// kWindowRows rows of win_list per warp: lane (r, s) evaluates the float64 formula of
// detail::exact_l2 / exact_ip for candidate s of row r, coordinates in ascending order, then
// each row takes the lexicographic minimum of (value, index) over its candidates. The rows'
// and candidates' coordinates are staged through shared memory kWindowChunk at a time with
// coalesced loads (one lane per coordinate), not read one scalar at a time by each lane.
__global__ void __launch_bounds__(kWindowThreads) window_fixup_kernel(const AssignArgs a) {
  constexpr int kWarps = kWindowThreads / 32, kVecs = 1 + kTop;  // x, then the candidates
  __shared__ float buf[kWarps][kWindowRows][kVecs][kWindowChunk + 1];
  const int count = *a.win_count;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, d = a.d;
  const int r = lane / kTop, s = lane % kTop;
  float(*wb)[kVecs][kWindowChunk + 1] = buf[warp];
  for (int t0 = (blockIdx.x * kWarps + warp) * kWindowRows; t0 < count;
       t0 += gridDim.x * kWarps * kWindowRows) {
    const int row = t0 + r < count ? a.win_list[t0 + r] : -1;
    const int c = row >= 0 ? a.cand_top[int64_t(row) * kTop + s] : -1;
    double acc = 0;
    for (int j0 = 0; j0 < d; j0 += kWindowChunk) {
      const int n = min(kWindowChunk, d - j0);
      __syncwarp();  // the previous chunk is consumed
      for (int q = 0; q < kWindowRows; ++q) {
        const int rq = __shfl_sync(0xffffffffu, row, q * kTop);
        if (rq >= 0 && lane < n) wb[q][0][lane] = a.x[int64_t(rq) * d + j0 + lane];
#pragma unroll
        for (int u = 0; u < kTop; ++u) {
          const int cq = __shfl_sync(0xffffffffu, c, q * kTop + u);
          if (cq >= 0 && lane < n) wb[q][1 + u][lane] = a.c.raw[int64_t(cq) * d + j0 + lane];
        }
      }
      __syncwarp();
      if (c >= 0) {
        for (int jj = 0; jj < n; ++jj) {
          const float xv = wb[r][0][jj], cv = wb[r][1 + s][jj];
          if (a.inner_product) {
            acc = __fma_rn(double(xv), double(cv), acc);
          } else {
            const double df = __dsub_rn(double(xv), double(cv));
            acc = __fma_rn(df, df, acc);
          }
        }
      }
    }
    double v = c >= 0 ? (a.inner_product ? -acc : acc) : CUDART_INF;
    int idx = c >= 0 ? c : INT_MAX;
    for (int off = 1; off < kTop; off *= 2)  // within the row's kTop lanes
      lex_min(v, idx, __shfl_xor_sync(0xffffffffu, v, off), __shfl_xor_sync(0xffffffffu, idx, off));
    if (s == 0 && row >= 0) a.cand[row] = idx;
  }
}

constexpr int kFinalizeThreads = 256;
constexpr int kFinalizeChunk = 32;  // coordinates staged per step
// Row loads a thread keeps in flight while staging: one at a time, the gather of rows in
// label order ran at 1.2 TB/s (0.42 ms at 1M x 128); 16 took it to 0.27 ms, and 2.1 -> 1.3
// ms at 768-d. Staging 64 or 128 coordinates a step gained less (bench/NOTES-cuda.md, run 34).
constexpr int kFinalizeLoads = 16;

// Exact distance of each row to its label (detail::exact_l2 / exact_ip), visiting rows in
// label order (sorted_labels / sorted_ids) so that neighbouring threads read the same
// centroid; rows are staged through shared memory kFinalizeChunk coordinates at a time, and
// each thread runs its row's fma chain in coordinate order. Writes labels, the float64
// distance per row (dist64) and counts changed labels (integer atomics: exact).
__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_sorted_kernel(const AssignArgs a, const int* __restrict__ sorted_labels,
                           const int* __restrict__ sorted_ids, int* __restrict__ labels,
                           float* __restrict__ dist, double* __restrict__ dist64,
                           int* __restrict__ changed) {
  __shared__ float xs[kFinalizeThreads][kFinalizeChunk + 1];  // +1: conflict-free row reads
  __shared__ int rows_of[kFinalizeThreads];
  __shared__ int block_changed;
  const int d = a.d, tid = threadIdx.x;
  const int64_t p = int64_t(blockIdx.x) * kFinalizeThreads + tid;
  const bool valid = p < a.rows;
  const int row = valid ? sorted_ids[p] : 0;
  const int lab = valid ? sorted_labels[p] : 0;
  rows_of[tid] = valid ? row : -1;
  if (tid == 0) block_changed = 0;
  const float* cr = a.c.raw + int64_t(lab) * d;
  double acc = 0;
  // Without dist64 (rows stored as fp16, no distances asked for) only labels and changes.
  const int dist_end = dist64 ? d : 0;
  for (int j0 = 0; j0 < dist_end; j0 += kFinalizeChunk) {
    const int jn = min(kFinalizeChunk, d - j0);
    __syncthreads();
    // Thread tid stages coordinate tid % C of rows tid / C + i * T / C: a warp reads 32
    // consecutive coordinates of one row.
    static_assert(kFinalizeThreads % kFinalizeChunk == 0 && kFinalizeChunk % kFinalizeLoads == 0,
                  "whole rows per pass, whole batches of loads");
    constexpr int RS = kFinalizeThreads / kFinalizeChunk;
    const int sj = tid % kFinalizeChunk, r0 = tid / kFinalizeChunk;
    if (sj < jn) {
      for (int i0 = 0; i0 < kFinalizeChunk; i0 += kFinalizeLoads) {
        float v[kFinalizeLoads];
#pragma unroll
        for (int u = 0; u < kFinalizeLoads; ++u) {
          const int rr = rows_of[r0 + (i0 + u) * RS];
          v[u] = rr >= 0 ? a.x[int64_t(rr) * d + j0 + sj] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < kFinalizeLoads; ++u) xs[r0 + (i0 + u) * RS][sj] = v[u];
      }
    }
    __syncthreads();
    if (valid) {
      auto step = [&](int jj, float cv) {
        if (a.inner_product) {
          acc = __fma_rn(double(xs[tid][jj]), double(cv), acc);
        } else {
          const double df = __dsub_rn(double(xs[tid][jj]), double(cv));
          acc = __fma_rn(df, df, acc);
        }
      };
      int jj = 0;
      for (; jj + kBatch <= jn; jj += kBatch) {  // the batch's loads overlap
        float cv[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) cv[u] = cr[j0 + jj + u];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) step(jj + u, cv[u]);
      }
      for (; jj < jn; ++jj) step(jj, cr[j0 + jj]);
    }
  }
  if (dist_end == 0) __syncthreads();  // block_changed is zeroed (the loop's barrier otherwise)
  if (valid) {
    if (labels[row] != lab) atomicAdd(&block_changed, 1);
    labels[row] = lab;
    if (dist64) dist64[row] = acc;
    if (dist) dist[row] = __double2float_rn(acc);
  }
  __syncthreads();
  if (tid == 0 && block_changed) atomicAdd(changed, block_changed);
}

// finalize_sorted_kernel for listed rows, a thread a row: the pruning pass's fallback rows.
__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_list_kernel(const AssignArgs a, const int* __restrict__ list,
                         const int* __restrict__ count, int* __restrict__ labels,
                         float* __restrict__ dist, double* __restrict__ dist64,
                         int* __restrict__ changed) {
  __shared__ int block_changed;
  if (threadIdx.x == 0) block_changed = 0;
  __syncthreads();
  const int n = *count, d = a.d;
  for (int i = blockIdx.x * kFinalizeThreads + threadIdx.x; i < n;
       i += gridDim.x * kFinalizeThreads) {
    const int row = list[i], lab = a.cand[row];
    const float* xr = a.x + int64_t(row) * d;
    const float* cr = a.c.raw + int64_t(lab) * d;
    double acc = 0;
    for (int j = 0; j < d; ++j) {
      if (a.inner_product) {
        acc = __fma_rn(double(xr[j]), double(cr[j]), acc);
      } else {
        const double df = __dsub_rn(double(xr[j]), double(cr[j]));
        acc = __fma_rn(df, df, acc);
      }
    }
    if (labels[row] != lab) atomicAdd(&block_changed, 1);
    labels[row] = lab;
    dist64[row] = acc;
    if (dist) dist[row] = __double2float_rn(acc);
  }
  __syncthreads();
  if (threadIdx.x == 0 && block_changed) atomicAdd(changed, block_changed);
}

// Inertia per kReduceBlock rows, summed by one thread in row order, as the CPU does.
__global__ void block_sum_kernel(const double* __restrict__ dist64, int64_t rows,
                                 double* __restrict__ block_inertia) {
  __shared__ double vals[kReduceBlock];
  const int64_t base = int64_t(blockIdx.x) * kReduceBlock;
  const int64_t end = rows - base < kReduceBlock ? rows - base : kReduceBlock;
  for (int r = threadIdx.x; r < end; r += blockDim.x) vals[r] = dist64[base + r];
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0;
    for (int64_t r = 0; r < end; ++r) sum = __dadd_rn(sum, vals[r]);
    block_inertia[blockIdx.x] = sum;
  }
}

template <int S>
void launch_shape(const AssignArgs& a, cudaStream_t stream) {
  constexpr AssignTiles t = kAssignShapes[S];
  constexpr int threads = (t.rows / t.thread_rows) * (t.centroids / t.thread_cols);
  const int64_t blocks = (a.rows + t.rows - 1) / t.rows;
  flash_assign_ffma<t.rows, t.centroids, t.depth, t.thread_rows, t.thread_cols>
      <<<unsigned(blocks), threads, 0, stream>>>(a);
  FLASHKM_CUDA_CHECK_LAUNCH(flash_assign_ffma);
}

}  // namespace

void prepare_centroids(const float* raw, const double* shift, int k, int d, int kpad, Metric metric,
                       float* shifted_t, float* beta, float* raw_t, double* norm_sq,
                       double* max_norm, cudaStream_t stream) {
  prepare_centroids_kernel<<<(kpad + 127) / 128, 128, 0, stream>>>(
      raw, shift, k, d, kpad, metric == Metric::L2, shifted_t, beta, raw_t, norm_sq);
  FLASHKM_CUDA_CHECK_LAUNCH(prepare_centroids_kernel);
  max_norm_kernel<<<1, 256, 0, stream>>>(norm_sq, k, max_norm);
  FLASHKM_CUDA_CHECK_LAUNCH(max_norm_kernel);
}

void row_norms(const float* x, int64_t rows, int d, const double* shift, double* norms,
               cudaStream_t stream) {
  if (rows == 0) return;
  row_norms_kernel<<<unsigned((rows + 255) / 256), 256, 0, stream>>>(x, rows, d, shift, norms);
  FLASHKM_CUDA_CHECK_LAUNCH(row_norms_kernel);
}

void launch_flash_assign(int shape, const AssignArgs& a, cudaStream_t stream) {
  static_assert(kNumAssignShapes == 3, "add the new shape to the switch below");
  if (a.rows == 0) return;
  switch (shape) {
    case 0:
      launch_shape<0>(a, stream);
      break;
    case 1:
      launch_shape<1>(a, stream);
      break;
    case 2:
      launch_shape<2>(a, stream);
      break;
    default:
      FLASHKM_THROW("FlashAssign shape %d is not compiled (0..%d)", shape, kNumAssignShapes - 1);
  }
}

void launch_fixup(const AssignArgs& a, int sm_count, cudaStream_t stream) {
  if (a.rows == 0) return;
  const int64_t most = (a.rows + kFixupRows - 1) / kFixupRows;
  const int64_t blocks = most < int64_t(sm_count) * 8 ? most : int64_t(sm_count) * 8;
  fixup_kernel<<<unsigned(blocks), kFixupThreads, 0, stream>>>(a);
  FLASHKM_CUDA_CHECK_LAUNCH(fixup_kernel);
  const int64_t wrows = kWindowThreads / 32 * kWindowRows;
  const int64_t wblocks = std::min<int64_t>((a.rows + wrows - 1) / wrows, int64_t(sm_count) * 5);
  window_fixup_kernel<<<unsigned(wblocks), kWindowThreads, 0, stream>>>(a);
  FLASHKM_CUDA_CHECK_LAUNCH(window_fixup_kernel);
}

void launch_finalize(const AssignArgs& a, const int* sorted_labels, const int* sorted_ids,
                     int* labels, float* dist, double* dist64, double* block_inertia, int* changed,
                     cudaStream_t stream) {
  if (a.rows == 0) return;
  finalize_sorted_kernel<<<unsigned((a.rows + kFinalizeThreads - 1) / kFinalizeThreads),
                           kFinalizeThreads, 0, stream>>>(a, sorted_labels, sorted_ids, labels,
                                                          dist, dist64, changed);
  FLASHKM_CUDA_CHECK_LAUNCH(finalize_sorted_kernel);
  if (dist64) launch_block_inertia(dist64, a.rows, block_inertia, stream);
}

void launch_finalize_list(const AssignArgs& a, const int* list, const int* count, int* labels,
                          float* dist, double* dist64, int* changed, int sm_count,
                          cudaStream_t stream) {
  if (a.rows == 0) return;
  const int64_t most = (a.rows + kFinalizeThreads - 1) / kFinalizeThreads;
  finalize_list_kernel<<<unsigned(std::min<int64_t>(most, int64_t(sm_count) * 8)), kFinalizeThreads,
                         0, stream>>>(a, list, count, labels, dist, dist64, changed);
  FLASHKM_CUDA_CHECK_LAUNCH(finalize_list_kernel);
}

void launch_block_inertia(const double* dist64, int64_t rows, double* block_inertia,
                          cudaStream_t stream) {
  if (rows == 0) return;
  block_sum_kernel<<<unsigned((rows + kReduceBlock - 1) / kReduceBlock), 256, 0, stream>>>(
      dist64, rows, block_inertia);
  FLASHKM_CUDA_CHECK_LAUNCH(block_sum_kernel);
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
