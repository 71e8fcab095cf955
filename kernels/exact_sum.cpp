#include "kernels/exact_sum.h"

#include <omp.h>

#include <algorithm>

namespace flashkm {
namespace detail {

void exact_exponent_range(const float* x, int64_t count, int threads, int* min_u, int* max_u) {
  int lo = 1 << 20, hi = -(1 << 20);
#pragma omp parallel for num_threads(threads) schedule(static) reduction(min                 \
                                                                         : lo) reduction(max \
                                                                                         : hi)
  for (int64_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    if ((bits & 0x7fffffffu) == 0) continue;
    const int u = float_ulp_exp(bits);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  *min_u = lo;
  *max_u = hi;
}

}  // namespace detail
}  // namespace flashkm
