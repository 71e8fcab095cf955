// PUBLIC: exact k-means (Lloyd) on CPUs and NVIDIA GPUs.
//
// Shapes: data x is row-major float32, n rows of d values (x[i * d + j]); centroids are
// row-major k x d float32; labels are int32 in [0, k).
//
// Exactness (see DESIGN.md section 2): given the same initial centroids, every iteration
// assigns each point to the centroid nearest in exact arithmetic (ties, i.e. distances equal
// in float64, go to the lowest index), and centroids are means accumulated in float64 and
// rounded once to float32. Results are bit-identical whatever the thread count, tile sizes,
// SIMD level, and between the CPU and CUDA backends for labels.
//
// Thread safety: a KMeans object is not safe to use from several threads at once; distinct
// objects are independent. fit() and assign() may use params.threads worker threads.
//
// Errors: caller mistakes throw flashkm::Error naming the bad value (n < k, k < 1, d < 1,
// NaN/Inf in x or in given centroids, n * d overflow, CUDA requested but unavailable, device
// memory given to device = CPU or from another GPU than the current one).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flashkm/error.h"

namespace flashkm {

/// Distance used for assignment.
enum class Metric {
  L2,            ///< squared Euclidean distance; centroids are plain means
  InnerProduct,  ///< spherical k-means: argmax of x.c, centroids are L2-normalised means
};

/// How the first centroids are chosen.
enum class Init {
  Random,          ///< k distinct points drawn like faiss::Clustering (rand_perm(seed + 1))
  KMeansPlusPlus,  ///< k-means++ (D^2 sampling), deterministic for a given seed
  Given,           ///< exactly KMeansParams::init_centroids (k x d)
};

/// What happens to a cluster that receives no point in an iteration.
enum class EmptyClusterPolicy {
  Split,  ///< faiss's split_clusters: copy a large cluster's centroid, perturb both (default)
  Keep,   ///< keep the previous centroid unchanged
  Error,  ///< throw flashkm::Error naming the iteration and the cluster
};

/// Where the work runs.
enum class Device {
  Auto,  ///< CUDA when built with it and a GPU is present, else CPU
  CPU,
  CUDA,  ///< throws if the library was built without CUDA or no GPU is visible
};

/// Arithmetic of the assignment step.
enum class Precision {
  Exact,  ///< certified result equal to exact arithmetic (default, see header comment)
  /// GPU only: plain fp16 tensor-core distances, no fix-up (like the paper's code). The CPU
  /// backend always certifies (its fix-up costs about 1 %) and treats Fast as Exact.
  Fast,
};

/// How a CUDA fit keeps data given in host memory on the device.
enum class DeviceRows {
  /// The float32 rows, resident when they fit device_memory_budget (or the free memory),
  /// else streamed from host memory every iteration (default).
  Float32,
  /// An fp16 copy of the rows, for data too large to keep in float32: 2 roundup(d, 64) + 12
  /// bytes a row against 4 d + 8 (both beside about 52 bytes a row of scratch; at d = 128,
  /// 55 % of the float32 footprint; for small d no saving). Results stay exact and identical
  /// to Float32's:
  /// the tensor-core pass certifies each row with a bound widened by that row's fp16
  /// rounding error, and reads the float32 rows it needs from host memory (the rows it
  /// cannot certify, and those whose label changed, for the update) through the bus. The
  /// host rows must be private anonymous memory (a std::vector, malloc), page-locked for the
  /// fit, or rows the caller keeps page-locked as one range for the fit's duration; file
  /// mappings and device memory are refused. k-means++ then seeds on the host (the device
  /// has no float32 rows to draw from). Needs a tensor-core pass (compute
  /// capability 8.0 or later). Cost: the per-iteration inertia would need every float32
  /// row, so IterationStats::inertia is NaN unless tol > 0 (then each pass reads all rows);
  /// the final inertia is always computed. No centre-centre pruning (bounds).
  Float16,
};

/// Tile shape of the fused assignment. Zero fields mean "let the selector choose"; any valid
/// value gives bit-identical results, only speed changes.
struct TileConfig {
  int rows = 0;       ///< points per tile (CPU: per work item; CUDA: per thread block)
  int centroids = 0;  ///< centroids per inner block (CPU: per L2-resident panel)
};

/// Statistics of one Lloyd iteration (assignment followed by update).
struct IterationStats {
  int iter = 0;         ///< 0-based iteration number
  /// L2: sum of squared distances; IP: sum of inner products (NaN with DeviceRows::Float16
  /// and tol == 0: not computed)
  double inertia = 0;
  double seconds = 0;   ///< wall time of this iteration
  int64_t changed = 0;  ///< points whose label differs from the previous iteration
  int64_t fixups = 0;   ///< rows whose fast distance was not certified and were recomputed
  /// rows settled without the full distance pass (KMeansParams::bounds): CPU, from bounds
  /// kept since the previous iteration; CUDA, over the few centroids near their previous one
  int64_t pruned = 0;
  int64_t empty_clusters = 0;  ///< clusters that received no point (then handled by policy)
};

/// Called after each iteration; return false to stop early (the result is still complete).
using IterationCallback = std::function<bool(const IterationStats&)>;

struct KMeansParams {
  int n_clusters = 0;  ///< k, required, 1 <= k <= n
  int max_iter = 25;   ///< number of Lloyd iterations (>= 0)
  /// Stop when the relative improvement of the objective after an iteration is <= tol:
  /// (prev - cur) / prev for L2 inertia, (cur - prev) / prev for the IP objective (a sum of
  /// inner products, which grows). 0 (default) runs max_iter iterations, or stops earlier only
  /// when no point changed cluster (a fixed point: further iterations would change nothing).
  double tol = 0;
  Init init = Init::Random;           ///< default matches faiss::Clustering's sampling
  std::vector<float> init_centroids;  ///< k x d, used when init == Init::Given
  uint64_t seed = 1234;               ///< seed of init (faiss's default seed is 1234)
  Metric metric = Metric::L2;
  EmptyClusterPolicy empty_policy = EmptyClusterPolicy::Split;
  int threads = 0;  ///< CPU worker threads, 0..1024; 0 = all hardware threads
  Device device = Device::Auto;
  Precision precision = Precision::Exact;
  TileConfig tiles;  ///< zeros: the selector picks by device and shape
  /// CPU: skip the distance pass over all k centroids for a point whose two nearest
  /// centroids of the last full pass provably still hold its nearest one: a lower bound on the
  /// distance to every other centroid (from that pass, minus how far centroids moved since;
  /// the few centroids that moved most are measured exactly instead, up to 32) is checked
  /// against two float64 distances. Exact: the same labels as without it, up to float64
  /// near-ties, which the contract counts as ties (a settled row is decided by its two float64
  /// distances, as the fix-up decides). Only speed changes; later iterations, where centroids
  /// move little, gain most. Memory: 12 bytes per point.
  /// CUDA (Exact, L2, data resident on the device, k <= 131072): from the second pass on, a
  /// point is measured only against the centroids that are not provably farther than twice
  /// its distance to its previous centroid (Elkan's lemma, from centre-centre distances), in
  /// float32 with a rigorous bound and float64 where that cannot decide; labels are
  /// bit-identical to the full pass. Pays when clusters are apart relative to their spread;
  /// where too few points are settled the full pass runs again for a while. Memory: about
  /// 4 KB + 4 d bytes per centroid and 8 bytes per 128 points.
  bool bounds = true;
  /// Upper bound on bytes of device memory flashkm may hold for data (0 = free memory less a
  /// margin). Host data that does not fit is streamed in chunks: for a fit of private
  /// anonymous memory (a std::vector, malloc) the rows are page-locked in place for the fit's
  /// duration when the driver allows it; otherwise (file mappings, one-pass assign, memory
  /// already pinned) they are copied through pinned staging buffers.
  size_t device_memory_budget = 0;
  DeviceRows device_rows = DeviceRows::Float32;  ///< CUDA, host data: see DeviceRows
  IterationCallback callback;  ///< optional progress hook
  bool verbose = false;        ///< print one line per iteration on stderr
};

struct KMeansResult {
  int64_t n = 0, d = 0, k = 0;
  std::vector<float> centroids;  ///< k x d, final centroids (after the last update)
  std::vector<int32_t> labels;   ///< n, nearest final centroid of each point
  double inertia = 0;            ///< objective of labels against the final centroids
  std::vector<IterationStats> iterations;
  /// Whole fit: init, the iterations and the final assignment pass that makes labels and
  /// inertia agree with the final centroids (iterations[i].seconds cover the iterations).
  double seconds = 0;
  Device device = Device::CPU;  ///< backend that ran
  int threads = 0;              ///< CPU threads used
};

/// Exact Lloyd k-means. Example:
///   flashkm::KMeansParams p; p.n_clusters = 1024;
///   flashkm::KMeans km(d, p);
///   flashkm::KMeansResult r = km.fit(n, x);
class KMeans {
 public:
  /// Validates params against d (throws flashkm::Error on bad values).
  KMeans(int64_t d, KMeansParams params);

