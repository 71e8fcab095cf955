// flashkm::KMeans on the CPU against the float64 reference Lloyd (kernels/reference.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <tuple>

#include "flashkm/kmeans.h"
#include "kernels/cpu/assign_cpu.h"
#include "kernels/engine.h"
#include "kernels/reference.h"
#include "tests/kernels/test_util.h"

namespace flashkm {
namespace {

using testing::blobs;
using testing::label_errors;
using testing::pick_rows;
using testing::shape;

KMeansParams given(int64_t k, const std::vector<float>& c, int iters, Metric m = Metric::L2) {
  KMeansParams p;
  p.n_clusters = static_cast<int>(k);
  p.init = Init::Given;
  p.init_centroids = c;
  p.max_iter = iters;
  p.metric = m;
  p.device = Device::CPU;
  return p;
}

// One Lloyd step at a time, each checked against the oracle started from the same float32
// centroids: labels equal except ties, centroids equal to the float64 means rounded once.
void lockstep(Metric metric, int64_t n, int64_t d, int64_t k, uint64_t seed, int steps,
              TileConfig tiles = {}) {
  SCOPED_TRACE(shape(n, d, k, seed));
  std::vector<float> x = blobs(n, d, std::max<int64_t>(1, k / 2), seed);
  if (metric == Metric::InnerProduct) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
      for (int64_t j = 0; j < d; ++j) x[i * d + j] = float(x[i * d + j] / std::sqrt(s));
    }
  }
  std::vector<float> c = pick_rows(x, d, k);
  for (int s = 0; s < steps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    KMeansParams p = given(k, c, 1, metric);
    p.tiles = tiles;
    KMeans km(d, p);
    KMeansResult r = km.fit(n, x.data());
    ASSERT_EQ(r.iterations.size(), 1u);

    // Update: the oracle's labels against c, then its means (rounded once), then the same
    // empty-cluster policy and normalisation.
    std::vector<double> sums;
    std::vector<int64_t> counts;
    KMeansParams p0 = given(k, c, 0, metric);
    std::vector<float> cc = c;
    if (metric == Metric::InnerProduct) {
      // The engine normalises given centroids first, like faiss's post-processing.
      for (int64_t i = 0; i < k; ++i) {
        double s2 = 0;
        for (int64_t j = 0; j < d; ++j) s2 += double(cc[i * d + j]) * cc[i * d + j];
        for (int64_t j = 0; j < d; ++j) cc[i * d + j] = float(cc[i * d + j] * (1 / std::sqrt(s2)));
      }
    }
    KMeansResult r0 = KMeans(d, p0).fit(n, x.data());
    int64_t ties = 0;
    EXPECT_EQ(label_errors(metric, n, d, x.data(), k, cc.data(), r0.labels, &ties), 0);
    EXPECT_LT(ties, std::max<int64_t>(2, n / 1000));
    reference::means(n, d, x.data(), r0.labels.data(), k, &sums, &counts);
    // Expected centroids: the oracle's means rounded once; empty rows keep their centroid and
    // then go through the same (faiss-compatible) policy, then spherical normalisation.
    std::vector<float> want = cc;
    int64_t empty = 0;
    for (int64_t i = 0; i < k; ++i) {
      empty += counts[i] == 0;
      if (counts[i] > 0)
        for (int64_t j = 0; j < d; ++j) want[i * d + j] = float(sums[i * d + j]);
    }
    detail::handle_empty_clusters(EmptyClusterPolicy::Split, 0, n, d, k, want.data(), counts);
    if (metric == Metric::InnerProduct) detail::normalize_rows(k, d, want.data());
    ASSERT_EQ(r.centroids, want);
    EXPECT_EQ(r.iterations[0].empty_clusters, empty);
    // Inertia of the final labels against the final centroids, in float64.
    std::vector<int32_t> fl;
    std::vector<double> fd;
    reference::assign(metric, n, d, x.data(), k, r.centroids.data(), &fl, &fd);
    double inertia = 0;
    for (double v : fd) inertia += v;
    EXPECT_NEAR(r.inertia, inertia, 1e-9 * std::fabs(inertia) + 1e-9);
    EXPECT_EQ(label_errors(metric, n, d, x.data(), k, r.centroids.data(), r.labels), 0);
    c = r.centroids;
  }
}

