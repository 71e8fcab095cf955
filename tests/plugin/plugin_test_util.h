// PRIVATE to tests/plugin/: data and oracles shared by the plugin tests.
#pragma once

#include <faiss/Index.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "flashkm/io.h"

namespace flashkm {
namespace test {

/// n x d blobs around n_centers centers; spread 3 makes neighbouring clusters overlap a
/// little, so k-means has real boundaries to find.
inline std::vector<float> blobs(int64_t n, int64_t d, int64_t n_centers, uint64_t seed,
                                double spread = 3.0) {
  std::vector<float> x(n * d);
  make_blobs(n, d, n_centers, seed, spread, x.data());
  return x;
}

/// L2-normalises every row (cosine data for inner-product indexes).
inline void normalize(std::vector<float>& x, int64_t d) {
  for (size_t i = 0; i < x.size(); i += d) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[i + j]) * x[i + j];
    const double inv = 1 / std::sqrt(s);
    for (int64_t j = 0; j < d; ++j) x[i + j] = float(x[i + j] * inv);
  }
}

/// Float64 brute-force k nearest neighbours (L2: smallest squared distance, IP: largest
/// inner product; ties by lowest id): the independent oracle for recall and assignment.
inline std::vector<int64_t> knn_reference(const float* q, int64_t nq, const float* xb, int64_t nb,
                                          int64_t d, int64_t k, bool ip) {
  std::vector<int64_t> out(nq * k);
#pragma omp parallel for
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<std::pair<double, int64_t>> dist(nb);
    for (int64_t j = 0; j < nb; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) {
        const double a = q[i * d + t], b = xb[j * d + t];
        s += ip ? a * b : (a - b) * (a - b);
      }
      dist[j] = {ip ? -s : s, j};
    }
    std::partial_sort(dist.begin(), dist.begin() + k, dist.end());
    for (int64_t t = 0; t < k; ++t) out[i * k + t] = dist[t].second;
  }
  return out;
}

/// Fraction of the true k nearest neighbours found in the k results (recall@k).
inline double recall(const std::vector<int64_t>& gt, const std::vector<faiss::Index::idx_t>& res,
                     int64_t nq, int64_t k) {
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b)
        if (gt[i * k + a] == res[i * k + b]) {
          ++hits;
          break;
        }
  return double(hits) / double(nq * k);
}

/// Largest |a - b| / (1 + |b|) over two equally long arrays.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, std::fabs(double(a[i]) - b[i]) / (1 + std::fabs(double(b[i]))));
  return m;
}

}  // namespace test
}  // namespace flashkm
