// Builds IVF indexes from generated clustered vectors two ways and compares them:
//   flashkm: coarse k-means exact on ALL points, exact assignment (build_ivf);
//   faiss:   its default training (k-means on a subsample of 256 points per centroid), add.
// Reports train / add seconds and recall@10 at several nprobe against exact ground truth, as a
// table on stdout and as JSON (--json FILE). Usage:
//   bench_ivf [--n 1000000] [--d 128] [--nq 1000] [--centers 2000] [--spread 6]
//             [--factories "IVF1024,Flat;IVF1024,PQ16np"] [--niter 10] [--seeds 1]
//             [--device cpu|cuda|auto] [--json bench_ivf.json]
// --seeds S trains each index S times (k-means seeds 1234, 1235, ...; the same seeds for both
// trainers): different seeds reach different local optima, so one seed's recall difference
// can be luck. Besides recall, each row reports what explains it: the k-means objective on all
// n points (mean squared distance to the list centroid), faiss's list imbalance factor, and
// the vectors scanned per query at nprobe 8.
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
#include <iterator>
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
  int niter = 10, seeds = 1;
  flashkm::Device device = flashkm::Device::CPU;
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
    else if (k == "--seeds")
      a.seeds = std::stoi(v);
    else if (k == "--device")
      a.device = flashkm::parse_device(v);
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
  uint64_t seed = 0;
  int64_t train_points = 0;
  double mse = 0, imbalance = 0, scanned8 = 0;
  // (vectors scanned per query, recall@10) at nprobe = 1, 2, 4, ..., 128: recall against cost.
  std::vector<std::pair<double, double>> curve;
  double equal_scan_recall = -1;  // flashkm rows: recall at faiss's nprobe-8 scan, interpolated
  double coarse_seconds = 0, rest_seconds = 0, add_seconds = 0;
  std::vector<std::pair<int, double>> recall;  // (nprobe, recall@10)
  double train_seconds() const { return coarse_seconds + rest_seconds; }
};

const int kNprobes[] = {1, 8, 32};

// Quality of the lists themselves: mean squared distance of the n base vectors to their list's
// centroid (from the quantizer's own exact search), faiss's imbalance factor, and how many
// vectors a query scans at nprobe 8 (more scanned = higher recall at equal nprobe), read off the
// recall curve that measure_recall made.
void measure_lists(faiss::Index* index, const std::vector<float>& x, int64_t n, Result* r) {
  faiss::IndexIVF* ivf = ivf_of(index);
  std::vector<float> dis(n);
  std::vector<idx_t> lab(n);
  ivf->quantizer->search(n, x.data(), 1, dis.data(), lab.data());
  double sum = 0;
  for (float v : dis) sum += v;
  r->mse = sum / double(n);
  r->imbalance = ivf->invlists->imbalance_factor();
  r->scanned8 = r->curve.at(3).first;  // the curve's nprobe 1, 2, 4, 8 (measure_recall ran)
}

void measure_recall(faiss::Index* index, const std::vector<float>& q, int64_t nq,
                    const std::vector<idx_t>& gt, Result* r) {
  std::vector<float> dis(nq * 10);
  std::vector<idx_t> lab(nq * 10);
  for (int nprobe : kNprobes) {
    ivf_of(index)->nprobe = nprobe;
    index->search(nq, q.data(), 10, dis.data(), lab.data());
    r->recall.emplace_back(nprobe, recall_at_10(gt, lab, nq));
  }
  // Recall at a fixed nprobe also measures how many vectors the probed lists hold; the curve
  // lets two indexes be compared at the same number of scanned vectors.
  faiss::IndexIVF* ivf = ivf_of(index);
  std::vector<float> qd(nq * 128);
  std::vector<idx_t> ql(nq * 128);
  const int max_probe = int(std::min<size_t>(128, ivf->nlist));
  ivf->quantizer->search(nq, q.data(), max_probe, qd.data(), ql.data());
  for (int nprobe = 1; nprobe <= max_probe; nprobe *= 2) {
    double scanned = 0;
    for (int64_t i = 0; i < nq; ++i)
      for (int p = 0; p < nprobe; ++p)
        scanned += double(ivf->invlists->list_size(ql[i * max_probe + p]));
    ivf->nprobe = nprobe;
    index->search(nq, q.data(), 10, dis.data(), lab.data());
    r->curve.emplace_back(scanned / double(nq), recall_at_10(gt, lab, nq));
  }
}

// Recall of curve at `scanned` vectors per query, linear between the two nearest points
// (-1 outside the curve).
double recall_at_scan(const std::vector<std::pair<double, double>>& curve, double scanned) {
  for (size_t i = 1; i < curve.size(); ++i) {
    const auto [s0, r0] = curve[i - 1];
    const auto [s1, r1] = curve[i];
    if (scanned >= s0 && scanned <= s1)
      return s1 > s0 ? r0 + (r1 - r0) * (scanned - s0) / (s1 - s0) : r1;
  }
  return -1;
}

Result run_flashkm(const std::string& factory, const Args& a, uint64_t seed,
                   const std::vector<float>& x, const std::vector<float>& q,
                   const std::vector<idx_t>& gt) {
  Result r;
  r.factory = factory;
  r.trainer = "flashkm (all points)";
  r.seed = seed;
  flashkm::IVFTrainParams p;
  p.niter = a.niter;
  p.seed = seed;
  p.exec.device = a.device;
  auto index = flashkm::index_factory(int(a.d), factory.c_str(), faiss::METRIC_L2, p);
  // build_ivf = train_ivf + add_ivf, adding with the k-means' final assignment.
  auto t0 = Clock::now();
  flashkm::IVFTrainReport rep = flashkm::build_ivf(index.get(), a.n, x.data(), nullptr, p);
  const double total = since(t0);
  r.train_points = rep.train_points;
  r.coarse_seconds = rep.kmeans_seconds;
  r.rest_seconds = rep.transform_seconds + rep.residual_seconds;
  r.add_seconds = total - r.coarse_seconds - r.rest_seconds;
  if (rep.device == flashkm::Device::CUDA) r.trainer = "flashkm cuda (all points)";
  measure_recall(index.get(), q, a.nq, gt, &r);
  measure_lists(index.get(), x, a.n, &r);
  return r;
}

