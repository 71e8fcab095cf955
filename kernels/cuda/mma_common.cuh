// PRIVATE to kernels/cuda: what the two tensor-core passes (mma_assign.cu: mma.sync;
// wgmma_assign.cu: sm_90a warpgroup mma) share: the certification bound of their three-product
// values, the split of the rows into fp16 hi / lo and the cp.async helpers that feed their
// shared-memory pipelines.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flashkm {
namespace detail {
namespace cuda {

// Bound on |fast value - (|x - c|^2 - |x'|^2)| (L2) or |fast value + x.c| (IP) for every
// centroid of a row, X = |x'|, C = max |c'| (unscaled, float64):
//  * splitting: with u = 2^-11 and a = 2^-25 / 2^e the absolute rounding of fp16
//    subnormals, |lo| <= u X + a sqrt(d) =: Lx and the residual v - hi - lo has norm
//    <= u^2 X + 2 a sqrt(d) =: Rx (same for c), so the three products miss at most
//    Lx Lc + Rx C + (X + Rx) Rc;
//  * accumulation: products of fp16 are exact in fp32; each k16 mma step rounds once,
//    assumed within 2^-22 of the running sum of |products| it holds (twice the unit
//    roundoff: tensor cores may truncate; a wgmma k16 step is assumed to round like an
//    mma.sync one, the same tensor cores). |hi_x| <= X + Lx + Rx =: Hx (same for c).
//    One accumulator (mma.sync): 3 dpad / 16 steps on sums <= Hx Hc. Split (wgmma): hi.hi
//    in one accumulator (dpad / 16 steps on sums <= Hx Hc), hi.lo + lo.hi in another
//    (2 dpad / 16 steps on sums <= Hx Lc + Lx Hc, about 2^-11 as large), then one float32
//    addition of the two (2^-24 of their magnitudes): about a third of the error;
//  * then the float32 terms of the FFMA bound: beta's rounding, the final fma's rounding
//    and the centring (kernels/bounds.h).
// The 1.01 factor covers second-order terms (relative size <= 2^-10) and the float64
// evaluation.
__device__ __forceinline__ double mma_bound(bool ip, bool split, int d, int dpad, double X,
                                            double C, int ex, int ec) {
  const double u = 4.8828125e-04;             // 2^-11
  const double u32 = 5.9604644775390625e-08;  // 2^-24
  const double g = 2.384185791015625e-07;     // 2^-22
  const double sd = sqrt(double(d));
  const double ax = ldexp(2.98023223876953125e-08, -ex);  // 2^-25 unscaled
  const double ac = ldexp(2.98023223876953125e-08, -ec);
  const double Lx = u * X + ax * sd, Rx = u * u * X + 2 * ax * sd;
  const double Lc = u * C + ac * sd, Rc = u * u * C + 2 * ac * sd;
  const double Hx = X + Lx + Rx, Hc = C + Lc + Rc;
  const double steps = dpad / 16;
  double acc;
  if (split) {
    const double small = Hx * Lc + Lx * Hc;
    acc = steps * g * Hx * Hc + 2 * steps * g * small + u32 * (Hx * Hc + small) * 1.01;
  } else {
    acc = 3 * steps * g * Hx * Hc;
  }
  const double dot = Lx * Lc + Rx * C + (X + Rx) * Rc + acc;
  double e;
  if (!ip) {
    e = 2 * dot + u32 * C * C + u32 * (C * C + 2 * X * C) * 1.01 + 2.01 * u32 * (X + C) * (X + C);
  } else {
    e = dot + u32 * X * C * 1.01;
  }
  return e * 1.01 + 1e-30;
}

// The centred row coordinate of the tensor-core passes: float(double(x) - shift).
__device__ __forceinline__ float centred(float x, double shift) {
  return __double2float_rn(__dsub_rn(double(x), shift));
}

// v = hi + lo + (a residual below 2^-22 |v|): hi = fp16(v), lo = fp16(v - hi). split_rows and
// the wgmma pass's in-kernel row staging both call this, so their halves are bit-identical.
__device__ __forceinline__ void split(float v, __half* hi, __half* lo) {
  const __half h = __float2half_rn(v);
  *hi = h;
  *lo = __float2half_rn(__fsub_rn(v, __half2float(h)));  // v - hi is exact in fp32
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: fill with zeros, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
