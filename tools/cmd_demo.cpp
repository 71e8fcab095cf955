// `flashkm demo`: the whole persisted-index story on generated data, in well under a minute:
// build (exact k-means quantizer), add, search with recall@10 against brute force, reopen,
// re-cluster, search again.
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "command.h"
#include "flashkm/index.h"
#include "flashkm/io.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class DemoCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--dir", dir_,
                   "Index directory; recreated (an existing directory must be a flashkm index)")
        ->capture_default_str();
    app.add_option("--n,-n", n_, "Vectors to index")
        ->capture_default_str()
        ->check(CLI::Range(1000, 100000000));
    app.add_option("--d,-d", d_, "Dimension")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--nlist", nlist_, "Inverted lists")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--codes", codes_, "faiss code part of the factory string (Flat, PQ8, SQ8, ...)")
        ->capture_default_str();
    app.add_option("--queries", nq_, "Queries (recall@10 against brute force)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--iters", iters_, "Lloyd iterations of build and recluster")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    add_device_option(app, device_);
    app.add_option("--seed", seed_, "Seed of the generated data")->capture_default_str();
  }

  int run() override {
    FLASHKM_THROW_IF_NOT(nlist_ <= n_, "--nlist %lld is larger than --n %lld", (long long)nlist_,
                         (long long)n_);
    namespace fs = std::filesystem;
    if (fs::exists(dir_)) {
      FLASHKM_THROW_IF_NOT(IvfIndex::exists(dir_),
                           "%s exists and is not a flashkm index; refusing to delete it",
                           dir_.c_str());
      fs::remove_all(dir_);
    }
    std::string factory = "IVF" + std::to_string(nlist_) + "," + codes_;
    std::printf("flashkm demo: %lld x %lld clustered vectors, %s, %lld queries, index in %s\n",
                (long long)n_, (long long)d_, factory.c_str(), (long long)nq_, dir_.c_str());

    auto t = Clock::now();
    std::vector<float> all(size_t(n_ + nq_) * d_);
    make_blobs(n_ + nq_, d_, std::max<int64_t>(8, nlist_ * 4), seed_, 3.0, all.data());
    const float* xb = all.data();
    const float* xq = all.data() + n_ * d_;
    std::printf("  generate data            %7.2f s\n", since(t));

    t = Clock::now();
    const int k = 10;
    std::vector<float> gt_d(nq_ * k);
    gt_.assign(size_t(nq_ * k), -1);
    faiss::float_maxheap_array_t heaps = {size_t(nq_), size_t(k), gt_.data(), gt_d.data()};
    faiss::knn_L2sqr(xq, xb, size_t(d_), size_t(nq_), size_t(n_), &heaps);
    std::printf("  brute-force ground truth %7.2f s\n", since(t));

    IvfTrainParams tp;
    tp.kmeans.max_iter = iters_;
    tp.kmeans.device = parse_device(device_);

    t = Clock::now();
    auto idx = IvfIndex::create(dir_, d_, factory);
    idx->train(n_, xb, tp);
    IvfIndexInfo info = idx->info();
    std::printf("  train (exact k-means)    %7.2f s  (%d iterations on %s, %lld points)\n",
                since(t), info.iterations, info.train_device.c_str(), (long long)info.n_train);

    t = Clock::now();
    const int64_t batch = 50000;
    for (int64_t b = 0; b < n_; b += batch) idx->add(std::min(batch, n_ - b), xb + b * d_);
    double add_s = since(t);
    std::printf("  add to RocksDB           %7.2f s  (%.0f vectors/s, %lld atomic batches)\n",
                add_s, double(n_) / add_s, (long long)((n_ + batch - 1) / batch));

    std::printf("\n  %-28s %6s %10s %10s\n", "search", "nprobe", "recall@10", "QPS");
    std::vector<int64_t> first_labels;
    for (int nprobe : {1, 8, 32}) {
      std::vector<int64_t> labels = search(*idx, xq, k, nprobe, "RocksDB lists");
      if (nprobe == 8) first_labels = labels;
    }
    idx->close();

    t = Clock::now();
    IvfIndexOptions ro;
    ro.read_only = true;
    auto reopened = IvfIndex::open(dir_, ro);
    double open_s = since(t);
    std::vector<int64_t> again = search(*reopened, xq, k, 8, "reopened read-only");
    reopened.reset();
    std::printf("  reopen %.3f s; results identical after reopen: %s\n", open_s,
                again == first_labels ? "yes" : "NO");

    t = Clock::now();
    auto rw = IvfIndex::open(dir_);
    tp.kmeans.max_iter = std::max(1, iters_ / 2);
    rw->recluster(0, tp);
    info = rw->info();
    std::printf(
        "\n  recluster (warm start)   %7.2f s  (k-means %.2f s, generation %llu, "
        "imbalance %.3f)\n",
        since(t), info.train_seconds, (unsigned long long)info.generation, info.imbalance);
    std::printf("\n  %-28s %6s %10s %10s\n", "search", "nprobe", "recall@10", "QPS");
    for (int nprobe : {1, 8, 32}) search(*rw, xq, k, nprobe, "after recluster");
    std::printf("\n  index kept in %s: try `flashkm info --index %s`\n", dir_.c_str(),
                dir_.c_str());
    return 0;
  }

 private:
  std::vector<int64_t> search(const IvfIndex& idx, const float* xq, int k, int nprobe,
                              const char* what) {
    std::vector<float> dist(nq_ * k);
    std::vector<int64_t> labels(nq_ * k);
    auto t = Clock::now();
    idx.search(nq_, xq, k, nprobe, dist.data(), labels.data());
    double s = since(t);
    std::printf("  %-28s %6d %10.4f %10.0f\n", what, nprobe, recall(labels, k), double(nq_) / s);
    return labels;
  }

  double recall(const std::vector<int64_t>& labels, int k) const {
    int64_t hits = 0;
    for (int64_t q = 0; q < nq_; ++q) {
      std::set<int64_t> truth(gt_of(q, k), gt_of(q, k) + k);
      for (int j = 0; j < k; ++j) hits += truth.count(labels[q * k + j]);
    }
    return double(hits) / double(nq_ * k);
  }

  const int64_t* gt_of(int64_t q, int k) const { return gt_.data() + q * k; }

  std::string dir_ = "./flashkm-demo-index";
  int64_t n_ = 200000, d_ = 64, nlist_ = 256, nq_ = 1000;
  std::string codes_ = "Flat";
  int iters_ = 10;
  std::string device_ = "auto";
  uint64_t seed_ = 1234;
  std::vector<int64_t> gt_;  // nq x k exact neighbours
};

FLASHKM_REGISTER_COMMAND(
    DemoCommand, "demo",
    "Build, search, reopen and re-cluster a persisted index on generated data");

}  // namespace
}  // namespace cli
}  // namespace flashkm
