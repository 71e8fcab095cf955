// The CPU backend: fused assignment with certification and float64 fix-up, and the
// sort-inverse centroid update. See kernels/engine.h for the contract.
#include "kernels/cpu/cpu_engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/bounds.h"
#include "kernels/cpu/assign_cpu.h"
#include "kernels/engine.h"
#include "kernels/exact_sum.h"

namespace flashkm {
namespace detail {
namespace cpu {

CpuTiles select_cpu_tiles(Isa isa, int64_t d, int64_t k, const TileConfig& user) {
  CpuTiles t;
  const int mr = micro_rows(isa);
  // Rows per tile: 20 row panels (240 rows on AVX-512, 120 on AVX2) keep the packed tile
  // (240 x 128 floats = 120 KB at d=128) in L2 beside a centroid block. Chosen on the 2-core
  // AVX2 EPYC VM (bench/NOTES.md, 120 rows); the AVX-512 row count follows from the same
  // 20 panels and has not been timed on its own.
  t.rows = user.rows > 0 ? user.rows : 20 * mr;
  t.rows = std::min<int64_t>(t.rows, kAssignBlock);
  // Centroid block: about 512 KB of packed centroids (half of a 1 MB L2), split evenly so
  // blocks have similar sizes.
  const int64_t kpad = (k + kPanel - 1) / kPanel * kPanel;
  if (user.centroids > 0) {
    t.centroids = std::max<int64_t>(kPanel, (user.centroids + kPanel - 1) / kPanel * kPanel);
  } else {
    const int64_t budget = 512 * 1024;
    const int64_t nblocks = std::max<int64_t>(1, (kpad * d * 4 + budget - 1) / budget);
    const int64_t per = (kpad + nblocks - 1) / nblocks;
    t.centroids = (per + kPanel - 1) / kPanel * kPanel;
  }
  return t;
}

double certify_bound(Metric metric, int64_t d, double X, double C) {
  return ffma_certify_bound(metric == Metric::InnerProduct, double(d), X, C);
}

namespace {

// Additions a limb takes between two renormalisations (exact_sum.h: 2^31 fit).
constexpr int64_t kExactRenormRows = int64_t(1) << 30;

// Exact float64 distance of several (row, centroid) pairs, interleaved so the fma chains run
// in parallel; each chain is exactly detail::exact_l2 / exact_ip. fma is correctly rounded
// wherever it runs, so the hardware instruction (when the CPU has it) and libm's software
// fma give the same bits; the FMA build only avoids a library call per coordinate.
template <int W>
inline __attribute__((always_inline)) void exact_batch_body(Metric metric, const float* const* xs,
                                                            const float* const* cs, int64_t d,
                                                            double* out) {
  double acc[W] = {};
  if (metric == Metric::L2) {
    for (int64_t j = 0; j < d; ++j)
      for (int w = 0; w < W; ++w) {
        double t = double(xs[w][j]) - double(cs[w][j]);
        acc[w] = std::fma(t, t, acc[w]);
      }
  } else {
    for (int64_t j = 0; j < d; ++j)
      for (int w = 0; w < W; ++w) acc[w] = std::fma(double(xs[w][j]), double(cs[w][j]), acc[w]);
  }
  for (int w = 0; w < W; ++w) out[w] = acc[w];
}

template <int W>
__attribute__((target("fma"))) void exact_batch_fma(Metric metric, const float* const* xs,
                                                    const float* const* cs, int64_t d,
                                                    double* out) {
  exact_batch_body<W>(metric, xs, cs, d, out);
}

template <int W>
void exact_batch_generic(Metric metric, const float* const* xs, const float* const* cs, int64_t d,
                         double* out) {
  exact_batch_body<W>(metric, xs, cs, d, out);
}

const bool kHaveFma = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("fma") != 0;
}();

template <int W>
void exact_batch(Metric metric, const float* const* xs, const float* const* cs, int64_t d,
                 double* out) {
  if (kHaveFma)
    exact_batch_fma<W>(metric, xs, cs, d, out);
  else
    exact_batch_generic<W>(metric, xs, cs, d, out);
}

void exact_many(Metric metric, const float* const* xs, const float* const* cs, int64_t cnt,
                int64_t d, double* out) {
  int64_t i = 0;
  for (; i + 8 <= cnt; i += 8) exact_batch<8>(metric, xs + i, cs + i, d, out + i);
  for (; i < cnt; ++i) exact_batch<1>(metric, xs + i, cs + i, d, out + i);
}

class CpuEngine final : public Engine {
 public:
  CpuEngine(int64_t n, int64_t d, int64_t k, const float* x, const KMeansParams& p)
      : Engine(n, d, k, x, p), isa_(detect_isa()) {
    threads_ = p.threads > 0 ? p.threads : omp_get_max_threads();
    tiles_ = select_cpu_tiles(isa_, d, k, p.tiles);
    labels_.assign(n, -1);
    if (p.metric == Metric::L2) shift_ = column_mean(n, d, x, threads_);
    if (p.bounds && k >= 3) {
      cand_.resize(2 * n);
      lower_.resize(n);
    }
  }

