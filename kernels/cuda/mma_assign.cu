// FlashAssign on fp16 tensor cores (mma.sync m16n8k16, fp32 accumulation), certified.
//
// Each centred coordinate v = float(x - shift) * 2^e (a power-of-two scale, exact, chosen so
// |v| < 2^14) is split into hi = fp16(v) and lo = fp16(v - hi). Exact precision accumulates
// hi.hi + hi.lo + lo.hi per 16-wide k step, in that order, into one fp32 accumulator: the
// dropped terms are O(2^-22) relative, so the certification bound stays close to the fp32
// FFMA one and few rows fall through to the FFMA pass. Fast precision uses hi.hi alone.
#include <cuda_fp16.h>
#include <math_constants.h>

#include <climits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/mma_common.cuh"
#include "kernels/cuda/tile_config.h"
#include "kernels/cuda/topk.cuh"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

// Largest scaled magnitude: fp16 holds up to 65504, and 2^14 leaves room for hi's rounding.
constexpr int kScaleTarget = 14;

__global__ void split_rows_kernel(const float* __restrict__ x, int64_t rows, int d,
                                  const double* __restrict__ shift, int dpad, int scale_exp,
                                  __half* __restrict__ hi, __half* __restrict__ lo) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= rows * dpad) return;
  const int64_t i = e / dpad;
  const int j = int(e % dpad);
  const float v = j < d ? ldexpf(centred(x[i * d + j], shift[j]), scale_exp) : 0.f;
  split(v, hi + e, lo + e);
}

// A warp a row: hi as split_rows_kernel makes it, the norm of hi (unscaled) and the row's
// distance from it in float64, rounded up.
__global__ void fp16_rows_kernel(const float* __restrict__ x, int64_t rows, int d,
                                 const double* __restrict__ shift, int dpad, int scale_exp,
                                 __half* __restrict__ hi, double* __restrict__ norm,
                                 float* __restrict__ row_err) {
  const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (i >= rows) return;
  double e2 = 0, n2 = 0;
  for (int j = lane; j < dpad; j += 32) {
    __half h = __float2half_rn(0.f), unused;
    if (j < d) {
      const float c = centred(x[i * d + j], shift[j]);
      split(ldexpf(c, scale_exp), &h, &unused);
      const double t = ldexp(double(__half2float(h)), -scale_exp);  // exact
      const double r = __dsub_rn(double(c), t);
      e2 = __fma_rn(r, r, e2);
      n2 = __fma_rn(t, t, n2);
    }
    hi[i * dpad + j] = h;
  }
  for (int o = 16; o > 0; o >>= 1) {
    e2 = __dadd_rn(e2, __shfl_xor_sync(0xffffffffu, e2, o));
    n2 = __dadd_rn(n2, __shfl_xor_sync(0xffffffffu, n2, o));
  }
  // The sums of squares are within (d + 32) 2^-53 of exact (d < 2^20): 2^-30 more covers
  // the error; the norm (the bounds' X, taken as exact there like row_norms's) is rounded
  // to nearest as row_norms rounds.
  if (lane == 0) {
    row_err[i] = __double2float_ru(__dsqrt_ru(__dmul_ru(e2, 1.0 + 0x1p-30)));
    norm[i] = __dsqrt_rn(n2);
  }
}

__global__ void centroid_max_abs_kernel(const float* __restrict__ shifted_t, int k, int d, int kpad,
                                        float* __restrict__ max_abs) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  float m = 0;
  for (int t = 0; t < d; ++t) m = fmaxf(m, fabsf(shifted_t[int64_t(t) * kpad + c]));
  max_abs[c] = m;
}

__global__ void centroid_scale_kernel(const float* __restrict__ max_abs, int k,
                                      int* __restrict__ scale_exp) {
  __shared__ float part[256];
  float m = 0;
  for (int c = threadIdx.x; c < k; c += blockDim.x) m = fmaxf(m, max_abs[c]);
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] = fmaxf(part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    int e = 0;
    if (part[0] > 0) frexpf(part[0], &e);  // part[0] < 2^e
    *scale_exp = part[0] > 0 ? kScaleTarget - e : 0;
  }
}

