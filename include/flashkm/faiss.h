// PUBLIC: the FAISS 1.7.3 plugin of flashkm (library target flashkm_faiss).
//
// Trains the coarse quantizer of a faiss IndexIVF with flashkm's exact k-means (on all
// training points unless asked to subsample), assigns added vectors with flashkm's exact
// assignment, and leaves everything else to faiss: pre-transforms (PCA, OPQ), residual
// codebooks (PQ, SQ), inverted lists, search, serialization. The indexes are ordinary faiss
// objects; faiss::write_index writes files that stock faiss reads back with identical search
// results.
//
// Shapes: vectors are row-major float32, n rows of index->d values. Coarse centroids are
// nlist x d_ivf, where d_ivf is the dimension after the pre-transforms (PCA output, ...).
//
// Metrics: METRIC_L2 runs L2 k-means; METRIC_INNER_PRODUCT runs spherical k-means (argmax of
// x.c, L2-normalised centroids), which is what faiss's IVF does for inner product (it sets
// cp.spherical). Cosine similarity = inner product on L2-normalised vectors: normalise the
// data and the queries (faiss::fvec_renorm_L2) and use METRIC_INNER_PRODUCT.
//
// Errors: caller mistakes (an index that is not IVF, n < nlist, NaN/Inf data, a dimension or
// size mismatch, an unparsable factory string) throw flashkm::Error naming the bad value.
// Errors raised inside faiss propagate as faiss::FaissException.
//
// Thread safety: as for faiss indexes: concurrent const searches are safe; training and
// adding to an index must not run concurrently with anything else on that index.
#pragma once

#include <faiss/Clustering.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "flashkm/kmeans.h"

namespace flashkm {

/// Where and how flashkm computes (assignment and Lloyd iterations).
struct ExecOptions {
  Device device = Device::Auto;
  Precision precision = Precision::Exact;
  int threads = 0;  ///< CPU worker threads; 0 = all hardware threads
  bool verbose = false;
};

/// How flashkm trains the coarse quantizer of an IVF index.
struct IVFTrainParams {
  int niter = 10;  ///< Lloyd iterations; 10 is faiss's IVF default (Level1Quantizer::cp)
  /// 0 (default): k-means runs on all n training points. Otherwise, when n is larger, on a
  /// random subset of this many points drawn like faiss (faiss::rand_perm(n, seed)).
  int64_t max_train_points = 0;
  Init init = Init::Random;           ///< Random draws the points faiss::Clustering would draw
  std::vector<float> init_centroids;  ///< nlist x d_ivf, required when init == Init::Given
  uint64_t seed = 1234;               ///< faiss's default ClusteringParameters::seed
  /// IndexIVFPQ: faiss trains the PQ codebooks with its own k-means loop (on its subsample of
  /// residuals, ProductQuantizer::cp), and by default each of its assignment steps is
  /// flashkm's exact one (ProductQuantizer::assign_index = a FlashAssignIndex, for the
  /// duration of train only). false: faiss's assignment (float32 BLAS, with its near-tie
  /// errors; slower for the short sub-vectors of PQ). Not applied when the caller has set
  /// pq.assign_index already; IndexIVFPQR's refine codebook is faiss's own.
  bool flash_codebooks = true;
  ExecOptions exec;
};

/// What train_ivf (or an index_factory index's train) did.
struct IVFTrainReport {
  int64_t train_points = 0;  ///< points the coarse k-means ran on
  int64_t nlist = 0;
  int64_t d_ivf = 0;             ///< dimension the k-means ran in
  double transform_seconds = 0;  ///< training and applying pre-transforms
  double kmeans_seconds = 0;     ///< flashkm coarse k-means, init included
  double residual_seconds = 0;   ///< faiss's training of the rest (PQ / SQ codebooks)
  double inertia = 0;            ///< k-means objective of the final centroids
  std::vector<IterationStats> iterations;
  Device device = Device::CPU;  ///< backend that ran the k-means
};

/// Builds the index described by a faiss factory string. For the IVF family
/// ("IVFn,Flat", "IVFn,PQm[xb][np]", "IVFn,SQ8|SQ4|SQ6|SQfp16", "OPQm_d,IVFn,PQm",
/// "PCAd,IVFn,...", "IVFn_HNSWm,...", and any of these followed by ",Refine(...)") the coarse
/// quantizer is replaced by a KMeansQuantizerFlat / KMeansQuantizerHNSW, so that
/// index->train(n, x) trains it with flashkm on all points (per options) and faiss trains the
/// rest. Other IVF quantizers (e.g. "IVFn(PQm)", "IMI") throw; non-IVF strings are built by
/// faiss unchanged. Throws flashkm::Error when faiss cannot parse the description.
std::unique_ptr<faiss::Index> index_factory(int d, const char* description,
                                            faiss::MetricType metric = faiss::METRIC_L2,
                                            const IVFTrainParams& options = IVFTrainParams());

/// Trains an untrained (or trained but empty) IVF index, which may be wrapped in an
/// IndexPreTransform and/or an IndexRefine, built by this index_factory, faiss's, or by hand:
/// trains the untrained pre-transforms on x and applies them, runs flashkm k-means with nlist
/// clusters in d_ivf, puts the centroids into the quantizer, then calls the IVF's train, which
/// finds the quantizer full (so faiss runs no k-means of its own) and trains the residual
/// codebooks. x: n x index->d. Throws if the index holds vectors, n < nlist, or x is not finite.
IVFTrainReport train_ivf(faiss::Index* index, int64_t n, const float* x,
                         const IVFTrainParams& params = IVFTrainParams());

/// Adds n vectors (n x index->d) to a trained IVF index (optionally wrapped as in train_ivf):
/// applies the pre-transforms, assigns each vector to its exactly nearest coarse centroid with
/// flashkm (ties: lowest list number), and hands the assignment to IndexIVF::add_core. ids:
/// n ids, or nullptr for ntotal, ntotal + 1, ... (ids are not supported with IndexRefine).
void add_ivf(faiss::Index* index, int64_t n, const float* x,
             const faiss::Index::idx_t* ids = nullptr, const ExecOptions& exec = ExecOptions());

/// train_ivf then add_ivf of the same n vectors (ids as in add_ivf), with one assignment pass
/// fewer: when the k-means ran on all points, its final assignment (each point's exactly
/// nearest final centroid, as add_ivf would compute it) is what gets added.
IVFTrainReport build_ivf(faiss::Index* index, int64_t n, const float* x,
                         const faiss::Index::idx_t* ids = nullptr,
                         const IVFTrainParams& params = IVFTrainParams());

/// True when train_ivf / add_ivf accept index ([IndexRefine of] [IndexPreTransform of] an
/// IndexIVF).
bool is_ivf(const faiss::Index* index);

/// The nlist x d_ivf coarse centroids of an IVF index (wrapped as in train_ivf).
std::vector<float> coarse_centroids(const faiss::Index* index);

/// A flat coarse quantizer that trains itself with flashkm k-means: train(n, x) clusters x
/// into nlist centroids and replaces the stored vectors with them. index_factory installs it
/// with quantizer_trains_alone = 1. Search is faiss's IndexFlat search, and write_index stores
/// it as a plain IndexFlat (it is one), so files load in stock faiss.
struct KMeansQuantizerFlat : faiss::IndexFlat {
  size_t nlist;
  IVFTrainParams train_params;
  IVFTrainReport last_report;  ///< filled by train

