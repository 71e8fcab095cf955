// The backend-agnostic Lloyd driver behind flashkm::KMeans.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "kernels/engine.h"

namespace flashkm {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check_finite(int64_t count, const float* v, int64_t d, const char* what, int threads) {
  int64_t bad = -1;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(max : bad)
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(v[i])) bad = std::max(bad, i);
  if (bad >= 0) {
    // Report the first offending element, found again serially (the error path only).
    for (int64_t i = 0; i < count; ++i)
      if (!std::isfinite(v[i])) {
        FLASHKM_THROW("%s holds a non-finite value (%g) at row %lld, column %lld", what,
                      double(v[i]), static_cast<long long>(i / d), static_cast<long long>(i % d));
      }
  }
}

bool use_cuda(Device device) {
  if (device == Device::CUDA) {
    FLASHKM_THROW_IF_NOT(detail::cuda_device_count() > 0,
                         "device=cuda requested but no CUDA device is visible%s",
#ifdef FLASHKM_WITH_CUDA
                         ""
#else
                         " (flashkm was built without CUDA)"
#endif
    );
    return true;
  }
  return device == Device::Auto && detail::cuda_device_count() > 0;
}

std::unique_ptr<detail::Engine> make_engine(bool cuda, int64_t n, int64_t d, int64_t k,
                                            const float* x, bool x_on_device,
                                            const KMeansParams& p) {
  return cuda ? detail::make_cuda_engine(n, d, k, x, p, x_on_device)
              : detail::make_cpu_engine(n, d, k, x, p);
}

// Checks input x (count values, rows of d) for NaN/Inf where it lives, and tells whether
// that is device memory, which decides the backend: device data runs on the GPU that holds
// it (device=auto or cuda); device=cpu cannot read it.
bool check_input(const float* x, int64_t count, int64_t d, Device device, const char* what,
                 int threads) {
  if (!detail::is_device_pointer(x)) {
    check_finite(count, x, d, "input x", threads);
    return false;
  }
  FLASHKM_THROW_IF_NOT(device != Device::CPU,
                       "%s: x is CUDA device memory, which device=cpu cannot read (use "
                       "device=cuda or auto, or pass host memory)",
                       what);
  float value = 0;
  const int64_t bad = detail::device_first_nonfinite(x, count, &value);
  if (bad >= 0)
    FLASHKM_THROW("input x holds a non-finite value (%g) at row %lld, column %lld", double(value),
                  static_cast<long long>(bad / d), static_cast<long long>(bad % d));
  return true;
}

}  // namespace

KMeans::KMeans(int64_t d, KMeansParams params) : d_(d), params_(std::move(params)) {
  FLASHKM_THROW_IF_NOT(d >= 1, "dimension d = %lld: expected d >= 1", static_cast<long long>(d));
  const int64_t k = params_.n_clusters;
  FLASHKM_THROW_IF_NOT(k >= 1, "n_clusters = %lld: expected k >= 1", static_cast<long long>(k));
  FLASHKM_THROW_IF_NOT(params_.max_iter >= 0, "max_iter = %d: expected >= 0", params_.max_iter);
  FLASHKM_THROW_IF_NOT(params_.tol >= 0 && std::isfinite(params_.tol),
                       "tol = %g: expected a finite value >= 0", params_.tol);
  FLASHKM_THROW_IF_NOT(params_.threads >= 0 && params_.threads <= 1024,
                       "threads = %d: expected 0 (all hardware threads) to 1024", params_.threads);
  FLASHKM_THROW_IF_NOT(params_.tiles.rows >= 0 && params_.tiles.centroids >= 0,
                       "tiles = {%d, %d}: expected values >= 0 (0 = automatic)", params_.tiles.rows,
                       params_.tiles.centroids);
  FLASHKM_THROW_IF_NOT(k <= std::numeric_limits<int64_t>::max() / d,
                       "k * d overflows: k = %lld, d = %lld", static_cast<long long>(k),
                       static_cast<long long>(d));
  if (params_.init == Init::Given) {
    FLASHKM_THROW_IF_NOT(int64_t(params_.init_centroids.size()) == k * d,
                         "init=given: init_centroids holds %zu floats, expected k x d = %lld x "
                         "%lld = %lld",
                         params_.init_centroids.size(), static_cast<long long>(k),
                         static_cast<long long>(d), static_cast<long long>(k * d));
    check_finite(k * d, params_.init_centroids.data(), d, "init_centroids", worker_threads());
    centroids_ = params_.init_centroids;
  }
}

