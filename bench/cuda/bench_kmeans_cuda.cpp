// Per-iteration time of the CUDA backend (assign + update + centroid upload) on the issue's
// shapes, with the same synthetic data and initial centroids for every run. Prints a table
// and writes JSON. Data: a Gaussian mixture generated on the host, deterministic per row.
//
// Usage: bench_kmeans_cuda [--shapes NxDxK,...] [--iters I] [--precision exact|fast]
//                          [--tiles RxC] [--budget-mb M] [--json FILE] [--dump DIR]
//                          [--centre-std S]  (spread of the data's 256 centres, default 4)
//                          [--verbose]  (the engine's per-pass certification counts)
//                          [--variants "NAME=VALUE[,NAME=VALUE...] ..."]
// --variants runs each shape once per listed environment (set while its engine is built,
// e.g. FLASHKM_CUDA_STREAM=staged), on the same data; "-" is the environment as it is.
// ROWS=fp16 and BUDGET_MB=M in a variant set KMeansParams::device_rows and
// device_memory_budget instead (e.g. "- ROWS=fp16 BUDGET_MB=8192").
// --dump writes x.f32 / init.f32 (raw little-endian float32) for peer scripts.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "flashkm/kmeans.h"
#include "kernels/engine.h"

namespace {

struct Shape {
  int64_t n, d, k;
  int iters;
};

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double uniform(uint64_t& s) { return (splitmix(s) >> 11) * 0x1.0p-53; }
double normal(uint64_t& s) {
  const double u1 = std::max(uniform(s), 1e-300), u2 = uniform(s);
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Points around 256 centres (std centre_std, default 4) with unit noise. At d = 128 and the
// default, the centres are about 64 apart and a point lies about 11 from its own: clusters
// well apart, where centre-centre pruning settles nearly every point; at centre_std 0.5
// (centres about 8 apart) they overlap and it settles few.
std::vector<float> make_data(int64_t n, int64_t d, double centre_std) {
  const int64_t m = 256;
  std::vector<float> centres(m * d);
  uint64_t s = 12345;
  for (auto& v : centres) v = float(centre_std * normal(s));
  std::vector<float> x(n * d);
  const int workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int64_t i = w; i < n; i += workers) {
        uint64_t r = 0x1234567ull ^ (uint64_t(i) * 0x9e3779b97f4a7c15ull);
        const int64_t c = int64_t(splitmix(r) % m);
        for (int64_t j = 0; j < d; ++j) x[i * d + j] = centres[c * d + j] + float(normal(r));
      }
    });
  for (auto& t : pool) t.join();
  return x;
}

// k rows spread evenly over the data (the same for every backend and peer).
std::vector<float> initial_centroids(const std::vector<float>& x, int64_t n, int64_t d, int64_t k) {
  std::vector<float> c(k * d);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = (j * n) / k;
    std::copy(x.begin() + i * d, x.begin() + (i + 1) * d, c.begin() + j * d);
  }
  return c;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