TEST(KMeansOracle, GaussianMixture) { lockstep(Metric::L2, 3000, 24, 40, 1, 4); }
TEST(KMeansOracle, OddShapes) {
  lockstep(Metric::L2, 1001, 1, 7, 2, 3);    // d = 1
  lockstep(Metric::L2, 777, 33, 33, 3, 3);   // k = panel + 1
  lockstep(Metric::L2, 500, 129, 65, 4, 2);  // d and k past a power of two
  lockstep(Metric::L2, 300, 5, 1, 5, 2);     // k = 1
  lockstep(Metric::L2, 64, 3, 64, 6, 2);     // n == k
}
TEST(KMeansOracle, TinyTiles) { lockstep(Metric::L2, 999, 17, 70, 7, 3, TileConfig{1, 32}); }
TEST(KMeansOracle, InnerProduct) { lockstep(Metric::InnerProduct, 2000, 32, 30, 8, 3); }
TEST(KMeansOracle, LargeOffsetData) {
  // Uncentred data far from the origin (like raw pixels): centring keeps it certifiable and
  // the fix-up keeps it exact.
  SCOPED_TRACE("offset 1000");
  const int64_t n = 2000, d = 16, k = 20;
  std::vector<float> x = blobs(n, d, 10, 9, 5.f, 1000.f);
  std::vector<float> c = pick_rows(x, d, k);
  KMeansResult r = KMeans(d, given(k, c, 0)).fit(n, x.data());
  EXPECT_EQ(label_errors(Metric::L2, n, d, x.data(), k, c.data(), r.labels), 0);
}

TEST(KMeansExact, HugeAndTinyMagnitudes) {
  // Float32 products overflow (1e25^2) or underflow (1e-25^2) in the fast pass: every row must
  // then fall through to the float64 path and still get the oracle's label.
  for (float scale : {1e25f, 1e-25f}) {
    SCOPED_TRACE("scale " + std::to_string(scale));
    const int64_t n = 300, d = 9, k = 7;
    std::vector<float> x = blobs(n, d, 5, 17);
    for (float& v : x) v *= scale;
    std::vector<float> c = pick_rows(x, d, k);
    KMeansResult r = KMeans(d, given(k, c, 0)).fit(n, x.data());
    EXPECT_EQ(label_errors(Metric::L2, n, d, x.data(), k, c.data(), r.labels), 0);
  }
}

