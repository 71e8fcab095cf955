// PRIVATE to index/: the one place that trains an IndexIVF for the persisted index.
//
// Delegates to the plugin's flashkm::train_ivf (include/flashkm/faiss.h): exact flashkm k-means
// for the quantizer, then faiss's own training of the codes (PQ codebooks, SQ ranges,
// precomputed tables) on the same points. Only the KMeansParams fields the plugin takes are
// used: max_iter, init (+ init_centroids), seed, device, precision, threads, verbose.
#pragma once

#include <faiss/IndexIVF.h>

#include <string>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace index {

struct QuantizerTraining {
  int64_t n_train = 0;
  int max_iter = 0;
  uint64_t seed = 0;
  int iterations = 0;
  double inertia = 0;
  double seconds = 0;  ///< the k-means alone
  std::string device;
  std::string init;
};

/// Trains ivf (untrained, empty) on n x d points x; params.n_clusters must equal ivf->nlist.
/// Leaves ivf->is_trained set. Throws flashkm::Error on bad input (n < nlist, NaN, ...).
QuantizerTraining train_ivf(faiss::IndexIVF* ivf, int64_t n, const float* x,
                            const KMeansParams& params);

}  // namespace index
}  // namespace flashkm
