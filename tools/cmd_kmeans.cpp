// `flashkm kmeans`: cluster a vector file, write centroids (and labels).
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "flashkm/io.h"
#include "flashkm/kmeans.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

class KMeansCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    const KMeansParams defaults;
    iters_ = defaults.max_iter;
    tol_ = defaults.tol;
    seed_ = defaults.seed;
    threads_ = defaults.threads;
    init_ = to_string(defaults.init);
    metric_ = to_string(defaults.metric);
    device_ = to_string(defaults.device);
    empty_ = to_string(defaults.empty_policy);
    precision_ = to_string(defaults.precision);
    device_rows_ = to_string(defaults.device_rows);

    app.add_option("--input,-i", input_,
                   "Vectors to cluster: .fvecs, .bvecs, .npy (n x d; float32 is used in place, "
                   "float16/float64/uint8 are converted)")
        ->required();
    app.add_option("--k,-k", k_, "Number of clusters, 1 <= k <= n")
        ->required()
        ->check(CLI::PositiveNumber);
    app.add_option("--iters", iters_, "Lloyd iterations (stops earlier at a fixed point)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option(
           "--tol", tol_,
           "Stop when the relative inertia decrease is <= tol (0: stop only at a fixed point)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--init", init_,
                   "Initial centroids: random (faiss-compatible sampling), kmeans++, or a file "
                   "of exactly k x d centroids (.fvecs/.npy)")
        ->capture_default_str()
        ->check(init_validator());
    app.add_option("--seed", seed_, "Seed of the random / kmeans++ initialisation")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--metric", metric_, "l2 (squared Euclidean) or ip (spherical k-means)")
        ->capture_default_str()
        ->check(enum_validator(parse_metric, "l2|ip"));
    add_device_option(app, device_);
    add_threads_option(app, threads_);
    app.add_option("--empty", empty_,
                   "Empty clusters: split (like faiss), keep the old centroid, or error")
        ->capture_default_str()
        ->check(enum_validator(parse_empty_policy, "split|keep|error"));
    app.add_option("--precision", precision_,
                   "exact (certified, equal to exact arithmetic) or fast (GPU only: plain fp16, "
                   "no fix-up)")
        ->capture_default_str()
        ->check(enum_validator(parse_precision, "exact|fast"));
    app.add_option("--device-rows", device_rows_,
                   "GPU, data in host memory: fp32 keeps the float32 rows on the device when "
                   "they fit, else streams them each iteration; fp16 keeps an fp16 copy (55 % "
                   "of the memory at d = 128) and reads from host memory only the float32 rows the "
                   "exact fix-up and the update need (same results; the per-iteration inertia "
                   "is then computed only with --tol)")
        ->capture_default_str()
        ->check(enum_validator(parse_device_rows, "fp32|fp16"));
    app.add_flag("--no-bounds", no_bounds_,
                 "A full distance pass for every point in every iteration, instead of settling "
                 "points whose nearest centroid is proven by bounds (CPU: the last pass's "
                 "bounds; GPU: centroid-to-centroid distances) (same results; for comparisons)");
    app.add_option("--output,-o", output_, "Centroids to write (k x d): .fvecs or .npy")
        ->required();
    app.add_option("--labels", labels_,
                   "Also write each point's final cluster: .ivecs (n rows of 1) or .npy (n,)");
    app.add_flag("--json", json_,
                 "Print one JSON object on stdout (shape, settings, per-iteration stats) instead "
                 "of the summary line");
  }

  int run() override {
    // Output names are checked before the fit so a typo does not cost a whole run.
    check_output_format(output_, "--output", {FileFormat::Fvecs, FileFormat::Npy});
    if (!labels_.empty())
      check_output_format(labels_, "--labels", {FileFormat::Ivecs, FileFormat::Npy});

    Matrix x = read_matrix(input_);
    const DeviceRows device_rows = parse_device_rows(device_rows_);
    if (device_rows == DeviceRows::Float16 && x.is_mapped() &&
        parse_device(device_) != Device::CPU) {
      // The fp16 rows read float32 rows from page-locked host memory, which a file mapping
      // never is: a private copy (a CPU fit ignores device_rows).
      std::vector<float> copy(x.data(), x.data() + x.n() * x.d());
      x = Matrix(x.n(), x.d(), std::move(copy));
    }
    FLASHKM_THROW_IF_NOT(k_ <= x.n(),
                         "--k %d is larger than the %lld points in %s; expected k <= n", k_,
                         (long long)x.n(), input_.c_str());

    KMeansParams p;
    p.n_clusters = k_;
    p.max_iter = iters_;
    p.tol = tol_;
    p.seed = seed_;
    p.threads = threads_;
    p.metric = parse_metric(metric_);
    p.device = parse_device(device_);
    p.empty_policy = parse_empty_policy(empty_);
    p.precision = parse_precision(precision_);
    p.device_rows = device_rows;
    p.bounds = !no_bounds_;
    p.init = init_from_string(init_);
    if (p.init == Init::Given) {
      Matrix c = read_matrix(init_);
      FLASHKM_THROW_IF_NOT(c.n() == k_ && c.d() == x.d(),
                           "%s: initial centroids have shape %lld x %lld; expected k x d = %d x "
                           "%lld (k from --k, d from %s)",
                           init_.c_str(), (long long)c.n(), (long long)c.d(), k_, (long long)x.d(),
                           input_.c_str());
      p.init_centroids.assign(c.data(), c.data() + c.n() * c.d());
    }
    if (!json_ && ::isatty(STDERR_FILENO)) {
      p.callback = [](const IterationStats& s) {
        std::fprintf(stderr,
                     "iter %3d  inertia %.9g  changed %lld  fixups %lld  pruned %lld  %.3f s\n",
                     s.iter, s.inertia, (long long)s.changed, (long long)s.fixups,
                     (long long)s.pruned, s.seconds);
        return true;
      };
    }

    KMeans km(x.d(), p);
    KMeansResult r;
    try {
      r = km.fit(x.n(), x.data());
    } catch (const Error& e) {  // name the file: the library only knows rows and columns
      FLASHKM_THROW("%s: %s", input_.c_str(), e.what());
    }

    write_vectors(output_, r.k, r.d, r.centroids.data());
    if (!labels_.empty()) write_labels(labels_, r.n, r.labels.data());

    if (json_) {
      nlohmann::ordered_json iterations = nlohmann::ordered_json::array();
      for (const IterationStats& s : r.iterations) {
        iterations.push_back({{"iter", s.iter},
                              {"inertia", s.inertia},
                              {"seconds", s.seconds},
                              {"changed", s.changed},
                              {"fixups", s.fixups},
                              {"pruned", s.pruned},
                              {"empty_clusters", s.empty_clusters}});
      }
      nlohmann::ordered_json out = {{"n", r.n},
                                    {"d", r.d},
                                    {"k", r.k},
                                    {"device", to_string(r.device)},
                                    {"threads", r.threads},
                                    {"metric", to_string(p.metric)},
                                    {"init", to_string(p.init)},
                                    {"precision", to_string(p.precision)},
                                    {"device_rows", to_string(p.device_rows)},
                                    {"empty", to_string(p.empty_policy)},
                                    {"seed", p.seed},
                                    {"iterations", iterations},
                                    {"inertia", r.inertia},
                                    {"seconds", r.seconds}};
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf(
          "flashkm kmeans: n=%lld d=%lld k=%lld device=%s threads=%d iterations=%zu "
          "inertia=%.9g seconds=%.3f -> %s\n",
          (long long)r.n, (long long)r.d, (long long)r.k, to_string(r.device), r.threads,
          r.iterations.size(), r.inertia, r.seconds, output_.c_str());
    }
    return 0;
  }

 private:
  std::string input_, output_, labels_;
  int k_ = 0;
  int iters_ = 0;
  double tol_ = 0;
  uint64_t seed_ = 0;
  int threads_ = 0;
  std::string init_, metric_, device_, empty_, precision_, device_rows_;
  bool json_ = false;
  bool no_bounds_ = false;
};

FLASHKM_REGISTER_COMMAND(KMeansCommand, "kmeans",
                         "Cluster vectors with exact k-means; write centroids and labels");

}  // namespace
}  // namespace cli
}  // namespace flashkm