  void set_centroids(const float* c) override {
    centroids_.assign(c, c + k_ * d_);
    pack_centroids(c, k_, d_, shift_.empty() ? nullptr : shift_.data(), params_.metric, &pc_);
  }

  AssignOutcome assign(float* distances, bool /*inertia: always computed*/) override {
    const int64_t nblocks = (n_ + kAssignBlock - 1) / kAssignBlock;
    std::vector<double> block_inertia(nblocks, 0);
    std::vector<int64_t> block_changed(nblocks, 0), block_fixups(nblocks, 0),
        block_pruned(nblocks, 0);
    const Isa isa = isa_;
    const int mr = micro_rows(isa);
    const int64_t tile_rows = tiles_.rows;
    const int64_t tile_alloc = (tile_rows + mr - 1) / mr * mr;
    const bool use_bounds = bounds_valid_;
    if (use_bounds) measure_drift();

#pragma omp parallel num_threads(threads_)
    {
      std::vector<float> buf(tile_alloc * d_ + 16);
      float* bufp = buf.data() + ((64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64) / 4;
      std::vector<double> norms(tile_alloc);
      std::vector<RowBest> best(tile_alloc);
      std::vector<double> dist(kAssignBlock);
      std::vector<const float*> xs(std::max<int64_t>(kAssignBlock, k_)), cs(xs.size());
      std::vector<double> fix(k_);
      std::vector<int64_t> full(kAssignBlock);

#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t b0 = blk * kAssignBlock, b1 = std::min(n_, b0 + kAssignBlock);
        int64_t fixups = 0, changed = 0, pruned = 0, nfull = 0;
        for (int64_t i = b0; i < b1; ++i) {
          int32_t label;
          if (use_bounds && settle_from_bounds(i, &label)) {
            ++pruned;
            changed += labels_[i] != label;
            labels_[i] = label;
          } else {
            full[nfull++] = i;
          }
        }
        for (int64_t t0 = 0; t0 < nfull; t0 += tile_rows) {
          const int64_t rows = std::min(tile_rows, nfull - t0);
          const int64_t* idx = full.data() + t0;
          pack_rows(isa, x_, idx, rows, d_, shift_.empty() ? nullptr : shift_.data(), bufp,
                    norms.data());
          std::fill(best.begin(), best.begin() + rows, kEmptyRow);
          for (int64_t c0 = 0; c0 < pc_.kpad; c0 += tiles_.centroids)
            fast_top2(isa, bufp, rows, pc_, c0, std::min(pc_.kpad, c0 + tiles_.centroids),
                      best.data());
          for (int64_t r = 0; r < rows; ++r) {
            const RowBest& b = best[r];
            int32_t label = b.index;
            const double window = certify_bound(params_.metric, d_, norms[r], pc_.max_norm);
            if (!(double(b.second) - double(b.best) > 2 * window)) {
              // Not certified. Only centroids whose fast value lies within the window of the
              // best can be the exact argmin; when the third value is outside it, those are
              // the first two, else recompute them all. Either way the float64 argmin of the
              // candidates is the float64 argmin over all centroids, up to float64 near-ties
              // (which the contract counts as ties).
              const float* xr = x_ + idx[r] * d_;
              label = double(b.third) - double(b.best) > 2 * window
                          ? exact_argmin2(xr, b.index, b.index2, fix.data())
                          : exact_argmin(xr, xs.data(), cs.data(), fix.data());
              ++fixups;
            }
            if (!cand_.empty()) keep_bounds(idx[r], b, norms[r], window);
            int32_t& old = labels_[idx[r]];
            changed += old != label;
            old = label;
          }
        }
        // Exact distance of each row to its centroid, summed in row order within the block:
        // the same value whatever the tile size or thread count.
        const int64_t rows = b1 - b0;
        for (int64_t r = 0; r < rows; ++r) {
          xs[r] = x_ + (b0 + r) * d_;
          cs[r] = centroids_.data() + int64_t(labels_[b0 + r]) * d_;
        }
        exact_many(params_.metric, xs.data(), cs.data(), rows, d_, dist.data());
        double sum = 0;
        for (int64_t r = 0; r < rows; ++r) {
          sum += dist[r];
          if (distances) distances[b0 + r] = float(dist[r]);
        }
        block_inertia[blk] = sum;
        block_changed[blk] = changed;
        block_fixups[blk] = fixups;
        block_pruned[blk] = pruned;
      }
    }
    AssignOutcome out;
    for (int64_t b = 0; b < nblocks; ++b) {
      out.inertia += block_inertia[b];
      out.changed += block_changed[b];
      out.fixups += block_fixups[b];
      out.pruned += block_pruned[b];
    }
    if (!cand_.empty()) {
      bounds_valid_ = true;
      bound_centroids_ = centroids_;
    }
    return out;
  }