int KMeans::worker_threads() const {
  return params_.threads > 0 ? params_.threads : omp_get_max_threads();
}

void KMeans::set_centroids(const std::vector<float>& centroids) {
  FLASHKM_THROW_IF_NOT(centroids.size() > 0 && centroids.size() % d_ == 0,
                       "set_centroids: %zu floats is not a positive multiple of d = %lld",
                       centroids.size(), static_cast<long long>(d_));
  FLASHKM_THROW_IF_NOT(int64_t(centroids.size()) / d_ <= std::numeric_limits<int>::max(),
                       "set_centroids: k = %lld centroids exceed the int32 label range",
                       static_cast<long long>(int64_t(centroids.size()) / d_));
  check_finite(int64_t(centroids.size()), centroids.data(), d_, "centroids", worker_threads());
  centroids_ = centroids;
}

KMeansResult KMeans::fit(int64_t n, const float* x) {
  const auto t_start = Clock::now();
  const int64_t d = d_, k = params_.n_clusters;
  FLASHKM_THROW_IF_NOT(n >= 1 && x != nullptr,
                       "fit: n = %lld rows at %p: expected n >= 1 and "
                       "non-null data",
                       static_cast<long long>(n), static_cast<const void*>(x));
  FLASHKM_THROW_IF_NOT(n <= std::numeric_limits<int64_t>::max() / d,
                       "n * d overflows: n = %lld, d = %lld", static_cast<long long>(n),
                       static_cast<long long>(d));
  FLASHKM_THROW_IF_NOT(n >= k, "n = %lld points for k = %lld clusters: expected n >= k",
                       static_cast<long long>(n), static_cast<long long>(k));
  const bool on_device = check_input(x, n * d, d, params_.device, "fit", worker_threads());

  const bool cuda = on_device || use_cuda(params_.device);
  auto engine = make_engine(cuda, n, d, k, x, on_device, params_);

  KMeansResult res;
  res.n = n;
  res.d = d;
  res.k = k;
  res.device = cuda ? Device::CUDA : Device::CPU;
  res.threads = worker_threads();

  std::vector<float> c(k * d);
  switch (params_.init) {
    case Init::Given:
      c = params_.init_centroids;
      break;
    case Init::Random:
      if (on_device) {
        const std::vector<int64_t> rows = detail::init_random_rows(n, k, params_.seed);
        detail::device_gather_rows(x, d, rows.data(), k, c.data());
      } else {
        detail::init_random(n, d, k, x, params_.seed, c.data());
      }
      break;
    case Init::KMeansPlusPlus:
      engine->kmeanspp(params_.seed, c.data());
      break;
  }
  if (params_.metric == Metric::InnerProduct) detail::normalize_rows(k, d, c.data());

  std::vector<int64_t> counts(k);
  engine->set_centroids(c.data());
  double prev_inertia = std::numeric_limits<double>::infinity();
  const bool tty = isatty(STDERR_FILENO);
  for (int it = 0; it < params_.max_iter; ++it) {
    const auto t0 = Clock::now();
    // Stored as fp16, the inertia of a pass costs a read of every float32 row from host
    // memory: only where tol needs it (DeviceRows::Float16).
    detail::AssignOutcome a = engine->assign(nullptr, params_.tol > 0);
    engine->update(c.data(), counts.data());
    IterationStats st;
    st.iter = it;
    st.inertia = a.inertia;
    st.changed = a.changed;
    st.fixups = a.fixups;
    st.pruned = a.pruned;
    st.empty_clusters =
        detail::handle_empty_clusters(params_.empty_policy, it, n, d, k, c.data(), counts);
    if (params_.metric == Metric::InnerProduct) detail::normalize_rows(k, d, c.data());
    engine->set_centroids(c.data());
    st.seconds = seconds_since(t0);
    res.iterations.push_back(st);
    if (params_.verbose) {
      std::fprintf(stderr, "%siteration %d/%d: inertia %.6g, changed %lld, %.3f s%s",
                   tty ? "\r" : "", it + 1, params_.max_iter, st.inertia,
                   static_cast<long long>(st.changed), st.seconds, tty ? "   " : "\n");
    }
    bool go_on = !params_.callback || params_.callback(st);
    // A pass that moved no point leaves every centroid where it was: a fixed point.
    if (st.changed == 0 && st.empty_clusters == 0) go_on = false;
    if (params_.tol > 0 && std::isfinite(prev_inertia)) {
      // L2 inertia falls, the IP objective (sum of inner products) grows.
      const double gain =
          params_.metric == Metric::L2 ? prev_inertia - st.inertia : st.inertia - prev_inertia;
      if (gain <= params_.tol * std::fabs(prev_inertia)) go_on = false;
    }
    prev_inertia = st.inertia;
    if (!go_on) break;
  }
  if (params_.verbose && tty) std::fprintf(stderr, "\n");

  // Final labels against the final centroids, so labels, centroids and inertia agree.
  detail::AssignOutcome last = engine->assign();
  res.labels.resize(n);
  engine->get_labels(res.labels.data());
  res.inertia = last.inertia;
  res.centroids = c;
  centroids_ = c;
  res.seconds = seconds_since(t_start);
  return res;
}

