// Centre-centre pruning of the Exact L2 assignment (kernels.h, PruneArgs): Elkan's lemma
// with the previous assignment's labels as anchors.
//
// For a row x whose previous label is a: if |a - c| > 2 |x - a| then |x - c| >= |a - c| -
// |x - a| > |x - a|, so c cannot be x's nearest centroid. Four kernels, so that the work is
// spread evenly whatever the sizes of the clusters:
//  1. per label a (a block): R >= |x - a| for every row of a's segment, the largest of their
//     previous float64 distances (to a's previous position) plus how far a moved, both
//     rounded up;
//  2. label x centroid tiles: every centroid c whose float32 distance to a, lowered by its
//     rounding bound, is not beyond 2R (with a relative margin) joins a's candidate list;
//     the others are provably farther from each of a's rows than a itself, by more than
//     any float64 rounding (the list's order does not matter: see 4). From k = 8192 on,
//     groups of centroids around pivots spare most pairs (2' below);
//  3. one block cuts the segments into row tiles of one label each, those of labels with
//     short lists first (a lean row kernel takes them, the full one the rest);
//  4. per row tile (a thread a row, or through pair_block a thread a candidate where the tile
//     has few rows and many candidates), each row's float32 distances to its label's
//     candidates, t = fl(x_j - c_j) then an fma chain of t^2. Every term is a square, so
//     the chain's error is relative: true^2 lies in
//     [(s - eta)(1 - gl), (s + eta)(1 + gu)], gl = 1.01 (d + 2) u, gu = 1.02 (d + 2) u,
//     u = 2^-24, with eta = (2 d + 4) 2^-126 for results flushed or rounded below the normal
//     range. A row whose second smallest s clears its smallest by that bound (and 1e-9 more,
//     for the float64 formula's own rounding) has its float64 argmin certified; the others
//     evaluate detail::exact_l2 over all candidates (ties: lowest index).
// So every label is the float64 argmin over all k, exactly as the unpruned passes decide it.
#include <math_constants.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <type_traits>

#include "kernels/cuda/block_scan.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/topk.cuh"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

constexpr int kThreads = kPruneTileRows;  // the row pass: one row per thread
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerThread = kThreads / kWarps;  // rows whose chunk a thread stages
constexpr int kAuxThreads = 256;                   // the other kernels' blocks
constexpr int kAuxWarps = kAuxThreads / 32;
constexpr int kChunk = 32;                        // coordinates staged per step
constexpr int kXStride = kChunk + 4;              // float4 reads: 8 lanes' rows cover the 32 banks
constexpr int kGroup = 32;                        // candidates a pass over the rows evaluates
constexpr double kU = 5.9604644775390625e-08;     // 2^-24
constexpr double kTiny = 1.1754943508222875e-38;  // 2^-126

// The float32 chain's error terms for d coordinates (see the top of the file).
struct Float32Bound {
  double eta, gl, gu;
  __device__ explicit Float32Bound(int d)
      : eta((2.0 * d + 4) * kTiny), gl(1.01 * (d + 2) * kU), gu(1.02 * (d + 2) * kU) {}
  /// A lower bound on the true squared distance whose float32 chain gave s (0 or less when
  /// nothing is known; +inf only from a finite s).
  __device__ double lower(float s) const {
    return s <= FLT_MAX ? (double(s) - eta) * (1 - gl) : 0.0;
  }
  /// An upper bound, likewise.
  __device__ double upper(float s) const { return (double(s) + eta) * (1 + gu); }
};

constexpr int kScanThreads = 1024;

// 1. radius2[a] = (2R)^2 (1 + 1e-5), R >= |x - a| over a's rows; -1 for a label without rows.
// A block a label, so that one huge cluster does not hold the pass up.
__global__ void __launch_bounds__(kAuxThreads) prune_radius_kernel(const PruneArgs p) {
  __shared__ double red_r[kAuxWarps], red_d[kAuxWarps];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, d = p.d, a = blockIdx.x;
  const int b = p.seg_begin[a], e = p.seg_end[a];
  if (tid == 0) p.list_count[a] = 0;
  if (b >= e) {
    if (tid == 0) p.radius2[a] = -1;
    return;
  }
  double rmax = 0, drift = 0;
  for (int q = b + tid; q < e; q += kAuxThreads) rmax = fmax(rmax, p.dist_prev[p.sorted_ids[q]]);
  for (int j = tid; j < d; j += kAuxThreads) {
    const double t =
        __dsub_rn(double(p.c_raw[int64_t(a) * d + j]), double(p.c_prev[int64_t(a) * d + j]));
    drift = __fma_rn(t, t, drift);
  }
  for (int off = 16; off > 0; off /= 2) {
    rmax = fmax(rmax, __shfl_xor_sync(0xffffffffu, rmax, off));
    drift = __dadd_rn(drift, __shfl_xor_sync(0xffffffffu, drift, off));
  }
  if (lane == 0) {
    red_r[warp] = rmax;
    red_d[warp] = drift;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < kAuxWarps; ++w) {
      rmax = fmax(rmax, red_r[w]);
      drift = __dadd_rn(drift, red_d[w]);
    }
    // float64 sums of d squares and their square roots: relative errors far below 1e-9.
    const double R = __dmul_rn(__dadd_rn(sqrt(rmax), sqrt(drift)), 1 + 1e-9);
    p.radius2[a] = 4 * R * R * (1 + 1e-5);
  }
}

