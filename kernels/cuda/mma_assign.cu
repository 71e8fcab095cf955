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
#include "kernels/cuda/tile_config.h"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

// Largest scaled magnitude: fp16 holds up to 65504, and 2^14 leaves room for hi's rounding.
constexpr int kScaleTarget = 14;

__device__ __forceinline__ float centred(float x, double shift) {
  return __double2float_rn(__dsub_rn(double(x), shift));
}

__device__ __forceinline__ void split(float v, __half* hi, __half* lo) {
  const __half h = __float2half_rn(v);
  *hi = h;
  *lo = __float2half_rn(__fsub_rn(v, __half2float(h)));  // v - hi is exact in fp32
}

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

__global__ void centroid_max_abs_kernel(const float* __restrict__ shifted_t, int k, int d,
                                        int kpad, float* __restrict__ max_abs) {
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

// Bound on |fast value - (|x - c|^2 - |x'|^2)| (L2) or |fast value + x.c| (IP) for every
// centroid of a row, X = |x'|, C = max |c'| (unscaled, float64):
//  * splitting: with u = 2^-11 and a = 2^-25 / 2^e the absolute rounding of fp16
//    subnormals, |lo| <= u X + a sqrt(d) =: Lx and the residual v - hi - lo has norm
//    <= u^2 X + 2 a sqrt(d) =: Rx (same for c), so the three products miss at most
//    Lx Lc + Rx C + (X + Rx) Rc;
//  * accumulation: products of fp16 are exact in fp32; each of the 3 * dpad / 16 mma steps
//    rounds once, assumed within 2^-22 of the running sum of |products| (twice the unit
//    roundoff: tensor cores may truncate), bounded by (X + Lx + Rx)(C + Lc + Rc);
//  * then the float32 terms of the FFMA bound: beta's rounding, the final fma's rounding
//    and the centring (kernels/cpu/cpu_engine.cpp, certify_bound).
// The 1.01 factor covers second-order terms (relative size <= 2^-10) and the float64
// evaluation.
__device__ double mma_bound(bool ip, int d, int dpad, double X, double C, int ex, int ec) {
  const double u = 4.8828125e-04;             // 2^-11
  const double u32 = 5.9604644775390625e-08;  // 2^-24
  const double sd = sqrt(double(d));
  const double ax = ldexp(2.98023223876953125e-08, -ex);  // 2^-25 unscaled
  const double ac = ldexp(2.98023223876953125e-08, -ec);
  const double Lx = u * X + ax * sd, Rx = u * u * X + 2 * ax * sd;
  const double Lc = u * C + ac * sd, Rc = u * u * C + 2 * ac * sd;
  const double steps = 3.0 * (dpad / 16);
  const double dot = Lx * Lc + Rx * C + (X + Rx) * Rc +
                     steps * 2.384185791015625e-07 * (X + Lx + Rx) * (C + Lc + Rc);
  double e;
  if (!ip) {
    e = 2 * dot + u32 * C * C + u32 * (C * C + 2 * X * C) * 1.01 + 2.01 * u32 * (X + C) * (X + C);
  } else {
    e = dot + u32 * X * C * 1.01;
  }
  return e * 1.01 + 1e-30;
}

__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void fold(float v, int col, float& best, float& second, int& index) {
  if (v < best) {
    second = best;
    best = v;
    index = col;
  } else if (v < second) {
    second = v;
  }
}

// Merges candidate (ob, os, oi) into (best, second, index) by (value, index) order; the
// result equals one sequential fold over both candidates' columns.
__device__ __forceinline__ void merge(float ob, float os, int oi, float& best, float& second,
                                      int& index) {
  if (ob < best || (ob == best && oi < index)) {
    second = fminf(best, os);
    best = ob;
    index = oi;
  } else {
    second = fminf(second, ob);
  }
}

// A block of WM x WN warps owns BM points; warp (wm, wn) computes a (BM/WM) x (BN/WN) tile of
// each BN-centroid block with m16n8k16 mma, k ascending in steps of 16. A thread's columns
// arrive in ascending order, its rows are folded like the FFMA kernel's, then merged across
// the 4 lanes of a row group and across the WN warps.
template <int BM, int BN, int WM, int WN, bool kThree>
__global__ void __launch_bounds__(WM * WN * 32)
    mma_assign_kernel(const AssignArgs a, const SplitRows xs, const SplitCentroids cs) {
  constexpr int NTH = WM * WN * 32;
  constexpr int WTM = BM / WM, WTN = BN / WN;
  constexpr int MT = WTM / 16, NT = WTN / 8;
  constexpr int BK = kMmaDepth;
  constexpr int LD = BK + 8;  // halves; 80-byte rows keep fragment loads conflict-free
  constexpr int P = kThree ? 2 : 1;
  static_assert(WTM % 16 == 0 && WTN % 8 == 0, "warp tile must be whole mma tiles");
  __shared__ __align__(16) __half As[P][BM][LD];
  __shared__ __align__(16) __half Bs[P][BN][LD];
  __shared__ float merge_best[WN][BM], merge_second[WN][BM];
  __shared__ int merge_index[WN][BM];

  const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
  const int wm = wid / WN, wn = wid % WN, g = lane / 4, t = lane % 4;
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int k = a.c.k, dpad = xs.dpad;
  const int ec = *cs.scale_exp;
  const float alpha = ldexpf(a.inner_product ? -1.f : -2.f, -(xs.scale_exp + ec));
  const __half* xsrc[2] = {static_cast<const __half*>(xs.hi), static_cast<const __half*>(xs.lo)};
  const __half* csrc[2] = {static_cast<const __half*>(cs.hi), static_cast<const __half*>(cs.lo)};

  float best[MT * 2], second[MT * 2];
  int index[MT * 2];
#pragma unroll
  for (int r = 0; r < MT * 2; ++r) {
    best[r] = CUDART_INF_F;
    second[r] = CUDART_INF_F;
    index[r] = INT_MAX;
  }

  for (int n0 = 0; n0 < k; n0 += BN) {
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

    for (int k0 = 0; k0 < dpad; k0 += BK) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        for (int e = tid; e < BM * (BK / 8); e += NTH) {
          const int r = e / (BK / 8), q = e % (BK / 8);
          const int64_t row = m0 + r;
          uint4 v = make_uint4(0, 0, 0, 0);
          if (row < a.rows) v = *reinterpret_cast<const uint4*>(xsrc[p] + row * dpad + k0 + q * 8);
          *reinterpret_cast<uint4*>(&As[p][r][q * 8]) = v;
        }
        for (int e = tid; e < BN * (BK / 8); e += NTH) {
          const int c = e / (BK / 8), q = e % (BK / 8);
          *reinterpret_cast<uint4*>(&Bs[p][c][q * 8]) = *reinterpret_cast<const uint4*>(
              csrc[p] + int64_t(n0 + c) * dpad + k0 + q * 8);
        }
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; kk += 16) {
        uint32_t af[P][MT][4], bf[P][NT][2];
#pragma unroll
        for (int p = 0; p < P; ++p) {
#pragma unroll
          for (int i = 0; i < MT; ++i) {
            const int r = wm * WTM + i * 16 + g;
            af[p][i][0] = *reinterpret_cast<const uint32_t*>(&As[p][r][kk + 2 * t]);
            af[p][i][1] = *reinterpret_cast<const uint32_t*>(&As[p][r + 8][kk + 2 * t]);
            af[p][i][2] = *reinterpret_cast<const uint32_t*>(&As[p][r][kk + 2 * t + 8]);
            af[p][i][3] = *reinterpret_cast<const uint32_t*>(&As[p][r + 8][kk + 2 * t + 8]);
          }
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            const int c = wn * WTN + j * 8 + g;
            bf[p][j][0] = *reinterpret_cast<const uint32_t*>(&Bs[p][c][kk + 2 * t]);
            bf[p][j][1] = *reinterpret_cast<const uint32_t*>(&Bs[p][c][kk + 2 * t + 8]);
          }
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            mma16816(acc[i][j], af[0][i], bf[0][j]);
            if (kThree) {
              mma16816(acc[i][j], af[0][i], bf[P - 1][j]);
              mma16816(acc[i][j], af[P - 1][i], bf[0][j]);
            }
          }
      }
      __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int col = n0 + wn * WTN + j * 8 + 2 * t + q;
        if (col < k) {
          const float b = a.c.beta[col];
#pragma unroll
          for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              fold(__fmaf_rn(alpha, acc[i][j][2 * h + q], b), col, best[2 * i + h],
                   second[2 * i + h], index[2 * i + h]);
        }
      }
  }