void KMeans::assign(int64_t n, const float* x, int32_t* labels, float* distances) const {
  FLASHKM_THROW_IF_NOT(!centroids_.empty(),
                       "assign: no centroids yet (call fit, set_centroids or use init=given)");
  FLASHKM_THROW_IF_NOT(n >= 0 && (n == 0 || (x != nullptr && labels != nullptr)),
                       "assign: n = %lld with null data or labels", static_cast<long long>(n));
  if (n == 0) return;
  FLASHKM_THROW_IF_NOT(n <= std::numeric_limits<int64_t>::max() / d_,
                       "n * d overflows: n = %lld, d = %lld", static_cast<long long>(n),
                       static_cast<long long>(d_));
  const bool on_device = check_input(x, n * d_, d_, params_.device, "assign", worker_threads());
  const int64_t k = int64_t(centroids_.size()) / d_;
  KMeansParams p = params_;
  p.n_clusters = static_cast<int>(k);
  p.bounds = false;  // one pass: nothing to carry to a next one
  p.max_iter = 0;    // tells the backend so (the CUDA one then streams without page-locking)
  p.device_rows = DeviceRows::Float32;  // one pass reads every row once in any case
  auto engine = make_engine(on_device || use_cuda(p.device), n, d_, k, x, on_device, p);
  engine->set_centroids(centroids_.data());
  engine->assign(distances);
  engine->get_labels(labels);
}

bool cuda_available() { return detail::cuda_device_count() > 0; }

const char* to_string(Metric m) { return m == Metric::L2 ? "l2" : "ip"; }
const char* to_string(Init i) {
  switch (i) {
    case Init::Random:
      return "random";
    case Init::KMeansPlusPlus:
      return "kmeans++";
    default:
      return "given";
  }
}
const char* to_string(Device d) {
  switch (d) {
    case Device::CPU:
      return "cpu";
    case Device::CUDA:
      return "cuda";
    default:
      return "auto";
  }
}
const char* to_string(EmptyClusterPolicy p) {
  switch (p) {
    case EmptyClusterPolicy::Split:
      return "split";
    case EmptyClusterPolicy::Keep:
      return "keep";
    default:
      return "error";
  }
}
const char* to_string(Precision p) { return p == Precision::Exact ? "exact" : "fast"; }
const char* to_string(DeviceRows r) { return r == DeviceRows::Float32 ? "fp32" : "fp16"; }

Metric parse_metric(const std::string& s) {
  if (s == "l2" || s == "L2") return Metric::L2;
  if (s == "ip" || s == "IP" || s == "cosine") return Metric::InnerProduct;
  FLASHKM_THROW("metric '%s': expected l2 or ip", s.c_str());
}
Device parse_device(const std::string& s) {
  if (s == "auto") return Device::Auto;
  if (s == "cpu") return Device::CPU;
  if (s == "cuda" || s == "gpu") return Device::CUDA;
  FLASHKM_THROW("device '%s': expected auto, cpu or cuda", s.c_str());
}
EmptyClusterPolicy parse_empty_policy(const std::string& s) {
  if (s == "split") return EmptyClusterPolicy::Split;
  if (s == "keep") return EmptyClusterPolicy::Keep;
  if (s == "error") return EmptyClusterPolicy::Error;
  FLASHKM_THROW("empty-cluster policy '%s': expected split, keep or error", s.c_str());
}
Precision parse_precision(const std::string& s) {
  if (s == "exact") return Precision::Exact;
  if (s == "fast") return Precision::Fast;
  FLASHKM_THROW("precision '%s': expected exact or fast", s.c_str());
}
DeviceRows parse_device_rows(const std::string& s) {
  if (s == "fp32" || s == "float32") return DeviceRows::Float32;
  if (s == "fp16" || s == "float16") return DeviceRows::Float16;
  FLASHKM_THROW("device rows '%s': expected fp32 or fp16", s.c_str());
}

}  // namespace flashkm