// Squared float32 distances of a tile of 32 "A" points x 128 "B" points (both transposed:
// coordinate j of point i at X_t[j * ld + i]); thread (ty, lane) holds A points 4 ty .. 4 ty
// + 3 against B points lane + 32 m, m < 4, coordinates staged 32 at a time. Then
// epilogue(i, a, b, s) for every pair in range, i < 4 the thread's slot of A point a.
constexpr int kPairA = 32, kPairB = 128;
template <class Epilogue>
__device__ __forceinline__ void pair_tile(const float* A_t, int na, int lda, int a0,
                                          const float* B_t, int nb, int ldb, int b0, int d,
                                          Epilogue&& epilogue) {
  __shared__ float as[kChunk][kPairA];
  __shared__ float bs[kChunk][kPairB];
  const int tid = threadIdx.x, lane = tid % 32, ty = tid / 32;
  float acc[4][4] = {};
  for (int j0 = 0; j0 < d; j0 += kChunk) {
    __syncthreads();
    for (int q = tid; q < kChunk * kPairA; q += kAuxThreads) {
      const int jj = q / kPairA, i = q % kPairA;
      as[jj][i] = (j0 + jj < d && a0 + i < na) ? A_t[int64_t(j0 + jj) * lda + a0 + i] : 0.f;
    }
    for (int q = tid; q < kChunk * kPairB; q += kAuxThreads) {
      const int jj = q / kPairB, i = q % kPairB;
      bs[jj][i] = (j0 + jj < d && b0 + i < nb) ? B_t[int64_t(j0 + jj) * ldb + b0 + i] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int jj = 0; jj < kChunk; ++jj) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = as[jj][4 * ty + i];
#pragma unroll
      for (int m = 0; m < 4; ++m) bv[m] = bs[jj][lane + 32 * m];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const float t = __fsub_rn(av[i], bv[m]);
          acc[i][m] = __fmaf_rn(t, t, acc[i][m]);
        }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int a = a0 + 4 * ty + i;
    if (a >= na) continue;
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      const int b = b0 + lane + 32 * m;
      if (b < nb) epilogue(i, a, b, acc[i][m]);
    }
  }
}

// Adds c to a's candidate list when |a - c|^2 is not provably above radius2[a].
__device__ __forceinline__ void offer_candidate(const PruneArgs& p, const Float32Bound& bound,
                                                int a, int c, float s) {
  const double lower = bound.lower(s);
  if (lower > p.radius2[a]) return;  // also every centroid of a label without rows (-1)
  const int pos = atomicAdd(p.list_count + a, 1);
  if (pos < kPruneMaxCands) {
    p.lists[int64_t(a) * kPruneMaxCands + pos] = c;
    p.list_lower[int64_t(a) * kPruneMaxCands + pos] = __double2float_rd(lower);
  }
}

// Squared float32 distances of up to kSmallRows rows against ncand candidates, a thread a
// candidate, kThreads of them a step: for blocks with few rows and many candidates. Row r is
// row_id(r) of xs (-1: none, its values unused), candidate u is cand_id(u) of cs (u < ncand);
// each pair gets the chain of group_pass (t = fl(x_j - c_j), fma(t, t, acc), coordinates
// ascending; zero padding adds fma(0, 0, acc) = acc). visit(u, id, acc) for each candidate of
// the thread, acc[r] its value for row r. stop(), asked by one thread before each step, ends
// the pass early (its answer goes to the whole block). Returns the candidates measured.
// Shared scratch: xr kSmallRows x kChunk
// floats, ct kChunk x kCStride, ids kThreads + 1. Called by every thread of the block (it
// synchronizes).
constexpr int kSmallRows = kPruneSmallRows;
constexpr int kCStride = kThreads + 1;  // ct[jj][u]: a warp's stores of one candidate spread
static_assert(kChunk == 32 && kSmallRows <= 32 && kSmallRows * kChunk % kThreads == 0,
              "pair_block: a lane a coordinate, a bit a row, whole shares of the row chunk");
static_assert(kSmallRows * kChunk <= kGroup * kChunk && kChunk * kCStride <= kThreads * kXStride,
              "small_tile_pass reuses the row kernel's cs and xs");
struct NeverStop {
  __device__ bool operator()() const { return false; }
};
template <class RowId, class CandId, class Visit, class Stop = NeverStop>
__device__ __forceinline__ int pair_block(int d, const float* xs, RowId&& row_id, const float* cs,
                                          int ncand, CandId&& cand_id, float* xr, float* ct,
                                          int* ids, Visit&& visit, Stop&& stop = NeverStop()) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // A chunk's values, loaded into registers first (all loads in flight together), then stored:
  // the rows' kSmallRows x kChunk, and candidates warp + kWarps i.
  constexpr int kRowShare = kSmallRows * kChunk / kThreads, kCandShare = kThreads / kWarps;
  float pr[kRowShare], pc[kCandShare];
  auto load = [&](int j0) {
    const int jn = min(kChunk, d - j0);
#pragma unroll
    for (int i = 0; i < kRowShare; ++i) {
      const int q = tid + i * kThreads, jj = q % kChunk, id = row_id(q / kChunk);
      pr[i] = (id >= 0 && jj < jn) ? xs[int64_t(id) * d + j0 + jj] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kCandShare; ++i) {
      const int id = ids[warp + kWarps * i];
      pc[i] = (id >= 0 && lane < jn) ? cs[int64_t(id) * d + j0 + lane] : 0.f;
    }
  };
  for (int u0 = 0; u0 < ncand; u0 += kThreads) {
    __syncthreads();  // the previous step's ids are consumed (and its visits done)
    if constexpr (!std::is_same<std::decay_t<Stop>, NeverStop>::value) {
      if (tid == 0) ids[kThreads] = stop();  // one answer for the block
      __syncthreads();
      if (ids[kThreads]) return u0;
    }
    ids[tid] = u0 + tid < ncand ? cand_id(u0 + tid) : -1;
    float acc[kSmallRows];
#pragma unroll
    for (int r = 0; r < kSmallRows; ++r) acc[r] = 0.f;
    for (int j0 = 0; j0 < d; j0 += kChunk) {
      __syncthreads();  // ids are written; the previous chunk is consumed
      load(j0);
#pragma unroll
      for (int i = 0; i < kRowShare; ++i) xr[tid + i * kThreads] = pr[i];
#pragma unroll
      for (int i = 0; i < kCandShare; ++i) ct[lane * kCStride + warp + kWarps * i] = pc[i];
      __syncthreads();
#pragma unroll
      for (int jj = 0; jj < kChunk; jj += 4) {
        const float c0 = ct[jj * kCStride + tid], c1 = ct[(jj + 1) * kCStride + tid];
        const float c2 = ct[(jj + 2) * kCStride + tid], c3 = ct[(jj + 3) * kCStride + tid];
#pragma unroll
        for (int r = 0; r < kSmallRows; ++r) {
          const float4 xv = *reinterpret_cast<const float4*>(xr + r * kChunk + jj);
          float t = __fsub_rn(xv.x, c0);
          acc[r] = __fmaf_rn(t, t, acc[r]);
          t = __fsub_rn(xv.y, c1);
          acc[r] = __fmaf_rn(t, t, acc[r]);
          t = __fsub_rn(xv.z, c2);
          acc[r] = __fmaf_rn(t, t, acc[r]);
          t = __fsub_rn(xv.w, c3);
          acc[r] = __fmaf_rn(t, t, acc[r]);
        }
      }
    }
    if (ids[tid] >= 0) visit(u0 + tid, ids[tid], acc);
  }
  return ncand;
}

