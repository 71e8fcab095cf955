// `flashkm remove`: delete ids from a persisted index (one atomic write).
#include <cstdio>

#include "command.h"
#include "flashkm/index.h"
#include "flashkm/io.h"

namespace flashkm {
namespace cli {
namespace {

class RemoveCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", dir_, "Index directory")->required();
    app.add_option("--ids", ids_,
                   "Ids to remove (.ivecs or integer .npy, n x 1); ids not in the index are "
                   "ignored")
        ->required();
  }

  int run() override {
    IntMatrix ids = read_int_matrix(ids_);
    FLASHKM_THROW_IF_NOT(ids.d == 1, "%s has %lld columns; expected one id per row", ids_.c_str(),
                         (long long)ids.d);
    auto idx = IvfIndex::open(dir_);
    int64_t removed = idx->remove(ids.n, ids.values.data());
    std::printf("flashkm remove: %lld of %lld ids removed; index holds %lld\n", (long long)removed,
                (long long)ids.n, (long long)idx->ntotal());
    return 0;
  }

 private:
  std::string dir_, ids_;
};

FLASHKM_REGISTER_COMMAND(RemoveCommand, "remove", "Remove ids from a persisted IVF index");

}  // namespace
}  // namespace cli
}  // namespace flashkm
