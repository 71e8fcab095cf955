// flashkm::Clustering against faiss::Clustering with the same parameters.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <gtest/gtest.h>

#include <climits>
#include <cmath>

#include "flashkm/faiss.h"
#include "plugin_test_util.h"

namespace flashkm {
namespace {

using test::blobs;

constexpr int kD = 24, kK = 40;
constexpr int64_t kN = 8000;

faiss::ClusteringParameters faiss_params(int niter) {
  faiss::ClusteringParameters cp;
  cp.niter = niter;
  cp.max_points_per_centroid = INT_MAX;
  return cp;
}

void expect_same_run(const faiss::Clustering& f, const Clustering& a, const faiss::Index& index) {
  EXPECT_LT(test::max_rel_diff(a.centroids, f.centroids), 1e-4);
  ASSERT_FALSE(a.iteration_stats.empty());
  ASSERT_LE(a.iteration_stats.size(), f.iteration_stats.size());
  // flashkm stops at a fixed point; faiss repeats it. Objectives agree iteration by iteration.
  for (size_t i = 0; i < a.iteration_stats.size(); ++i) {
    const double fo = f.iteration_stats[i].obj, ao = a.iteration_stats[i].obj;
    EXPECT_NEAR(ao, fo, 1e-4 * std::fabs(fo)) << "iteration " << i;
    EXPECT_EQ(a.iteration_stats[i].nsplit, f.iteration_stats[i].nsplit) << "iteration " << i;
  }
  ASSERT_EQ(index.ntotal, int64_t(a.k));  // faiss's contract: the centroids end in the index
  std::vector<float> back(a.k * a.d);
  index.reconstruct_n(0, index.ntotal, back.data());
  EXPECT_EQ(back, a.centroids);
}

TEST(PluginClustering, L2MatchesFaissClustering) {
  const std::vector<float> x = blobs(kN, kD, 60, 21);
  faiss::Clustering f(kD, kK, faiss_params(15));
  faiss::IndexFlatL2 fi(kD);
  f.train(kN, x.data(), fi);

  ClusteringParameters cp(faiss_params(15));
  cp.exec.device = Device::CPU;
  Clustering a(kD, kK, cp);
  faiss::IndexFlatL2 ai(kD);
  a.train(kN, x.data(), ai);
  expect_same_run(f, a, ai);
}

TEST(PluginClustering, DefaultsUseAllPointsWhileFaissParametersSubsampleLikeFaiss) {
  const std::vector<float> x = blobs(kN, kD, 60, 22);
  EXPECT_EQ(ClusteringParameters().max_points_per_centroid, INT_MAX);

  faiss::ClusteringParameters fcp = faiss_params(10);
  fcp.max_points_per_centroid = 50;  // 2000 of 8000 points
  faiss::Clustering f(kD, kK, fcp);
  faiss::IndexFlatL2 fi(kD);
  f.train(kN, x.data(), fi);
  Clustering a(kD, kK, ClusteringParameters(fcp));
  faiss::IndexFlatL2 ai(kD);
  a.train(kN, x.data(), ai);
  expect_same_run(f, a, ai);

  Clustering all(kD, kK);  // flashkm's default: every point
  all.niter = 10;
  faiss::IndexFlatL2 alli(kD);
  all.train(kN, x.data(), alli);
  EXPECT_GT(test::max_rel_diff(all.centroids, f.centroids), 1e-3);
}

TEST(PluginClustering, SphericalAndInnerProductMatchFaiss) {
  std::vector<float> x = blobs(kN, kD, 60, 23);
  test::normalize(x, kD);
  faiss::ClusteringParameters fcp = faiss_params(12);
  fcp.spherical = true;
  {
    faiss::Clustering f(kD, kK, fcp);
    faiss::IndexFlatIP fi(kD);
    f.train(kN, x.data(), fi);
    Clustering a(kD, kK, ClusteringParameters(fcp));
    faiss::IndexFlatIP ai(kD);
    a.train(kN, x.data(), ai);
    expect_same_run(f, a, ai);
  }
  {
    faiss::Clustering f(kD, kK, fcp);
    faiss::IndexFlatL2 fi(kD);
    f.train(kN, x.data(), fi);
    Clustering a(kD, kK, ClusteringParameters(fcp));
    faiss::IndexFlatL2 ai(kD);
    a.train(kN, x.data(), ai);
    expect_same_run(f, a, ai);  // spherical L2 objectives reported as L2 distances
  }
}

TEST(PluginClustering, PartialInputCentroidsInitialiseTheFirstRows) {
  const std::vector<float> x = blobs(kN, kD, 60, 24);
  std::vector<float> given(10 * kD);
  for (int c = 0; c < 10; ++c)
    for (int j = 0; j < kD; ++j) given[c * kD + j] = x[(c * 311 + 5) * kD + j];
  faiss::Clustering f(kD, kK, faiss_params(10));
  f.centroids = given;
  faiss::IndexFlatL2 fi(kD);
  f.train(kN, x.data(), fi);
  Clustering a(kD, kK, ClusteringParameters(faiss_params(10)));
  a.centroids = given;
  faiss::IndexFlatL2 ai(kD);
  a.train(kN, x.data(), ai);
  expect_same_run(f, a, ai);
}

TEST(PluginClustering, NredoKeepsTheBestRun) {
  const std::vector<float> x = blobs(kN, kD, 60, 25);
  double best_single = HUGE_VAL;
  for (int redo = 0; redo < 3; ++redo) {
    faiss::ClusteringParameters cp = faiss_params(8);
    Clustering one(kD, kK, ClusteringParameters(cp));
    one.seed = cp.seed + redo * 15486557;  // the seed faiss gives redo number `redo`
    faiss::IndexFlatL2 idx(kD);
    one.train(kN, x.data(), idx);
    best_single = std::min(best_single, double(one.iteration_stats.back().obj));
  }
  faiss::ClusteringParameters cp = faiss_params(8);
  cp.nredo = 3;
  Clustering a(kD, kK, ClusteringParameters(cp));
  faiss::IndexFlatL2 ai(kD);
  a.train(kN, x.data(), ai);
  EXPECT_NEAR(a.iteration_stats.back().obj, best_single, 1e-6 * best_single);
}

TEST(PluginClustering, UnsupportedOptionsAndBadInputsThrow) {
  const std::vector<float> x = blobs(500, kD, 10, 26);
  faiss::IndexFlatL2 l2(kD);
  std::vector<float> w(500, 1.f);
  EXPECT_THROW(Clustering(kD, 10).train(500, x.data(), l2, w.data()), Error);
  Clustering ic(kD, 10);
  ic.int_centroids = true;
  EXPECT_THROW(ic.train(500, x.data(), l2), Error);
  Clustering fz(kD, 10);
  fz.frozen_centroids = true;
  fz.centroids.assign(x.begin(), x.begin() + 3 * kD);
  EXPECT_THROW(fz.train(500, x.data(), l2), Error);
  faiss::IndexFlatIP ip(kD);
  EXPECT_THROW(Clustering(kD, 10).train(500, x.data(), ip), Error);  // IP needs spherical
  faiss::IndexFlatL2 wrong_d(kD + 1);
  EXPECT_THROW(Clustering(kD, 10).train(500, x.data(), wrong_d), Error);
  EXPECT_THROW(Clustering(kD, 10).train(9, x.data(), l2), Error);  // n < k
  Clustering bad_c(kD, 10);
  bad_c.centroids.assign(kD + 1, 0.f);
  EXPECT_THROW(bad_c.train(500, x.data(), l2), Error);
}

TEST(PluginClustering, AsManyPointsAsClustersCopiesThem) {
  const std::vector<float> x = blobs(10, kD, 3, 27);
  Clustering a(kD, 10);
  faiss::IndexFlatL2 idx(kD);
  a.train(10, x.data(), idx);
  EXPECT_EQ(a.centroids, x);
  EXPECT_EQ(idx.ntotal, 10);
}

}  // namespace
}  // namespace flashkm