// 2. Candidates, every pair: label tiles x centroid tiles.
__global__ void __launch_bounds__(kAuxThreads) prune_candidates_kernel(const PruneArgs p) {
  const Float32Bound bound(p.d);
  pair_tile(p.c_raw_t, p.k, p.k, blockIdx.y * kPairA, p.c_raw_t, p.k, p.k, blockIdx.x * kPairB, p.d,
            [&](int, int a, int c, float s) { offer_candidate(p, bound, a, c, s); });
}

// 2'. Candidates through groups, for large k (PruneArgs::groups): centroid g * kPivotStride is
// pivot g; every centroid joins its nearest pivot's group (float32 value, ties to the lower
// pivot: one 64-bit atomicMin, so the groups do not depend on scheduling), the group's radius
// rho_g bounds its members' distances to the pivot from above, and a label then measures only
// the members of groups with |a - pivot| - rho_g <= 2R (triangle inequality: any other member
// is farther than 2R). Which centroids are measured changes no label, only the work.
__global__ void pivot_copy_kernel(const PruneArgs p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int g = p.groups;
  if (i < int64_t(p.d) * g) {
    const int64_t j = i / g, h = i % g;
    p.pivots_t[i] = p.c_raw_t[j * p.k + h * kPivotStride];
  }
  if (i < p.k) p.nearest[i] = ~0ull;
  if (i < g) {
    p.group_radius[i] = 0;
    p.group_count[i] = 0;
  }
}

__global__ void __launch_bounds__(kAuxThreads) pivot_assign_kernel(const PruneArgs p) {
  // A thread's best of its four pivots for each of its four centroids, then the warp's (the
  // lanes hold the same centroids): one atomic per centroid and warp, not per pair.
  unsigned long long best[4] = {~0ull, ~0ull, ~0ull, ~0ull};
  int row[4] = {-1, -1, -1, -1};
  pair_tile(p.c_raw_t, p.k, p.k, blockIdx.y * kPairA, p.pivots_t, p.groups, p.groups,
            blockIdx.x * kPairB, p.d, [&](int i, int c, int g, float s) {
              const unsigned long long key =
                  (static_cast<unsigned long long>(__float_as_uint(s)) << 32) | unsigned(g);
              best[i] = min(best[i], key);
              row[i] = c;
            });
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    unsigned long long v = best[i];
    for (int off = 16; off > 0; off /= 2) v = min(v, __shfl_xor_sync(0xffffffffu, v, off));
    const int c = __reduce_max_sync(0xffffffffu, row[i]);
    if (threadIdx.x % 32 == 0 && c >= 0) atomicMin(p.nearest + c, v);
  }
}

// Each centroid's group: its size, and the radius rounded up (a non-negative float's bits
// order as the float does, so an integer atomicMax is its maximum).
__global__ void group_radius_kernel(const PruneArgs p) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= p.k) return;
  const unsigned long long key = p.nearest[c];
  const int g = int(key & 0xffffffffu);
  const float s = __uint_as_float(unsigned(key >> 32));
  const Float32Bound bound(p.d);
  const float rho =
      s <= FLT_MAX ? __double2float_ru(sqrt(bound.upper(s)) * (1 + 1e-7)) : CUDART_INF_F;
  atomicMax(p.group_radius + g, __float_as_uint(rho));
  atomicAdd(p.group_count + g, 1);
}

// One block: group_start = exclusive sums of group_count (group_start[groups] = k), and the
// fill cursors.
__global__ void __launch_bounds__(kScanThreads) group_scan_kernel(const PruneArgs p) {
  __shared__ int warp_sum[kScanThreads / 32];
  const int tid = threadIdx.x, g = p.groups;
  const int per = (g + kScanThreads - 1) / kScanThreads;
  const int h0 = min(g, tid * per), h1 = min(g, h0 + per);
  int mine = 0;
  for (int h = h0; h < h1; ++h) mine += p.group_count[h];
  int total = 0;
  int before = block_exclusive_sum<kScanThreads>(mine, warp_sum, &total);
  for (int h = h0; h < h1; ++h) {
    p.group_start[h] = before;
    p.group_fill[h] = before;
    before += p.group_count[h];
  }
  if (tid == 0) p.group_start[g] = total;
}

__global__ void group_fill_kernel(const PruneArgs p) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= p.k) return;
  const int g = int(p.nearest[c] & 0xffffffffu);
  p.members[atomicAdd(p.group_fill + g, 1)] = c;
}

// 1.5 lists' worth of pivots. The count is about Poisson with mean candidates / kPivotStride:
// a label with 350 candidates exceeds it with probability 2e-4, one with 208 (the benchmark's
// well-separated clusters at K 65536) 3e-8, one with 1024 0.91.
constexpr int kCrowdedPivots = 3 * kPruneMaxCands / (2 * kPivotStride);

