// Builds IVF indexes from generated clustered vectors two ways and compares them:
//   flashkm: coarse k-means exact on ALL points, exact assignment (build_ivf);
//   faiss:   its default training (k-means on a subsample of 256 points per centroid), add.
// Reports train / add seconds and recall@10 at several nprobe against exact ground truth, as a
// table on stdout and as JSON (--json FILE). Usage:
//   bench_ivf [--n 1000000] [--d 128] [--nq 1000] [--centers 2000] [--spread 6]
//             [--factories "IVF1024,Flat;IVF1024,PQ16np"] [--niter 10] [--json bench_ivf.json]
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/index_factory.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "flashkm/faiss.h"
#include "flashkm/io.h"

namespace {

using idx_t = faiss::Index::idx_t;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Args {
  int64_t n = 1000000, d = 128, nq = 1000, centers = 2000;
  double spread = 6;
  int niter = 10;
  std::string factories = "IVF1024,Flat;IVF1024,PQ16np";
  std::string json = "bench_ivf.json";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--n")
      a.n = std::atoll(v.c_str());
    else if (k == "--d")
      a.d = std::atoll(v.c_str());
    else if (k == "--nq")
      a.nq = std::atoll(v.c_str());
    else if (k == "--centers")
      a.centers = std::atoll(v.c_str());
    else if (k == "--spread")
      a.spread = std::atof(v.c_str());
    else if (k == "--niter")
      a.niter = std::atoi(v.c_str());
    else if (k == "--factories")
      a.factories = v;
    else if (k == "--json")
      a.json = v;
    else {
      std::fprintf(stderr, "bench_ivf: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

faiss::IndexIVF* ivf_of(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  return dynamic_cast<faiss::IndexIVF*>(index);
}

double recall_at_10(const std::vector<idx_t>& gt, const std::vector<idx_t>& res, int64_t nq) {
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i)
    for (int a = 0; a < 10; ++a)
      for (int b = 0; b < 10; ++b)
        if (gt[i * 10 + a] == res[i * 10 + b]) {
          ++hits;
          break;
        }
  return double(hits) / double(nq * 10);
}

struct Result {
  std::string factory, trainer;
  int64_t train_points = 0;
  double coarse_seconds = 0, rest_seconds = 0, add_seconds = 0;
  std::vector<std::pair<int, double>> recall;  // (nprobe, recall@10)
  double train_seconds() const { return coarse_seconds + rest_seconds; }
};

const int kNprobes[] = {1, 8, 32};

void measure_recall(faiss::Index* index, const std::vector<float>& q, int64_t nq,
                    const std::vector<idx_t>& gt, Result* r) {
  std::vector<float> dis(nq * 10);
  std::vector<idx_t> lab(nq * 10);
  for (int nprobe : kNprobes) {
    ivf_of(index)->nprobe = nprobe;
    index->search(nq, q.data(), 10, dis.data(), lab.data());
    r->recall.emplace_back(nprobe, recall_at_10(gt, lab, nq));
  }
}

Result run_flashkm(const std::string& factory, const Args& a, const std::vector<float>& x,
                   const std::vector<float>& q, const std::vector<idx_t>& gt) {
  Result r;
  r.factory = factory;
  r.trainer = "flashkm (all points)";
  flashkm::IVFTrainParams p;
  p.niter = a.niter;
  p.exec.device = flashkm::Device::CPU;
  auto index = flashkm::index_factory(int(a.d), factory.c_str(), faiss::METRIC_L2, p);
  // build_ivf = train_ivf + add_ivf, adding with the k-means' final assignment.
  auto t0 = Clock::now();
  flashkm::IVFTrainReport rep = flashkm::build_ivf(index.get(), a.n, x.data(), nullptr, p);
  const double total = since(t0);
  r.train_points = rep.train_points;
  r.coarse_seconds = rep.kmeans_seconds;
  r.rest_seconds = rep.transform_seconds + rep.residual_seconds;
  r.add_seconds = total - r.coarse_seconds - r.rest_seconds;
  measure_recall(index.get(), q, a.nq, gt, &r);
  return r;
}

Result run_faiss(const std::string& factory, const Args& a, const std::vector<float>& x,
                 const std::vector<float>& q, const std::vector<idx_t>& gt) {
  Result r;
  r.factory = factory;
  r.trainer = "faiss (default subsample)";
  std::unique_ptr<faiss::Index> index(faiss::index_factory(int(a.d), factory.c_str()));
  faiss::IndexIVF* ivf = ivf_of(index.get());
  ivf->cp.niter = a.niter;
  FLASHKM_ASSERT(dynamic_cast<faiss::IndexPreTransform*>(index.get()) == nullptr);
  // IndexIVF::train in two timed halves: the coarse k-means, then the residual codebooks.
  auto t0 = Clock::now();
  ivf->train_q1(a.n, x.data(), false, ivf->metric_type);
  r.coarse_seconds = since(t0);
  t0 = Clock::now();
  ivf->train_residual(a.n, x.data());
  ivf->is_trained = true;
  r.rest_seconds = since(t0);
  r.train_points = std::min<int64_t>(a.n, int64_t(ivf->nlist) * ivf->cp.max_points_per_centroid);
  t0 = Clock::now();
  index->add(a.n, x.data());
  r.add_seconds = since(t0);
  measure_recall(index.get(), q, a.nq, gt, &r);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  std::printf("bench_ivf: n=%lld d=%lld nq=%lld centers=%lld spread=%g niter=%d threads=%d\n",
              (long long)a.n, (long long)a.d, (long long)a.nq, (long long)a.centers, a.spread,
              a.niter, omp_get_max_threads());
  std::vector<float> all((a.n + a.nq) * a.d);
  flashkm::make_blobs(a.n + a.nq, a.d, a.centers, 2026, a.spread, all.data());
  const std::vector<float> q(all.begin() + a.n * a.d, all.end());  // held-out queries
  all.resize(a.n * a.d);
  const std::vector<float>& x = all;

  auto t0 = Clock::now();
  std::vector<idx_t> gt(a.nq * 10);
  {
    faiss::IndexFlatL2 flat(a.d);
    flat.add(a.n, x.data());
    std::vector<float> dis(a.nq * 10);
    flat.search(a.nq, q.data(), 10, dis.data(), gt.data());
  }
  std::printf("ground truth (brute force, %lld queries): %.1f s\n", (long long)a.nq, since(t0));

  std::vector<Result> results;
  for (const std::string& f : split(a.factories, ';')) {
    results.push_back(run_flashkm(f, a, x, q, gt));
    results.push_back(run_faiss(f, a, x, q, gt));
  }

  std::printf(
      "\n| index | trainer | k-means points | coarse k-means s | rest of train s | add s "
      "| train+add s | R@10 nprobe=1 | nprobe=8 | nprobe=32 |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    std::printf("| %s | %s | %lld | %.1f | %.1f | %.1f | %.1f |", r.factory.c_str(),
                r.trainer.c_str(), (long long)r.train_points, r.coarse_seconds, r.rest_seconds,
                r.add_seconds, r.train_seconds() + r.add_seconds);
    for (const auto& [nprobe, rec] : r.recall) std::printf(" %.4f |", rec);
    std::printf("\n");
  }

  std::ofstream js(a.json);
  js << "{\"n\":" << a.n << ",\"d\":" << a.d << ",\"nq\":" << a.nq << ",\"centers\":" << a.centers
     << ",\"spread\":" << a.spread << ",\"niter\":" << a.niter
     << ",\"threads\":" << omp_get_max_threads() << ",\"results\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    js << (i ? "," : "") << "{\"factory\":\"" << r.factory << "\",\"trainer\":\"" << r.trainer
       << "\",\"kmeans_points\":" << r.train_points << ",\"coarse_seconds\":" << r.coarse_seconds
       << ",\"rest_seconds\":" << r.rest_seconds << ",\"add_seconds\":" << r.add_seconds
       << ",\"recall_at_10\":{";
    for (size_t j = 0; j < r.recall.size(); ++j)
      js << (j ? "," : "") << "\"" << r.recall[j].first << "\":" << r.recall[j].second;
    js << "}}";
  }
  js << "]}\n";
  std::printf("\nJSON written to %s\n", a.json.c_str());
  return 0;
}
