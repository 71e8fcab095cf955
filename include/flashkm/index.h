// PUBLIC: a persisted IVF index. One RocksDB directory is one index (layout: index/keys.h).
//
// The coarse quantizer is trained with flashkm's exact k-means; codes, search and the file
// format of export() are faiss's (an index_factory string "[<pre-transforms>,]IVF<nlist>,<codes>"
// whose codes have a fixed size: Flat, PQ<m>[x<bits>][np], SQ8, SQ4, SQfp16, ...; a flat coarse
// quantizer). Pre-transforms (OPQ, PCA, ...) are trained by train(), stored with the
// generation, applied to adds and queries, and kept as they are by recluster(). Raw vectors
// are stored too: they are the source of truth for recluster().
//
// Shapes: vectors are row-major float32, n rows of d values; ids are int64 >= 0; search
// outputs are nq x k (distances: L2 squared or inner products; labels: ids, -1 when fewer than
// k results were found).
//
// Durability: every add/upsert/remove is one atomic commit that also updates the manifest: a
// RocksDB WriteBatch, or, for an add/upsert of 10k vectors or more, SST files ingested in one
// DB::IngestExternalFiles (back to a WriteBatch while RocksDB's level 0 is crowded, unless the
// add holds 256 MB of vectors and codes or more). Once the call returns the change survives a
// crash of the process; an ingested one, or any with IvfIndexOptions::sync, also survives
// power loss. recluster() builds the new generation beside the old one and switches in one
// write, so a crash leaves the old or the new index.
//
// Thread safety: search(), info(), get_vector() and export_faiss() may run from any number of
// threads, concurrently with one writer (add, upsert, remove, recluster, train); each search
// sees one consistent snapshot (every write is either fully visible to it or not at all), and
// never waits for a write: during a commit it reads the state before it. get_vector() reads
// the latest state, so during a commit it may already return a vector of the add that is
// committing (and that searches and ntotal() do not show yet). Writers are serialised; add()
// and upsert() may be called from several threads, and then one call's assignment and encoding
// overlap another's commit (commits stay serialised, each call returns once its own batch is
// durable; without ids, a call's ids are consecutive from the first id it returns, in commit
// order). close() and the destructor must not overlap other calls.
// One directory has at most one read-write IvfIndex at a time (across processes); read-only handles
// may coexist with it and see the state as of their opening (a recluster by the writer deletes the
// old generation's files, after which such a handle must be reopened).
//
// Errors: caller mistakes and storage failures throw flashkm::Error naming the directory and
// the bad value (wrong shape, unknown id, index not trained, format version or d mismatch,
// corrupt manifest, directory locked by another writer). A failed call changes nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flashkm/kmeans.h"