// A block per group g; its members are labels, kSmallRows at a time (pair_block). The groups
// that may hold a candidate of some label of g: |p_g - p_h| - rho_g - rho_h <= the largest
// reach (2R) of g's labels (the triangle inequality twice); of those, the groups that one of
// the kSmallRows labels reaches, |a - p_h| - rho_h <= reach_a; then their members are
// measured against the kSmallRows labels. Each member is read once for kSmallRows labels.
// A label with too many pivots within its reach (kCrowdedPivots) falls back unmeasured.
// Dynamic shared memory: 3 groups + 1 ints.
__global__ void __launch_bounds__(kThreads) group_candidates_kernel(const PruneArgs p) {
  extern __shared__ int gsh[];
  int* near = gsh;              // groups some label of g may reach
  int* kept = near + p.groups;  // of those, the groups the current labels reach
  int* off = kept + p.groups;   // their first member in the concatenation of their members
  __shared__ __align__(16) float ct[kChunk * kCStride];
  __shared__ __align__(16) float xr[kSmallRows * kChunk];
  __shared__ int ids[kThreads + 1], lab[kSmallRows], warp_sum[kWarps];
  __shared__ double reach_of[kSmallRows], r2_of[kSmallRows], red[kWarps];
  __shared__ int pivots_in[kSmallRows];
  __shared__ int nnear, nkept;
  const int g = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32, d = p.d;
  const int mb = p.group_start[g], me = p.group_start[g + 1];
  double reach = -1;
  for (int q = mb + tid; q < me; q += kThreads) {
    const double r2 = p.radius2[p.members[q]];
    if (r2 >= 0) reach = fmax(reach, sqrt(r2));
  }
  for (int o = 16; o > 0; o /= 2) reach = fmax(reach, __shfl_xor_sync(0xffffffffu, reach, o));
  if (lane == 0) red[warp] = reach;
  if (tid == 0) nnear = 0;
  __syncthreads();
  reach = red[0];
  for (int w = 1; w < kWarps; ++w) reach = fmax(reach, red[w]);
  if (reach < 0) return;  // no label of g has rows (or g has no members)
  const Float32Bound bound(d);
  auto rho = [&](int h) { return double(__uint_as_float(p.group_radius[h])); };
  const double rho_g = rho(g);
  const float* pg = p.c_raw + int64_t(g) * kPivotStride * d;
  for (int h = tid; h < p.groups; h += kThreads) {
    if (p.group_count[h] == 0) continue;
    float s = 0.f;
#pragma unroll 8
    for (int j = 0; j < d; ++j) {
      const float t = __fsub_rn(pg[j], p.pivots_t[int64_t(j) * p.groups + h]);
      s = __fmaf_rn(t, t, s);
    }
    const double lower = sqrt(fmax(bound.lower(s), 0.0)) - rho_g - rho(h);
    if (!(lower > reach)) near[atomicAdd(&nnear, 1)] = h;
  }
  __syncthreads();
  const int nn = nnear;
  auto label = [&](int r) { return lab[r]; };
  long long reached_pairs = 0;  // this thread's share of stats[6] * 16
  for (int r0 = mb; r0 < me; r0 += kSmallRows) {
    __syncthreads();  // the previous labels' passes are done
    if (tid < kSmallRows) {
      const int a = r0 + tid < me ? p.members[r0 + tid] : -1;
      const double r2 = a >= 0 ? p.radius2[a] : -1.0;
      lab[tid] = r2 >= 0 ? a : -1;  // a label without rows has no list
      reach_of[tid] = r2 >= 0 ? sqrt(r2) : -1.0;
      r2_of[tid] = r2;
      pivots_in[tid] = 0;
      if (tid == 0) nkept = 0;
    }
    // (pair_block synchronizes before it reads lab.) Which labels reach each group (a bit a
    // label, in off[] for now), and how many pivots each label has within its reach:
    pair_block(
        d, p.c_raw, label, p.c_raw, nn, [&](int u) { return near[u] * kPivotStride; }, xr, ct, ids,
        [&](int u, int, const float(&acc)[kSmallRows]) {
          const double rho_h = rho(near[u]);
          int reached = 0;
#pragma unroll
          for (int r = 0; r < kSmallRows; ++r) {
            if (lab[r] < 0) continue;
            const double lower2 = bound.lower(acc[r]);
            if (!(sqrt(fmax(lower2, 0.0)) - rho_h > reach_of[r])) reached |= 1 << r;
            if (!(lower2 > r2_of[r])) atomicAdd(&pivots_in[r], 1);  // a candidate itself
          }
          off[u] = reached;
        });
    __syncthreads();
    // The pivots are every kPivotStride-th centroid, a sample: a label with more than
    // kCrowdedPivots of them within reach has about kPivotStride times as many candidates,
    // more than its list holds (kPruneMaxCands), so its rows would most likely fall back
    // after its members were measured (against nearly all centroids where the groups cannot
    // tell near from far). It falls back now, without them.
    if (tid < kSmallRows && lab[tid] >= 0 && pivots_in[tid] > kCrowdedPivots) {
      p.list_count[lab[tid]] = kPruneMaxCands + 1;
      lab[tid] = -1;
    }
    __syncthreads();
    // The groups the other labels reach.
    int active = 0;
    for (int r = 0; r < kSmallRows; ++r) active |= lab[r] >= 0 ? 1 << r : 0;
    for (int u = tid; u < nn; u += kThreads) {
      const int reached = off[u] & active;
      if (reached) kept[atomicAdd(&nkept, 1)] = near[u];
      reached_pairs += __popc(reached) * p.group_count[near[u]];
    }
    __syncthreads();
    const int nk = nkept, per = (nk + kThreads - 1) / kThreads;
    const int q0 = min(nk, tid * per), q1 = min(nk, q0 + per);
    int mine = 0;
    for (int q = q0; q < q1; ++q) mine += p.group_count[kept[q]];
    int total = 0;
    int before = block_exclusive_sum<kThreads>(mine, warp_sum, &total);
    for (int q = q0; q < q1; ++q) {
      off[q] = before;
      before += p.group_count[kept[q]];
    }
    // Their members (pair_block synchronizes before it reads off):
    const int measured = pair_block(
        d, p.c_raw, label, p.c_raw, total,
        [&](int u) {
          int lo = 0, hi = nk - 1;  // the last kept group whose first member is <= u
          while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (off[mid] <= u) {
              lo = mid;
            } else {
              hi = mid - 1;
            }
          }
          return p.members[p.group_start[kept[lo]] + u - off[lo]];
        },
        xr, ct, ids,
        [&](int, int c, const float(&acc)[kSmallRows]) {
#pragma unroll
          for (int r = 0; r < kSmallRows; ++r)
            if (lab[r] >= 0) offer_candidate(p, bound, lab[r], c, acc[r]);
        },
        [&] {  // every label's list has overflowed: its rows fall back whatever else comes
          for (int r = 0; r < kSmallRows; ++r)
            if (lab[r] >= 0 && __ldcg(p.list_count + lab[r]) <= kPruneMaxCands) return false;
          return true;
        });
    if (tid == 0) atomicAdd(p.stats + 5, measured);
  }
  for (int o = 16; o > 0; o /= 2) reached_pairs += __shfl_xor_sync(0xffffffffu, reached_pairs, o);
  if (lane == 0 && reached_pairs) atomicAdd(p.stats + 6, int((reached_pairs + 15) / 16));
}