__global__ void split_centroids_kernel(const float* __restrict__ shifted_t, int d, int kpad,
                                       int dpad, const int* __restrict__ scale_exp,
                                       __half* __restrict__ hi, __half* __restrict__ lo) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= int64_t(kpad) * dpad) return;
  const int64_t c = e / dpad;
  const int t = int(e % dpad);
  const float v = t < d ? ldexpf(shifted_t[int64_t(t) * kpad + c], *scale_exp) : 0.f;
  split(v, hi + e, lo + e);
}

// Not volatile: a pure register operation, which the compiler may interleave with the
// independent mma of other tiles (back-to-back dependent mma stall on their latency).
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Shared-memory layout of one pipeline stage: P parts (hi, lo) of a BM x BK row tile and a
// BN x BK centroid tile, rows padded to LD halves (144 bytes: the 8 rows an ldmatrix reads
// start in distinct 16-byte bank groups).
template <int BM, int BN, int P>
struct MmaStage {
  static constexpr int BK = kMmaDepth;
  static constexpr int LD = BK + 8;
  __half a[P][BM][LD];
  __half b[P][BN][LD];
};

template <int BM, int BN, int WM, int WN, bool kThree>
struct MmaKernelTraits {
  static constexpr int kThreads = WM * WN * 32;
  static constexpr int kParts = kThree ? 2 : 1;
  // Exact: 3 stages of 72 KB fill the 227 KB a block may hold (its 212 registers allow one
  // block per SM anyway). Fast: 3 stages of 36 KB, so that two blocks share an SM.
  static constexpr int kStages = 3;
  static constexpr int kMinBlocks = kThree ? 1 : 2;
  using Stage = MmaStage<BM, BN, kParts>;
  static constexpr size_t kSmemBytes = sizeof(Stage) * kStages;
};