  KMeansQuantizerFlat(idx_t d, faiss::MetricType metric, size_t nlist, IVFTrainParams train_params);
  void train(idx_t n, const float* x) override;
};

/// Same as KMeansQuantizerFlat for an HNSW coarse quantizer ("IVFn_HNSWm"): the centroids are
/// added to the graph after training; written by write_index as a plain IndexHNSWFlat.
struct KMeansQuantizerHNSW : faiss::IndexHNSWFlat {
  size_t nlist;
  IVFTrainParams train_params;
  IVFTrainReport last_report;

  KMeansQuantizerHNSW(int d, int M, faiss::MetricType metric, size_t nlist,
                      IVFTrainParams train_params);
  void train(idx_t n, const float* x) override;
};

/// A faiss::Index over a set of centroids whose search(k = 1) is flashkm's exact assignment
/// (ties: lowest index); k > 1 is faiss's exact brute-force search. Distances are squared L2
/// (METRIC_L2) or inner products (METRIC_INNER_PRODUCT), as IndexFlat reports them. Use it as
/// Level1Quantizer::clustering_index or as the index argument of faiss::Clustering::train to
/// make faiss's own k-means loop assign with flashkm. Not serializable by write_index.
struct FlashAssignIndex : faiss::Index {
  explicit FlashAssignIndex(idx_t d, faiss::MetricType metric = faiss::METRIC_L2,
                            ExecOptions exec = ExecOptions());
  ~FlashAssignIndex() override;

  void add(idx_t n, const float* x) override;
  void reset() override;
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override;
  void reconstruct(idx_t key, float* recons) const override;

  ExecOptions exec;
  std::vector<float> xb;  ///< ntotal x d stored vectors

 private:
  std::unique_ptr<KMeans> assigner_;  // rebuilt when the stored vectors change
};

/// faiss::ClusteringParameters plus flashkm's. The one default that differs from faiss:
/// max_points_per_centroid is INT_MAX, i.e. no subsampling. Constructing from a faiss
/// ClusteringParameters keeps its fields as they are (256 points per centroid included).
struct ClusteringParameters : faiss::ClusteringParameters {
  ClusteringParameters();
  explicit ClusteringParameters(const faiss::ClusteringParameters& cp);

  /// Random (faiss's draw) or KMeansPlusPlus; ignored for centroids given on input.
  Init init = Init::Random;
  ExecOptions exec;
};

/// Drop-in for faiss::Clustering whose Lloyd iterations run in flashkm. Same contract as
/// faiss: centroids given on input initialise the first rows, the rest are drawn from x;
/// nredo runs keep the best objective; on output centroids holds k x d values, they are
/// added to index (reset first), and iteration_stats has one entry per iteration (obj, time,
/// time_search = cumulative seconds, nsplit = clusters that were empty; imbalance_factor is
/// not measured and left 0). The metric is index.metric_type: L2, or inner product with
/// spherical = true (spherical k-means). L2 with spherical = true is also spherical k-means,
/// as in faiss. Throws flashkm::Error for what flashkm does not do: x_weights,
/// int_centroids, frozen input centroids, inner product without spherical.
struct Clustering : faiss::Clustering {
  Init init = Init::Random;
  ExecOptions exec;

  Clustering(int d, int k);
  Clustering(int d, int k, const flashkm::ClusteringParameters& cp);

  void train(idx_t n, const float* x, faiss::Index& index,
             const float* x_weights = nullptr) override;
};

}  // namespace flashkm
