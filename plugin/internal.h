// PRIVATE to plugin/: helpers shared by the plugin's translation units.
#pragma once

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>

#include <cstdint>
#include <vector>

#include "flashkm/faiss.h"

namespace flashkm {
namespace plugin {

/// The layers of an IVF index as this plugin accepts it: [IndexRefine ->] [IndexPreTransform
/// ->] IndexIVF. Pointers are borrowed from the index; absent layers are null.
struct IVFParts {
  faiss::IndexRefine* refine = nullptr;
  faiss::IndexPreTransform* pretransform = nullptr;
  faiss::IndexIVF* ivf = nullptr;
};

/// Splits index into its layers; ivf is null when the index is not of that shape.
IVFParts find_ivf(faiss::Index* index);

/// As find_ivf, but throws flashkm::Error naming the index type when there is no IVF.
IVFParts require_ivf(faiss::Index* index, const char* caller);

/// flashkm's metric for a faiss metric; throws for anything but L2 and inner product.
Metric to_metric(faiss::MetricType metric);

/// Throws flashkm::Error naming the first non-finite value of x (n x d) and its row.
void check_finite(const char* caller, int64_t n, int64_t d, const float* x);

/// KMeansParams with the backend fields of exec filled in.
KMeansParams kmeans_params(int64_t k, Metric metric, const ExecOptions& exec);

/// Runs flashkm k-means with nlist clusters on x (n x d), subsampled per params, and fills
/// report (kmeans_seconds, iterations, ...). Returns the nlist x d centroids. When labels is
/// non-null and the k-means ran on all n points, *labels receives each point's nearest final
/// centroid (KMeans::fit's last pass); otherwise it is left empty.
std::vector<float> train_coarse(int64_t d, int64_t nlist, faiss::MetricType metric, int64_t n,
                                const float* x, const IVFTrainParams& params,
                                IVFTrainReport* report, std::vector<int32_t>* labels = nullptr);

/// Seconds on a monotonic clock, for reports.
double now_seconds();

}  // namespace plugin
}  // namespace flashkm
