// PRIVATE to kernels/: the certification bound of the float32 fma-chain first pass, shared by
// the CPU backend and the CUDA FFMA pass so both make the same certify/fix-up decision from
// the same source. Both are compiled without contraction (-ffp-contract=off, -fmad=false),
// so host and device evaluate it to the same bits.
//
// With X = |x'|, C = max_j |c'_j| of the packed (shifted, float32) values and u = 2^-24:
//   fmaf chain:      |s_j - x'.c'_j| <= g X C, g = d u / (1 - d u)
//   beta rounding:   u C^2; final fma rounding: u (C^2 + 2 X C)(1 + g + u)
//   shift rounding:  x' and c'_j are (x - s), (c_j - s) rounded once, which moves the true
//                    distance by at most 2.01 u (X + C)^2
// so |v_j - (|x - c_j|^2 - |x'|^2)| <= E for every j, and a row whose second-best value
// exceeds its best by more than 2E has a certified argmin. IP: v_j = -s_j, E = g X C.
//
// Every fast value and partial sum is at most (X + C)^2 in magnitude; where that could
// overflow float32, a value may be inf or NaN (and drop out of the top-k), so no row is
// certified: the bound is +inf and the row goes to the float64 path over all centroids.
#pragma once

#include <limits>

#ifdef __CUDACC__
#define FLASHKM_HOST_DEVICE __host__ __device__
#else
#define FLASHKM_HOST_DEVICE
#endif

namespace flashkm {
namespace detail {

FLASHKM_HOST_DEVICE inline double ffma_certify_bound(bool inner_product, double d, double X,
                                                     double C) {
  if ((X + C) * (X + C) >= 1e38) return std::numeric_limits<double>::infinity();
  const double u = 5.9604644775390625e-08;  // 2^-24
  const double g = d * u / (1 - d * u);
  double e;
  if (!inner_product) {
    e = 2 * g * X * C + u * C * C + u * (C * C + 2 * X * C) * (1 + g + u) +
        2.01 * u * (X + C) * (X + C);
  } else {
    e = g * X * C;
  }
  // Margin for the float64 evaluation of the bound itself, and an absolute floor below
  // which float32 results are subnormal.
  return e * 1.01 + 1e-30;
}

}  // namespace detail
}  // namespace flashkm
