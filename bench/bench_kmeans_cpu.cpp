// CPU Lloyd iteration time of flashkm against faiss::Clustering and the sgemm floor, on the
// same generated data and the same initial centroids. One implementation per process, so
// that peak RSS is its own; bench/run_cpu_bench.sh runs them all (and scikit-learn) and
// prints the side-by-side table.
//
//   bench_kmeans_cpu --impl flashkm|faiss|sgemm [--n 1000000] [--d 128] [--k 1024]
//                    [--iters 5] [--threads 0] [--seed 1] [--spread 1] [--no-bounds]
//                    [--tile-rows R] [--tile-centroids C] [--dump DIR] [--json FILE]
// --no-bounds: flashkm without KMeansParams::bounds (a full pass every iteration).
// --tile-rows/--tile-centroids: flashkm's KMeansParams::tiles (0 = the selector's choice).
// --dump DIR writes DIR/x.npy and DIR/init.npy for the Python peers and exits.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "flashkm/io.h"
#include "flashkm/kmeans.h"

#ifdef FLASHKM_BENCH_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>
extern "C" int sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                      const float*, const int*, const float*, const int*, const float*, float*,
                      const int*);
#endif

namespace {

struct Args {
  std::string impl = "flashkm";
  int64_t n = 1000000, d = 128, k = 1024;
  int iters = 5, threads = 0;
  uint64_t seed = 1;
  double spread = 1.0;
  bool bounds = true;
  int tile_rows = 0, tile_centroids = 0;
  std::string dump, json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", f.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (f == "--impl")
      a.impl = next();
    else if (f == "--n")
      a.n = std::stoll(next());
    else if (f == "--d")
      a.d = std::stoll(next());
    else if (f == "--k")
      a.k = std::stoll(next());
    else if (f == "--iters")
      a.iters = std::stoi(next());
    else if (f == "--threads")
      a.threads = std::stoi(next());
    else if (f == "--seed")
      a.seed = std::stoull(next());
    else if (f == "--spread")
      a.spread = std::stod(next());
    else if (f == "--no-bounds")
      a.bounds = false;
    else if (f == "--tile-rows")
      a.tile_rows = std::stoi(next());
    else if (f == "--tile-centroids")
      a.tile_centroids = std::stoi(next());
    else if (f == "--dump")
      a.dump = next();
    else if (f == "--json")
      a.json = next();
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench_kmeans_cpu.cpp)\n", f.c_str());
      std::exit(2);
    }
  }
  return a;
}

