// Coarse quantizers that train themselves with flashkm (installed by flashkm::index_factory).
#include "plugin/internal.h"

namespace flashkm {

KMeansQuantizerFlat::KMeansQuantizerFlat(idx_t d, faiss::MetricType metric, size_t nlist,
                                         IVFTrainParams train_params)
    : faiss::IndexFlat(d, metric), nlist(nlist), train_params(std::move(train_params)) {
  plugin::to_metric(metric);
}

void KMeansQuantizerFlat::train(idx_t n, const float* x) {
  plugin::check_finite("KMeansQuantizerFlat::train", n, d, x);
  last_report = IVFTrainReport();
  std::vector<float> c = plugin::train_coarse(d, static_cast<int64_t>(nlist), metric_type, n, x,
                                              train_params, &last_report);
  reset();
  add(static_cast<idx_t>(nlist), c.data());
}

KMeansQuantizerHNSW::KMeansQuantizerHNSW(int d, int M, faiss::MetricType metric, size_t nlist,
                                         IVFTrainParams train_params)
    : faiss::IndexHNSWFlat(d, M, metric), nlist(nlist), train_params(std::move(train_params)) {
  plugin::to_metric(metric);
}

void KMeansQuantizerHNSW::train(idx_t n, const float* x) {
  plugin::check_finite("KMeansQuantizerHNSW::train", n, d, x);
  last_report = IVFTrainReport();
  std::vector<float> c = plugin::train_coarse(d, static_cast<int64_t>(nlist), metric_type, n, x,
                                              train_params, &last_report);
  reset();
  add(static_cast<idx_t>(nlist), c.data());  // builds the graph over the centroids
}

}  // namespace flashkm
