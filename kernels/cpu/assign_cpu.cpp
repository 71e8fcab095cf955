#include "kernels/cpu/assign_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace flashkm {
namespace detail {
namespace cpu {

Isa detect_isa() {
  Isa best = Isa::Scalar;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
  if (__builtin_cpu_supports("avx512f")) best = Isa::Avx512;
  if (const char* env = std::getenv("FLASHKM_ISA")) {
    Isa want = best;
    if (!std::strcmp(env, "scalar"))
      want = Isa::Scalar;
    else if (!std::strcmp(env, "avx2"))
      want = Isa::Avx2;
    else if (!std::strcmp(env, "avx512"))
      want = Isa::Avx512;
    else
      FLASHKM_THROW("FLASHKM_ISA=%s: expected scalar, avx2 or avx512", env);
    // Never raise above what the CPU has.
    if (static_cast<int>(want) < static_cast<int>(best)) best = want;
  }
  return best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

// Row-panel heights: AVX-512 keeps 12 rows x 32 centroids = 24 zmm accumulators (+2 for the
// centroid vectors, +1 broadcast) in its 32 registers; AVX2 keeps 6 x 16 = 12 of its 16 ymm.
// The scalar path shares AVX2's packing.
int micro_rows(Isa isa) { return isa == Isa::Avx512 ? 12 : 6; }

void pack_centroids(const float* c, int64_t k, int64_t d, const double* shift, Metric metric,
                    PackedCentroids* out) {
  PackedCentroids& pc = *out;
  pc.k = k;
  pc.d = d;
  pc.kpad = (k + kPanel - 1) / kPanel * kPanel;
  pc.alpha = metric == Metric::L2 ? -2.f : -1.f;
  const size_t need = size_t(pc.kpad) * d + 16;
  if (pc.panels.size() < need) pc.panels.assign(need, 0.f);
  uintptr_t addr = reinterpret_cast<uintptr_t>(pc.panels.data());
  pc.offset = ((64 - addr % 64) % 64) / sizeof(float);
  pc.beta.assign(pc.kpad, std::numeric_limits<float>::infinity());
  double max_sq = 0;
  float* base = pc.panels.data() + pc.offset;
  for (int64_t j = 0; j < pc.kpad; ++j) {
    float* col = base + (j / kPanel) * d * kPanel + (j % kPanel);
    if (j >= k) {
      for (int64_t t = 0; t < d; ++t) col[t * kPanel] = 0.f;
      continue;
    }
    double sq = 0;
    for (int64_t t = 0; t < d; ++t) {
      double v = c[j * d + t];
      float f = shift ? float(v - shift[t]) : float(v);
      col[t * kPanel] = f;
      sq += double(f) * double(f);
    }
    max_sq = std::max(max_sq, sq);
    pc.beta[j] = metric == Metric::L2 ? float(sq) : 0.f;
  }
  pc.max_norm = std::sqrt(max_sq);
}

namespace {

template <class RowPtr>
void pack_rows_impl(Isa isa, RowPtr row_ptr, int64_t rows, int64_t d, const double* shift,
                    float* buf, double* norms) {
  const int mr = micro_rows(isa);
  for (int64_t r = 0; r < rows; ++r) norms[r] = 0;
  for (int64_t p = 0; p * mr < rows; ++p) {
    float* panel = buf + p * d * mr;
    for (int r = 0; r < mr; ++r) {
      const int64_t row = p * mr + r;
      if (row >= rows) {
        for (int64_t t = 0; t < d; ++t) panel[t * mr + r] = 0.f;
        continue;
      }
      const float* xr = row_ptr(row);
      double sq = 0;
      for (int64_t t = 0; t < d; ++t) {
        float f = shift ? float(double(xr[t]) - shift[t]) : xr[t];
        panel[t * mr + r] = f;
        sq += double(f) * double(f);
      }
      norms[row] = std::sqrt(sq);
    }
  }
}

}  // namespace

void pack_rows(Isa isa, const float* x, int64_t rows, int64_t d, const double* shift, float* buf,
               double* norms) {
  pack_rows_impl(
      isa, [=](int64_t r) { return x + r * d; }, rows, d, shift, buf, norms);
}

void pack_rows(Isa isa, const float* x, const int64_t* idx, int64_t rows, int64_t d,
               const double* shift, float* buf, double* norms) {
  pack_rows_impl(
      isa, [=](int64_t r) { return x + idx[r] * d; }, rows, d, shift, buf, norms);
}

namespace {

// Folds kPanel fast values of one row (centroids base .. base+31, ascending) into its state.
// Strict '<' keeps the lowest index on ties, as centroids arrive in ascending order.
template <int W = kPanel>
inline void fold_slow(const float* v, int64_t base, RowBest& b) {
  for (int j = 0; j < W; ++j) {
    if (v[j] < b.best) {
      b.third = b.second;
      b.second = b.best;
      b.index2 = b.index;
      b.best = v[j];
      b.index = static_cast<int32_t>(base + j);
    } else if (v[j] < b.second) {
      b.third = b.second;
      b.second = v[j];
      b.index2 = static_cast<int32_t>(base + j);
    } else if (v[j] < b.third) {
      b.third = v[j];
    }
  }
}

// The same fold for the values whose bit is set in mask (bit j: v[j] < b.third when the panel
// arrived), in ascending j. A value at or above third leaves the state alone, and third only
// falls during a fold, so skipping the clear bits changes nothing: the result is fold_slow's.
inline void fold_mask(const float* v, int64_t base, uint32_t mask, RowBest& b) {
  // Branch-free: which of the three slots a value enters is data-dependent and mispredicts
  // often when d is small and the fold is a large share of the work.
  while (mask != 0) {
    const int j = __builtin_ctz(mask);
    mask &= mask - 1;
    const float x = v[j];
    const int32_t idx = static_cast<int32_t>(base + j);
    const bool lt1 = x < b.best, lt2 = x < b.second, lt3 = x < b.third;
    b.third = lt2 ? b.second : (lt3 ? x : b.third);
    b.second = lt1 ? b.best : (lt2 ? x : b.second);
    b.index2 = lt1 ? b.index : (lt2 ? idx : b.index2);
    b.best = lt1 ? x : b.best;
    b.index = lt1 ? idx : b.index;
  }
}

template <int MR>
__attribute__((target("avx512f,avx512dq,fma"))) void top2_avx512(const float* buf, int64_t rows,
                                                                 const PackedCentroids& pc,
                                                                 int64_t c0, int64_t c1,
                                                                 RowBest* best) {
  const int64_t d = pc.d;
  const __m512 alpha = _mm512_set1_ps(pc.alpha);
  alignas(64) float spill[kPanel];
  // Panel-major: one centroid panel (16 KB at d = 128) stays in L1 while the tile's row panels
  // stream from L2; each row still meets the panels in ascending order.
  for (int64_t c = c0; c < c1; c += kPanel) {
    const float* B = pc.panel(c / kPanel);
    for (int64_t rb = 0; rb < rows; rb += MR) {
      const float* A = buf + rb * d;
      const int nr = static_cast<int>(std::min<int64_t>(MR, rows - rb));
      __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
      for (int64_t t = 0; t < d; ++t) {
        const __m512 b0 = _mm512_load_ps(B + t * kPanel);
        const __m512 b1 = _mm512_load_ps(B + t * kPanel + 16);
        const float* a = A + t * MR;
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          const __m512 ar = _mm512_set1_ps(a[r]);
          acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
          acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
      }
      const __m512 beta0 = _mm512_loadu_ps(pc.beta.data() + c);
      const __m512 beta1 = _mm512_loadu_ps(pc.beta.data() + c + 16);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        if (r >= nr) break;
        const __m512 v0 = _mm512_fmadd_ps(alpha, acc0[r], beta0);
        const __m512 v1 = _mm512_fmadd_ps(alpha, acc1[r], beta1);
        RowBest& b = best[rb + r];
        const __m512 third = _mm512_set1_ps(b.third);
        const uint32_t mask = uint32_t(_mm512_cmp_ps_mask(v0, third, _CMP_LT_OQ)) |
                              uint32_t(_mm512_cmp_ps_mask(v1, third, _CMP_LT_OQ)) << 16;
        if (mask != 0) {
          _mm512_store_ps(spill, v0);
          _mm512_store_ps(spill + 16, v1);
          fold_mask(spill, c, mask, b);
        }
      }
    }
  }
}

template <int MR>
__attribute__((target("avx2,fma"))) void top2_avx2(const float* buf, int64_t rows,
                                                   const PackedCentroids& pc, int64_t c0,
                                                   int64_t c1, RowBest* best) {
  const int64_t d = pc.d;
  const __m256 alpha = _mm256_set1_ps(pc.alpha);
  alignas(32) float spill[16];
  // Half-panel-major: 16 centroids (8 KB at d = 128) stay in L1 while the tile's row panels
  // stream from L2 (7 % faster than row-panel-major on the 2-core VM, bench/NOTES.md); each
  // row still meets the centroids in ascending order, so values and ties are unchanged.
  for (int64_t c = c0; c < c1; c += kPanel) {
    const float* B = pc.panel(c / kPanel);
    for (int h = 0; h < 2; ++h) {
      for (int64_t rb = 0; rb < rows; rb += MR) {
        const float* A = buf + rb * d;
        const int nr = static_cast<int>(std::min<int64_t>(MR, rows - rb));
        __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
        for (int64_t t = 0; t < d; ++t) {
          const __m256 b0 = _mm256_load_ps(B + t * kPanel + h * 16);
          const __m256 b1 = _mm256_load_ps(B + t * kPanel + h * 16 + 8);
          const float* a = A + t * MR;
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) {
            const __m256 ar = _mm256_broadcast_ss(a + r);
            acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
          }
        }
        const __m256 beta0 = _mm256_loadu_ps(pc.beta.data() + c + h * 16);
        const __m256 beta1 = _mm256_loadu_ps(pc.beta.data() + c + h * 16 + 8);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          if (r >= nr) break;
          const __m256 v0 = _mm256_fmadd_ps(alpha, acc0[r], beta0);
          const __m256 v1 = _mm256_fmadd_ps(alpha, acc1[r], beta1);
          RowBest& b = best[rb + r];
          const __m256 third = _mm256_set1_ps(b.third);
          const uint32_t mask = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v0, third, _CMP_LT_OQ))) |
                                uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(v1, third, _CMP_LT_OQ)))
                                    << 8;
          if (mask != 0) {
            _mm256_store_ps(spill, v0);
            _mm256_store_ps(spill + 8, v1);
            fold_mask(spill, c + h * 16, mask, b);
          }
        }
      }
    }
  }
}

