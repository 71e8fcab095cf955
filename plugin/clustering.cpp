// flashkm::Clustering: faiss::Clustering's contract with flashkm's Lloyd iterations.
#include <faiss/utils/random.h>

#include <climits>
#include <cstring>

#include "plugin/internal.h"

namespace flashkm {

ClusteringParameters::ClusteringParameters() { max_points_per_centroid = INT_MAX; }

ClusteringParameters::ClusteringParameters(const faiss::ClusteringParameters& cp)
    : faiss::ClusteringParameters(cp) {}

Clustering::Clustering(int d, int k) : Clustering(d, k, flashkm::ClusteringParameters()) {}

Clustering::Clustering(int d, int k, const flashkm::ClusteringParameters& cp)
    : faiss::Clustering(d, k, cp), init(cp.init), exec(cp.exec) {}

void Clustering::train(idx_t nx, const float* x, faiss::Index& index, const float* x_weights) {
  const int64_t dd = static_cast<int64_t>(d), kk = static_cast<int64_t>(k);
  FLASHKM_THROW_IF_NOT(x_weights == nullptr,
                       "Clustering::train: x_weights are not supported by flashkm (pass null)");
  FLASHKM_THROW_IF_NOT(!int_centroids, "Clustering::train: int_centroids is not supported");
  FLASHKM_THROW_IF_NOT(index.d == dd, "Clustering::train: index.d = %lld, expected d = %lld",
                       static_cast<long long>(index.d), static_cast<long long>(dd));
  FLASHKM_THROW_IF_NOT(nredo >= 1 && niter >= 0,
                       "Clustering::train: nredo = %d, niter = %d: expected nredo >= 1, "
                       "niter >= 0",
                       nredo, niter);
  FLASHKM_THROW_IF_NOT(centroids.size() % d == 0 && centroids.size() <= k * d,
                       "Clustering::train: %zu input centroid values, expected a multiple of "
                       "d = %zu and at most k x d = %zu",
                       centroids.size(), d, k * d);
  const int64_t n_input = static_cast<int64_t>(centroids.size() / d);
  FLASHKM_THROW_IF_NOT(!(frozen_centroids && n_input > 0),
                       "Clustering::train: frozen_centroids is not supported");
  Metric metric;
  if (index.metric_type == faiss::METRIC_INNER_PRODUCT) {
    FLASHKM_THROW_IF_NOT(spherical,
                         "Clustering::train: an inner-product index needs spherical = true "
                         "(flashkm runs spherical k-means for inner product)");
    metric = Metric::InnerProduct;
  } else {
    FLASHKM_THROW_IF_NOT(index.metric_type == faiss::METRIC_L2,
                         "Clustering::train: index metric %d, expected METRIC_L2 or "
                         "METRIC_INNER_PRODUCT",
                         int(index.metric_type));
    // With unit-norm centroids, argmin |x - c|^2 = argmax x.c: spherical L2 is spherical IP.
    metric = spherical ? Metric::InnerProduct : Metric::L2;
  }
  FLASHKM_THROW_IF_NOT(nx >= kk,
                       "Clustering::train: %lld training points for k = %lld clusters: expected "
                       "at least k points",
                       static_cast<long long>(nx), static_cast<long long>(kk));
  plugin::check_finite("Clustering::train", nx, dd, x);

  // Subsample as faiss does: the first k * max_points_per_centroid of rand_perm(nx, seed).
  std::vector<float> sample;
  if (max_points_per_centroid > 0 && nx > kk * int64_t(max_points_per_centroid)) {
    FLASHKM_THROW_IF_NOT(nx <= INT_MAX, "subsampling draws from at most %d points, got %lld",
                         INT_MAX, static_cast<long long>(nx));
    std::vector<int> perm(nx);
    faiss::rand_perm(perm.data(), nx, seed);
    const int64_t m = kk * max_points_per_centroid;
    sample.resize(m * dd);
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(&sample[i * dd], x + int64_t(perm[i]) * dd, sizeof(float) * dd);
    nx = m;
    x = sample.data();
  }

  if (nx == kk) {  // faiss's corner case: the points are the centroids, no iteration
    centroids.assign(x, x + kk * dd);
    index.reset();
    if (!index.is_trained) index.train(kk, centroids.data());
    index.add(kk, centroids.data());
    return;
  }

  double sum_sq = 0;  // sum |x|^2, to report spherical L2 objectives as faiss does
  if (metric == Metric::InnerProduct && index.metric_type == faiss::METRIC_L2) {
#pragma omp parallel for reduction(+ : sum_sq)
    for (int64_t i = 0; i < nx * dd; ++i) sum_sq += double(x[i]) * x[i];
  }
  auto to_obj = [&](double inertia) {
    if (index.metric_type == faiss::METRIC_L2 && metric == Metric::InnerProduct)
      return float(sum_sq + double(nx) - 2 * inertia);
    return float(inertia);
  };
  const bool lower_is_better = index.metric_type == faiss::METRIC_L2;

  const std::vector<float> input = centroids;
  std::vector<float> best;
  std::vector<faiss::ClusteringIterationStats> best_stats;
  float best_obj = 0;
  for (int redo = 0; redo < nredo; ++redo) {
    KMeansParams kp = plugin::kmeans_params(kk, metric, exec);
    kp.verbose = kp.verbose || verbose;
    kp.max_iter = niter;
    const int64_t redo_seed = int64_t(seed) + int64_t(redo) * 15486557L;
    if (n_input == kk || init == Init::Random || n_input > 0) {
      // faiss's draw: given rows first, then x[perm[i]] for the remaining rows.
      kp.init = Init::Given;
      kp.init_centroids = input;
      kp.init_centroids.resize(kk * dd);
      if (n_input < kk) {
        std::vector<int> perm(nx);
        faiss::rand_perm(perm.data(), nx, redo_seed + 1);
        for (int64_t i = n_input; i < kk; ++i)
          std::memcpy(&kp.init_centroids[i * dd], x + int64_t(perm[i]) * dd, sizeof(float) * dd);
      }
    } else {
      kp.init = init;
      kp.seed = static_cast<uint64_t>(redo_seed);
    }
    KMeans km(dd, kp);
    KMeansResult r = km.fit(nx, x);

    std::vector<faiss::ClusteringIterationStats> stats;
    double t = 0;
    for (const IterationStats& it : r.iterations) {
      t += it.seconds;
      faiss::ClusteringIterationStats s;
      s.obj = to_obj(it.inertia);
      s.time = t;
      s.time_search = t;
      s.imbalance_factor = 0;
      s.nsplit = static_cast<int>(it.empty_clusters);
      stats.push_back(s);
    }
    const float obj = to_obj(r.inertia);
    if (redo == 0 || (lower_is_better ? obj < best_obj : obj > best_obj)) {
      best_obj = obj;
      best = std::move(r.centroids);
      best_stats = std::move(stats);
    }
  }
  centroids = std::move(best);
  iteration_stats = std::move(best_stats);
  index.reset();
  if (!index.is_trained) index.train(kk, centroids.data());
  index.add(kk, centroids.data());
}

}  // namespace flashkm