TEST(KMeansExact, DuplicateCentroidsGoToLowestIndex) {
  // Pairs settle with two float64 distances, triples need the float64 pass over all k.
  for (int copies : {2, 3}) {
    SCOPED_TRACE(std::to_string(copies) + " copies");
    const int64_t n = 500, d = 8, k = 3 * copies;
    std::vector<float> x = blobs(n, d, 3, 10);
    std::vector<float> base = pick_rows(x, d, 3), c;
    for (int i = 0; i < copies; ++i) c.insert(c.end(), base.begin(), base.end());
    KMeansParams p = given(k, c, 1);
    p.empty_policy = EmptyClusterPolicy::Keep;
    KMeansResult r1 = KMeans(d, p).fit(n, x.data());
    EXPECT_EQ(r1.iterations[0].fixups, n);  // every row has an exact tie
    KMeansResult r = KMeans(d, given(k, c, 0)).fit(n, x.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_LT(r.labels[i], 3) << "point " << i;
    EXPECT_EQ(label_errors(Metric::L2, n, d, x.data(), k, c.data(), r.labels), 0);
  }
}

TEST(KMeansExact, NearTiesAreFixedUp) {
  // Points near the midpoint of two centroids that are far (1000) from the data: the gaps
  // (<= 0.02) are far below float32 resolution of distances near 1e6, so no row can be
  // certified and the float64 path must decide every one, like the oracle.
  const int64_t d = 4, k = 2, n = 100;
  std::vector<float> c = {0, 0, 0, 0, 2, 0, 0, 0};
  std::vector<float> x;
  for (int i = 0; i < n; ++i) x.insert(x.end(), {1.f + (i - 50) * 1e-4f, 1000, 0, 0});
  KMeansParams p = given(k, c, 1);
  p.empty_policy = EmptyClusterPolicy::Keep;
  KMeansResult r1 = KMeans(d, p).fit(n, x.data());
  EXPECT_EQ(r1.iterations[0].fixups, n);
  KMeansResult r = KMeans(d, given(k, c, 0)).fit(n, x.data());
  std::vector<int32_t> ref;
  std::vector<double> dist;
  reference::assign(Metric::L2, n, d, x.data(), k, c.data(), &ref, &dist);
  EXPECT_EQ(r.labels, ref);
  EXPECT_EQ(std::count(ref.begin(), ref.end(), 0), 51);  // i <= 50 is at or left of 1
}

TEST(KMeansExact, MixedMagnitudesThatOverflowFloat32) {
  // 3e19^2 overflows float32 in the fast pass for one point only; that row must take the
  // float64 path (a NaN fast value must not drop the true nearest centroid).
  const int64_t n = 101, d = 1, k = 2;
  std::vector<float> x(n, 0.f);
  x[100] = 3e19f;
  std::vector<float> c = {0.f, 3e19f};
  KMeansResult r = KMeans(d, given(k, c, 0)).fit(n, x.data());
  EXPECT_EQ(r.labels[100], 1);
  EXPECT_EQ(label_errors(Metric::L2, n, d, x.data(), k, c.data(), r.labels), 0);
}

// KMeansParams::bounds settles rows from the previous pass's bounds; results must be exactly
// those of full passes (every label, tie decision, centroid and statistic but the counters).
void expect_bounds_change_nothing(const std::vector<float>& x, int64_t d, KMeansParams p,
                                  bool expect_pruning) {
  const int64_t n = int64_t(x.size()) / d;
  p.device = Device::CPU;
  p.bounds = false;
  const KMeansResult full = KMeans(d, p).fit(n, x.data());
  p.bounds = true;
  const KMeansResult fast = KMeans(d, p).fit(n, x.data());
  ASSERT_EQ(fast.iterations.size(), full.iterations.size());
  int64_t pruned = 0;
  for (size_t i = 0; i < full.iterations.size(); ++i) {
    SCOPED_TRACE("iteration " + std::to_string(i));
    EXPECT_EQ(fast.iterations[i].inertia, full.iterations[i].inertia);
    EXPECT_EQ(fast.iterations[i].changed, full.iterations[i].changed);
    EXPECT_EQ(fast.iterations[i].empty_clusters, full.iterations[i].empty_clusters);
    EXPECT_EQ(full.iterations[i].pruned, 0);
    pruned += fast.iterations[i].pruned;
  }
  EXPECT_EQ(fast.iterations[0].pruned, 0);  // nothing to go on before the first pass
  EXPECT_EQ(fast.labels, full.labels);
  EXPECT_EQ(fast.centroids, full.centroids);
  EXPECT_EQ(fast.inertia, full.inertia);
  if (expect_pruning) EXPECT_GT(pruned, 0);
  // Settling is decided per row from shared, read-only state: the thread count changes nothing,
  // not even the counters.
  p.threads = p.threads == 1 ? 2 : 1;
  const KMeansResult other = KMeans(d, p).fit(n, x.data());
  EXPECT_EQ(other.labels, fast.labels);
  EXPECT_EQ(other.centroids, fast.centroids);
  for (size_t i = 0; i < fast.iterations.size() && i < other.iterations.size(); ++i)
    EXPECT_EQ(other.iterations[i].pruned, fast.iterations[i].pruned) << "iteration " << i;
  EXPECT_EQ(
      label_errors(p.metric, n, d, x.data(), p.n_clusters, fast.centroids.data(), fast.labels), 0);
}

TEST(KMeansBounds, SameResultsAsFullPasses) {
  struct Case {
    int64_t n, d, k, centers;
    Metric metric;
  };
  for (const Case& c :
       {Case{6000, 24, 40, 20, Metric::L2}, Case{3000, 1, 9, 5, Metric::L2},
        Case{2000, 70, 33, 40, Metric::L2}, Case{4000, 32, 30, 15, Metric::InnerProduct},
        Case{500, 5, 3, 3, Metric::L2},
        // k >= 128: more centroids than the walk measures exactly (32), so both the walk and
        // its give-up are exercised.
        Case{8000, 12, 160, 60, Metric::L2}, Case{6000, 20, 130, 50, Metric::InnerProduct}}) {
    SCOPED_TRACE(shape(c.n, c.d, c.k, 0) + (c.metric == Metric::L2 ? " l2" : " ip"));
    std::vector<float> x = blobs(c.n, c.d, c.centers, 21);
    if (c.metric == Metric::InnerProduct) {
      for (int64_t i = 0; i < c.n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < c.d; ++j) s += double(x[i * c.d + j]) * x[i * c.d + j];
        for (int64_t j = 0; j < c.d; ++j) x[i * c.d + j] = float(x[i * c.d + j] / std::sqrt(s));
      }
    }
    KMeansParams p = given(c.k, pick_rows(x, c.d, c.k), 12, c.metric);
    p.threads = 2;
    expect_bounds_change_nothing(x, c.d, p, true);
  }
}

