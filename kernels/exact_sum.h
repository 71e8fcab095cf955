// PRIVATE to kernels/: exact, order-independent sums of float32 values, the centroid
// update of every backend (CPU and CUDA give the same bits by construction).
//
// A float32 value is m * 2^u with |m| < 2^24 and u >= -149. For one data set, every
// nonzero value has u in [min_u, max_u] (ExactFormat, computed once from the data), so it
// is an integer multiple of 2^min_u and fits a fixed-point number of a few 32-bit digits.
// A sum is kept "carry-save": limb l holds an int64 whose weight is 2^(base + 32 l), and a
// value adds its 55-bit shifted mantissa split over two neighbouring limbs (low 32 bits,
// non-negative, and the signed rest). Integer addition is associative, so the limbs do not
// depend on the order of the additions: threads may add in any order (integer atomics on
// the GPU), and a value added and later subtracted leaves no trace, so a sum can be kept
// up to date from the points that changed cluster alone.
//
// Capacity: every addition puts less than 2^32 into a limb, so a limb holds any mix of up
// to 2^31 additions and subtractions; exact_renormalize (the same value, every limb but the
// top one in [0, 2^32)) makes room again. The CPU renormalises every 2^30 rows of a sum,
// the GPU after every update: values taken out in other groupings than they went in (a run
// of many in, one alone out) cancel in value but leave carries limb by limb.
//
// exact_to_double rounds the sum to the nearest double (ties to even). The mean the
// backends write is float(sum / count), computed in IEEE float64 and rounded once to float:
// the same value as float(fsum(points) / count) with a correctly rounded float64 sum
// (Python's math.fsum; reference::means, the tests' oracle).
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define FLASHKM_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define FLASHKM_HD inline
#endif