  /// Clusters n points x (n x d). Throws if n < k, x holds NaN/Inf, or n * d overflows.
  /// The result's centroids are also kept for assign().
  ///
  /// x may be host memory of any kind (pageable, pinned, a memory-mapped file) or, in a
  /// build with CUDA, device memory of the current device (cudaMalloc, a GPU tensor's data
  /// pointer): flashkm tells which. Device data runs on that GPU in place, with
  /// device = Auto or CUDA (device = CPU throws), never copied to the host, with the same
  /// results as the same values given in host memory; flashkm adds its per-row arrays beside
  /// it (norms and scratch: about 64 bytes a row; plus an fp16 split of 4 roundup(d, 64)
  /// bytes a row except on compute capability 9.0 with d <= 256 exact / d <= 704 fast) and
  /// throws if they do not fit device_memory_budget or the free memory. fit() first waits for all
  /// work queued on the device, so x may still be in flight on the caller's streams when it is
  /// called.
  KMeansResult fit(int64_t n, const float* x);

  /// Labels (and, when distances is non-null, L2 squared distances or inner products) of n
  /// new points against the fitted or given centroids. Same exactness contract as fit; x may
  /// be device memory as in fit(); labels and distances are host arrays.
  void assign(int64_t n, const float* x, int32_t* labels, float* distances = nullptr) const;

  /// Replaces the centroids used by assign() (k x d).
  void set_centroids(const std::vector<float>& centroids);
  const std::vector<float>& centroids() const { return centroids_; }

  int64_t d() const { return d_; }
  const KMeansParams& params() const { return params_; }

 private:
  int worker_threads() const;  ///< params().threads, or all hardware threads when 0

  int64_t d_;
  KMeansParams params_;
  std::vector<float> centroids_;
};

/// True when the library was built with CUDA and at least one GPU is visible.
bool cuda_available();

/// Names for CLI / JSON output and parsing ("l2", "ip", "random", "kmeans++", "cpu", ...).
const char* to_string(Metric m);
const char* to_string(Init i);
const char* to_string(Device d);
const char* to_string(EmptyClusterPolicy p);
const char* to_string(Precision p);
const char* to_string(DeviceRows r);
Metric parse_metric(const std::string& s);
Device parse_device(const std::string& s);
EmptyClusterPolicy parse_empty_policy(const std::string& s);
Precision parse_precision(const std::string& s);
DeviceRows parse_device_rows(const std::string& s);

}  // namespace flashkm
