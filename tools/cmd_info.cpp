// `flashkm info`: describe a persisted index (opened read-only: safe beside a writer).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.h"
#include "flashkm/index.h"

namespace flashkm {
namespace cli {
namespace {

class InfoCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", dir_, "Index directory")->required();
    app.add_flag("--json", json_, "Print one JSON object (list sizes included)");
  }

  int run() override {
    IvfIndexOptions o;
    o.read_only = true;
    o.list_cache_bytes = 0;
    auto idx = IvfIndex::open(dir_, o);
    IvfIndexInfo i = idx->info();
    int64_t mn = 0, mx = 0, empty = 0;
    if (!i.list_sizes.empty()) {
      mn = *std::min_element(i.list_sizes.begin(), i.list_sizes.end());
      mx = *std::max_element(i.list_sizes.begin(), i.list_sizes.end());
      empty = std::count(i.list_sizes.begin(), i.list_sizes.end(), int64_t(0));
    }
    if (json_) {
      nlohmann::json out = {{"dir", i.dir},
                            {"format_version", i.format_version},
                            {"d", i.d},
                            {"metric", to_string(i.metric)},
                            {"factory", i.factory},
                            {"nlist", i.nlist},
                            {"code_size", i.code_size},
                            {"generation", i.generation},
                            {"trained", i.trained},
                            {"ntotal", i.ntotal},
                            {"next_id", i.next_id},
                            {"write_count", i.write_count},
                            {"vectors_reconstructed", i.vectors_reconstructed},
                            {"imbalance", i.imbalance},
                            {"list_sizes", i.list_sizes},
                            {"training",
                             {{"n_train", i.n_train},
            {"max_iter", i.max_iter},
            {"seed", i.seed},
                              {"iterations", i.iterations},
                              {"inertia", i.inertia},
                              {"seconds", i.train_seconds},
                              {"device", i.train_device},
                              {"init", i.train_init}}}};
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    std::printf("index       %s (format %u, generation %llu, %llu writes)\n", i.dir.c_str(),
                i.format_version, (unsigned long long)i.generation,
                (unsigned long long)i.write_count);
    std::printf("faiss       %s, d=%lld, metric %s, code size %lld bytes\n", i.factory.c_str(),
                (long long)i.d, to_string(i.metric), (long long)i.code_size);
    std::printf("vectors     %lld (next id %lld)%s\n", (long long)i.ntotal, (long long)i.next_id,
                i.vectors_reconstructed ? ", raw vectors decoded from an imported file" : "");
    if (!i.trained) {
      std::printf("trained     no\n");
      return 0;
    }
    std::printf("lists       %lld: min %lld, max %lld, empty %lld, imbalance %.3f\n",
                (long long)i.nlist, (long long)mn, (long long)mx, (long long)empty, i.imbalance);
    std::printf("training    %s init, %d iterations on %lld points (%s), inertia %.6g, %.2f s\n",
                i.train_init.c_str(), i.iterations, (long long)i.n_train, i.train_device.c_str(),
                i.inertia, i.train_seconds);
    return 0;
  }

 private:
  std::string dir_;
  bool json_ = false;
};

FLASHKM_REGISTER_COMMAND(InfoCommand, "info", "Describe a persisted IVF index");

}  // namespace
}  // namespace cli
}  // namespace flashkm
