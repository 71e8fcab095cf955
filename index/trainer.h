// PRIVATE to index/: the one place that trains an IndexIVF for the persisted index.
//
// The quantizer's centroids come from flashkm::KMeans (exact Lloyd, any device); the codes'
// own parameters (PQ codebooks, SQ ranges, precomputed tables) from faiss's train_residual on
// the same points. This seam is where the plugin's flashkm::train_ivf slots in once it is
// available, without touching IvfIndex.
#pragma once

#include <faiss/IndexIVF.h>

#include <string>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace index {

struct QuantizerTraining {
  int64_t n_train = 0;
  int iterations = 0;
  double inertia = 0;
  double seconds = 0;
  std::string device;
  std::string init;
};

/// Trains ivf (untrained, empty) on n x d points x; params.n_clusters must equal ivf->nlist.
/// Leaves ivf->is_trained set. Throws flashkm::Error on bad input (n < nlist, NaN, ...).
QuantizerTraining train_ivf(faiss::IndexIVF* ivf, int64_t n, const float* x,
                            const KMeansParams& params);

}  // namespace index
}  // namespace flashkm