TEST(KMeansBounds, TiesJumpsAndEmptyClusters) {
  // Integer points on a small grid (many exact ties in float64, which must still go to the
  // lowest index), and initial centroids stacked on a few points, so clusters go empty and
  // split: split centroids jump far, which the bounds must notice.
  const int64_t n = 3000, d = 6, k = 24;
  std::mt19937_64 rng(5);
  std::vector<float> x(n * d);
  for (float& v : x) v = float(rng() % 3);
  std::vector<float> c;
  for (int64_t i = 0; i < k; ++i)
    c.insert(c.end(), x.begin() + (i % 4) * d, x.begin() + (i % 4 + 1) * d);
  KMeansParams p = given(k, c, 10);
  expect_bounds_change_nothing(x, d, p, false);
  p.empty_policy = EmptyClusterPolicy::Keep;
  expect_bounds_change_nothing(x, d, p, false);
  // The same with many centroids: stacked on 8 points, the copies split one after another and
  // jump far while the others settle.
  {
    const int64_t k2 = 150;
    std::vector<float> z = blobs(6000, d, 40, 4, 8.f);
    std::vector<float> c2;
    for (int64_t i = 0; i < k2; ++i)
      c2.insert(c2.end(), z.begin() + (i % 8) * d, z.begin() + (i % 8 + 1) * d);
    expect_bounds_change_nothing(z, d, given(k2, c2, 12), true);
  }
  // Far, well-separated blobs: rows settle from bounds in the very next pass.
  std::vector<float> y = blobs(n, d, 8, 3, 100.f);
  expect_bounds_change_nothing(y, d, given(8, pick_rows(y, d, 8), 6), true);
}

// Sets FLASHKM_ISA for one scope (the CPU backend reads it when an engine is made).
class IsaOverride {
 public:
  explicit IsaOverride(const char* isa) { setenv("FLASHKM_ISA", isa, 1); }
  ~IsaOverride() { unsetenv("FLASHKM_ISA"); }
};

// Bit-identical output whatever the tiles, threads and SIMD level (levels above what this
// CPU has run as the best it has; the test prints which ran).
TEST(KMeansDeterminism, TilesThreadsIsa) {
  const int64_t n = 4000, d = 37, k = 50;
  std::vector<float> x = blobs(n, d, 25, 11);
  KMeansParams base = given(k, pick_rows(x, d, k), 5);
  KMeansResult ref = KMeans(d, base).fit(n, x.data());
  const char* isas[] = {"scalar", "avx2", "avx512"};
  const TileConfig tiles[] = {{}, {1, 32}, {13, 64}, {1024, 1024}, {5, 4096}};
  for (const char* isa : isas) {
    IsaOverride guard(isa);
    std::printf("FLASHKM_ISA=%s runs as %s\n", isa,
                detail::cpu::isa_name(detail::cpu::detect_isa()));
    for (const TileConfig& t : tiles) {
      for (int threads : {1, 2, 3}) {
        SCOPED_TRACE(std::string(isa) + " tiles " + std::to_string(t.rows) + "x" +
                     std::to_string(t.centroids) + " threads " + std::to_string(threads));
        KMeansParams p = base;
        p.tiles = t;
        p.threads = threads;
        KMeansResult r = KMeans(d, p).fit(n, x.data());
        ASSERT_EQ(r.labels, ref.labels);
        ASSERT_EQ(r.centroids, ref.centroids);
        ASSERT_EQ(r.inertia, ref.inertia);
        ASSERT_EQ(r.iterations.size(), ref.iterations.size());
        for (size_t i = 0; i < r.iterations.size(); ++i) {
          EXPECT_EQ(r.iterations[i].inertia, ref.iterations[i].inertia);
          EXPECT_EQ(r.iterations[i].changed, ref.iterations[i].changed);
        }
      }
    }
  }
}

