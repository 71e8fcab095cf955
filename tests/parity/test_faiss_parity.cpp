// flashkm::KMeans against faiss::Clustering (faiss 1.7.3) on all points
// (max_points_per_centroid large), same init and the same (split) empty-cluster policy.
// faiss sums centroids in float32 and assigns with sgemm-based float32 distances, so
// centroids agree to a float32 tolerance and labels may differ only at near-ties of faiss's
// own arithmetic; a few such flips compound over iterations, hence the lockstep comparison.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <gtest/gtest.h>

#include <cmath>

#include "flashkm/kmeans.h"
#include "kernels/reference.h"
#include "tests/kernels/test_util.h"

namespace flashkm {
namespace {

using testing::blobs;
using testing::pick_rows;

struct FaissRun {
  std::vector<float> centroids;
};

FaissRun run_faiss(int64_t n, int64_t d, int64_t k, const float* x, int iters,
                   const std::vector<float>* init, bool ip = false) {
  faiss::ClusteringParameters cp;
  cp.niter = iters;
  cp.max_points_per_centroid = 1 << 30;
  cp.spherical = ip;
  faiss::Clustering clus(d, k, cp);
  if (init) clus.centroids = *init;
  std::unique_ptr<faiss::IndexFlat> index;
  if (ip)
    index.reset(new faiss::IndexFlatIP(d));
  else
    index.reset(new faiss::IndexFlatL2(d));
  clus.train(n, x, *index);
  return {clus.centroids};
}

// faiss's assignment step (what Clustering::train does each iteration) on centroids c.
std::vector<int32_t> faiss_assign(bool ip, int64_t n, int64_t d, const float* x,
                                  const std::vector<float>& c) {
  std::unique_ptr<faiss::IndexFlat> index;
  if (ip)
    index.reset(new faiss::IndexFlatIP(d));
  else
    index.reset(new faiss::IndexFlatL2(d));
  index->add(c.size() / d, c.data());
  std::vector<float> dist(n);
  std::vector<faiss::Index::idx_t> lab(n);
  index->search(n, x, 1, dist.data(), lab.data());
  return std::vector<int32_t>(lab.begin(), lab.end());
}

// Labels that differ must be near-ties in faiss's float32 arithmetic, and flashkm's (exact)
// choice is never the worse one. Returns how many differ.
int64_t compare_labels(Metric m, int64_t n, int64_t d, const float* x, const std::vector<float>& c,
                       const std::vector<int32_t>& ours, const std::vector<int32_t>& theirs) {
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (ours[i] == theirs[i]) continue;
    ++differ;
    double a = reference::distance(m, x + i * d, c.data() + ours[i] * d, d);
    double b = reference::distance(m, x + i * d, c.data() + theirs[i] * d, d);
    if (m == Metric::L2)
      EXPECT_LE(a, b) << "point " << i;
    else
      EXPECT_GE(a, b) << "point " << i;
    double xx = reference::distance(Metric::InnerProduct, x + i * d, x + i * d, d);
    EXPECT_LE(std::fabs(a - b), 1e-5 * (xx + std::fabs(a) + std::fabs(b))) << "point " << i;
  }
  EXPECT_LE(differ, n / 1000 + 1);
  return differ;
}

// Lloyd steps in lockstep: from the same centroids, one faiss iteration and one flashkm
// iteration; labels must agree up to faiss's near-ties, and the centroids of every cluster
// whose members agree must match to float32 tolerance (faiss sums in float32).
void lockstep_vs_faiss(Metric m, int64_t n, int64_t d, int64_t k, const std::vector<float>& x,
                       std::vector<float> c, int steps) {
  const bool ip = m == Metric::InnerProduct;
  int64_t compared = 0, total = 0;
  for (int s = 0; s < steps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    KMeansParams p;
    p.n_clusters = static_cast<int>(k);
    p.init = Init::Given;
    p.init_centroids = c;
    p.metric = m;
    p.device = Device::CPU;
    p.max_iter = 0;
    std::vector<int32_t> ours = KMeans(d, p).fit(n, x.data()).labels;
    std::vector<int32_t> theirs = faiss_assign(ip, n, d, x.data(), c);
    compare_labels(m, n, d, x.data(), c, ours, theirs);
    std::vector<bool> same(k, true);
    for (int64_t i = 0; i < n; ++i)
      if (ours[i] != theirs[i]) same[ours[i]] = same[theirs[i]] = false;
    p.max_iter = 1;
    std::vector<float> next = KMeans(d, p).fit(n, x.data()).centroids;
    std::vector<float> fnext = run_faiss(n, d, k, x.data(), 1, &c, ip).centroids;
    for (int64_t j = 0; j < k; ++j) {
      ++total;
      if (!same[j]) continue;
      ++compared;
      for (int64_t t = 0; t < d; ++t)
        ASSERT_NEAR(next[j * d + t], fnext[j * d + t], 1e-5 * (std::fabs(fnext[j * d + t]) + 1))
            << "cluster " << j << " dim " << t;
    }
    c = next;
  }
  EXPECT_GE(compared, total * 9 / 10);
}

TEST(FaissParity, RandomInitPicksTheSamePoints) {
  const int64_t n = 5000, d = 8, k = 40;
  std::vector<float> x = blobs(n, d, 20, 1);
  for (uint64_t seed : {1234u, 7u}) {
    faiss::ClusteringParameters cp;
    cp.niter = 0;
    cp.seed = static_cast<int>(seed);
    cp.max_points_per_centroid = 1 << 30;
    faiss::Clustering clus(d, k, cp);
    faiss::IndexFlatL2 index(d);
    clus.train(n, x.data(), index);
    KMeansParams p;
    p.n_clusters = k;
    p.max_iter = 0;
    p.seed = seed;
    p.device = Device::CPU;
    EXPECT_EQ(KMeans(d, p).fit(n, x.data()).centroids, clus.centroids) << "seed " << seed;
  }
}

TEST(FaissParity, ExactlyKPointsAreTheCentroids) {
  const int64_t n = 10, d = 2, k = 10;
  std::vector<float> x = blobs(n, d, 3, 5);
  FaissRun f = run_faiss(n, d, k, x.data(), 5, nullptr);
  KMeansParams p;
  p.n_clusters = k;
  p.max_iter = 5;
  p.device = Device::CPU;
  EXPECT_EQ(KMeans(d, p).fit(n, x.data()).centroids, f.centroids);
}

TEST(FaissParity, LloydFromTheSameInit) {
  const int64_t n = 20000, d = 32, k = 64;
  SCOPED_TRACE(testing::shape(n, d, k, 2));
  std::vector<float> x = blobs(n, d, 64, 2, 20.f);
  lockstep_vs_faiss(Metric::L2, n, d, k, x, pick_rows(x, d, k, 13), 6);
}

TEST(FaissParity, EmptyClustersAreSplitTheSameWay) {
  // 60 distinct points repeated: with k = 80 some clusters must go empty and be split.
  const int64_t distinct = 60, reps = 20, n = distinct * reps, d = 6, k = 80;
  std::vector<float> base = blobs(distinct, d, 10, 3, 10.f);
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i)
    std::copy(base.begin() + (i % distinct) * d, base.begin() + (i % distinct + 1) * d,
              x.begin() + i * d);
  // One iteration: after a split, each perturbed pair is exactly equidistant from the
  // duplicated points it came from, so later iterations are decided by ties.
  FaissRun f = run_faiss(n, d, k, x.data(), 1, nullptr);
  KMeansParams p;
  p.n_clusters = k;
  p.max_iter = 1;
  p.seed = 1234;  // faiss's default seed
  p.device = Device::CPU;
  p.tol = 0;
  KMeansResult r = KMeans(d, p).fit(n, x.data());
  ASSERT_GT(r.iterations[0].empty_clusters, 0);
  for (size_t i = 0; i < r.centroids.size(); ++i)
    ASSERT_NEAR(r.centroids[i], f.centroids[i], 1e-5 * (std::fabs(f.centroids[i]) + 1)) << i;
}

TEST(FaissParity, SphericalInnerProduct) {
  const int64_t n = 8000, d = 24, k = 32;
  std::vector<float> x = blobs(n, d, 32, 4, 10.f);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = float(x[i * d + j] / std::sqrt(s));
  }
  lockstep_vs_faiss(Metric::InnerProduct, n, d, k, x, pick_rows(x, d, k, 11), 5);
}

}  // namespace
}  // namespace flashkm