namespace flashkm {

/// Progress of long operations: stage name, units done, units total.
using ProgressCallback = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

struct IvfIndexOptions {
  bool read_only = false;  ///< open without writing; several readers may coexist
  /// fsync the write-ahead log on every write (survive power loss, not only process crashes).
  bool sync = false;
  /// Decoded inverted lists kept in memory for searches (0 disables: every probed list is
  /// read from RocksDB on each search).
  size_t list_cache_bytes = size_t(1) << 30;
  size_t block_cache_bytes = size_t(256) << 20;  ///< RocksDB block cache
  /// When > 0, open() refuses an index of another dimension.
  int64_t expected_d = 0;
  ProgressCallback progress;  ///< optional, for train / recluster / import
};

/// Training of the coarse quantizer (train and recluster).
struct IvfTrainParams {
  /// k-means parameters, as flashkm::train_ivf (include/flashkm/faiss.h) takes them: max_iter,
  /// init (+ init_centroids), seed, device, precision, threads, verbose; the metric is the
  /// index's, n_clusters is its nlist. For recluster with an unchanged nlist, init becomes
  /// Init::Given (warm start from the current centroids) unless cold_start is set.
  KMeansParams kmeans;
  /// Train on at most this many points (a deterministic sample, seeded by kmeans.seed);
  /// 0 = all of them.
  int64_t max_train_points = 0;
  bool cold_start = false;
};

struct IvfIndexInfo {
  std::string dir;
  uint32_t format_version = 0;
  int64_t d = 0;
  Metric metric = Metric::L2;
  std::string factory;
  int64_t nlist = 0;
  int64_t code_size = 0;
  uint64_t generation = 0;  ///< 0 until trained; +1 per recluster
  bool trained = false;
  int64_t ntotal = 0;
  int64_t next_id = 0;
  uint64_t write_count = 0;
  bool vectors_reconstructed = false;  ///< raw vectors were decoded from an imported file
  std::vector<int64_t> list_sizes;     ///< nlist values
  double imbalance = 0;                ///< faiss's imbalance factor of list_sizes
  // Training of the current generation.
  int64_t n_train = 0;
  int max_iter = 0;
  uint64_t seed = 0;
  int iterations = 0;
  double inertia = 0;
  double train_seconds = 0;
  std::string train_device;
  std::string train_init;
};

class IvfIndex {
 public:
  /// Creates an empty, untrained index in dir (created; must not hold an index already).
  /// factory is a faiss index_factory string "[<pre-transforms>,]IVF<nlist>,<codes>".
  static std::unique_ptr<IvfIndex> create(const std::string& dir, int64_t d,
                                          const std::string& factory, Metric metric = Metric::L2,
                                          const IvfIndexOptions& options = {});
  /// True when dir holds a RocksDB database (an index, or what is left of a failed create);
  /// lets callers tell an index directory from a faiss file.
  static bool exists(const std::string& dir);
  /// Opens an existing index. Checks the format version, the manifest against the stored
  /// faiss parameters (d, nlist, code size) and options.expected_d before any write.
  static std::unique_ptr<IvfIndex> open(const std::string& dir,
                                        const IvfIndexOptions& options = {});
  /// Creates an index in dir from a stock faiss file holding an IndexIVFFlat, IndexIVFPQ or
  /// IndexIVFScalarQuantizer (not their subclasses, such as IndexIVFPQR), optionally inside an
  /// IndexPreTransform whose transforms are linear maps with orthonormal rows (OPQ, PCA, PCAR,
  /// RR). Raw vectors are decoded from the codes and mapped back through the transforms (exact
  /// for Flat without transforms; otherwise info().vectors_reconstructed is set and recluster()
  /// works on the decoded vectors). A refused file leaves no directory behind.
  static std::unique_ptr<IvfIndex> import_faiss(const std::string& faiss_path,
                                                const std::string& dir,
                                                const IvfIndexOptions& options = {});

  ~IvfIndex();
  IvfIndex(const IvfIndex&) = delete;
  IvfIndex& operator=(const IvfIndex&) = delete;

  /// Trains the quantizer (and the code's parameters) on n x d points x. Only for an
  /// untrained index; use recluster() afterwards.
  void train(int64_t n, const float* x, const IvfTrainParams& params = {});

  /// Adds n vectors. Without ids they get next_id, next_id + 1, ...; with ids, an id already
  /// in the index or repeated within the call is an error (nothing is added): use upsert() to
  /// replace. Returns the first id handed out (or ids[0]).
  int64_t add(int64_t n, const float* x, const int64_t* ids = nullptr);
  /// Adds or replaces: each id's vector (and code, possibly in another list) becomes x[i].
  /// Repeating an id within one call is an error.
  void upsert(int64_t n, const float* x, const int64_t* ids);
  /// Removes the given ids; ids not in the index are ignored. Returns how many were removed.
  int64_t remove(int64_t n, const int64_t* ids);

  /// k nearest neighbours of nq queries among the nprobe nearest lists (nprobe is clamped to
  /// nlist). distances and labels are nq x k.
  void search(int64_t nq, const float* queries, int k, int nprobe, float* distances,
              int64_t* labels) const;

  /// Re-clusters the stored vectors into nlist lists (0: keep the current nlist) and rebuilds
  /// the codes' parameters and all lists, then switches to the new generation in one write.
  /// Blocks other writers, not searches (they use the old generation until the switch).
  void recluster(int64_t nlist, const IvfTrainParams& params = {});

  /// Stored raw vector of id into out (d floats); false when the id is not in the index.
  bool get_vector(int64_t id, float* out) const;

  /// Writes a stock faiss file (faiss::read_index gives an IndexIVF with the same quantizer,
  /// codes and ids; its lists are in id order) of one consistent snapshot.
  void export_faiss(const std::string& path) const;

  IvfIndexInfo info() const;
  int64_t d() const;
  int64_t ntotal() const;
  bool read_only() const;

  /// Flushes nothing extra (every write is already durable) and releases the directory.
  void close();

 private:
  struct Impl;
  explicit IvfIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flashkm