Result run_faiss(const std::string& factory, const Args& a, uint64_t seed,
                 const std::vector<float>& x, const std::vector<float>& q,
                 const std::vector<idx_t>& gt) {
  Result r;
  r.factory = factory;
  r.trainer = "faiss (default subsample)";
  r.seed = seed;
  std::unique_ptr<faiss::Index> index(faiss::index_factory(int(a.d), factory.c_str()));
  faiss::IndexIVF* ivf = ivf_of(index.get());
  ivf->cp.niter = a.niter;
  ivf->cp.seed = int(seed);
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
  measure_lists(index.get(), x, a.n, &r);
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
    for (int s = 0; s < a.seeds; ++s) {
      results.push_back(run_flashkm(f, a, 1234 + s, x, q, gt));
      results.push_back(run_faiss(f, a, 1234 + s, x, q, gt));
      Result& fk = results[results.size() - 2];
      fk.equal_scan_recall = recall_at_scan(fk.curve, results.back().scanned8);
    }
  }

  std::printf(
      "\n| index | trainer | seed | k-means points | coarse k-means s | rest of train s | add s "
      "| train+add s | R@10 nprobe=1 | nprobe=8 | nprobe=32 | MSE to list centroid "
      "| imbalance | scanned/query at nprobe 8 | R@10 at faiss's nprobe-8 scan |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    std::printf("| %s | %s | %llu | %lld | %.1f | %.1f | %.1f | %.1f |", r.factory.c_str(),
                r.trainer.c_str(), (unsigned long long)r.seed, (long long)r.train_points,
                r.coarse_seconds, r.rest_seconds, r.add_seconds, r.train_seconds() + r.add_seconds);
    for (const auto& [nprobe, rec] : r.recall) std::printf(" %.4f |", rec);
    std::printf(" %.3f | %.3f | %.0f |", r.mse, r.imbalance, r.scanned8);
    if (r.equal_scan_recall >= 0)
      std::printf(" %.4f |\n", r.equal_scan_recall);
    else
      std::printf(" |\n");
  }
  if (a.seeds > 1) {
    // Means over seeds, per factory and trainer.
    std::printf("\n| index | trainer | seeds | mean train+add s |");
    for (int nprobe : kNprobes) std::printf(" mean R@10 nprobe=%d |", nprobe);
    std::printf(
        " mean MSE | mean R@10 at faiss's nprobe-8 scan, and faiss's at nprobe 8 |\n"
        "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < results.size(); ++i) {
      bool first = true;
      for (size_t j = 0; j < i; ++j)
        first &=
            !(results[j].factory == results[i].factory && results[j].trainer == results[i].trainer);
      if (!first) continue;
      double t = 0, mse = 0, equal = 0;
      bool have_equal = true;
      std::vector<double> rec(std::size(kNprobes), 0.0);
      int cnt = 0;
      for (const Result& r : results) {
        if (r.factory != results[i].factory || r.trainer != results[i].trainer) continue;
        ++cnt;
        t += r.train_seconds() + r.add_seconds;
        mse += r.mse;
        // flashkm rows: recall at the matching faiss index's nprobe-8 scan; faiss rows: its own
        // recall at nprobe 8 (kNprobes[1]), the same budget by definition.
        if (r.trainer.rfind("faiss", 0) == 0)
          equal += r.recall[1].second;
        else if (r.equal_scan_recall >= 0)
          equal += r.equal_scan_recall;
        else
          have_equal = false;
        for (size_t p = 0; p < rec.size(); ++p) rec[p] += r.recall[p].second;
      }
      std::printf("| %s | %s | %d | %.1f |", results[i].factory.c_str(), results[i].trainer.c_str(),
                  cnt, t / cnt);
      for (double v : rec) std::printf(" %.4f |", v / cnt);
      std::printf(" %.3f |", mse / cnt);
      if (have_equal)
        std::printf(" %.4f |\n", equal / cnt);
      else
        std::printf(" |\n");
    }
  }

  std::ofstream js(a.json);
  js << "{\"n\":" << a.n << ",\"d\":" << a.d << ",\"nq\":" << a.nq << ",\"centers\":" << a.centers
     << ",\"spread\":" << a.spread << ",\"niter\":" << a.niter
     << ",\"threads\":" << omp_get_max_threads() << ",\"results\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    js << (i ? "," : "") << "{\"factory\":\"" << r.factory << "\",\"trainer\":\"" << r.trainer
       << "\",\"seed\":" << r.seed << ",\"mse\":" << r.mse << ",\"imbalance\":" << r.imbalance
       << ",\"scanned_per_query_nprobe8\":" << r.scanned8
       << ",\"recall_at_faiss_nprobe8_scan\":" << r.equal_scan_recall << ",\"curve\":[";
    for (size_t j = 0; j < r.curve.size(); ++j)
      js << (j ? "," : "") << "[" << r.curve[j].first << "," << r.curve[j].second << "]";
    js << "]"
       << ",\"kmeans_points\":" << r.train_points << ",\"coarse_seconds\":" << r.coarse_seconds
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
