// Host-side pieces shared by every backend: initialisation, the empty-cluster policy and
// spherical normalisation. They touch k x d centroids (or, for k-means++, one pass over the
// data per centroid) and run identically whatever the backend.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "kernels/engine.h"

namespace flashkm {
namespace detail {

namespace {

// faiss::RandomGenerator as of faiss 1.7.3 (utils/random.cpp): a 32-bit Mersenne twister
// whose rand_int(max) is mt() % max and rand_float() is mt() / float(mt.max()). Reproduced so
// that Init::Random and the Split policy pick exactly what faiss::Clustering picks.
struct FaissRng {
  explicit FaissRng(int64_t seed) : mt(static_cast<unsigned int>(seed)) {}
  int rand_int(int max) { return static_cast<int>(mt() % static_cast<uint32_t>(max)); }
  float rand_float() { return mt() / float(mt.max()); }
  std::mt19937 mt;
};

}  // namespace

std::vector<int64_t> init_random_rows(int64_t n, int64_t k, uint64_t seed) {
  FLASHKM_THROW_IF_NOT(n <= INT32_MAX,
                       "Init::Random draws like faiss with 32-bit indices; n = %lld exceeds "
                       "2^31-1 (use Init::KMeansPlusPlus or Init::Given)",
                       static_cast<long long>(n));
  std::vector<int64_t> rows(k);
  if (n == k) {  // faiss::Clustering copies the points in order when there are exactly k
    for (int64_t c = 0; c < k; ++c) rows[c] = c;
    return rows;
  }
  // faiss::rand_perm(perm, n, seed + 1): a Fisher-Yates shuffle; faiss then takes perm[0..k).
  std::vector<int> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = static_cast<int>(i);
  FaissRng rng(static_cast<int64_t>(seed) + 1);
  for (int64_t i = 0; i + 1 < n; ++i) {
    int64_t i2 = i + rng.rand_int(static_cast<int>(n - i));
    std::swap(perm[i], perm[i2]);
  }
  for (int64_t c = 0; c < k; ++c) rows[c] = perm[c];
  return rows;
}

void init_random(int64_t n, int64_t d, int64_t k, const float* x, uint64_t seed, float* centroids) {
  const std::vector<int64_t> rows = init_random_rows(n, k, seed);
  for (int64_t c = 0; c < k; ++c)
    std::memcpy(centroids + c * d, x + rows[c] * d, sizeof(float) * d);
}

int64_t handle_empty_clusters(EmptyClusterPolicy policy, int iter, int64_t n, int64_t d, int64_t k,
                              float* centroids, const std::vector<int64_t>& counts) {
  int64_t empty = 0;
  for (int64_t c = 0; c < k; ++c) empty += counts[c] == 0;
  if (empty == 0 || policy == EmptyClusterPolicy::Keep) return empty;
  if (policy == EmptyClusterPolicy::Error) {
    int64_t first = 0;
    while (counts[first] != 0) ++first;
    FLASHKM_THROW(
        "iteration %d: %lld of %lld clusters are empty (first: %lld) and "
        "empty_policy=error",
        iter, static_cast<long long>(empty), static_cast<long long>(k),
        static_cast<long long>(first));
  }
  // faiss::split_clusters (Clustering.cpp, 1.7.3), with its float histogram and its fresh
  // RandomGenerator(1234) on every call, so that the same clusters are split the same way.
  const double eps = 1 / 1024.;
  std::vector<float> hassign(k);
  for (int64_t c = 0; c < k; ++c) hassign[c] = static_cast<float>(counts[c]);
  FaissRng rng(1234);
  for (int64_t ci = 0; ci < k; ++ci) {
    if (hassign[ci] != 0) continue;
    int64_t cj = 0;
    for (;; cj = (cj + 1) % k) {
      float p = (hassign[cj] - 1.0) / (float)(n - k);
      float r = rng.rand_float();
      if (r < p) break;
    }
    std::memcpy(centroids + ci * d, centroids + cj * d, sizeof(float) * d);
    for (int64_t j = 0; j < d; ++j) {
      if (j % 2 == 0) {
        centroids[ci * d + j] *= 1 + eps;
        centroids[cj * d + j] *= 1 - eps;
      } else {
        centroids[ci * d + j] *= 1 - eps;
        centroids[cj * d + j] *= 1 + eps;
      }
    }
    hassign[ci] = hassign[cj] / 2;  // faiss assumes an even split for later picks
    hassign[cj] -= hassign[ci];
  }
  return empty;
}

void normalize_rows(int64_t k, int64_t d, float* centroids) {
  for (int64_t c = 0; c < k; ++c) {
    float* row = centroids + c * d;
    double sq = 0;
    for (int64_t j = 0; j < d; ++j) sq += double(row[j]) * double(row[j]);
    if (sq == 0) continue;
    const double inv = 1.0 / std::sqrt(sq);
    for (int64_t j = 0; j < d; ++j) row[j] = static_cast<float>(row[j] * inv);
  }
}

// D^2 sampling with exact float64 distances and fixed-order sums, so the chosen points do not
// depend on threads. O(n k d): for large k prefer Init::Random or a GPU backend's override.
int64_t kmeanspp_draw(std::mt19937_64& rng, const double* bsum, int64_t nblocks, int64_t n,
                      int64_t block, const std::function<const double*(int64_t)>& block_dmin) {
  double total = 0;
  for (int64_t b = 0; b < nblocks; ++b) total += bsum[b];
  if (!(total > 0)) {  // fewer distinct points than k: any point is as good
    return static_cast<int64_t>(rng() % static_cast<uint64_t>(n));
  }
  double r = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  int64_t b = 0;
  while (b + 1 < nblocks && r >= bsum[b]) r -= bsum[b++];
  const int64_t i0 = b * block, i1 = std::min(n, (b + 1) * block);
  const double* dmin = block_dmin(b);
  for (int64_t i = i0; i < i1; ++i) {
    if (r < dmin[i - i0]) return i;
    r -= dmin[i - i0];
  }
  return i1 - 1;
}

void Engine::kmeanspp(uint64_t seed, float* centroids) {
  const int threads = params_.threads > 0 ? params_.threads : omp_get_max_threads();
  std::mt19937_64 rng(seed);
  const int64_t block = kKMeansPPBlock;
  const int64_t nblocks = (n_ + block - 1) / block;
  std::vector<double> dmin(n_, HUGE_VAL), bsum(nblocks);
  int64_t pick = static_cast<int64_t>(rng() % static_cast<uint64_t>(n_));
  for (int64_t c = 0; c < k_; ++c) {
    std::memcpy(centroids + c * d_, x_ + pick * d_, sizeof(float) * d_);
    if (c + 1 == k_) break;
    const float* cc = centroids + c * d_;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      double s = 0;
      for (int64_t i = b * block; i < std::min(n_, (b + 1) * block); ++i) {
        dmin[i] = std::min(dmin[i], exact_l2(x_ + i * d_, cc, d_));
        s += dmin[i];
      }
      bsum[b] = s;
    }
    pick = kmeanspp_draw(rng, bsum.data(), nblocks, n_, block,
                         [&](int64_t b) { return dmin.data() + b * block; });
  }
}

}  // namespace detail
}  // namespace flashkm
