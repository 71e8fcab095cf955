// `flashkm search`: k-NN search of a faiss index file; queries/s and recall@k.
#include <faiss/AutoTune.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"
#include "flashkm/faiss.h"
#include "flashkm/index.h"
#include "flashkm/io.h"
#include "options.h"

namespace flashkm {
namespace cli {
namespace {

using idx_t = faiss::Index::idx_t;

std::unique_ptr<faiss::Index> read_faiss_index(const std::string& path) {
  try {
    return std::unique_ptr<faiss::Index>(faiss::read_index(path.c_str()));
  } catch (const faiss::FaissException& e) {
    FLASHKM_THROW("--index %s: not a readable faiss index: %s", path.c_str(), e.what());
  }
}

/// recall@k: the fraction of each query's true min(k, gt_d) nearest neighbours (the first
/// columns of gt) found among its k results, averaged over the queries.
double recall_at_k(const IntMatrix& gt, const std::vector<idx_t>& labels, int64_t nq, int k) {
  const int64_t kk = std::min<int64_t>(k, gt.d);
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    const idx_t* res = &labels[i * k];
    for (int64_t a = 0; a < kk; ++a)
      hits += std::find(res, res + k, gt.values[i * gt.d + a]) != res + k;
  }
  return double(hits) / double(nq * kk);
}

class SearchCommand : public Command {
 public:
  void setup(CLI::App& app) override {
    app.add_option("--index", index_,
                   "faiss index file (written by flashkm build or faiss), or a persisted index "
                   "directory (flashkm build --index, searched read-only)")
        ->required();
    app.add_option("--queries,-q", queries_, "Query vectors: .fvecs, .bvecs, .npy (nq x d)")
        ->required();
    app.add_option("--k,-k", k_, "Neighbours per query")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--nprobe", nprobe_,
                   "Inverted lists visited per query (IVF indexes; default: the index's)")
        ->check(CLI::PositiveNumber);
    app.add_option("--gt", gt_,
                   "Ground-truth neighbour ids (.ivecs or integer .npy, nq rows, nearest first): "
                   "report recall@k");
    app.add_option("--output,-o", output_, "Result ids to write (nq x k int32): .ivecs or .npy");
    app.add_flag("--json", json_, "Print one JSON object on stdout instead of the summary line");
  }

  int run() override {
    if (!output_.empty())
      check_output_format(output_, "--output", {FileFormat::Ivecs, FileFormat::Npy});
    Matrix q = read_matrix(queries_);
    IntMatrix gt;
    if (!gt_.empty()) {
      gt = read_int_matrix(gt_);
      FLASHKM_THROW_IF_NOT(gt.n == q.n(), "--gt %s has %lld rows but --queries %s has %lld",
                           gt_.c_str(), (long long)gt.n, queries_.c_str(), (long long)q.n());
    }
    const int64_t nq = q.n();
    std::vector<float> distances(nq * k_);
    std::vector<idx_t> labels(nq * k_);
    double seconds = 0;
    int64_t ntotal = 0;
    if (IvfIndex::exists(index_)) {
      IvfIndexOptions o;
      o.read_only = true;
      std::unique_ptr<IvfIndex> idx = IvfIndex::open(index_, o);
      const IvfIndexInfo info = idx->info();
      check_d(q, info.d);
      ntotal = info.ntotal;
      // Unset nprobe: faiss's IndexIVF default, 1.
      const auto t_search = std::chrono::steady_clock::now();
      idx->search(nq, q.data(), k_, nprobe_ > 0 ? nprobe_ : 1, distances.data(), labels.data());
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_search).count();
    } else {
      std::unique_ptr<faiss::Index> index = read_faiss_index(index_);
      check_d(q, index->d);
      ntotal = index->ntotal;
      apply_nprobe(index.get());
      const auto t_search = std::chrono::steady_clock::now();
      index->search(nq, q.data(), k_, distances.data(), labels.data());
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_search).count();
    }

    if (!output_.empty()) write_results(labels, nq);
    const double recall = gt_.empty() ? -1 : recall_at_k(gt, labels, nq, k_);
    print(nq, seconds, recall, ntotal);
    return 0;
  }

 private:
  void check_d(const Matrix& q, int64_t d) const {
    FLASHKM_THROW_IF_NOT(q.d() == d, "--queries %s has d = %lld but --index %s has d = %lld",
                         queries_.c_str(), (long long)q.d(), index_.c_str(), (long long)d);
  }

  void apply_nprobe(faiss::Index* index) const {
    if (nprobe_ == 0) return;
    FLASHKM_THROW_IF_NOT(is_ivf(index), "--nprobe %d: the index in %s is not an IVF index", nprobe_,
                         index_.c_str());
    faiss::ParameterSpace().set_index_parameter(index, "nprobe", nprobe_);
  }

  void write_results(const std::vector<idx_t>& labels, int64_t nq) const {
    std::vector<int32_t> ids(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      FLASHKM_THROW_IF_NOT(labels[i] >= -1 && labels[i] <= INT32_MAX,
                           "--output %s: id %lld does not fit the int32 result file",
                           output_.c_str(), (long long)labels[i]);
      ids[i] = static_cast<int32_t>(labels[i]);
    }
    write_int_matrix(output_, nq, k_, ids.data());
  }

  void print(int64_t nq, double seconds, double recall, int64_t ntotal) const {
    const double qps = seconds > 0 ? double(nq) / seconds : 0;
    if (json_) {
      nlohmann::json out = {{"index", index_}, {"ntotal", ntotal}, {"nq", nq},
                            {"k", k_},         {"seconds", seconds},     {"qps", qps}};
      if (nprobe_ > 0) out["nprobe"] = nprobe_;
      if (recall >= 0) out["recall_at_k"] = recall;
      if (!output_.empty()) out["output"] = output_;
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    std::printf("flashkm search: nq=%lld k=%d", (long long)nq, k_);
    if (nprobe_ > 0) std::printf(" nprobe=%d", nprobe_);
    std::printf(" seconds=%.4f qps=%.1f", seconds, qps);
    if (recall >= 0) std::printf(" recall@%d=%.4f", k_, recall);
    std::printf("\n");
  }

  std::string index_, queries_, gt_, output_;
  int k_ = 10;
  int nprobe_ = 0;
  bool json_ = false;
};

FLASHKM_REGISTER_COMMAND(SearchCommand, "search",
                         "Search a faiss index file or a persisted index: queries/s, recall@k");

}  // namespace
}  // namespace cli
}  // namespace flashkm