#pragma unroll
  for (int r = 0; r < MT * 2; ++r)
#pragma unroll
    for (int off = 1; off < 4; off *= 2)
      merge(__shfl_xor_sync(0xffffffffu, best[r], off),
            __shfl_xor_sync(0xffffffffu, second[r], off),
            __shfl_xor_sync(0xffffffffu, index[r], off), best[r], second[r], index[r]);
  if (t == 0) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * WTM + i * 16 + h * 8 + g;
        merge_best[wn][r] = best[2 * i + h];
        merge_second[wn][r] = second[2 * i + h];
        merge_index[wn][r] = index[2 * i + h];
      }
  }
  __syncthreads();
  for (int r = tid; r < BM; r += NTH) {
    const int64_t row = m0 + r;
    if (row >= a.rows) continue;
    float b = merge_best[0][r], s = merge_second[0][r];
    int idx = merge_index[0][r];
    for (int w = 1; w < WN; ++w) merge(merge_best[w][r], merge_second[w][r], merge_index[w][r], b, s, idx);
    a.cand[row] = idx;
    if (kThree && a.certify) {
      const double e = mma_bound(a.inner_product, a.d, dpad, a.xnorm[row], *a.c.max_norm,
                                 xs.scale_exp, ec);
      if (!(double(s) - double(b) > 2 * e)) {
        const int pos = atomicAdd(a.fix_count, 1);
        a.fix_list[pos] = int(row);
      }
    }
  }
}

template <int S, bool kThree>
void launch_mma_shape(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs,
                      cudaStream_t stream) {
  constexpr MmaTiles t = kMmaShapes[S];
  const int64_t blocks = (a.rows + t.rows - 1) / t.rows;
  mma_assign_kernel<t.rows, t.centroids, t.warps_m, t.warps_n, kThree>
      <<<unsigned(blocks), t.warps_m * t.warps_n * 32, 0, stream>>>(a, xs, cs);
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

void split_centroids(const DeviceCentroids& c, int dpad, float* max_abs, int* scale_exp,
                     void* hi, void* lo, cudaStream_t stream) {
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
    case 0: launch_mma_shape<0, false>(a, xs, cs, stream); break;
    case 1: launch_mma_shape<0, true>(a, xs, cs, stream); break;
    case 2: launch_mma_shape<1, false>(a, xs, cs, stream); break;
    case 3: launch_mma_shape<1, true>(a, xs, cs, stream); break;
    default: FLASHKM_THROW("tensor-core shape %d is not compiled (0..%d)", shape,
                           kNumMmaShapes - 1);
  }
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