// A block of WM x WN warps owns BM points and walks the flattened sequence of (centroid
// block, k step) tiles through a kStages-deep cp.async pipeline; warp (wm, wn) computes a
// (BM/WM) x (BN/WN) tile of each BN-centroid block with m16n8k16 mma, k ascending in steps of
// 16. A thread's columns arrive in ascending order and are folded like the FFMA kernel's,
// then merged across the 4 lanes of a row group and across the WN warps.
template <int BM, int BN, int WM, int WN, bool kThree>
__global__ void __launch_bounds__(WM* WN * 32,
                                  (MmaKernelTraits<BM, BN, WM, WN, kThree>::kMinBlocks))
    mma_assign_kernel(const AssignArgs a, const SplitRows xs, const SplitCentroids cs) {
  using Traits = MmaKernelTraits<BM, BN, WM, WN, kThree>;
  using Stage = typename Traits::Stage;
  constexpr int NTH = Traits::kThreads, P = Traits::kParts, S = Traits::kStages;
  constexpr int WTM = BM / WM, WTN = BN / WN;
  constexpr int MT = WTM / 16, NT = WTN / 8;
  constexpr int BK = kMmaDepth;
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be whole ldmatrix tiles");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Stage* stages = reinterpret_cast<Stage*>(smem_raw);
  // After the main loop the stages are free; the cross-warp merge reuses them.
  // Fast keeps only the best candidate: nothing is certified or fixed up.
  using RowTop = TopK<kThree ? kTop : 1>;
  static_assert(sizeof(RowTop) * WN * BM <= sizeof(Stage) * S, "merge area must fit");
  RowTop(*merged)[BM] = reinterpret_cast<RowTop(*)[BM]>(smem_raw);

  const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
  const int wm = wid / WN, wn = wid % WN, g = lane / 4, t = lane % 4;
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int k = a.c.k, dpad = xs.dpad;
  const int ksteps = dpad / BK, ntiles = (k + BN - 1) / BN, total = ntiles * ksteps;
  const int ec = *cs.scale_exp;
  const float alpha = ldexpf(a.inner_product ? -1.f : -2.f, -(xs.scale_exp + ec));
  // Rows stored as fp16 alone (KMeansParams::device_rows) have no lo array: zeros.
  const bool lo_rows = xs.lo != nullptr;
  const __half* xsrc[2] = {static_cast<const __half*>(xs.hi),
                           static_cast<const __half*>(lo_rows ? xs.lo : xs.hi)};
  const __half* csrc[2] = {static_cast<const __half*>(cs.hi), static_cast<const __half*>(cs.lo)};

  auto issue = [&](int tile) {
    if (tile < total) {
      Stage& st = stages[tile % S];
      const int n0 = (tile / ksteps) * BN, k0 = (tile % ksteps) * BK;
#pragma unroll
      for (int p = 0; p < P; ++p) {
        for (int e = tid; e < BM * (BK / 8); e += NTH) {
          const int r = e / (BK / 8), q = e % (BK / 8);
          const int64_t row = m0 + r;
          const bool ok = row < a.rows;
          cp_async16(&st.a[p][r][q * 8], xsrc[p] + (ok ? row : 0) * dpad + k0 + q * 8,
                     ok && (p == 0 || lo_rows));
        }
        for (int e = tid; e < BN * (BK / 8); e += NTH) {
          const int c = e / (BK / 8), q = e % (BK / 8);
          cp_async16(&st.b[p][c][q * 8], csrc[p] + int64_t(n0 + c) * dpad + k0 + q * 8, true);
        }
      }
    }
    cp_async_commit();  // possibly empty: keeps one group per tile for the wait count
  };

  RowTop top[MT * 2];
#pragma unroll
  for (int r = 0; r < MT * 2; ++r) top[r].clear();
  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

#pragma unroll
  for (int s = 0; s < S - 1; ++s) issue(s);

  for (int tile = 0; tile < total; ++tile) {
    cp_async_wait<S - 2>();
    __syncthreads();  // tile's stage is complete for all; stage tile-1 is free
    issue(tile + S - 1);
    const Stage& st = stages[tile % S];
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[P][MT][4], bf[P][NT][2];
#pragma unroll
      for (int p = 0; p < P; ++p) {
#pragma unroll
        for (int i = 0; i < MT; ++i)
          ldmatrix_x4(af[p][i], &st.a[p][wm * WTM + i * 16 + lane % 16][kk + (lane / 16) * 8]);
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
          uint32_t r4[4];
          ldmatrix_x4(
              r4,
              &st.b[p][wn * WTN + j * 8 + lane % 8 + (lane / 16) * 8][kk + ((lane / 8) % 2) * 8]);
          bf[p][j][0] = r4[0];
          bf[p][j][1] = r4[1];
          bf[p][j + 1][0] = r4[2];
          bf[p][j + 1][1] = r4[3];
        }
      }
      // Product by product over all tiles, so that consecutive mma are independent; each
      // accumulator still sees hi.hi, hi.lo, lo.hi in that order.
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma16816(acc[i][j], af[0][i], bf[0][j]);
      if (kThree) {
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NT; ++j) mma16816(acc[i][j], af[0][i], bf[P - 1][j]);
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NT; ++j) mma16816(acc[i][j], af[P - 1][i], bf[0][j]);
      }
    }

    if (tile % ksteps == ksteps - 1) {  // a centroid block is complete: fold and reset
      // Padding columns have beta = +inf, so their values never enter a row's state.
      const int nb = (tile / ksteps) * BN + wn * WTN + 2 * t;
      float beta[NT][2];
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int q = 0; q < 2; ++q) beta[j][q] = a.c.beta[nb + j * 8 + q];
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = 2 * i + h;
          float m = CUDART_INF_F;
#pragma unroll
          for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int q = 0; q < 2; ++q) {
              acc[i][j][2 * h + q] = __fmaf_rn(alpha, acc[i][j][2 * h + q], beta[j][q]);
              m = fminf(m, acc[i][j][2 * h + q]);
            }
          // Most blocks hold nothing below the row's last kept value: then folding them
          // (higher indices, so equal values lose) would change nothing, and is skipped.
          if (m < top[r].v[RowTop::kSize - 1]) {
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
              for (int q = 0; q < 2; ++q)
                top[r].insert_ascending(acc[i][j][2 * h + q], nb + j * 8 + q);
          }
        }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages before they hold merge lists

#pragma unroll
  for (int r = 0; r < MT * 2; ++r)
#pragma unroll
    for (int off = 1; off < 4; off *= 2) top[r].merge_lane(off);
  if (t == 0) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) merged[wn][wm * WTM + i * 16 + h * 8 + g] = top[2 * i + h];
  }
  __syncthreads();
  const bool certify = kThree && a.certify;
  const double C = certify ? *a.c.max_norm : 0;
  for (int r = tid; r < BM; r += NTH) {
    const int64_t row = m0 + r;
    if (row >= a.rows) continue;
    RowTop m = merged[0][r];
    for (int w = 1; w < WN; ++w)
#pragma unroll
      for (int s = 0; s < RowTop::kSize; ++s) m.insert(merged[w][r].v[s], merged[w][r].i[s]);
    const double X = certify ? a.xnorm[row] : 0;
    const double e =
        certify ? mma_bound(a.inner_product, false, a.d, dpad, X, C, xs.scale_exp, ec) : 0;
    route_row(a, row, m, e, X, C);
  }
}

