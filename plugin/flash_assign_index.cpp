// FlashAssignIndex: a faiss::Index whose 1-NN search is flashkm's exact assignment.
#include <faiss/utils/distances.h>

#include <cstring>

#include "plugin/internal.h"

namespace flashkm {

FlashAssignIndex::FlashAssignIndex(idx_t d, faiss::MetricType metric, ExecOptions exec)
    : faiss::Index(d, metric), exec(exec) {
  plugin::to_metric(metric);
  is_trained = true;
}

FlashAssignIndex::~FlashAssignIndex() = default;

void FlashAssignIndex::add(idx_t n, const float* x) {
  plugin::check_finite("FlashAssignIndex::add", n, d, x);
  if (n == 0) return;
  xb.insert(xb.end(), x, x + n * d);
  ntotal += n;
  KMeansParams p = plugin::kmeans_params(ntotal, plugin::to_metric(metric_type), exec);
  p.verbose = false;  // one line per search would be noise
  assigner_ = std::make_unique<KMeans>(d, p);
  assigner_->set_centroids(xb);
}

void FlashAssignIndex::reset() {
  xb.clear();
  ntotal = 0;
  assigner_.reset();
}

void FlashAssignIndex::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                              const faiss::SearchParameters* params) const {
  FLASHKM_THROW_IF_NOT(params == nullptr,
                       "FlashAssignIndex::search: search parameters are not supported");
  FLASHKM_THROW_IF_NOT(k >= 1, "FlashAssignIndex::search: k = %lld: expected k >= 1",
                       static_cast<long long>(k));
  if (n == 0) return;
  if (ntotal == 0) {
    // As faiss: an empty index pads the results.
    const float pad = metric_type == faiss::METRIC_L2 ? HUGE_VALF : -HUGE_VALF;
    std::fill(distances, distances + n * k, pad);
    std::fill(labels, labels + n * k, idx_t(-1));
    return;
  }
  if (k == 1) {
    std::vector<int32_t> lab(n);
    assigner_->assign(n, x, lab.data(), distances);
    for (idx_t i = 0; i < n; ++i) labels[i] = lab[i];
    return;
  }
  plugin::check_finite("FlashAssignIndex::search", n, d, x);
  if (metric_type == faiss::METRIC_L2) {
    faiss::knn_L2sqr(x, xb.data(), d, n, ntotal, k, distances, labels);
  } else {
    faiss::knn_inner_product(x, xb.data(), d, n, ntotal, k, distances, labels);
  }
}

void FlashAssignIndex::reconstruct(idx_t key, float* recons) const {
  FLASHKM_THROW_IF_NOT(key >= 0 && key < ntotal,
                       "FlashAssignIndex::reconstruct: key %lld outside [0, %lld)",
                       static_cast<long long>(key), static_cast<long long>(ntotal));
  std::memcpy(recons, &xb[key * d], sizeof(float) * d);
}

}  // namespace flashkm
