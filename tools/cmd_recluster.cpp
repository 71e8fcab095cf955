// `flashkm recluster`: re-run exact k-means over the stored vectors and rebuild the lists;
// the index switches to the new clustering in one write (searches never see a mix).
#include <chrono>
#include <cstdio>

#include "command.h"
#include "flashkm/index.h"
#include "index/progress.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

class ReclusterCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", dir_, "Index directory")->required();
    app.add_option("--nlist", nlist_, "Number of lists (0: keep the current number)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--iters", iters_, "Lloyd iterations")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    add_device_option(app, device_);
    add_threads_option(app, threads_);
    app.add_option("--seed", seed_, "Seed of the random initialisation (cold start)")
        ->capture_default_str();
    app.add_option("--max-train-points", max_train_, "Train on a sample of this size (0: all)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_flag("--cold", cold_,
                 "Start from random centroids even when nlist is unchanged (default: warm "
                 "start from the current centroids)");
  }

  int run() override {
    IvfIndexOptions o;
    o.progress = index::terminal_progress();
    auto idx = IvfIndex::open(dir_, o);
    IvfIndexInfo before = idx->info();
    IvfTrainParams p;
    p.kmeans.max_iter = iters_;
    p.kmeans.device = parse_device(device_);
    p.kmeans.threads = threads_;
    p.kmeans.seed = seed_;
    p.max_train_points = max_train_;
    p.cold_start = cold_;
    auto t0 = std::chrono::steady_clock::now();
    idx->recluster(nlist_, p);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    IvfIndexInfo after = idx->info();
    std::printf(
        "flashkm recluster: %lld vectors, nlist %lld -> %lld (%s start, %d iterations on %s, "
        "k-means %.2f s), generation %llu -> %llu, imbalance %.3f -> %.3f, total %.2f s\n",
        (long long)after.ntotal, (long long)before.nlist, (long long)after.nlist,
        after.train_init == "given" ? "warm" : "cold", after.iterations, after.train_device.c_str(),
        after.train_seconds, (unsigned long long)before.generation,
        (unsigned long long)after.generation, before.imbalance, after.imbalance, s);
    return 0;
  }

 private:
  std::string dir_;
  int64_t nlist_ = 0;
  int iters_ = 10;
  std::string device_ = "auto";
  int threads_ = 0;
  uint64_t seed_ = 1234;
  int64_t max_train_ = 0;
  bool cold_ = false;
};

FLASHKM_REGISTER_COMMAND(ReclusterCommand, "recluster",
                         "Re-cluster a persisted IVF index from its stored vectors");

}  // namespace
}  // namespace cli
}  // namespace flashkm