// Portable path with the AVX2 packing; each value is the same fmaf chain as the SIMD paths.
void top2_scalar(const float* buf, int64_t rows, const PackedCentroids& pc, int64_t c0, int64_t c1,
                 RowBest* best) {
  constexpr int MR = 6;
  const int64_t d = pc.d;
  float acc[MR][kPanel];
  float v[kPanel];
  for (int64_t rb = 0; rb < rows; rb += MR) {
    const float* A = buf + rb * d;
    const int nr = static_cast<int>(std::min<int64_t>(MR, rows - rb));
    for (int64_t c = c0; c < c1; c += kPanel) {
      const float* B = pc.panel(c / kPanel);
      std::memset(acc, 0, sizeof(acc));
      for (int64_t t = 0; t < d; ++t)
        for (int r = 0; r < MR; ++r)
          for (int j = 0; j < kPanel; ++j)
            acc[r][j] = std::fma(A[t * MR + r], B[t * kPanel + j], acc[r][j]);
      for (int r = 0; r < nr; ++r) {
        for (int j = 0; j < kPanel; ++j) v[j] = std::fma(pc.alpha, acc[r][j], pc.beta[c + j]);
        fold_slow(v, c, best[rb + r]);
      }
    }
  }
}

}  // namespace

void fast_top2(Isa isa, const float* buf, int64_t rows, const PackedCentroids& pc, int64_t c0,
               int64_t c1, RowBest* best) {
  FLASHKM_ASSERT(c0 % kPanel == 0 && c1 % kPanel == 0 && c0 < c1 && c1 <= pc.kpad);
  switch (isa) {
    case Isa::Avx512:
      top2_avx512<12>(buf, rows, pc, c0, c1, best);
      break;
    case Isa::Avx2:
      top2_avx2<6>(buf, rows, pc, c0, c1, best);
      break;
    default:
      top2_scalar(buf, rows, pc, c0, c1, best);
      break;
  }
}

}  // namespace cpu
}  // namespace detail
}  // namespace flashkm