double peak_rss_mb() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  const double start_rss = peak_rss_mb();
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();

  // Data: a Gaussian mixture with k/4 true centres; init: rows picked like faiss's random
  // init (the same rows for every implementation).
  std::vector<float> x(a.n * a.d);
  flashkm::make_blobs(a.n, a.d, std::max<int64_t>(1, a.k / 4), a.seed, a.spread, x.data());
  std::vector<float> init(a.k * a.d);
  {
    flashkm::KMeansParams p;
    p.n_clusters = static_cast<int>(a.k);
    p.max_iter = 0;
    p.seed = a.seed;
    p.device = flashkm::Device::CPU;
    // max_iter = 0 returns the initial centroids; the extra assignment pass is not timed.
    init = flashkm::KMeans(a.d, p).fit(a.n, x.data()).centroids;
  }
  if (!a.dump.empty()) {
    flashkm::write_vectors(a.dump + "/x.npy", a.n, a.d, x.data());
    flashkm::write_vectors(a.dump + "/init.npy", a.k, a.d, init.data());
    return 0;
  }
  const double data_mb = x.size() * 4.0 / (1 << 20);

  std::vector<double> per_iter;
  std::vector<float> final_centroids;  // every implementation's result, scored the same way
  std::string note;
  if (a.impl == "flashkm") {
    flashkm::KMeansParams p;
    p.n_clusters = static_cast<int>(a.k);
    p.max_iter = a.iters;
    p.init = flashkm::Init::Given;
    p.init_centroids = init;
    p.threads = threads;
    p.device = flashkm::Device::CPU;
    p.bounds = a.bounds;
    p.tiles.rows = a.tile_rows;
    p.tiles.centroids = a.tile_centroids;
    flashkm::KMeansResult r = flashkm::KMeans(a.d, p).fit(a.n, x.data());
    int64_t fix = 0;
    note = "pruned/iter=";
    for (auto& s : r.iterations) {
      per_iter.push_back(s.seconds);
      fix += s.fixups;
      note += std::to_string(s.pruned) + (&s == &r.iterations.back() ? "" : ",");
    }
    final_centroids = r.centroids;
    note += " fixups/iter=" + std::to_string(fix / std::max<size_t>(1, r.iterations.size()));
#ifdef FLASHKM_BENCH_FAISS
  } else if (a.impl == "faiss") {
    faiss::ClusteringParameters cp;
    cp.niter = a.iters;
    cp.max_points_per_centroid = 1 << 30;  // all points: the same problem as flashkm's
    faiss::Clustering clus(a.d, a.k, cp);
    clus.centroids = init;
    faiss::IndexFlatL2 index(a.d);
    clus.train(a.n, x.data(), index);
    double prev = 0;
    for (auto& s : clus.iteration_stats) {
      per_iter.push_back(s.time - prev);
      prev = s.time;
    }
    final_centroids = clus.centroids;
  } else if (a.impl == "sgemm") {
    // The floor: one N x K x d product per iteration, in row blocks so C stays small (the
    // argmin is not counted).
    const int bn = 4096, K = a.k, D = a.d;
    std::vector<float> c(int64_t(bn) * K);
    const float one = 1, zero = 0;
    for (int it = 0; it < a.iters; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t i0 = 0; i0 < a.n; i0 += bn) {
        int m = static_cast<int>(std::min<int64_t>(bn, a.n - i0));
        sgemm_("T", "N", &K, &m, &D, &one, init.data(), &D, x.data() + i0 * D, &D, &zero, c.data(),
               &K);
      }
      per_iter.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
#endif
  } else {
    std::fprintf(stderr, "--impl %s: expected flashkm, faiss or sgemm (faiss/sgemm need faiss)\n",
                 a.impl.c_str());
    return 2;
  }
  const double t = median(per_iter);
  // Inertia of the final centroids (exact float64 distances of every point to its nearest
  // final centroid, as scikit-learn's inertia_), not timed.
  const double rss_before_score = peak_rss_mb();
  double inertia = 0;
  if (!final_centroids.empty()) {
    flashkm::KMeansParams p;
    p.n_clusters = static_cast<int>(a.k);
    p.threads = threads;
    p.device = flashkm::Device::CPU;
    flashkm::KMeans scorer(a.d, p);
    scorer.set_centroids(final_centroids);
    std::vector<int32_t> labels(a.n);
    std::vector<float> dist(a.n);
    scorer.assign(a.n, x.data(), labels.data(), dist.data());
    for (float v : dist) inertia += v;
  }
  const double gflops = 2.0 * a.n * a.k * a.d / t / 1e9;
  // Peak over the process's start, less the data (the init pass above is included).
  const double extra_mb = rss_before_score - start_rss - data_mb;
  std::printf(
      "%-8s n=%lld d=%lld k=%lld threads=%d  %.3f s/iter  %.1f GFLOP/s  inertia %.6g  "
      "peak RSS %.0f MB (data %.0f MB, extra over data %.0f MB) %s\n",
      a.impl.c_str(), (long long)a.n, (long long)a.d, (long long)a.k, threads, t, gflops, inertia,
      rss_before_score, data_mb, extra_mb, note.c_str());
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f,
                 "{\"impl\":\"%s\",\"n\":%lld,\"d\":%lld,\"k\":%lld,\"threads\":%d,"
                 "\"seconds_per_iter\":%.6f,\"gflops\":%.2f,\"inertia\":%.9g,"
                 "\"peak_rss_mb\":%.1f,\"data_mb\":%.1f,\"extra_mb\":%.1f}\n",
                 a.impl.c_str(), (long long)a.n, (long long)a.d, (long long)a.k, threads, t, gflops,
                 inertia, rss_before_score, data_mb, extra_mb);
    std::fclose(f);
  }
  return 0;
}
