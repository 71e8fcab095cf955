// Shared helpers of the kernel tests: deterministic data and the oracle comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "flashkm/kmeans.h"
#include "kernels/reference.h"

namespace flashkm {
namespace testing {

/// Gaussian blobs: `centers` centres uniform in [-scale, scale]^d, unit-variance noise.
inline std::vector<float> blobs(int64_t n, int64_t d, int64_t centers, uint64_t seed,
                                float scale = 5.f, float offset = 0.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> c(centers * d), x(n * d);
  for (auto& v : c) v = u(rng);
  for (int64_t i = 0; i < n; ++i) {
    int64_t ci = rng() % centers;
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = c[ci * d + j] + g(rng) + offset;
  }
  return x;
}

/// k rows of x chosen with a fixed stride: a simple, shared initialisation.
inline std::vector<float> pick_rows(const std::vector<float>& x, int64_t d, int64_t k,
                                    int64_t stride = 7) {
  int64_t n = x.size() / d;
  std::vector<float> c(k * d);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < d; ++j) c[i * d + j] = x[((i * stride) % n) * d + j];
  return c;
}

inline std::string shape(int64_t n, int64_t d, int64_t k, uint64_t seed) {
  return "n=" + std::to_string(n) + " d=" + std::to_string(d) + " k=" + std::to_string(k) +
         " seed=" + std::to_string(seed);
}

/// Labels must equal the float64 oracle's except at ties (contract); returns mismatches that
/// are real errors.
inline int64_t label_errors(Metric metric, int64_t n, int64_t d, const float* x, int64_t k,
                            const float* c, const std::vector<int32_t>& labels,
                            int64_t* ties = nullptr) {
  std::vector<int32_t> ref;
  std::vector<double> dist;
  reference::assign(metric, n, d, x, k, c, &ref, &dist);
  int64_t errors = 0, t = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] == ref[i]) continue;
    if (labels[i] >= 0 && labels[i] < k &&
        reference::is_tie(metric, x + i * d, c + labels[i] * d, c + ref[i] * d, d))
      ++t;
    else
      ++errors;
  }
  if (ties) *ties = t;
  return errors;
}

}  // namespace testing
}  // namespace flashkm