  void update(float* centroids, int64_t* counts) override {
    // Sort-inverse: a stable counting sort of point ids by label, then each cluster's
    // contiguous segment is summed exactly (kernels/exact_sum.h), so the result depends on
    // neither the thread count nor the order; the CUDA backend gets the same bits.
    if (!format_ready_) {
      int lo, hi;
      exact_exponent_range(x_, n_ * d_, threads_, &lo, &hi);
      format_ = exact_format(lo, hi);
      format_ready_ = true;
    }
    std::vector<int64_t> start(k_ + 1, 0);
    for (int64_t i = 0; i < n_; ++i) ++start[labels_[i] + 1];
    for (int64_t c = 0; c < k_; ++c) start[c + 1] += start[c];
    order_.resize(n_);
    {
      std::vector<int64_t> pos(start.begin(), start.end() - 1);
      for (int64_t i = 0; i < n_; ++i) order_[pos[labels_[i]]++] = i;
    }
    const int L = format_.limbs, base = format_.base;
#pragma omp parallel num_threads(threads_)
    {
      std::vector<int64_t> acc(d_ * L);
#pragma omp for schedule(dynamic, 16)
      for (int64_t c = 0; c < k_; ++c) {
        const int64_t s0 = start[c], s1 = start[c + 1];
        counts[c] = s1 - s0;
        if (s0 == s1) continue;
        std::fill(acc.begin(), acc.end(), 0);
        for (int64_t s = s0; s < s1; ++s) {
          if (s > s0 && (s - s0) % kExactRenormRows == 0)
            for (int64_t j = 0; j < d_; ++j) exact_renormalize(&acc[j * L], L);
          const float* xi = x_ + order_[s] * d_;
          for (int64_t j = 0; j < d_; ++j) exact_add(&acc[j * L], base, xi[j]);
        }
        const double cnt = double(s1 - s0);
        for (int64_t j = 0; j < d_; ++j)
          centroids[c * d_ + j] = float(exact_to_double(&acc[j * L], L, base) / cnt);
      }
    }
  }

  void get_labels(int32_t* labels) override { std::copy(labels_.begin(), labels_.end(), labels); }

 private:
  // Float64 argmin over all centroids (L2: smallest distance, IP: largest inner product;
  // ties: lowest index).
  int32_t exact_argmin(const float* xr, const float** xs, const float** cs, double* val) const {
    for (int64_t j = 0; j < k_; ++j) {
      xs[j] = xr;
      cs[j] = centroids_.data() + j * d_;
    }
    exact_many(params_.metric, xs, cs, k_, d_, val);
    const double sign = params_.metric == Metric::L2 ? 1.0 : -1.0;
    int32_t arg = 0;
    for (int64_t j = 1; j < k_; ++j)
      if (sign * val[j] < sign * val[arg]) arg = static_cast<int32_t>(j);
    return arg;
  }

