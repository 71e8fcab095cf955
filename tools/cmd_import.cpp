// `flashkm import`: make a persisted index from a stock faiss IVF file.
#include <cstdio>

#include "command.h"
#include "flashkm/index.h"
#include "index/progress.h"

namespace flashkm {
namespace cli {
namespace {

class ImportCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--input,-i", input_,
                   "faiss file holding an IndexIVF (Flat, PQ or SQ codes), optionally behind "
                   "OPQ, PCA, PCAR or RR pre-transforms")
        ->required();
    app.add_option("--index", dir_, "Index directory to create (must not exist)")->required();
  }

  int run() override {
    IvfIndexOptions o;
    o.progress = index::terminal_progress();
    auto idx = IvfIndex::import_faiss(input_, dir_, o);
    IvfIndexInfo i = idx->info();
    std::printf("flashkm import: %s -> %s (%s, %lld vectors%s)\n", input_.c_str(), dir_.c_str(),
                i.factory.c_str(), (long long)i.ntotal,
                i.vectors_reconstructed ? ", raw vectors decoded from the codes" : "");
    return 0;
  }

 private:
  std::string input_, dir_;
};

FLASHKM_REGISTER_COMMAND(ImportCommand, "import", "Create a persisted IVF index from a faiss file");

}  // namespace
}  // namespace cli
}  // namespace flashkm
