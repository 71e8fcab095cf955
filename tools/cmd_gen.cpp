// `flashkm gen`: write a deterministic Gaussian-mixture data set (flashkm::make_blobs).
#include <cstdio>
#include <vector>

#include "command.h"
#include "flashkm/io.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

class GenCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--n,-n", n_, "Number of points")->required()->check(CLI::PositiveNumber);
    app.add_option("--d,-d", d_, "Dimension")->required()->check(CLI::PositiveNumber);
    app.add_option("--centers", centers_,
                   "Number of Gaussian blobs; centers are uniform in [-10, 10]^d")
        ->required()
        ->check(CLI::PositiveNumber);
    app.add_option("--seed", seed_, "Seed; the same seed gives the same file on every platform")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--spread", spread_, "Standard deviation of each blob, per coordinate")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_option("--output,-o", output_, "Points to write (n x d float32): .fvecs or .npy")
        ->required();
    app.add_option("--labels", labels_,
                   "Also write each point's true blob: .ivecs (n rows of 1) or .npy (n,)");
  }

  int run() override {
    check_output_format(output_, "--output", {FileFormat::Fvecs, FileFormat::Npy});
    if (!labels_.empty())
      check_output_format(labels_, "--labels", {FileFormat::Ivecs, FileFormat::Npy});
    size_t total;
    FLASHKM_THROW_IF_NOT(!__builtin_mul_overflow(size_t(n_), size_t(d_), &total),
                         "--n %lld * --d %lld overflows", (long long)n_, (long long)d_);
    std::vector<float> x(total);
    std::vector<int32_t> labels(labels_.empty() ? 0 : size_t(n_));
    make_blobs(n_, d_, centers_, seed_, spread_, x.data(),
               labels_.empty() ? nullptr : labels.data());
    write_vectors(output_, n_, d_, x.data());
    if (!labels_.empty()) write_labels(labels_, n_, labels.data());
    std::printf("flashkm gen: n=%lld d=%lld centers=%lld seed=%llu spread=%g -> %s\n",
                (long long)n_, (long long)d_, (long long)centers_, (unsigned long long)seed_,
                spread_, output_.c_str());
    return 0;
  }

 private:
  int64_t n_ = 0, d_ = 0, centers_ = 0;
  uint64_t seed_ = 1234;
  double spread_ = 1.0;
  std::string output_, labels_;
};

FLASHKM_REGISTER_COMMAND(GenCommand, "gen", "Generate Gaussian-blob test data (make_blobs)");

}  // namespace
}  // namespace cli
}  // namespace flashkm