size_t free_device_bytes() {
  size_t f = 0, t = 0;
  if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
    std::fprintf(stderr, "cudaMemGetInfo failed\n");
    std::exit(1);
  }
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<Shape> parse_shapes(const std::string& s, int iters) {
  std::vector<Shape> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    long long n, d, k;
    if (std::sscanf(s.substr(pos, end - pos).c_str(), "%lldx%lldx%lld", &n, &d, &k) != 3) {
      std::fprintf(stderr, "bad shape '%s' (expected NxDxK)\n", s.substr(pos, end - pos).c_str());
      std::exit(2);
    }
    out.push_back({n, d, k, iters});
    pos = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Shape> shapes = {{1000000, 128, 1024, 5},
                               {10000000, 128, 4096, 3},
                               {1000000, 768, 1024, 3},
                               {1000000, 128, 65536, 2}};
  std::string json_path = "bench_kmeans_cuda.json", dump_dir;
  std::vector<std::string> variants = {"-"};
  flashkm::KMeansParams base;
  int iters = 0;
  double centre_std = 4;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    const char* val = a + 1 < argc ? argv[a + 1] : "";
    if (arg == "--shapes")
      shapes = parse_shapes(val, 3), ++a;
    else if (arg == "--iters")
      iters = std::atoi(val), ++a;
    else if (arg == "--precision")
      base.precision = flashkm::parse_precision(val), ++a;
    else if (arg == "--tiles")
      std::sscanf(val, "%dx%d", &base.tiles.rows, &base.tiles.centroids), ++a;
    else if (arg == "--budget-mb")
      base.device_memory_budget = size_t(std::atoll(val)) << 20, ++a;
    else if (arg == "--json")
      json_path = val, ++a;
    else if (arg == "--verbose")
      base.verbose = true;
    else if (arg == "--dump")
      dump_dir = val, ++a;
    else if (arg == "--centre-std")
      centre_std = std::atof(val), ++a;
    else if (arg == "--variants") {
      variants.clear();
      const std::string list = val;
      for (size_t pos = 0; pos < list.size();) {
        size_t end = list.find(' ', pos);
        if (end == std::string::npos) end = list.size();
        if (end > pos) variants.push_back(list.substr(pos, end - pos));
        pos = end + 1;
      }
      ++a;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (iters > 0)
    for (auto& s : shapes) s.iters = iters;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const char* math = std::getenv("FLASHKM_CUDA_MATH");
  math = math ? math : "default";
  std::printf("device: %s, %d SMs; first pass: %s; precision: %s\n", prop.name,
              prop.multiProcessorCount, math, flashkm::to_string(base.precision));

  std::string json = "{\"device\": \"" + std::string(prop.name) + "\", \"math\": \"" + math +
                     "\", \"precision\": \"" + flashkm::to_string(base.precision) +
                     "\", \"runs\": [";
  std::vector<std::string> rows;
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    double t0 = now_ms();
    const std::vector<float> x = make_data(s.n, s.d, centre_std);
    const std::vector<float> c0 = initial_centroids(x, s.n, s.d, s.k);
    const double gen_ms = now_ms() - t0;
    if (!dump_dir.empty()) {
      const std::string tag = dump_dir + "/" + std::to_string(s.n) + "x" + std::to_string(s.d) +
                              "x" + std::to_string(s.k);
      FILE* f = std::fopen((tag + ".x.f32").c_str(), "wb");
      FILE* g = std::fopen((tag + ".init.f32").c_str(), "wb");
      if (!f || !g || std::fwrite(x.data(), 4, x.size(), f) != x.size() ||
          std::fwrite(c0.data(), 4, c0.size(), g) != c0.size()) {
        std::fprintf(stderr, "cannot write %s\n", tag.c_str());
        return 1;
      }
      std::fclose(f);
      std::fclose(g);
    }
    for (const std::string& variant : variants) {
      std::vector<std::string> set_names;
      flashkm::KMeansParams p = base;
      for (size_t pos = 0; variant != "-" && pos < variant.size();) {
        size_t end = variant.find(',', pos);
        if (end == std::string::npos) end = variant.size();
        const std::string kv = variant.substr(pos, end - pos);
        const size_t eq = kv.find('=');
        if (eq == std::string::npos) {
          std::fprintf(stderr, "bad variant '%s' (expected NAME=VALUE)\n", kv.c_str());
          return 2;
        }
        pos = end + 1;
        // Two names are parameters, not environment: ROWS (KMeansParams::device_rows) and
        // BUDGET_MB (device_memory_budget; a budget below the data streams it).
        const std::string name = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (name == "ROWS") {
          p.device_rows = flashkm::parse_device_rows(value);
        } else if (name == "BUDGET_MB") {
          p.device_memory_budget = size_t(std::atoll(value.c_str())) << 20;
        } else {
          set_names.push_back(name);
          setenv(name.c_str(), value.c_str(), 1);
        }
      }
      std::vector<float> c = c0;  // every variant starts from the same centroids
      p.n_clusters = int(s.k);
      const size_t free0 = free_device_bytes();
      size_t min_free = free0;
      t0 = now_ms();
      auto e = flashkm::detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
      const double setup_ms = now_ms() - t0;
      min_free = std::min(min_free, free_device_bytes());
      std::vector<int64_t> counts(s.k);
      std::vector<double> it_ms, as_ms, up_ms;
      int64_t fixups = 0, changed = 0, pruned = 0;
      double inertia = 0;
      for (int it = 0; it <= s.iters; ++it) {  // iteration 0 is the warm-up
        const double a = now_ms();
        e->set_centroids(c.data());
        // No inertia asked for, as in a fit without tol (only fp16 rows skip it).
        const flashkm::detail::AssignOutcome out = e->assign(nullptr, false);
        const double b = now_ms();
        e->update(c.data(), counts.data());
        const double u = now_ms();
        min_free = std::min(min_free, free_device_bytes());
        if (it == 0) continue;
        it_ms.push_back(u - a);
        as_ms.push_back(b - a);
        up_ms.push_back(u - b);
        fixups += out.fixups;
        pruned += out.pruned;
        changed = out.changed;
        inertia = out.inertia;
      }
      const double flop = 2.0 * s.n * s.k * s.d;
      const double it_med = median(it_ms), as_med = median(as_ms), up_med = median(up_ms);
      const double fix_frac = double(fixups) / (double(s.n) * s.iters);
      const double extra_gb = double(free0 - min_free) / 1e9;
      char line[512];
      std::snprintf(line, sizeof(line),
                    "%10lld %4lld %6lld | %9.2f %9.2f %8.2f | %7.1f %7.1f | %8.4f%% | %6.2f GB | "
                    "setup %.0f ms | pruned %.1f%% | %s",
                    (long long)s.n, (long long)s.d, (long long)s.k, it_med, as_med, up_med,
                    flop / it_med / 1e9, flop / as_med / 1e9, 100 * fix_frac, extra_gb, setup_ms,
                    100 * double(pruned) / (double(s.n) * s.iters), variant.c_str());
      rows.push_back(line);
      std::printf("%s\n", line);
      std::fflush(stdout);
      // Not computed with fp16 rows (NaN): JSON has no NaN, so null.
      char inertia_json[32] = "null";
      if (std::isfinite(inertia))
        std::snprintf(inertia_json, sizeof(inertia_json), "%.10g", inertia);
      char js[1024];
      std::snprintf(js, sizeof(js),
                    "%s{\"variant\": \"%s\", \"n\": %lld, \"d\": %lld, \"k\": %lld, \"iters\": %d, "
                    "\"iter_ms\": %.4f, "
                    "\"assign_ms\": %.4f, \"update_ms\": %.4f, \"tflops_iter\": %.3f, "
                    "\"tflops_assign\": %.3f, \"fixup_fraction\": %.6g, \"extra_gpu_gb\": %.3f, "
                    "\"setup_ms\": %.1f, \"datagen_ms\": %.1f, \"last_changed\": %lld, "
                    "\"last_inertia\": %s, \"pruned_fraction\": %.6g}",
                    json.back() == '[' ? "" : ", ", variant.c_str(), (long long)s.n, (long long)s.d,
                    (long long)s.k, s.iters, it_med, as_med, up_med, flop / it_med / 1e9,
                    flop / as_med / 1e9, fix_frac, extra_gb, setup_ms, gen_ms, (long long)changed,
                    inertia_json, double(pruned) / (double(s.n) * s.iters));
      json += js;
      for (const auto& name : set_names) unsetenv(name.c_str());
    }
  }
  json += "]}\n";
  std::printf(
      "\n         N    d      K |   iter ms assign ms upd ms | TF/s it TF/s as |   fixups "
      "| extra GPU\n");
  for (const auto& r : rows) std::printf("%s\n", r.c_str());
  FILE* f = std::fopen(json_path.c_str(), "w");
  if (!f || std::fputs(json.c_str(), f) < 0) {
    std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
    return 1;
  }
  std::fclose(f);
  return 0;
}
