// `flashkm add`: append vectors to a persisted index (one atomic write per batch).
#include <chrono>
#include <cstdio>

#include "command.h"
#include "flashkm/index.h"
#include "flashkm/io.h"
#include "index/progress.h"

namespace flashkm {
namespace cli {
namespace {

class AddCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", dir_, "Index directory (made by `flashkm build --index`)")
        ->required();
    app.add_option("--input,-i", input_, "Vectors to add: .fvecs, .bvecs or .npy (n x d)")
        ->required();
    app.add_option("--ids", ids_,
                   "One id per vector (.ivecs or integer .npy, n x 1); ids already in the index "
                   "are an error. Default: ids continue after the largest id so far");
    app.add_option("--batch", batch_,
                   "Vectors per atomic write; a crash keeps every completed batch")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
  }

  int run() override {
    Matrix x = read_matrix(input_);
    IntMatrix ids;
    if (!ids_.empty()) {
      ids = read_int_matrix(ids_);
      FLASHKM_THROW_IF_NOT(ids.d == 1 && ids.n == x.n(),
                           "%s has shape %lld x %lld; expected one id per vector of %s (%lld x 1)",
                           ids_.c_str(), (long long)ids.n, (long long)ids.d, input_.c_str(),
                           (long long)x.n());
    }
    IvfIndexOptions o;
    o.expected_d = x.d();
    auto idx = IvfIndex::open(dir_, o);
    ProgressCallback progress = index::terminal_progress();
    auto t0 = std::chrono::steady_clock::now();
    int64_t first = -1;
    for (int64_t b = 0; b < x.n(); b += batch_) {
      int64_t n = std::min<int64_t>(batch_, x.n() - b);
      int64_t f = idx->add(n, x.data() + b * x.d(), ids_.empty() ? nullptr : &ids.values[b]);
      if (first < 0) first = f;
      if (progress) progress("add", b + n, x.n());
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("flashkm add: %lld vectors%s in %.2f s (%.0f vectors/s); index holds %lld\n",
                (long long)x.n(),
                ids_.empty() ? (" (ids from " + std::to_string(first) + ")").c_str() : "", s,
                s > 0 ? double(x.n()) / s : 0.0, (long long)idx->ntotal());
    return 0;
  }

 private:
  std::string dir_, input_, ids_;
  int64_t batch_ = 100000;
};

FLASHKM_REGISTER_COMMAND(AddCommand, "add", "Add vectors to a persisted IVF index");

}  // namespace
}  // namespace cli
}  // namespace flashkm
