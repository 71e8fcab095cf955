// PRIVATE to kernels/cuda: the per-row candidate state of the assignment passes.
//
// A row keeps its kTop smallest (value, index) pairs in lexicographic order. Folding values
// of ascending indices with insert() and merging lists with insert() both give exactly the
// kTop smallest pairs, so the state does not depend on tile shapes. best = v[0], second =
// v[1]; when a row cannot be certified, every centroid whose fast value is within the error
// window of v[0] is in the list as soon as v[kTop - 1] lies outside the window, and the
// float64 fix-up then needs only those candidates instead of all k.
#pragma once

#include <math_constants.h>

#include <climits>

#include "kernels/cuda/kernels.h"

namespace flashkm {
namespace detail {
namespace cuda {

/// (v, i) = the lexicographically smaller of (v, i) and (ov, oi): the float64 argmin of the
/// fix-ups, ties to the lowest index.
__device__ __forceinline__ void lex_min(double& v, int& i, double ov, int oi) {
  if (ov < v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

template <int K>
struct TopK {
  static constexpr int kSize = K;
  float v[K];
  int i[K];

  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int s = 0; s < K; ++s) {
      v[s] = CUDART_INF_F;
      i[s] = INT_MAX;
    }
  }

  /// Values at or above this cannot enter the list.
  __device__ __forceinline__ float last() const { return v[K - 1]; }

  __device__ __forceinline__ static bool less(float a, int ai, float b, int bi) {
    return a < b || (a == b && ai < bi);
  }

  /// Inserts (x, c) if it is among the K smallest pairs.
  __device__ __forceinline__ void insert(float x, int c) {
    if (!less(x, c, v[K - 1], i[K - 1])) return;
    bool done = false;
#pragma unroll
    for (int s = K - 1; s > 0; --s) {
      if (!done) {
        if (less(x, c, v[s - 1], i[s - 1])) {
          v[s] = v[s - 1];
          i[s] = i[s - 1];
        } else {
          v[s] = x;
          i[s] = c;
          done = true;
        }
      }
    }
    if (!done) {
      v[0] = x;
      i[0] = c;
    }
  }

  /// insert() for a column above every index in the list (a thread's own columns arrive in
  /// ascending order): equal values lose, so plain '<' decides. Branch-free: the slots a
  /// value passes shift down by one, selected per slot, so a warp never diverges here.
  __device__ __forceinline__ void insert_ascending(float x, int c) {
    bool below[K];
#pragma unroll
    for (int s = 0; s < K; ++s) below[s] = x < v[s];  // monotone: below[s] implies below[s+1]
#pragma unroll
    for (int s = K - 1; s > 0; --s) {
      v[s] = below[s - 1] ? v[s - 1] : (below[s] ? x : v[s]);
      i[s] = below[s - 1] ? i[s - 1] : (below[s] ? c : i[s]);
    }
    v[0] = below[0] ? x : v[0];
    i[0] = below[0] ? c : i[0];
  }

  /// Merges the list of the lane `off` away (xor) in the warp.
  __device__ __forceinline__ void merge_lane(int off) {
    float ov[K];
    int oi[K];
#pragma unroll
    for (int s = 0; s < K; ++s) {
      ov[s] = __shfl_xor_sync(0xffffffffu, v[s], off);
      oi[s] = __shfl_xor_sync(0xffffffffu, i[s], off);
    }
#pragma unroll
    for (int s = 0; s < K; ++s) insert(ov[s], oi[s]);
  }
};

/// The screening state of a row: the lexicographically smallest (value, index) pair and the
/// smallest value of every other index. Like TopK, independent of the fold and merge order,
/// and enough to certify a row (second - best > 2E); what it cannot tell is which centroids
/// lie in an uncertified row's window, so such rows are recollected with TopK<kTop>.
struct Top2 {
  float v0, v1;
  int i0;

  __device__ __forceinline__ void clear() {
    v0 = v1 = CUDART_INF_F;
    i0 = INT_MAX;
  }
  __device__ __forceinline__ float last() const { return v1; }

  /// For a column above every index seen (a thread's own columns ascend): equal values lose.
  __device__ __forceinline__ void insert_ascending(float x, int c) {
    v1 = fminf(v1, fmaxf(v0, x));
    i0 = x < v0 ? c : i0;
    v0 = fminf(v0, x);
  }