  // The better of candidates a and b in float64 (ties: lower index); their values go to v.
  int32_t exact_argmin2(const float* xr, int32_t a, int32_t b, double* v) const {
    const float* xs[2] = {xr, xr};
    const float* cs[2] = {centroids_.data() + int64_t(a) * d_, centroids_.data() + int64_t(b) * d_};
    exact_batch<2>(params_.metric, xs, cs, d_, v);
    const double sign = params_.metric == Metric::L2 ? 1.0 : -1.0;
    if (sign * v[0] < sign * v[1]) return a;
    if (sign * v[1] < sign * v[0]) return b;
    return std::min(a, b);
  }

  // Bounds kept per row between passes (KMeansParams::bounds). After a full pass, every
  // centroid other than the row's two best (cand_) is at "score" >= lower_[i], where the score
  // is the distance |x - c| for L2 and -x.c for IP. When the centroids then move by drift_j,
  // a score moves by at most drift_j (L2, triangle inequality) or |x| drift_j (IP,
  // Cauchy-Schwarz), so each other centroid is still at >= lower_[i] - w drift_j. If one of
  // the two candidates' exact float64 score is below every other centroid's (bounded that way,
  // or measured exactly for the few that moved most: settle_from_bounds), it is the argmin,
  // and the two float64 values decide it exactly as the fix-up would. Every bound is rounded
  // towards safety (relative margins far above float64 rounding, far below real gaps).
  static constexpr double kMargin = 1e-9;

  void keep_bounds(int64_t i, const RowBest& b, double x_norm, double window) {
    cand_[2 * i] = b.index;
    cand_[2 * i + 1] = b.index2;
    double lo = -std::numeric_limits<double>::infinity();
    if (std::isfinite(window) && b.index2 >= 0) {
      // Fast values v_j are within window of (L2) |x - c_j|^2 - |x'|^2 or (IP) -x.c_j, and
      // every centroid outside cand has v_j >= third.
      if (params_.metric == Metric::L2) {
        const double sq = double(b.third) + x_norm * x_norm - window;
        lo = sq > 0 ? std::sqrt(sq) * (1 - kMargin) : 0;
      } else {
        lo = double(b.third) - window;
        lo -= kMargin * (std::fabs(lo) + x_norm * pc_.max_norm);
      }
    }
    lower_[i] = round_down(lo);
  }

  static float round_down(double v) {
    float f = float(v);
    return double(f) > v ? std::nextafter(f, -std::numeric_limits<float>::infinity()) : f;
  }

  // drift_j = |c_j - c_j(at the last pass)|, rounded up, all centroids by decreasing drift.
  void measure_drift() {
    drift_order_.resize(k_);
    for (int64_t j = 0; j < k_; ++j) {
      const float* c = centroids_.data() + j * d_;
      const float* o = bound_centroids_.data() + j * d_;
      double sq = 0;
      for (int64_t t = 0; t < d_; ++t) {
        const double v = double(c[t]) - double(o[t]);
        sq = std::fma(v, v, sq);
      }
      drift_order_[j] = {std::sqrt(sq) * (1 + kMargin), int32_t(j)};
    }
    // Decreasing drift, ties by index: the same walk on every standard library.
    std::sort(drift_order_.begin(), drift_order_.end(), [](const auto& p, const auto& q) {
      return p.first > q.first || (p.first == q.first && p.second < q.second);
    });
  }

  // Centroids that moved most are checked one by one (exact distance) before the bound is
  // applied to the rest: a few far-moving centroids (a split, a sparse region) would otherwise
  // lower every row's bound by their drift.
  static constexpr int kDriftChecks = 32;

