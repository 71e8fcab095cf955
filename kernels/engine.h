// PRIVATE to kernels/: the interface between the backend-agnostic Lloyd driver (lloyd.cpp)
// and a backend (cpu/, cuda/).
//
// The driver owns the centroids on the host (k x d float32, small) and applies init, the
// empty-cluster policy and spherical normalisation there, once, for every backend; a backend
// owns the data-sized state (labels, sort buffers, device copies of x) and does the two
// data-sized passes of an iteration: assignment and the sort-inverse update.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace detail {

/// Outcome of one assignment pass over all n points.
struct AssignOutcome {
  double inertia = 0;   ///< sum over points of the exact (float64) distance to its centroid
  int64_t changed = 0;  ///< labels that differ from the previous pass (n on the first pass)
  int64_t fixups = 0;   ///< rows recomputed in float64 because the fast bound did not certify
  int64_t pruned = 0;   ///< rows settled from bounds kept since the previous pass (no full pass)
};

class Engine {
 public:
  virtual ~Engine() = default;

  /// Uploads the centroids (k x d, host) that the next assign() uses.
  virtual void set_centroids(const float* centroids) = 0;

  /// Assigns every point to its nearest centroid (ties: lowest index) and keeps the labels.
  /// When distances is non-null, writes per-point distances (L2: squared distance, IP: inner
  /// product), computed in float64 and rounded to float32, to that host array (n values).
  /// inertia false: the caller does not need AssignOutcome::inertia, and a backend for
  /// which it costs a pass over the data of its own (CUDA, rows stored as fp16) may leave
  /// it NaN.
  virtual AssignOutcome assign(float* distances = nullptr, bool inertia = true) = 0;

  /// From the current labels: exact sums of each cluster's points (kernels/exact_sum.h), the
  /// means float(exact_to_double(sum) / count) written to centroids (k x d, host), the same
  /// bits on every backend. Rows of empty clusters are left untouched. counts[c] = points in
  /// cluster c.
  virtual void update(float* centroids, int64_t* counts) = 0;

  /// Copies the current labels (n values) to the host.
  virtual void get_labels(int32_t* labels) = 0;

  /// k-means++ seeding on this backend (D^2 sampling, deterministic for a seed). Writes k x d
  /// centroids to the host array. Backends share the CPU implementation unless they override.
  virtual void kmeanspp(uint64_t seed, float* centroids);

  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  int64_t k() const { return k_; }

 protected:
  Engine(int64_t n, int64_t d, int64_t k, const float* x, const KMeansParams& p)
      : n_(n), d_(d), k_(k), x_(x), params_(p) {}
  int64_t n_, d_, k_;
  const float* x_;  ///< data, n x d, not owned: host memory, or device memory for a CUDA
                    ///< engine made with x_on_device
  KMeansParams params_;
};

/// The CPU backend (cpu/cpu_engine.cpp).
std::unique_ptr<Engine> make_cpu_engine(int64_t n, int64_t d, int64_t k, const float* x,
                                        const KMeansParams& p);

/// The CUDA backend (cuda/), or throws flashkm::Error when built without CUDA. With
/// x_on_device, x is device memory of the current device (is_device_pointer) and is read in
/// place: never copied, never read by the host.
std::unique_ptr<Engine> make_cuda_engine(int64_t n, int64_t d, int64_t k, const float* x,
                                         const KMeansParams& p, bool x_on_device = false);

/// Number of visible CUDA devices (0 when built without CUDA).
int cuda_device_count();

/// True when p points into CUDA device memory (cudaMalloc, a stream-ordered pool, a
/// framework's GPU tensor), which the host cannot read; false for host memory of every kind
/// (pageable, pinned, memory-mapped files, managed memory), and always false without CUDA
/// or without a device. Asking creates no CUDA context. Throws flashkm::Error when p is
/// device memory of another device than the current one, or when the runtime cannot tell.
bool is_device_pointer(const void* p);

/// Data in device memory (cuda/device_input.cu; throw without CUDA), read on streams of their
/// own. Index of the first non-finite value of x[0, count), or -1; *value receives that value.
/// It first waits for all work queued on the device (the caller's writes to x), so it is
/// what fit and assign call first on device data.
int64_t device_first_nonfinite(const float* x, int64_t count, float* value);
/// Copies rows[0, m) of x (rows of d floats, device) to out (m x d, host).
void device_gather_rows(const float* x, int64_t d, const int64_t* rows, int64_t m, float* out);

/// Host-side pieces shared by all backends (init.cpp, lloyd.cpp).

/// faiss-compatible random init: the rows perm[0..k) of x, perm = faiss::rand_perm(n, seed+1);
/// when n == k, the points in order (faiss::Clustering's special case).
std::vector<int64_t> init_random_rows(int64_t n, int64_t k, uint64_t seed);
/// The same rows copied from host data x into centroids (k x d).
void init_random(int64_t n, int64_t d, int64_t k, const float* x, uint64_t seed, float* centroids);

/// Applies the empty-cluster policy in place to centroids (k x d) given counts (k); returns
/// how many clusters were empty. Split follows faiss::split_clusters exactly (same RNG, same
/// perturbation), so faiss parity holds when clusters go empty.
int64_t handle_empty_clusters(EmptyClusterPolicy policy, int iter, int64_t n, int64_t d, int64_t k,
                              float* centroids, const std::vector<int64_t>& counts);

/// Rows of a k-means++ reduction block: every backend sums the points' distances per block
/// in row order, so the draws below see the same sums.
constexpr int64_t kKMeansPPBlock = 1024;

/// One k-means++ draw, shared by the backends so they pick the same point: the total of the
/// nblocks per-block sums (in block order); when it is not positive (fewer distinct points
/// than k) a uniform point; else r = uniform * total walked through the block sums, then
/// through the distances of the block it lands in, which block_dmin(b) returns (its rows).
int64_t kmeanspp_draw(std::mt19937_64& rng, const double* bsum, int64_t nblocks, int64_t n,
                      int64_t block, const std::function<const double*(int64_t)>& block_dmin);

/// L2-normalises each of the k rows (spherical k-means). The norm is taken in float64 (faiss
/// uses float32; the two agree to float32 rounding).
void normalize_rows(int64_t k, int64_t d, float* centroids);

/// Float64 distance used by every exact fix-up and by the reported inertia, so that all
/// backends agree bit for bit: L2 = sum_j fma((x_j - c_j), (x_j - c_j), acc) in order j = 0..d-1,
/// IP = sum_j fma(x_j, c_j, acc) (the caller minimises -ip).
inline double exact_l2(const float* x, const float* c, int64_t d);
inline double exact_ip(const float* x, const float* c, int64_t d);

}  // namespace detail
}  // namespace flashkm

#include <cmath>

namespace flashkm {
namespace detail {
inline double exact_l2(const float* x, const float* c, int64_t d) {
  double acc = 0;
  for (int64_t j = 0; j < d; ++j) {
    double t = double(x[j]) - double(c[j]);
    acc = std::fma(t, t, acc);
  }
  return acc;
}
inline double exact_ip(const float* x, const float* c, int64_t d) {
  double acc = 0;
  for (int64_t j = 0; j < d; ++j) acc = std::fma(double(x[j]), double(c[j]), acc);
  return acc;
}
}  // namespace detail
}  // namespace flashkm