TEST(KMeansInit, RandomAndPlusPlusAreDeterministicDataPoints) {
  const int64_t n = 3000, d = 10, k = 25;
  std::vector<float> x = blobs(n, d, 12, 12);
  for (Init init : {Init::Random, Init::KMeansPlusPlus}) {
    KMeansParams p;
    p.n_clusters = k;
    p.init = init;
    p.max_iter = 0;
    p.seed = 77;
    p.device = Device::CPU;
    KMeansResult a = KMeans(d, p).fit(n, x.data());
    p.threads = 1;
    KMeansResult b = KMeans(d, p).fit(n, x.data());
    EXPECT_EQ(a.centroids, b.centroids) << to_string(init);
    p.seed = 78;
    KMeansResult c = KMeans(d, p).fit(n, x.data());
    EXPECT_NE(a.centroids, c.centroids) << to_string(init);
    // Every initial centroid is a data point, and all are distinct points.
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < k; ++i) {
      int64_t found = -1;
      for (int64_t r = 0; r < n && found < 0; ++r)
        if (std::equal(x.begin() + r * d, x.begin() + (r + 1) * d, a.centroids.begin() + i * d))
          found = r;
      ASSERT_GE(found, 0) << to_string(init) << " centroid " << i;
      rows.push_back(found);
    }
    std::sort(rows.begin(), rows.end());
    EXPECT_EQ(std::unique(rows.begin(), rows.end()), rows.end()) << to_string(init);
  }
}

TEST(KMeansEmpty, PoliciesOnAFarCentroid) {
  const int64_t n = 400, d = 6, k = 5;
  std::vector<float> x = blobs(n, d, 4, 13);
  std::vector<float> c = pick_rows(x, d, k);
  for (int64_t j = 0; j < d; ++j) c[4 * d + j] = 1e4f;  // nobody's nearest
  {
    KMeansParams p = given(k, c, 1);
    p.empty_policy = EmptyClusterPolicy::Keep;
    KMeansResult r = KMeans(d, p).fit(n, x.data());
    EXPECT_EQ(r.iterations[0].empty_clusters, 1);
    for (int64_t j = 0; j < d; ++j) EXPECT_EQ(r.centroids[4 * d + j], 1e4f);
  }
  {
    KMeansParams p = given(k, c, 1);
    p.empty_policy = EmptyClusterPolicy::Error;
    EXPECT_THROW(KMeans(d, p).fit(n, x.data()), Error);
  }
  {
    KMeansParams p = given(k, c, 1);  // split: the far centroid becomes a perturbed copy
    KMeansResult r = KMeans(d, p).fit(n, x.data());
    EXPECT_EQ(r.iterations[0].empty_clusters, 1);
    int64_t twin = -1;
    for (int64_t i = 0; i < 4; ++i) {
      double rel = std::fabs(r.centroids[4 * d] / r.centroids[i * d] - 1);
      if (rel > 1e-4 && rel < 3e-3) twin = i;
    }
    EXPECT_GE(twin, 0) << "the split centroid is not a perturbed copy of another";
    for (int64_t j = 0; j < d; ++j) EXPECT_LT(std::fabs(r.centroids[4 * d + j]), 100.f);
  }
}