  // Settles row i from its bounds when they prove one of its two candidates nearest; updates
  // the bound for the next pass. False: the row needs a full pass.
  //
  // Scores: L2 the distance |x - c|, IP -x.c. Every centroid outside the candidates had score
  // >= lower_[i] at the last pass, so now >= lower_[i] - w drift_j (w = 1, or |x| for IP).
  // Walking centroids by decreasing drift, the ones not yet visited all satisfy it with the
  // drift at the current position; visited ones (at most kDriftChecks) have exact scores.
  bool settle_from_bounds(int64_t i, int32_t* label) {
    const int32_t a = cand_[2 * i], b = cand_[2 * i + 1];
    const float* xr = x_ + i * d_;
    const bool l2 = params_.metric == Metric::L2;
    double w = 1;
    if (!l2) {
      double sq = 0;
      for (int64_t t = 0; t < d_; ++t) sq = std::fma(double(xr[t]), double(xr[t]), sq);
      w = std::sqrt(sq) * (1 + kMargin);
    }
    const double lower = double(lower_[i]);
    auto rest_bound = [&](size_t pos) {  // bound of the centroids from position pos on
      if (pos >= drift_order_.size()) return std::numeric_limits<double>::infinity();
      double lo = lower - w * drift_order_[pos].first;
      return lo - kMargin * std::fabs(lo);
    };
    // The best bound the walk can reach; if even that is hopeless, skip the exact distances.
    const double reach = rest_bound(std::min(drift_order_.size(), size_t(kDriftChecks + 2)));
    if (!(l2 ? reach > 0 : reach > -std::numeric_limits<double>::infinity())) return false;

    double v[2];
    const int32_t arg = exact_argmin2(xr, a, b, v);
    double score;  // an upper bound on the best candidate's score
    // float64 rounding of the distances is below d * 2^-53 relative, far below kMargin.
    if (l2) {
      score = std::sqrt(std::min(v[0], v[1]) * (1 + kMargin));
    } else {
      score = -std::max(v[0], v[1]) + kMargin * w * pc_.max_norm;
    }
    // How far the walk must go: the first position whose rest bound exceeds the score. The
    // non-candidates before it (at most kDriftChecks, else the row takes the full pass) are
    // then checked with exact distances, interleaved.
    size_t pos = 0;
    int need = 0;
    int32_t visit[kDriftChecks];
    if (!std::isfinite(score)) return false;
    while (pos < drift_order_.size() && !(score < rest_bound(pos))) {
      const int32_t j = drift_order_[pos++].second;
      if (j == a || j == b) continue;
      if (need == kDriftChecks) return false;
      visit[need++] = j;
    }
    double visited = std::numeric_limits<double>::infinity();  // min exact score seen
    if (need > 0) {
      const float* vx[kDriftChecks];
      const float* vc[kDriftChecks];
      double vv[kDriftChecks];
      for (int t = 0; t < need; ++t) {
        vx[t] = xr;
        vc[t] = centroids_.data() + int64_t(visit[t]) * d_;
      }
      exact_many(params_.metric, vx, vc, need, d_, vv);
      for (int t = 0; t < need; ++t) {
        const double sj =
            l2 ? std::sqrt(vv[t] * (1 - kMargin)) : -vv[t] - kMargin * w * pc_.max_norm;
        if (!(score < sj)) return false;
        visited = std::min(visited, sj);
      }
    }
    *label = arg;
    lower_[i] = round_down(std::min(rest_bound(pos), visited));
    return true;
  }

  static std::vector<double> column_mean(int64_t n, int64_t d, const float* x, int threads) {
    const int64_t nblocks = (n + kAssignBlock - 1) / kAssignBlock;
    std::vector<double> part(nblocks * d, 0.0);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      double* p = part.data() + b * d;
      for (int64_t i = b * kAssignBlock; i < std::min(n, (b + 1) * kAssignBlock); ++i)
        for (int64_t j = 0; j < d; ++j) p[j] += x[i * d + j];
    }
    std::vector<double> mean(d, 0.0);
    for (int64_t b = 0; b < nblocks; ++b)
      for (int64_t j = 0; j < d; ++j) mean[j] += part[b * d + j];
    for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
    return mean;
  }

  Isa isa_;
  int threads_ = 1;
  CpuTiles tiles_;
  std::vector<int32_t> labels_;
  std::vector<int64_t> order_;
  bool format_ready_ = false;
  ExactFormat format_;  // of x, made by the first update()
  std::vector<float> centroids_;
  std::vector<double> shift_;
  PackedCentroids pc_;
  bool bounds_valid_ = false;
  std::vector<float> bound_centroids_;  // the centroids the bounds refer to
  std::vector<int32_t> cand_;           // n x 2: the two best centroids of the last full pass
  std::vector<float> lower_;            // n: lower bound on the other centroids' scores
  std::vector<std::pair<double, int32_t>> drift_order_;  // (drift, centroid), decreasing
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Engine> make_cpu_engine(int64_t n, int64_t d, int64_t k, const float* x,
                                        const KMeansParams& p) {
  return std::make_unique<cpu::CpuEngine>(n, d, k, x, p);
}

}  // namespace detail
}  // namespace flashkm