template <int S, bool kThree>
void launch_mma_shape(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs,
                      cudaStream_t stream) {
  constexpr MmaTiles t = kMmaShapes[S];
  using Traits = MmaKernelTraits<t.rows, t.centroids, t.warps_m, t.warps_n, kThree>;
  auto kernel = mma_assign_kernel<t.rows, t.centroids, t.warps_m, t.warps_n, kThree>;
  // Raising the dynamic shared-memory limit is per kernel and idempotent; doing it at every
  // launch is cheaper than tracking which device saw it.
  FLASHKM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(Traits::kSmemBytes)));
  const int64_t blocks = (a.rows + t.rows - 1) / t.rows;
  kernel<<<unsigned(blocks), Traits::kThreads, Traits::kSmemBytes, stream>>>(a, xs, cs);
  FLASHKM_CUDA_CHECK_LAUNCH(mma_assign_kernel);
}

}  // namespace

void split_rows(const float* x, int64_t rows, int d, const double* shift, int dpad, int scale_exp,
                void* hi, void* lo, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t total = rows * dpad;
  split_rows_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(
      x, rows, d, shift, dpad, scale_exp, static_cast<__half*>(hi), static_cast<__half*>(lo));
  FLASHKM_CUDA_CHECK_LAUNCH(split_rows_kernel);
}

void fp16_rows(const float* x, int64_t rows, int d, const double* shift, int dpad, int scale_exp,
               void* hi, double* norm, float* row_err, cudaStream_t stream) {
  if (rows == 0) return;
  fp16_rows_kernel<<<unsigned((rows * 32 + 255) / 256), 256, 0, stream>>>(
      x, rows, d, shift, dpad, scale_exp, static_cast<__half*>(hi), norm, row_err);
  FLASHKM_CUDA_CHECK_LAUNCH(fp16_rows_kernel);
}

void split_centroids(const DeviceCentroids& c, int dpad, float* max_abs, int* scale_exp, void* hi,
                     void* lo, cudaStream_t stream) {
  centroid_max_abs_kernel<<<(c.k + 127) / 128, 128, 0, stream>>>(c.shifted_t, c.k, c.d, c.kpad,
                                                                 max_abs);
  FLASHKM_CUDA_CHECK_LAUNCH(centroid_max_abs_kernel);
  centroid_scale_kernel<<<1, 256, 0, stream>>>(max_abs, c.k, scale_exp);
  FLASHKM_CUDA_CHECK_LAUNCH(centroid_scale_kernel);
  const int64_t total = int64_t(c.kpad) * dpad;
  split_centroids_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(
      c.shifted_t, c.d, c.kpad, dpad, scale_exp, static_cast<__half*>(hi),
      static_cast<__half*>(lo));
  FLASHKM_CUDA_CHECK_LAUNCH(split_centroids_kernel);
}

int mma_scale_exp(float max_abs) {
  int e = 0;
  if (max_abs > 0) std::frexp(max_abs, &e);
  return max_abs > 0 ? kScaleTarget - e : 0;
}

void launch_mma_assign(int shape, const AssignArgs& a, const SplitRows& xs,
                       const SplitCentroids& cs, cudaStream_t stream) {
  static_assert(kNumMmaShapes == 2, "add the new shape to the switch below");
  if (a.rows == 0) return;
  const bool three = a.certify;
  switch (shape * 2 + (three ? 1 : 0)) {
    case 0:
      launch_mma_shape<0, false>(a, xs, cs, stream);
      break;
    case 1:
      launch_mma_shape<0, true>(a, xs, cs, stream);
      break;
    case 2:
      launch_mma_shape<1, false>(a, xs, cs, stream);
      break;
    case 3:
      launch_mma_shape<1, true>(a, xs, cs, stream);
      break;
    default:
      FLASHKM_THROW("tensor-core shape %d is not compiled (0..%d)", shape, kNumMmaShapes - 1);
  }
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