// Labels with at most this many candidates have their row tiles decided by the lean row
// kernel (a label is in its own list, so at most 7 candidates: group passes of NG <= 8, no
// narrowing, no pair_block), whose fewer registers let more blocks share an SM:
// the common case of a settled clustering, where the pass is bound by reading the rows.
constexpr int kLeanList = 7;

// 3. One block: the row tiles, label by label, kPruneTileRows rows at most each; first the
// tiles of labels the lean row kernel takes (tile_count[0] of them), then the others
// (tile_count[1] tiles in all); tile_count[2] starts the full row kernel's counter.
__global__ void __launch_bounds__(kScanThreads) prune_tiles_kernel(const PruneArgs p) {
  __shared__ int warp_sum[kScanThreads / 32];
  const int tid = threadIdx.x;
  const int per = (p.k + kScanThreads - 1) / kScanThreads;
  const int l0 = min(p.k, tid * per), l1 = min(p.k, l0 + per);
  auto tiles_of = [&](int a) {
    return (p.seg_end[a] - p.seg_begin[a] + kPruneTileRows - 1) / kPruneTileRows;
  };
  auto lean = [&](int a) { return p.small_tiles != 2 && p.list_count[a] <= kLeanList; };
  int mine_lean = 0, mine_full = 0;
  for (int a = l0; a < l1; ++a) (lean(a) ? mine_lean : mine_full) += tiles_of(a);
  int total_lean = 0, total_full = 0;
  int before_lean = block_exclusive_sum<kScanThreads>(mine_lean, warp_sum, &total_lean);
  int before_full =
      total_lean + block_exclusive_sum<kScanThreads>(mine_full, warp_sum, &total_full);
  for (int a = l0; a < l1; ++a) {
    const int b = p.seg_begin[a], n = tiles_of(a);
    int& at = lean(a) ? before_lean : before_full;
    for (int t = 0; t < n; ++t, ++at) {
      p.tiles[2 * at] = a;
      p.tiles[2 * at + 1] = b + t * kPruneTileRows;
    }
  }
  if (tid == 0) {
    p.tile_count[0] = total_lean;
    p.tile_count[1] = total_lean + total_full;
    p.tile_count[2] = total_lean;  // the full row kernel's next tile
  }
}

// The float32 distances of the tile's rows to candidates list[g0 .. g0 + ng), NG >= ng
// (padding repeats the last candidate), folded into each row's smallest (s0, i0) and second
// smallest s1. kAnchor64: list[g0] is the row's previous label a, and d64 gets
// detail::exact_l2(x, a) too (the same chain: coordinates ascending, zero padding adds
// fma(0, 0, acc) = acc). Each chunk of coordinates is loaded into registers while the
// previous one is computed on. Called by every thread of the block (it synchronizes).
template <int NG, bool kAnchor64>
__device__ __forceinline__ void group_pass(const PruneArgs& p, const int* list, int g0, int ng,
                                           const int* rows_of, float* xs, float (*cs)[kChunk],
                                           int row, float& s0, int& i0, float& s1, bool& bad,
                                           double& d64) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, d = p.d;
  constexpr int kCShare = (NG * kChunk + kThreads - 1) / kThreads;
  float px[kRowsPerThread], pc[kCShare];
  auto load = [&](int j0) {
    const int jn = min(kChunk, d - j0);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int rr = rows_of[warp + kWarps * i];
      px[i] = (rr >= 0 && lane < jn) ? p.x[int64_t(rr) * d + j0 + lane] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kCShare; ++i) {
      const int q = tid + i * kThreads, u = q / kChunk, jj = q % kChunk;
      const int c = list[g0 + min(u, ng - 1)];
      pc[i] = (u < NG && jj < jn) ? p.c_raw[int64_t(c) * d + j0 + jj] : 0.f;
    }
  };
  float acc[NG];
#pragma unroll
  for (int u = 0; u < NG; ++u) acc[u] = 0.f;
  load(0);
  for (int j0 = 0; j0 < d; j0 += kChunk) {
    __syncthreads();  // the previous chunk is consumed
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) xs[(warp + kWarps * i) * kXStride + lane] = px[i];
#pragma unroll
    for (int i = 0; i < kCShare; ++i) {
      const int q = tid + i * kThreads;
      if (q < NG * kChunk) cs[q / kChunk][q % kChunk] = pc[i];
    }
    __syncthreads();
    if (j0 + kChunk < d) load(j0 + kChunk);
    if (row >= 0) {
      const float* xr = xs + tid * kXStride;
#pragma unroll
      for (int jj = 0; jj < kChunk; jj += 4) {
        const float4 xv = *reinterpret_cast<const float4*>(xr + jj);
        if constexpr (kAnchor64) {
          const float4 av = *reinterpret_cast<const float4*>(&cs[0][jj]);
          double t = __dsub_rn(double(xv.x), double(av.x));
          d64 = __fma_rn(t, t, d64);
          t = __dsub_rn(double(xv.y), double(av.y));
          d64 = __fma_rn(t, t, d64);
          t = __dsub_rn(double(xv.z), double(av.z));
          d64 = __fma_rn(t, t, d64);
          t = __dsub_rn(double(xv.w), double(av.w));
          d64 = __fma_rn(t, t, d64);
        }
#pragma unroll
        for (int u = 0; u < NG; ++u) {
          const float4 cv = *reinterpret_cast<const float4*>(&cs[u][jj]);
          float t = __fsub_rn(xv.x, cv.x);
          acc[u] = __fmaf_rn(t, t, acc[u]);
          t = __fsub_rn(xv.y, cv.y);
          acc[u] = __fmaf_rn(t, t, acc[u]);
          t = __fsub_rn(xv.z, cv.z);
          acc[u] = __fmaf_rn(t, t, acc[u]);
          t = __fsub_rn(xv.w, cv.w);
          acc[u] = __fmaf_rn(t, t, acc[u]);
        }
      }
    }
  }
  if (row >= 0) {
#pragma unroll
    for (int u = 0; u < NG; ++u) {
      if (u < ng) {
        const float v = acc[u];
        if (v != v) {
          bad = true;  // not reachable from finite data; the row is then decided in float64
        } else if (v < s0) {
          s1 = s0;
          s0 = v;
          i0 = list[g0 + u];
        } else if (v < s1) {
          s1 = v;
        }
      }
    }
  }
}