namespace flashkm {
namespace detail {

/// Most limbs a format needs: float32 ulp exponents span [-149, 104], (104 + 149) / 32 + 3.
constexpr int kExactMaxLimbs = 10;

/// Values the GPU adds in one float64 register between two flushes into limbs (below).
constexpr int kExactRunValues = 256;

struct ExactFormat {
  int base = 0;   ///< weight of the lowest bit of limb 0: 2^base (the smallest ulp in the data)
  int limbs = 3;  ///< limbs a sum holds, 3 .. kExactMaxLimbs
  /// Values whose ulp is at least 2^fast may be summed in a float64 register, kExactRunValues
  /// at a time, without rounding: they are multiples of 2^fast below 2^(max_u + 24), so a run
  /// of 2^8 of them stays below 2^(fast + 53). The register then goes into the limbs as an
  /// integer of at most 53 bits at 2^fast (exact_scaled_parts).
  int fast = 0;
};

/// Exponent u of the unit in the last place of the float32 with these bits (v = m 2^u).
FLASHKM_HD int float_ulp_exp(uint32_t bits) {
  const int e = int((bits >> 23) & 0xffu);
  return e == 0 ? -149 : e - 150;
}

/// The format for data whose nonzero values have ulp exponents in [min_u, max_u]; data with
/// no nonzero value passes min_u > max_u.
inline ExactFormat exact_format(int min_u, int max_u) {
  ExactFormat f;
  if (min_u > max_u) return f;  // all zeros: nothing is ever added
  f.base = min_u;
  // A value takes digits (u - base) / 32 and the next; a float64 run at 2^fast three.
  f.limbs = ((max_u - min_u) >> 5) + 3;
  constexpr int kRunBits = 8;  // log2(kExactRunValues)
  static_assert((1 << kRunBits) == kExactRunValues, "run length");
  f.fast = max_u - (53 - 24 - kRunBits);
  if (f.fast < min_u) f.fast = min_u;
  return f;
}

/// The two limb parts of value v (of the data f was made for): v * 2^-base =
/// lo * 2^(32 digit) + hi * 2^(32 (digit + 1)), 0 <= lo < 2^32, |hi| < 2^23.
FLASHKM_HD void exact_parts(float v, int base, int* digit, int64_t* lo, int64_t* hi) {
  uint32_t bits;
#ifdef __CUDA_ARCH__
  bits = __float_as_uint(v);
#else
  std::memcpy(&bits, &v, sizeof bits);
#endif
  const uint32_t e = (bits >> 23) & 0xffu;
  const int64_t m = e ? int64_t((bits & 0x7fffffu) | 0x800000u) : int64_t(bits & 0x7fffffu);
  if (m == 0) {
    *digit = 0;
    *lo = *hi = 0;
    return;
  }
  const int shift = float_ulp_exp(bits) - base;
  int64_t w = m << (shift & 31);
  if (bits >> 31) w = -w;
  *digit = shift >> 5;
  *lo = w & 0xffffffffLL;
  *hi = w >> 32;  // arithmetic: w = hi 2^32 + lo
}

/// The limb parts of m 2^(fast - base) for an integer |m| < 2^53 (a float64 run, exact):
/// digits digit, digit + 1 and digit + 2 get p0, p1 (both in [0, 2^32)) and p2 (signed).
FLASHKM_HD void exact_scaled_parts(int64_t m, int shift, int* digit, int64_t* p0, int64_t* p1,
                                   int64_t* p2) {
  // Shifted as unsigned: the same bits as m * 2^(shift & 31) in two's complement.
  const __int128 t = static_cast<__int128>(static_cast<unsigned __int128>(static_cast<__int128>(m))
                                           << (shift & 31));
  *digit = shift >> 5;
  *p0 = static_cast<int64_t>(t & 0xffffffff);
  *p1 = static_cast<int64_t>((t >> 32) & 0xffffffff);
  *p2 = static_cast<int64_t>(t >> 64);
}

/// Adds (sign = +1) or subtracts (-1) v to the sum in limbs (host code; the GPU adds with
/// integer atomics or registers, the same parts).
inline void exact_add(int64_t* limbs, int base, float v, int64_t sign = 1) {
  int digit;
  int64_t lo, hi;
  exact_parts(v, base, &digit, &lo, &hi);
  limbs[digit] += sign * lo;
  limbs[digit + 1] += sign * hi;
}

/// Moves each limb's bits above 32 into the next one (the value is unchanged), so that
/// every limb but the top one holds less than 2^32 and can take 2^31 more additions.
inline void exact_renormalize(int64_t* limbs, int n_limbs) {
  for (int l = 0; l + 1 < n_limbs; ++l) {
    limbs[l + 1] += limbs[l] >> 32;
    limbs[l] &= 0xffffffffLL;
  }
}

/// The sum sum_l limbs[l] 2^(base + 32 l) rounded to the nearest double, ties to even.
FLASHKM_HD double exact_to_double(const int64_t* limbs, int n_limbs, int base) {
  // Normalise to 32-bit two's-complement digits; the carry out of the top limb needs two
  // more digits.
  uint32_t dg[kExactMaxLimbs + 2];
  int64_t carry = 0;
  for (int l = 0; l < n_limbs; ++l) {
    const int64_t t = limbs[l] + carry;
    dg[l] = uint32_t(t);
    carry = t >> 32;
  }
  dg[n_limbs] = uint32_t(carry);
  dg[n_limbs + 1] = uint32_t(carry >> 32);
  const int nd = n_limbs + 2;
  const bool negative = int32_t(dg[nd - 1]) < 0;
  if (negative) {
    uint64_t c = 1;
    for (int l = 0; l < nd; ++l) {
      const uint64_t t = uint64_t(uint32_t(~dg[l])) + c;
      dg[l] = uint32_t(t);
      c = t >> 32;
    }
  }
  int h = nd - 1;
  while (h >= 0 && dg[h] == 0) --h;
  if (h < 0) return 0.0;
  // The top 63 bits, and a sticky bit for everything below them: rounding that 63-bit
  // integer with its last bit forced odd where bits were dropped rounds the same way as
  // the exact value does (round-to-odd, 63 >= 53 + 2).
  uint64_t top = (uint64_t(dg[h]) << 32) | (h >= 1 ? dg[h - 1] : 0u);
  const uint32_t third = h >= 2 ? dg[h - 2] : 0u;
  bool sticky = false;
  for (int l = 0; l + 2 < h; ++l) sticky |= dg[l] != 0;
#ifdef __CUDA_ARCH__
  const int lz = __clz(int(dg[h]));
#else
  const int lz = __builtin_clz(dg[h]);
#endif
  if (lz > 0) {
    top = (top << lz) | (uint64_t(third) >> (32 - lz));
    sticky |= uint32_t(third << lz) != 0;
  } else {
    sticky |= third != 0;
  }
  sticky |= (top & 1) != 0;
  top = (top >> 1) | (sticky ? 1u : 0u);
  const int exp = base + 32 * (h - 1) - lz + 1;  // weight of top's lowest bit
#ifdef __CUDA_ARCH__
  const double r = ldexp(__ll2double_rn((long long)top), exp);
#else
  const double r = std::ldexp(double(int64_t(top)), exp);
#endif
  return negative ? -r : r;
}

/// Smallest and largest ulp exponent over the nonzero values of x[0, count) (host memory),
/// with threads; min_u > max_u when there is none.
void exact_exponent_range(const float* x, int64_t count, int threads, int* min_u, int* max_u);

}  // namespace detail
}  // namespace flashkm
