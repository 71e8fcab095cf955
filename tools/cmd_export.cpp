// `flashkm export`: write a persisted index as a stock faiss file.
#include <cstdio>

#include "command.h"
#include "flashkm/index.h"
#include "index/progress.h"

namespace flashkm {
namespace cli {
namespace {

class ExportCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", dir_, "Index directory")->required();
    app.add_option("--output,-o", output_,
                   "faiss file to write (faiss::read_index loads it as an IndexIVF)")
        ->required();
  }

  int run() override {
    IvfIndexOptions o;
    o.read_only = true;
    o.list_cache_bytes = 0;
    o.progress = index::terminal_progress();
    auto idx = IvfIndex::open(dir_, o);
    idx->export_faiss(output_);
    IvfIndexInfo i = idx->info();
    std::printf("flashkm export: %s (%s, %lld vectors) -> %s\n", dir_.c_str(), i.factory.c_str(),
                (long long)i.ntotal, output_.c_str());
    return 0;
  }

 private:
  std::string dir_, output_;
};

FLASHKM_REGISTER_COMMAND(ExportCommand, "export", "Write a persisted IVF index as a faiss file");

}  // namespace
}  // namespace cli
}  // namespace flashkm
