// `flashkm build`: build a faiss index from a factory string, coarse quantizer trained and
// vectors assigned by flashkm, and write it as a stock faiss file (--output) or persist it as
// a RocksDB index directory (--index).
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"
#include "flashkm/faiss.h"
#include "flashkm/index.h"
#include "flashkm/io.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// --train-size: a positive count, or "all".
CLI::Validator train_size_validator() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        if (v == "all") return {};
        try {
          size_t pos = 0;
          const long long n = std::stoll(v, &pos);
          if (pos == v.size() && n > 0) return {};
        } catch (const std::exception&) {
        }
        return "'" + v + "' is neither a positive count nor 'all'";
      },
      "N|all");
}

/// Writes index to path through a temporary file renamed over it, so a failed write never
/// leaves a truncated index behind.
void write_index_atomically(const faiss::Index* index, const std::string& path) {
  const std::string tmp = path + ".tmp";
  try {
    faiss::write_index(index, tmp.c_str());
  } catch (const faiss::FaissException& e) {
    std::remove(tmp.c_str());
    FLASHKM_THROW("--output %s: cannot write the index: %s", path.c_str(), e.what());
  }
  FLASHKM_THROW_IF_NOT(std::rename(tmp.c_str(), path.c_str()) == 0,
                       "--output %s: cannot rename %s over it", path.c_str(), tmp.c_str());
}

class BuildCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    const IVFTrainParams defaults;
    niter_ = defaults.niter;
    seed_ = defaults.seed;
    threads_ = defaults.exec.threads;
    device_ = to_string(defaults.exec.device);

    app.add_option("--input,-i", input_,
                   "Vectors to index: .fvecs, .bvecs, .npy (n x d; float32 is used in place)")
        ->required();
    app.add_option("--factory,-f", factory_,
                   "faiss index_factory string, e.g. IVF1024,Flat, IVF4096,PQ32, "
                   "OPQ16_64,IVF1024,PQ16, PCA64,IVF1024,SQ8, IVF1024_HNSW32,Flat")
        ->required();
    app.add_option("--output,-o", output_,
                   "faiss index file to write (faiss::read_index reads it)");
    app.add_option("--index", index_dir_,
                   "Persisted index directory to create instead (RocksDB; IVFn,<codes> with a "
                   "flat quantizer); vectors are added in atomic batches of 100k");
    app.add_option("--train-input", train_input_,
                   "Vectors to train on (default: the --input vectors)");
    app.add_option("--train-size", train_size_,
                   "Training points for the coarse k-means: all (exact, default) or a count N, "
                   "drawn at random like faiss")
        ->capture_default_str()
        ->check(train_size_validator());
    app.add_option("--niter", niter_, "Lloyd iterations of the coarse k-means")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--seed", seed_, "Seed of the initialisation and of --train-size sampling")
        ->capture_default_str();
    app.add_option("--metric", metric_, "l2 (squared Euclidean) or ip (inner product)")
        ->capture_default_str()
        ->check(enum_validator(parse_metric, "l2|ip"));
    add_device_option(app, device_);
    add_threads_option(app, threads_);
    app.add_flag("--json", json_, "Print one JSON object on stdout instead of the summary line");
    output_option_ = app.get_option("--output");
  }

  int run() override {
    if ((output_option_->count() == 0) == index_dir_.empty())
      throw CLI::ValidationError("--output/--index", "exactly one of them is required");
    const auto t_start = std::chrono::steady_clock::now();
    Matrix base = read_matrix(input_);
    Matrix train_file;
    const Matrix* train = &base;
    if (!train_input_.empty()) {
      train_file = read_matrix(train_input_);
      FLASHKM_THROW_IF_NOT(
          train_file.d() == base.d(), "--train-input %s has d = %lld but --input %s has d = %lld",
          train_input_.c_str(), (long long)train_file.d(), input_.c_str(), (long long)base.d());
      train = &train_file;
    }
    const double read_seconds = seconds_since(t_start);
    if (!index_dir_.empty()) return build_persisted(base, *train, t_start);

    std::unique_ptr<faiss::Index> index = build(base, *train);
    const auto t_write = std::chrono::steady_clock::now();
    write_index_atomically(index.get(), output_);
    const double write_seconds = seconds_since(t_write);
    report(base, *train, *index, read_seconds, write_seconds, seconds_since(t_start));
    return 0;
  }

 private:
  // --index: create the RocksDB index, train its quantizer with flashkm, add in batches (each
  // one atomic write, so an interrupted build keeps every batch it reported).
  int build_persisted(const Matrix& base, const Matrix& train,
                      std::chrono::steady_clock::time_point t_start) {
    IvfIndexOptions o;
    const bool tty = !json_ && ::isatty(STDERR_FILENO);
    if (tty)
      o.progress = [](const std::string& stage, int64_t done, int64_t total) {
        std::fprintf(stderr, "\r%s %lld/%lld   ", stage.c_str(), (long long)done,
                     (long long)total);
      };
    std::unique_ptr<IvfIndex> idx =
        IvfIndex::create(index_dir_, base.d(), factory_, parse_metric(metric_), o);
    const IVFTrainParams tp = train_params();
    IvfTrainParams p;
    p.kmeans.max_iter = tp.niter;
    p.kmeans.seed = tp.seed;
    p.kmeans.device = tp.exec.device;
    p.kmeans.threads = tp.exec.threads;
    p.max_train_points = tp.max_train_points;
    const auto t_train = std::chrono::steady_clock::now();
    idx->train(train.n(), train.data(), p);
    train_seconds_ = seconds_since(t_train);
    const auto t_add = std::chrono::steady_clock::now();
    const int64_t batch = 100000;
    for (int64_t i0 = 0; i0 < base.n(); i0 += batch) {
      idx->add(std::min(batch, base.n() - i0), base.data() + i0 * base.d());
      if (tty) std::fprintf(stderr, "\radd %lld/%lld   ", (long long)std::min(base.n(), i0 + batch),
                            (long long)base.n());
    }
    if (tty) std::fprintf(stderr, "\n");
    add_seconds_ = seconds_since(t_add);
    const IvfIndexInfo info = idx->info();
    idx.reset();  // close: flushes before the summary claims success
    const double total = seconds_since(t_start);
    if (json_) {
      nlohmann::json out = {{"input", input_},          {"n", base.n()},
                            {"d", base.d()},            {"factory", factory_},
                            {"metric", metric_},        {"train_n", train.n()},
                            {"ntotal", info.ntotal},    {"nlist", info.nlist},
                            {"index", index_dir_},      {"generation", info.generation},
                            {"inertia", info.inertia},  {"iterations", info.iterations},
                            {"device", info.train_device},
                            {"train_seconds", train_seconds_},
                            {"add_seconds", add_seconds_},
                            {"total_seconds", total}};
      std::printf("%s\n", out.dump().c_str());
    } else {
      std::printf("flashkm build: %s n=%lld d=%lld ntotal=%lld nlist=%lld device=%s "
                  "iterations=%d train=%.3fs add=%.3fs total=%.3fs -> %s (persisted)\n",
                  factory_.c_str(), (long long)base.n(), (long long)base.d(),
                  (long long)info.ntotal, (long long)info.nlist, info.train_device.c_str(),
                  info.iterations, train_seconds_, add_seconds_, total, index_dir_.c_str());
    }
    return 0;
  }

  IVFTrainParams train_params() const {
    IVFTrainParams p;
    p.niter = niter_;
    p.seed = seed_;
    p.max_train_points = train_size_ == "all" ? 0 : std::stoll(train_size_);
    p.exec.device = parse_device(device_);
    p.exec.threads = threads_;
    return p;
  }

  faiss::MetricType faiss_metric() const {
    return parse_metric(metric_) == Metric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
  }

  // Trains and fills the index described by --factory; IVF indexes through flashkm,
  // anything else through faiss unchanged.
  std::unique_ptr<faiss::Index> build(const Matrix& base, const Matrix& train) {
    const IVFTrainParams params = train_params();
    std::unique_ptr<faiss::Index> index = flashkm::index_factory(
        static_cast<int>(base.d()), factory_.c_str(), faiss_metric(), params);
    const auto t_train = std::chrono::steady_clock::now();
    is_ivf_ = is_ivf(index.get());
    if (is_ivf_ && &train == &base) {
      // One assignment pass fewer: the k-means' final labels are the add-time assignment.
      report_ = build_ivf(index.get(), base.n(), base.data(), nullptr, params);
      const double total = seconds_since(t_train);
      train_seconds_ =
          report_.transform_seconds + report_.kmeans_seconds + report_.residual_seconds;
      add_seconds_ = total - train_seconds_;
      return index;
    }
    if (is_ivf_) {
      report_ = train_ivf(index.get(), train.n(), train.data(), params);
    } else if (!index->is_trained) {
      index->train(train.n(), train.data());
    }
    train_seconds_ = seconds_since(t_train);
    const auto t_add = std::chrono::steady_clock::now();
    if (is_ivf_) {
      add_ivf(index.get(), base.n(), base.data(), nullptr, params.exec);
    } else {
      index->add(base.n(), base.data());
    }
    add_seconds_ = seconds_since(t_add);
    return index;
  }

  void report(const Matrix& base, const Matrix& train, const faiss::Index& index,
              double read_seconds, double write_seconds, double total_seconds) const {
    if (json_) {
      nlohmann::json iterations = nlohmann::json::array();
      for (const IterationStats& s : report_.iterations)
        iterations.push_back({{"iter", s.iter},
                              {"inertia", s.inertia},
                              {"seconds", s.seconds},
                              {"changed", s.changed}});
      nlohmann::json out = {{"input", input_},
                            {"n", base.n()},
                            {"d", base.d()},
                            {"factory", factory_},
                            {"metric", metric_},
                            {"ivf", is_ivf_},
                            {"train_n", train.n()},
                            {"ntotal", index.ntotal},
                            {"output", output_},
                            {"read_seconds", read_seconds},
                            {"train_seconds", train_seconds_},
                            {"add_seconds", add_seconds_},
                            {"write_seconds", write_seconds},
                            {"total_seconds", total_seconds}};
      if (is_ivf_) {
        out["nlist"] = report_.nlist;
        out["kmeans_points"] = report_.train_points;
        out["kmeans_seconds"] = report_.kmeans_seconds;
        out["transform_seconds"] = report_.transform_seconds;
        out["residual_seconds"] = report_.residual_seconds;
        out["inertia"] = report_.inertia;
        out["device"] = to_string(report_.device);
        out["iterations"] = iterations;
      }
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    std::printf("flashkm build: %s n=%lld d=%lld ntotal=%lld", factory_.c_str(),
                (long long)base.n(), (long long)base.d(), (long long)index.ntotal);
    if (is_ivf_) {
      std::printf(" nlist=%lld kmeans_points=%lld device=%s iterations=%zu",
                  (long long)report_.nlist, (long long)report_.train_points,
                  to_string(report_.device), report_.iterations.size());
    }
    std::printf(" train=%.3fs add=%.3fs total=%.3fs -> %s\n", train_seconds_, add_seconds_,
                total_seconds, output_.c_str());
  }

  std::string input_, factory_, output_, index_dir_, train_input_, train_size_ = "all";
  int niter_ = 0;
  uint64_t seed_ = 0;
  int threads_ = 0;
  std::string metric_ = "l2", device_;
  bool json_ = false;
  CLI::Option* output_option_ = nullptr;

  bool is_ivf_ = false;
  IVFTrainReport report_;
  double train_seconds_ = 0, add_seconds_ = 0;
};

FLASHKM_REGISTER_COMMAND(BuildCommand, "build",
                         "Build a faiss index (IVF coarse quantizer trained exactly by flashkm)");

}  // namespace
}  // namespace cli
}  // namespace flashkm