  __device__ __forceinline__ void merge_lane(int off) {
    const float w0 = __shfl_xor_sync(0xffffffffu, v0, off);
    const float w1 = __shfl_xor_sync(0xffffffffu, v1, off);
    const int j0 = __shfl_xor_sync(0xffffffffu, i0, off);
    const bool other = w0 < v0 || (w0 == v0 && j0 < i0);
    v1 = fminf(fminf(v1, w1), other ? v0 : w0);  // the losing best joins the others
    v0 = other ? w0 : v0;
    i0 = other ? j0 : i0;
  }
};

/// Extra width of the candidate window that keeps float64 rounding of detail::exact_l2 /
/// exact_ip (relative error below (d + 2) 2^-53 of |x - c|^2 <= (X + C)^2, or of X C) from
/// reordering a candidate and a centroid outside the window.
__device__ __forceinline__ double window_margin(bool ip, int d, double X, double C) {
  const double s = ip ? X * C : (X + C) * (X + C);
  return 4.04 * (d + 2) * 1.1102230246251565e-16 * s;
}

/// Rows stored on the device as fp16 alone (KMeansParams::device_rows): the fast values v
/// are those of the fp16 row x~ (|x~'| = X, a.xnorm), within e; the float32 row x' is
/// within rho = a.row_err[row] of x~'. L2: |x' - c'| is within rho of |x~' - c'|, so the
/// value the float64 fix-up compares, |x' - c'|^2 - X^2, lies in [lower(v), upper(v)]:
/// the interval grows with the distance to c (about 4 rho |x - c|), not with |c| (against
/// 2 rho C from Cauchy-Schwarz on r.c', 5x wider on the bench data). IP: x'.c' moves by at
/// most rho |c'| <= rho C. margin covers the float64 evaluation here and in the fix-up. rho
/// is measured from x' = float(x - shift), as the split's residual is: the centring's own
/// rounding stays covered by e (mma_bound's float32 terms), so e must keep those terms even
/// for rows without lo.
struct StoredRowBounds {
  bool l2;
  double X2, e, rho, C, margin;
  __device__ StoredRowBounds(const AssignArgs& a, int64_t row, double e_fast, double X, double Cn)
      : l2(!a.inner_product), X2(X * X), e(e_fast), rho(a.row_err[row]), C(Cn) {
    const double R = X + rho + C;
    margin = window_margin(a.inner_product, a.d, X + rho, C) + 1e-13 * R * R;
  }
  // X = sqrt(|x~'|^2) rounded: X^2 is within (d / 32 + 6) 2^-52 X^2 of |x~'|^2, so it is
  // taken 1e-12 X^2 high where it adds and low where it subtracts.
  __device__ double upper(double v) const {
    if (!l2) return v + e + 1.01 * rho * C + margin;
    const double s = sqrt(fmax(0.0, v + X2 * (1 + 1e-12) + e)) + rho;
    return s * s - X2 * (1 - 1e-12) + margin;
  }
  __device__ double lower(double v) const {
    if (!l2) return v - e - 1.01 * rho * C - margin;
    const double s = fmax(0.0, sqrt(fmax(0.0, v + X2 * (1 - 1e-12) - e)) - rho);
    return s * s - X2 * (1 + 1e-12) - margin;
  }
};

/// Writes the row's label and, when certifying and the bound e (half-width of the error
/// window of its fast values) does not separate best from second, queues it for the
/// float64 fix-up: over its candidates (a.win_list, a.cand_top) when the window is inside
/// the list, else over all k (a.fix_list). X = |x'|, C = max |c'|.
template <int K>
__device__ __forceinline__ void route_row(const AssignArgs& a, int64_t row, const TopK<K>& t,
                                          double e, double X, double C) {
  a.cand[row] = t.i[0];
  if constexpr (K < kTop) {
    return;  // a Fast pass: no certification, the best candidate is the label
  } else {
    if (a.certify && a.row_err) {
      // fp16 rows: candidates whose lowest possible value is below the best's highest
      // possible one may be nearest (values rise with v, so past the list none can be).
      const StoredRowBounds b(a, row, e, X, C);
      const double up = b.upper(double(t.v[0]));
      if (b.lower(double(t.v[1])) > up) return;
      if (b.lower(double(t.v[kTop - 1])) > up) {
#pragma unroll
        for (int s = 0; s < kTop; ++s)
          a.cand_top[row * kTop + s] = b.lower(double(t.v[s])) <= up ? t.i[s] : -1;
        a.win_list[atomicAdd(a.win_count, 1)] = int(row);
      } else {
        a.fix_list[atomicAdd(a.fix_count, 1)] = int(row);
      }
      return;
    }
    if (!a.certify || double(t.v[1]) - double(t.v[0]) > 2 * e) return;
    const double w = double(t.v[0]) + 2 * e + window_margin(a.inner_product, a.d, X, C);
    if (double(t.v[kTop - 1]) > w) {
#pragma unroll
      for (int s = 0; s < kTop; ++s) a.cand_top[row * kTop + s] = double(t.v[s]) <= w ? t.i[s] : -1;
      a.win_list[atomicAdd(a.win_count, 1)] = int(row);
    } else {
      a.fix_list[atomicAdd(a.fix_count, 1)] = int(row);
    }
  }
}

/// route_row for a screening state: the label when certified, else the row is queued for
/// the collecting pass (a.recheck_list).
__device__ __forceinline__ void route_row(const AssignArgs& a, int64_t row, const Top2& t, double e,
                                          double X, double C) {
  a.cand[row] = t.i0;
  bool certified;
  if (a.row_err) {
    const StoredRowBounds b(a, row, e, X, C);
    certified = b.lower(double(t.v1)) > b.upper(double(t.v0));
  } else {
    certified = double(t.v1) - double(t.v0) > 2 * e;
  }
  if (!certified) a.recheck_list[atomicAdd(a.recheck_count, 1)] = int(row);
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