// One group pass over ng <= kMaxNG candidates, with the smallest NG of 4, 8, 16, 32 that holds
// them (kMaxNG bounds the passes a kernel instantiates, and so its registers).
template <int kMaxNG, bool kAnchor64>
__device__ __forceinline__ void group_pass_upto(const PruneArgs& p, const int* list, int g0, int ng,
                                                const int* rows_of, float* xs, float (*cs)[kChunk],
                                                int row, float& s0, int& i0, float& s1, bool& bad,
                                                double& d64) {
  if (ng <= 4) {
    group_pass<4, kAnchor64>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    return;
  }
  if constexpr (kMaxNG >= 8) {
    if (kMaxNG == 8 || ng <= 8) {
      group_pass<8, kAnchor64>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
      return;
    }
  }
  if constexpr (kMaxNG >= 16) {
    if (kMaxNG == 16 || ng <= 16) {
      group_pass<16, kAnchor64>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
      return;
    }
  }
  if constexpr (kMaxNG >= 32)
    group_pass<32, kAnchor64>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
}

// Group passes of kMaxNG over list[g0 .. nc) (kAnchor64 for the first, whose list[g0] is the
// label).
template <bool kAnchor64, int kMaxNG = kGroup>
__device__ __forceinline__ void groups(const PruneArgs& p, const int* list, int g0, int nc,
                                       const int* rows_of, float* xs, float (*cs)[kChunk], int row,
                                       float& s0, int& i0, float& s1, bool& bad, double& d64) {
  for (bool first = true; g0 < nc; g0 += kMaxNG, first = false) {
    const int ng = min(kMaxNG, nc - g0);
    if (kAnchor64 && first) {
      group_pass_upto<kMaxNG, true>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    } else {
      group_pass_upto<kMaxNG, false>(p, list, g0, ng, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    }
  }
}

// Folds (o0, oi, o1) into a row's smallest value s0, its candidate i0 and second smallest s1
// (equal smallest values: the lower index, and s1 = s0, which certifies nothing).
__device__ __forceinline__ void fold_best(float& s0, int& i0, float& s1, float o0, int oi,
                                          float o1) {
  const float n1 = fminf(fmaxf(s0, o0), fminf(s1, o1));
  if (o0 < s0 || (o0 == s0 && oi < i0)) {
    s0 = o0;
    i0 = oi;
  }
  s1 = n1;
}

// Whether a row tile of count rows evaluates ncand candidates with pair_block (a thread a
// candidate, kSmallRows rows a step) rather than group passes (a thread a row, all
// kThreads rows a step): the one with fewer thread-candidate-row slots.
__device__ __forceinline__ bool small_tile(const PruneArgs& p, int count, int ncand) {
  if (ncand == 0) return false;  // nothing to measure (pair_block would not synchronize)
  if (p.small_tiles != 1) return p.small_tiles == 2;
  const int rest = ncand % kGroup;
  const int passes = ncand - rest +
                     (rest == 0    ? 0
                      : rest <= 4  ? 4
                      : rest <= 8  ? 8
                      : rest <= 16 ? 16
                                   : kGroup);
  const int small = (count + kSmallRows - 1) / kSmallRows * ((ncand + kThreads - 1) / kThreads) *
                    kThreads * kSmallRows;
  return small < passes * kThreads;
}

// Shared scratch of small_tile_pass.
struct SmallTileScratch {
  float red0[kWarps][kSmallRows], red1[kWarps][kSmallRows];
  int redi[kWarps][kSmallRows];
  unsigned redbad[kWarps];
  int ids[kThreads + 1];
  float s0[kThreads], s1[kThreads];  // per row of the tile
  int i0[kThreads];
  bool bad[kThreads];
};

// A row tile's smallest, its candidate and second smallest over list[c0 .. nc), through
// pair_block, into sh.s0 / i0 / s1 / bad for each of its count rows.
__device__ __forceinline__ void small_tile_pass(const PruneArgs& p, const int* list, int c0, int nc,
                                                const int* rows_of, int count, float* xr, float* ct,
                                                SmallTileScratch& sh) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int r0 = 0; r0 < count; r0 += kSmallRows) {
    float b0[kSmallRows], b1[kSmallRows];
    int bi[kSmallRows];
#pragma unroll
    for (int r = 0; r < kSmallRows; ++r) {
      b0[r] = b1[r] = CUDART_INF_F;
      bi[r] = INT_MAX;
    }
    unsigned bad = 0;
    pair_block(
        p.d, p.x, [&](int r) { return r0 + r < count ? rows_of[r0 + r] : -1; }, p.c_raw, nc - c0,
        [&](int u) { return list[c0 + u]; }, xr, ct, sh.ids,
        [&](int, int c, const float(&acc)[kSmallRows]) {
#pragma unroll
          for (int r = 0; r < kSmallRows; ++r) {
            const float v = acc[r];
            if (v != v) {
              bad |= 1u << r;  // as in group_pass
            } else if (v < b0[r]) {
              b1[r] = b0[r];
              b0[r] = v;
              bi[r] = c;
            } else if (v < b1[r]) {
              b1[r] = v;
            }
          }
        });
#pragma unroll
    for (int r = 0; r < kSmallRows; ++r) {
      for (int o = 16; o > 0; o /= 2)
        fold_best(b0[r], bi[r], b1[r], __shfl_xor_sync(0xffffffffu, b0[r], o),
                  __shfl_xor_sync(0xffffffffu, bi[r], o), __shfl_xor_sync(0xffffffffu, b1[r], o));
      if (lane == 0) {
        sh.red0[warp][r] = b0[r];
        sh.redi[warp][r] = bi[r];
        sh.red1[warp][r] = b1[r];
      }
    }
    bad = __reduce_or_sync(0xffffffffu, bad);
    if (lane == 0) sh.redbad[warp] = bad;
    __syncthreads();
    if (tid < kSmallRows && r0 + tid < count) {
      float s0 = sh.red0[0][tid], s1 = sh.red1[0][tid];
      int i0 = sh.redi[0][tid];
      bool any_bad = (sh.redbad[0] >> tid) & 1;
      for (int w = 1; w < kWarps; ++w) {
        fold_best(s0, i0, s1, sh.red0[w][tid], sh.redi[w][tid], sh.red1[w][tid]);
        any_bad |= (sh.redbad[w] >> tid) & 1;
      }
      sh.s0[r0 + tid] = s0;
      sh.i0[r0 + tid] = i0;
      sh.s1[r0 + tid] = s1;
      sh.bad[r0 + tid] = any_bad;
    }
    // (the next step's pair_block synchronizes before red* are written again)
  }
}

