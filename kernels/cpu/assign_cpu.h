// PRIVATE to kernels/: the CPU fused distance + top-2 argmin kernel.
//
// A pass computes, for each point of a row tile, the fast float32 value
//   v_j = fma(alpha, dot(x - s, c_j - s), beta_j)
// for every centroid j (L2: alpha = -2, beta_j = |c_j - s|^2, s = shift; IP: alpha = -1,
// beta_j = 0, s = 0), where dot is a chain of fmaf over the d coordinates in order 0..d-1.
// Each row keeps the three smallest v (ties: lowest j) and the indices of the first two. The
// N x K matrix never exists: a row tile meets the centroids one L2-resident block at a time.
//
// Every SIMD level computes each v_j with the same fmaf chain, so AVX-512, AVX2 and scalar
// give bit-identical values, and tile sizes only change the order in which rows and
// centroid blocks are visited, never a value or a tie decision.
#pragma once

#include <cstdint>
#include <vector>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace detail {
namespace cpu {

enum class Isa { Scalar, Avx2, Avx512 };

/// Best level this CPU supports, lowered by the environment variable FLASHKM_ISA
/// (scalar|avx2|avx512) when set: tests and benchmarks use it to compare levels.
Isa detect_isa();
const char* isa_name(Isa isa);

/// Rows per micro-kernel call for an ISA (the packed row-panel height).
int micro_rows(Isa isa);

/// Centroids of one pass, shifted and packed in panels of kPanel columns: panel p holds
/// centroids [p*kPanel, (p+1)*kPanel) as [d][kPanel] floats. Padding columns are zero with
/// beta = +inf, so they never win and never become a finite second best.
constexpr int kPanel = 32;

struct PackedCentroids {
  int64_t k = 0, d = 0, kpad = 0;
  float alpha = -2.f;
  std::vector<float> panels;  ///< (kpad / kPanel) * d * kPanel, 64-byte aligned start
  std::vector<float> beta;    ///< kpad
  double max_norm = 0;        ///< max_j |c_j - s| (for the certification bound)
  size_t offset = 0;          ///< floats to skip in panels for 64-byte alignment
  const float* panel(int64_t p) const { return panels.data() + offset + p * d * kPanel; }
};

void pack_centroids(const float* c, int64_t k, int64_t d, const double* shift, Metric metric,
                    PackedCentroids* out);

/// Per-row running state of a pass: the three smallest values, and the indices of the first
/// two (enough to settle most uncertified rows with two exact distances).
struct RowBest {
  float best;
  float second;
  float third;
  int32_t index;
  int32_t index2;
};
constexpr RowBest kEmptyRow = {__builtin_inff(), __builtin_inff(), __builtin_inff(), -1, -1};

/// Packs rows [0, rows) of x (row stride d) minus shift (nullable) into buf as row panels of
/// micro_rows(isa) rows, [d][mr] each, zero-padding the last panel; returns |x_i - s| for
/// each row in norms (float64 of the packed float32 values).
void pack_rows(Isa isa, const float* x, int64_t rows, int64_t d, const double* shift, float* buf,
               double* norms);

/// The same for scattered rows: row r of the tile is x[idx[r] * d ...].
void pack_rows(Isa isa, const float* x, const int64_t* idx, int64_t rows, int64_t d,
               const double* shift, float* buf, double* norms);

/// Updates best[0, rows) with centroids [c0, c1) (c0, c1 multiples of kPanel, c0 < c1 <=
/// kpad), visiting panels in ascending order. buf comes from pack_rows.
void fast_top2(Isa isa, const float* buf, int64_t rows, const PackedCentroids& pc, int64_t c0,
               int64_t c1, RowBest* best);

}  // namespace cpu
}  // namespace detail
}  // namespace flashkm
