// Exact sums (kernels/exact_sum.h) against the correctly rounded float64 sum of Shewchuk's
// partials (reference::fsum), and the CPU engine's means against the contract's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "flashkm/kmeans.h"
#include "kernels/exact_sum.h"
#include "kernels/reference.h"

namespace flashkm {
namespace {

using detail::ExactFormat;

ExactFormat format_of(const std::vector<float>& v) {
  int lo, hi;
  detail::exact_exponent_range(v.data(), int64_t(v.size()), 2, &lo, &hi);
  return detail::exact_format(lo, hi);
}

double exact_sum(const std::vector<float>& v, const ExactFormat& f) {
  std::vector<int64_t> limbs(f.limbs, 0);
  for (float x : v) detail::exact_add(limbs.data(), f.base, x);
  return detail::exact_to_double(limbs.data(), f.limbs, f.base);
}

double oracle(const std::vector<float>& v) {
  return reference::fsum(std::vector<double>(v.begin(), v.end()));
}

// Values from one of several magnitude regimes: a narrow one (embedding-like), every float
// exponent including subnormals, and signs mixed.
std::vector<float> draw(std::mt19937_64& rng, int regime, int count) {
  std::vector<float> v(count);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_int_distribution<int> e_all(-149, 127), e_mid(-40, 40);
  for (float& x : v) {
    switch (regime) {
      case 0:
        x = g(rng);
        break;
      case 1:
        x = std::ldexp(1.0f + std::fabs(g(rng)), e_all(rng) - 1);
        if (!std::isfinite(x)) x = 1.0f;
        break;
      default:
        x = std::ldexp(g(rng), e_mid(rng));
        break;
    }
    if (rng() & 1) x = -x;
  }
  return v;
}

TEST(ExactSum, EqualsTheCorrectlyRoundedSumInAnyOrder) {
  std::mt19937_64 rng(7);
  for (int regime = 0; regime < 3; ++regime) {
    for (int trial = 0; trial < 40; ++trial) {
      SCOPED_TRACE("regime " + std::to_string(regime) + ", trial " + std::to_string(trial));
      std::vector<float> v = draw(rng, regime, 1 + int(rng() % 3000));
      const ExactFormat f = format_of(v);
      ASSERT_GE(f.limbs, 3);
      ASSERT_LE(f.limbs, detail::kExactMaxLimbs);
      const double want = oracle(v);
      ASSERT_EQ(exact_sum(v, f), want);
      std::shuffle(v.begin(), v.end(), rng);
      ASSERT_EQ(exact_sum(v, f), want);
    }
  }
}

TEST(ExactSum, CancellationAndHalfwayCases) {
  // Float64 in order loses the 1 entirely: 2^60 + 1 rounds to 2^60.
  const std::vector<float> lost = {std::ldexp(1.f, 60), 1.f, -std::ldexp(1.f, 60)};
  ASSERT_EQ(exact_sum(lost, format_of(lost)), 1.0);
  double naive = 0;
  for (float x : lost) naive += x;
  EXPECT_EQ(naive, 0.0);  // what a float64 chain gives, for contrast
  // 1 + 2^-53 lies halfway between 1 and the next double: ties to even gives 1; a further
  // 2^-100 breaks the tie upwards, -2^-100 downwards.
  const std::vector<float> tie = {1.f, std::ldexp(1.f, -53)};
  EXPECT_EQ(exact_sum(tie, format_of(tie)), 1.0);
  std::vector<float> up = tie, down = tie;
  up.push_back(std::ldexp(1.f, -100));
  down.push_back(-std::ldexp(1.f, -100));
  EXPECT_EQ(exact_sum(up, format_of(up)), 1.0 + std::ldexp(1.0, -52));
  EXPECT_EQ(exact_sum(down, format_of(down)), 1.0);
  EXPECT_EQ(oracle(up), 1.0 + std::ldexp(1.0, -52));
  // Subnormals and the largest floats in one sum; a negative total; zeros and -0.
  const float tiny = std::numeric_limits<float>::denorm_min();
  const float big = std::numeric_limits<float>::max();
  const std::vector<float> wide = {big, tiny, -big, -tiny, -tiny, 0.f, -0.f, big, -big};
  EXPECT_EQ(exact_sum(wide, format_of(wide)), -double(tiny));
  const std::vector<float> zeros = {0.f, -0.f};
  EXPECT_EQ(exact_sum(zeros, format_of(zeros)), 0.0);
  // The sum of many of the largest floats exceeds float range but not the limbs'.
  const std::vector<float> many(1000, big);
  EXPECT_EQ(exact_sum(many, format_of(many)), 1000.0 * double(big));
}

TEST(ExactSum, SubtractedValuesLeaveNoTrace) {
  // The GPU's updates from moved rows: values added to one sum and later subtracted again
  // leave exactly the sum of the rest, and renormalising changes nothing.
  std::mt19937_64 rng(11);
  for (int regime = 0; regime < 3; ++regime) {
    std::vector<float> keep = draw(rng, regime, 500), gone = draw(rng, regime, 300);
    std::vector<float> all = keep;
    all.insert(all.end(), gone.begin(), gone.end());
    const ExactFormat f = format_of(all);
    std::vector<int64_t> limbs(f.limbs, 0);
    for (float x : all) detail::exact_add(limbs.data(), f.base, x);
    detail::exact_renormalize(limbs.data(), f.limbs);
    for (float x : gone) detail::exact_add(limbs.data(), f.base, x, -1);
    EXPECT_EQ(detail::exact_to_double(limbs.data(), f.limbs, f.base), oracle(keep));
  }
}

// The GPU sums runs of values exactly in float64 and adds them as one integer at 2^fast
// (exact_scaled_parts); taking runs out in other groupings than they went in (moved rows)
// leaves carries that cancel only in value, and renormalising restores small limbs. A host
// mirror: runs go in, then single values and other runs come out, many times over; the limbs
// stay bounded after each renormalisation and the sum stays exact.
TEST(ExactSum, RunsInAndOutInOtherGroupingsStayExact) {
  std::mt19937_64 rng(13);
  for (int regime = 0; regime < 3; ++regime) {
    SCOPED_TRACE("regime " + std::to_string(regime));
    std::vector<float> v = draw(rng, regime, 600);
    const ExactFormat f = format_of(v);
    std::vector<int64_t> limbs(f.limbs, 0);
    // Values with ulp >= 2^fast go in runs of up to 256, the rest one by one (as the kernel).
    auto add = [&](const std::vector<float>& vals, int64_t sign) {
      double run = 0;
      int in_run = 0;
      auto flush = [&] {
        if (run == 0) return;
        int digit;
        int64_t p[3];
        detail::exact_scaled_parts(int64_t(std::ldexp(run, -f.fast)), f.fast - f.base, &digit,
                                   &p[0], &p[1], &p[2]);
        for (int q = 0; q < 3; ++q) limbs[digit + q] += sign * p[q];
        run = 0;
        in_run = 0;
      };
      for (float x : vals) {
        uint32_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        if ((bits & 0x7fffffffu) == 0 || detail::float_ulp_exp(bits) >= f.fast) {
          run += double(x);
          if (++in_run == detail::kExactRunValues) flush();
        } else {
          detail::exact_add(limbs.data(), f.base, x, sign);
        }
      }
      flush();
    };
    add(v, 1);
    for (int cycle = 0; cycle < 200; ++cycle) {
      // Take out and put back a random subset, grouped differently each way.
      std::vector<float> some;
      for (float x : v)
        if (rng() % 3 == 0) some.push_back(x);
      add(some, -1);
      std::shuffle(some.begin(), some.end(), rng);
      add(some, 1);
      detail::exact_renormalize(limbs.data(), f.limbs);
      for (int l = 0; l + 1 < f.limbs; ++l) ASSERT_LT(uint64_t(limbs[l]), uint64_t(1) << 32);
    }
    EXPECT_EQ(detail::exact_to_double(limbs.data(), f.limbs, f.base), oracle(v));
  }
  // A negative total exactly halfway between two doubles rounds to even.
  const std::vector<float> neg = {-1.f, -std::ldexp(1.f, -53)};
  EXPECT_EQ(exact_sum(neg, format_of(neg)), -1.0);
}

// k = 1: the centroid is the exact mean of all points rounded (float(fsum / n)), also where
// a float64 running sum loses small values next to large cancelling ones.
TEST(ExactSum, KMeansCentroidIsTheExactMean) {
  const int64_t d = 3;
  std::vector<float> x = {std::ldexp(1.f, 60),
                          1.f,
                          -3.f,  //
                          1.f,
                          2.f,
                          5.f,  //
                          -std::ldexp(1.f, 60),
                          7.f,
                          1e-30f};
  KMeansParams p;
  p.n_clusters = 1;
  p.init = Init::Given;
  p.init_centroids = {0.f, 0.f, 0.f};
  p.max_iter = 1;
  p.device = Device::CPU;
  KMeansResult r = KMeans(d, p).fit(3, x.data());
  ASSERT_EQ(r.centroids.size(), 3u);
  EXPECT_EQ(r.centroids[0], float(1.0 / 3));  // a float64 chain gives 0
  EXPECT_EQ(r.centroids[1], float(10.0 / 3));
  EXPECT_EQ(r.centroids[2], float(reference::fsum({-3.0, 5.0, double(1e-30f)}) / 3));
}

}  // namespace
}  // namespace flashkm
