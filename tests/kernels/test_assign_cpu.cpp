// The CPU fused kernel against plain arithmetic: the fast values are the documented fmaf
// chain on every SIMD level, and the certification bound holds against float64.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/cpu/assign_cpu.h"
#include "kernels/cpu/cpu_engine.h"
#include "tests/kernels/test_util.h"

namespace flashkm {
namespace detail {
namespace cpu {
namespace {

struct Case {
  int64_t rows, d, k;
};

// For each row: the three smallest fast values over all centroids, computed the plain way.
void plain_top2(const std::vector<float>& xs, const PackedCentroids& pc, int64_t rows,
                const std::vector<float>& cs, std::vector<RowBest>* out) {
  const int64_t d = pc.d;
  out->assign(rows, kEmptyRow);
  for (int64_t r = 0; r < rows; ++r) {
    RowBest& b = (*out)[r];
    for (int64_t j = 0; j < pc.k; ++j) {
      float s = 0;
      for (int64_t t = 0; t < d; ++t) s = std::fma(xs[r * d + t], cs[j * d + t], s);
      float v = std::fma(pc.alpha, s, pc.beta[j]);
      if (v < b.best) {
        b.third = b.second;
        b.second = b.best;
        b.index2 = b.index;
        b.best = v;
        b.index = int32_t(j);
      } else if (v < b.second) {
        b.third = b.second;
        b.second = v;
        b.index2 = int32_t(j);
      } else if (v < b.third) {
        b.third = v;
      }
    }
  }
}

TEST(AssignCpu, FastValuesEqualThePlainChainOnEveryIsa) {
  const Case cases[] = {{1, 1, 1}, {13, 33, 31}, {25, 128, 100}, {7, 5, 64}, {30, 70, 33}};
  for (const Case& cs : cases) {
    for (Metric m : {Metric::L2, Metric::InnerProduct}) {
      SCOPED_TRACE(flashkm::testing::shape(cs.rows, cs.d, cs.k, 3) + " " + to_string(m));
      std::vector<float> x = flashkm::testing::blobs(cs.rows, cs.d, 3, 21);
      std::vector<float> c = flashkm::testing::blobs(cs.k, cs.d, 3, 22);
      std::vector<double> shift(cs.d, 0.25);
      const double* sh = m == Metric::L2 ? shift.data() : nullptr;
      PackedCentroids pc;
      pack_centroids(c.data(), cs.k, cs.d, sh, m, &pc);
      // The shifted float32 values the kernel works on, unpacked the plain way.
      std::vector<float> xs(x.size()), cshift(c.size());
      for (size_t i = 0; i < x.size(); ++i)
        xs[i] = sh ? float(double(x[i]) - 0.25) : x[i];
      for (size_t i = 0; i < c.size(); ++i)
        cshift[i] = sh ? float(double(c[i]) - 0.25) : c[i];
      std::vector<RowBest> want;
      plain_top2(xs, pc, cs.rows, cshift, &want);
      for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
        if (static_cast<int>(isa) > static_cast<int>(detect_isa())) continue;
        SCOPED_TRACE(isa_name(isa));
        const int mr = micro_rows(isa);
        std::vector<float> buf((cs.rows + mr) * cs.d + 16);
        std::vector<double> norms(cs.rows);
        pack_rows(isa, x.data(), cs.rows, cs.d, sh, buf.data(), norms.data());
        std::vector<RowBest> got(cs.rows, kEmptyRow);
        for (int64_t c0 = 0; c0 < pc.kpad; c0 += kPanel)  // smallest centroid blocks
          fast_top2(isa, buf.data(), cs.rows, pc, c0, c0 + kPanel, got.data());
        for (int64_t r = 0; r < cs.rows; ++r) {
          EXPECT_EQ(got[r].index, want[r].index) << "row " << r;
          EXPECT_EQ(got[r].best, want[r].best) << "row " << r;
          EXPECT_EQ(got[r].second, want[r].second) << "row " << r;
          EXPECT_EQ(got[r].third, want[r].third) << "row " << r;
          EXPECT_EQ(got[r].index2, want[r].index2) << "row " << r;
        }
      }
    }
  }
}

// The bound must cover the gap between every fast value and the float64 truth.
TEST(AssignCpu, CertificationBoundHolds) {
  std::mt19937_64 rng(5);
  for (int64_t d : {1, 16, 128, 768}) {
    for (float offset : {0.f, 300.f}) {
      SCOPED_TRACE("d=" + std::to_string(d) + " offset=" + std::to_string(offset));
      const int64_t rows = 40, k = 64;
      std::vector<float> x = flashkm::testing::blobs(rows, d, 4, rng(), 3.f, offset);
      std::vector<float> c = flashkm::testing::blobs(k, d, 4, rng(), 3.f, offset);
      std::vector<double> shift(d, offset);
      PackedCentroids pc;
      pack_centroids(c.data(), k, d, shift.data(), Metric::L2, &pc);
      std::vector<float> buf((rows + 12) * d + 16);
      std::vector<double> norms(rows);
      pack_rows(Isa::Scalar, x.data(), rows, d, shift.data(), buf.data(), norms.data());
      for (int64_t r = 0; r < rows; ++r) {
        const double e = certify_bound(Metric::L2, d, norms[r], pc.max_norm);
        // v_j + |x'|^2 approximates |x - c_j|^2 within E (the row constant is exact enough
        // in float64 here: it only shifts all values equally).
        double xx = norms[r] * norms[r];
        for (int64_t j = 0; j < k; ++j) {
          float s = 0;
          for (int64_t t = 0; t < d; ++t)
            s = std::fma(buf[(r / 6) * 6 * d + t * 6 + r % 6],
                         pc.panel(j / kPanel)[t * kPanel + j % kPanel], s);
          float v = std::fma(-2.f, s, pc.beta[j]);
          double truth = 0;
          for (int64_t t = 0; t < d; ++t) {
            double u = double(x[r * d + t]) - double(c[j * d + t]);
            truth += u * u;
          }
          EXPECT_LE(std::fabs(double(v) + xx - truth), e + 1e-9 * truth) << r << "," << j;
        }
      }
    }
  }
}

TEST(AssignCpu, CertificationBoundHoldsForInnerProduct) {
  std::mt19937_64 rng(6);
  for (int64_t d : {1, 16, 128, 768}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const int64_t rows = 40, k = 64;
    std::vector<float> x = flashkm::testing::blobs(rows, d, 4, rng(), 3.f, 50.f);
    std::vector<float> c = flashkm::testing::blobs(k, d, 4, rng(), 3.f, -50.f);
    PackedCentroids pc;
    pack_centroids(c.data(), k, d, nullptr, Metric::InnerProduct, &pc);
    std::vector<float> buf((rows + 12) * d + 16);
    std::vector<double> norms(rows);
    pack_rows(Isa::Scalar, x.data(), rows, d, nullptr, buf.data(), norms.data());
    for (int64_t r = 0; r < rows; ++r) {
      const double e = certify_bound(Metric::InnerProduct, d, norms[r], pc.max_norm);
      for (int64_t j = 0; j < k; ++j) {
        float s = 0;
        for (int64_t t = 0; t < d; ++t)
          s = std::fma(buf[(r / 6) * 6 * d + t * 6 + r % 6],
                       pc.panel(j / kPanel)[t * kPanel + j % kPanel], s);
        const float v = std::fma(-1.f, s, 0.f);
        double truth = 0;
        for (int64_t t = 0; t < d; ++t) truth -= double(x[r * d + t]) * double(c[j * d + t]);
        EXPECT_LE(std::fabs(double(v) - truth), e) << r << "," << j;
      }
    }
  }
}

TEST(AssignCpu, NoBoundWhereFloat32CanOverflow) {
  EXPECT_TRUE(std::isinf(certify_bound(Metric::L2, 4, 2e19, 1.0)));
  EXPECT_TRUE(std::isfinite(certify_bound(Metric::L2, 4, 1e18, 1e18)));
}

}  // namespace
}  // namespace cpu
}  // namespace detail
}  // namespace flashkm