// A label's list longer than this is first narrowed to the row tile's own radius (one more
// pass over the tile's rows, measuring them against the label alone).
constexpr int kNarrowFrom = 32;

// 4. Row tile t of label a: its candidates, each row's label, and the finalize of the rows.
// Called by every thread of the block; it synchronizes, and returns with the block.
template <bool kLean>
__device__ __forceinline__ void decide_tile(const PruneArgs& p, int t) {
  __shared__ __align__(16) float xs[kThreads * kXStride];
  __shared__ __align__(16) float cs[kGroup][kChunk];
  __shared__ int list[kPruneMaxCands];
  __shared__ int rows_of[kThreads], unc[kThreads], far[kThreads], far_label[kThreads];
  __shared__ double red[kWarps];
  __shared__ SmallTileScratch small;
  __shared__ int nc, nunc, nfar, base, changed;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, d = p.d;
  const int a = p.tiles[2 * t], first = p.tiles[2 * t + 1];
  const int count = min(kThreads, p.seg_end[a] - first);
  const int nl = p.list_count[a];
  const int row = tid < count ? p.sorted_ids[first + tid] : -1;
  rows_of[tid] = row;
  if (tid == 0) {
    list[0] = a;  // the label itself: first, so that its float64 distance comes along
    nc = 1;
    nunc = 0;
    nfar = 0;
    changed = 0;
  }
  __syncthreads();
  float s0 = CUDART_INF_F, s1 = CUDART_INF_F;
  int i0 = INT_MAX;
  bool bad = false;
  double d64 = 0;  // exact_l2(x, a), when have_d64
  bool have_d64 = true;
  bool fall_back = nl > kPruneMaxCands;  // the label's list overflowed
  // Candidates list[c0 .. nc) folded into each row's s0, i0, s1 (the row's d64 too with
  // kAnchor64, list[c0] = a); small tiles with many candidates go through pair_block.
  auto evaluate = [&](int c0, bool anchor64) {
    if constexpr (kLean) {
      groups<true, 8>(p, list, c0, nc, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    } else if (small_tile(p, count, nc - c0)) {
      small_tile_pass(p, list, c0, nc, rows_of, count, cs[0], xs, small);
      __syncthreads();
      if (row >= 0) {
        fold_best(s0, i0, s1, small.s0[tid], small.i0[tid], small.s1[tid]);
        bad |= small.bad[tid];
      }
      have_d64 = !anchor64;  // pair_block measures no float64 value; the narrowing pass's stays
    } else if (anchor64) {
      groups<true>(p, list, c0, nc, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    } else {
      groups<false>(p, list, c0, nc, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    }
  };
  if (!kLean && !fall_back && nl > kNarrowFrom) {
    // |x - a| of each row (float64), their largest: the tile's radius, tighter than the
    // label's (which adds how far a moved); then the candidates it leaves.
    group_pass<1, true>(p, list, 0, 1, rows_of, xs, cs, row, s0, i0, s1, bad, d64);
    double r2 = row >= 0 ? d64 : 0.0;
    for (int off = 16; off > 0; off /= 2) r2 = fmax(r2, __shfl_xor_sync(0xffffffffu, r2, off));
    if (lane == 0) red[warp] = r2;
    __syncthreads();
    r2 = red[0];
    for (int w = 1; w < kWarps; ++w) r2 = fmax(r2, red[w]);
    const double T2 = 4 * __dmul_rn(r2, 1 + 1e-9) * (1 + 1e-5);
    for (int q = tid; q < nl; q += kThreads) {
      const int c = p.lists[int64_t(a) * kPruneMaxCands + q];
      if (c != a && !(double(p.list_lower[int64_t(a) * kPruneMaxCands + q]) > T2)) {
        const int pos = atomicAdd(&nc, 1);  // <= nl: a is in its own list (lower bound < 0)
        if (pos < kPruneMaxCands) list[pos] = c;
      }
    }
    __syncthreads();
    fall_back = nc > p.max_cands;
    if (!fall_back) evaluate(1, false);
  } else if (!fall_back) {
    for (int q = tid; q < nl; q += kThreads) {
      const int c = p.lists[int64_t(a) * kPruneMaxCands + q];
      if (c != a) {
        const int pos = atomicAdd(&nc, 1);
        if (pos < kPruneMaxCands) list[pos] = c;
      }
    }
    __syncthreads();
    fall_back = nc > p.max_cands;
    if (!fall_back) evaluate(0, true);
  }
  if (fall_back) {  // too many candidates to be worth it: the caller's pass decides
    if (tid == 0) {
      base = atomicAdd(p.fallback_count, count);
      atomicAdd(p.stats + 3, count);
    }
    __syncthreads();
    if (row >= 0) p.fallback_list[base + tid] = row;
    return;
  }
  // Outputs of a settled row, as launch_finalize writes them.
  auto finish = [&](int r, int label, double dist) {
    p.cand[r] = label;
    if (p.labels[r] != label) atomicAdd(&changed, 1);
    p.labels[r] = label;
    p.dist64[r] = dist;
    if (p.dist) p.dist[r] = __double2float_rn(dist);
  };
  if (row >= 0) {
    const Float32Bound bound(d);
    // Every other candidate's true distance is at least bound.lower(s1); the best's at most
    // bound.upper(s0); 1e-9 more keeps the float64 formula's order the same. A single
    // candidate is the label whatever its value.
    if (nc == 1 || (!bad && s0 <= FLT_MAX && bound.lower(s1) > bound.upper(s0) * (1 + 1e-9))) {
      const int label = nc == 1 ? a : i0;  // i0 is unset when a's float32 value overflowed
      if (label == a && have_d64) {
        finish(row, a, d64);
      } else {
        const int q = atomicAdd(&nfar, 1);  // its distance below
        far[q] = row;
        far_label[q] = label;
      }
    } else {
      unc[atomicAdd(&nunc, 1)] = row;
    }
  }
  __syncthreads();
  // Uncertified rows: the float64 formula over every candidate, a warp a row; the winner's
  // value is the row's distance.
  for (int q = warp; q < nunc; q += kWarps) {
    const int r = unc[q];
    const float* xr = p.x + int64_t(r) * d;
    double bv = CUDART_INF;
    int bi = INT_MAX;
    for (int u = lane; u < nc; u += 32) {
      const int c = list[u];
      const float* cr = p.c_raw + int64_t(c) * d;
      double acc = 0;
      for (int j = 0; j < d; ++j) {
        const double tj = __dsub_rn(double(xr[j]), double(cr[j]));
        acc = __fma_rn(tj, tj, acc);
      }
      lex_min(bv, bi, acc, c);
    }
    for (int off = 16; off > 0; off /= 2)
      lex_min(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off), __shfl_xor_sync(0xffffffffu, bi, off));
    if (lane == 0) finish(r, bi, bv);
  }
  // Certified rows that left a (or stay without d64): their float64 distance to the label, a
  // thread a row.
  for (int q = tid; q < nfar; q += kThreads) {
    const int r = far[q], c = far_label[q];
    const float* xr = p.x + int64_t(r) * d;
    const float* cr = p.c_raw + int64_t(c) * d;
    double acc = 0;
    for (int j = 0; j < d; ++j) {
      const double tj = __dsub_rn(double(xr[j]), double(cr[j]));
      acc = __fma_rn(tj, tj, acc);
    }
    finish(r, c, acc);
  }
  __syncthreads();
  if (tid == 0) {
    atomicAdd(p.stats, count);
    atomicAdd(p.stats + 1, nc);
    atomicAdd(p.stats + 2, nunc);
    atomicAdd(p.stats + 4, 1);
    if (changed) atomicAdd(p.changed, changed);
  }
}

// Two launches: the lean row kernel takes the first tile_count[0] tiles, a block a tile; the
// full one the rest, as many blocks as fit the device at once, each taking the next tile from
// a counter (tile_count[2]) until none is left: few blocks start only to find nothing to do
// in a settled clustering, and tiles of uneven cost spread evenly. Registers: 86 for the lean
// kernel (5 blocks an SM), at most 170 for the full one (3).
__global__ void __launch_bounds__(kThreads) prune_rows_lean_kernel(const PruneArgs p) {
  if (int(blockIdx.x) < p.tile_count[0]) decide_tile<true>(p, blockIdx.x);
}

__global__ void __launch_bounds__(kThreads, 3) prune_rows_kernel(const PruneArgs p) {
  __shared__ int next;
  for (;;) {
    if (threadIdx.x == 0) next = atomicAdd(p.tile_count + 2, 1);
    __syncthreads();
    const int t = next;
    if (t >= p.tile_count[1]) break;  // the same t for the whole block
    decide_tile<false>(p, t);
    __syncthreads();  // the tile's shared scratch, and next, are read before they are rewritten
  }
}

}  // namespace

void launch_prune(const PruneArgs& p, cudaStream_t stream) {
  FLASHKM_THROW_IF_NOT(
      p.d >= 1 && p.d <= kPruneMaxDim && p.max_cands >= 1 && p.max_cands <= kPruneMaxCands,
      "pruning pass: d=%d (1..%d) or max_cands=%d (1..%d) out of range", p.d, kPruneMaxDim,
      p.max_cands, kPruneMaxCands);
  FLASHKM_THROW_IF_NOT(
      p.groups >= 0 && p.groups <= kPruneMaxGroups && int64_t(p.groups - 1) * kPivotStride < p.k,
      "pruning pass: %d pivot groups for k=%d (at most %d, pivots every %d)", p.groups, p.k,
      kPruneMaxGroups, kPivotStride);
  if (p.rows == 0 || p.k == 0) return;
  prune_radius_kernel<<<unsigned(p.k), kAuxThreads, 0, stream>>>(p);
  FLASHKM_CUDA_CHECK_LAUNCH(prune_radius_kernel);
  if (p.groups == 0) {
    const dim3 grid(unsigned((p.k + kPairB - 1) / kPairB), unsigned((p.k + kPairA - 1) / kPairA));
    prune_candidates_kernel<<<grid, kAuxThreads, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(prune_candidates_kernel);
  } else {
    const int64_t copy = std::max<int64_t>(int64_t(p.d) * p.groups, p.k);
    pivot_copy_kernel<<<unsigned((copy + 255) / 256), 256, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(pivot_copy_kernel);
    const dim3 grid(unsigned((p.groups + kPairB - 1) / kPairB),
                    unsigned((p.k + kPairA - 1) / kPairA));
    pivot_assign_kernel<<<grid, kAuxThreads, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(pivot_assign_kernel);
    group_radius_kernel<<<unsigned((p.k + 255) / 256), 256, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(group_radius_kernel);
    group_scan_kernel<<<1, kScanThreads, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(group_scan_kernel);
    group_fill_kernel<<<unsigned((p.k + 255) / 256), 256, 0, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(group_fill_kernel);
    const int smem = int(sizeof(int)) * (3 * p.groups + 1);
    FLASHKM_CUDA_CHECK(cudaFuncSetAttribute(group_candidates_kernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    group_candidates_kernel<<<unsigned(p.groups), kThreads, smem, stream>>>(p);
    FLASHKM_CUDA_CHECK_LAUNCH(group_candidates_kernel);
  }
  prune_tiles_kernel<<<1, kScanThreads, 0, stream>>>(p);
  FLASHKM_CUDA_CHECK_LAUNCH(prune_tiles_kernel);
  prune_rows_lean_kernel<<<unsigned(prune_max_tiles(p.rows, p.k)), kThreads, 0, stream>>>(p);
  FLASHKM_CUDA_CHECK_LAUNCH(prune_rows_lean_kernel);
  int per_sm = 0;
  FLASHKM_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, prune_rows_kernel, kThreads, 0));
  const int64_t full_blocks = std::min<int64_t>(
      int64_t(std::max(1, per_sm)) * std::max(1, p.sm_count), prune_max_tiles(p.rows, p.k));
  prune_rows_kernel<<<unsigned(full_blocks), kThreads, 0, stream>>>(p);
  FLASHKM_CUDA_CHECK_LAUNCH(prune_rows_kernel);
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