TEST(KMeansErrors, BadInputIsNamed) {
  KMeansParams p;
  p.n_clusters = 4;
  p.device = Device::CPU;
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { KMeans(0, p); }).find("d = 0"), std::string::npos);
  KMeansParams q = p;
  q.n_clusters = 0;
  EXPECT_NE(message([&] { KMeans(3, q); }).find("n_clusters = 0"), std::string::npos);
  std::vector<float> x(3 * 3, 1.f);
  EXPECT_NE(message([&] { KMeans(3, p).fit(3, x.data()); }).find("n = 3 points for k = 4"),
            std::string::npos);
  std::vector<float> y(10 * 3, 0.5f);
  y[7 * 3 + 2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(message([&] { KMeans(3, p).fit(10, y.data()); }).find("row 7, column 2"),
            std::string::npos);
  y[7 * 3 + 2] = std::numeric_limits<float>::infinity();
  EXPECT_NE(message([&] { KMeans(3, p).fit(10, y.data()); }).find("non-finite"), std::string::npos);
  KMeansParams g = p;
  g.init = Init::Given;
  g.init_centroids.assign(5, 0.f);
  EXPECT_NE(message([&] { KMeans(3, g); }).find("expected k x d = 4 x 3"), std::string::npos);
  EXPECT_NE(message([&] { KMeans(1LL << 40, p).fit(1LL << 40, y.data()); }).find("overflows"),
            std::string::npos);
  KMeansParams t = p;
  t.threads = 100000;
  EXPECT_NE(message([&] { KMeans(3, t); }).find("threads = 100000"), std::string::npos);
  KMeansParams c = p;
  c.device = Device::CUDA;
  std::vector<float> z(10 * 3, 0.5f);
  if (!cuda_available())
    EXPECT_NE(message([&] { KMeans(3, c).fit(10, z.data()); }).find("device=cuda"),
              std::string::npos);
}

TEST(KMeansConvergence, StopsAtFixedPointAndTol) {
  const int64_t n = 2000, d = 8, k = 10;
  std::vector<float> x = blobs(n, d, 10, 14);
  KMeansParams p = given(k, pick_rows(x, d, k), 100);
  KMeansResult r = KMeans(d, p).fit(n, x.data());
  ASSERT_LT(r.iterations.size(), 100u);
  EXPECT_EQ(r.iterations.back().changed, 0);
  p.tol = 0.5;  // stop at the first iteration that gains less than half the inertia
  KMeansResult t = KMeans(d, p).fit(n, x.data());
  EXPECT_LT(t.iterations.size(), r.iterations.size());
  KMeansParams ip = p;  // the IP objective grows: tol must compare the gain, not the loss
  ip.metric = Metric::InnerProduct;
  ip.tol = 1e-12;
  KMeansResult it = KMeans(d, ip).fit(n, x.data());
  ip.tol = 0;
  KMeansResult i0 = KMeans(d, ip).fit(n, x.data());
  ASSERT_GT(i0.iterations.size(), 3u);
  EXPECT_GT(it.iterations.size(), 2u);
  EXPECT_LE(it.iterations.size(), i0.iterations.size());
  int calls = 0;
  p.tol = 0;
  p.callback = [&](const IterationStats&) { return ++calls < 2; };
  KMeansResult cb = KMeans(d, p).fit(n, x.data());
  EXPECT_EQ(cb.iterations.size(), 2u);
}

TEST(KMeansAssign, MatchesOracleWithDistances) {
  const int64_t n = 1500, d = 20, k = 30;
  std::vector<float> x = blobs(n, d, 15, 15);
  KMeans km(d, given(k, pick_rows(x, d, k), 3));
  KMeansResult r = km.fit(n, x.data());
  std::vector<float> q = blobs(300, d, 15, 16);
  std::vector<int32_t> labels(300);
  std::vector<float> dist(300);
  km.assign(300, q.data(), labels.data(), dist.data());
  EXPECT_EQ(label_errors(Metric::L2, 300, d, q.data(), k, r.centroids.data(), labels), 0);
  for (int64_t i = 0; i < 300; ++i)
    EXPECT_FLOAT_EQ(dist[i], float(reference::distance(Metric::L2, q.data() + i * d,
                                                       r.centroids.data() + labels[i] * d, d)));
}

}  // namespace
}  // namespace flashkm
