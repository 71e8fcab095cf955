#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "flashkm/io.h"

namespace flashkm {
namespace {

// Rows per independently seeded block: the unit of parallel work. Part of the output's
// definition (changing it changes the data), so it is fixed, not tuned.
constexpr int64_t kBlockRows = 1024;
constexpr double kTwoPi = 6.283185307179586476925286766559;

// Uniform double in [0, 1) from the top 53 bits: exact and the same on every platform.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

// splitmix64 finaliser: decorrelates the per-block seeds derived from (seed, block).
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Standard normals by the Box-Muller transform, two per pair of uniforms.
class Normal {
 public:
  explicit Normal(std::mt19937_64& rng) : rng_(rng) {}
  double operator()() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    double u1 = 1.0 - uniform01(rng_);  // (0, 1]: log stays finite
    double u2 = uniform01(rng_);
    double r = std::sqrt(-2.0 * std::log(u1));
    double t = kTwoPi * u2;
    spare_ = r * std::sin(t);
    have_spare_ = true;
    return r * std::cos(t);
  }

 private:
  std::mt19937_64& rng_;
  double spare_ = 0;
  bool have_spare_ = false;
};

}  // namespace

void make_blobs(int64_t n, int64_t d, int64_t n_centers, uint64_t seed, double spread, float* out,
                int32_t* true_labels) {
  FLASHKM_THROW_IF_NOT(n >= 1, "make_blobs: n = %lld; expected n >= 1", (long long)n);
  FLASHKM_THROW_IF_NOT(d >= 1, "make_blobs: d = %lld; expected d >= 1", (long long)d);
  FLASHKM_THROW_IF_NOT(n_centers >= 1 && n_centers <= INT32_MAX,
                       "make_blobs: n_centers = %lld; expected 1 <= n_centers <= 2^31-1",
                       (long long)n_centers);
  FLASHKM_THROW_IF_NOT(std::isfinite(spread) && spread >= 0,
                       "make_blobs: spread = %g; expected a finite value >= 0", spread);
  size_t total;
  FLASHKM_THROW_IF_NOT(!__builtin_mul_overflow(size_t(n), size_t(d), &total),
                       "make_blobs: n * d = %lld * %lld overflows", (long long)n, (long long)d);

  std::vector<double> centers(size_t(n_centers) * size_t(d));
  std::mt19937_64 center_rng(mix(seed));
  for (double& c : centers) c = -10.0 + 20.0 * uniform01(center_rng);

  const int64_t blocks = (n + kBlockRows - 1) / kBlockRows;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    std::mt19937_64 rng(mix(seed ^ mix(uint64_t(b) + 1)));
    Normal normal(rng);
    const int64_t end = std::min(n, (b + 1) * kBlockRows);
    for (int64_t i = b * kBlockRows; i < end; ++i) {
      // rng() % n_centers: the modulo bias (< n_centers / 2^64) is far below anything a
      // benchmark or test could notice, and it is portable, unlike uniform_int_distribution.
      const int64_t c = int64_t(rng() % uint64_t(n_centers));
      if (true_labels != nullptr) true_labels[i] = int32_t(c);
      const double* center = centers.data() + c * d;
      float* row = out + i * d;
      for (int64_t j = 0; j < d; ++j) row[j] = float(center[j] + spread * normal());
    }
  }
}

}  // namespace flashkm
