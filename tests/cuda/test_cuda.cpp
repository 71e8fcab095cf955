// The CUDA backend against a float64 oracle written here (plain double loops) and against
// the CPU backend, which must agree with it bit for bit: labels, distances, inertia and
// centroids. Each test runs with both first-pass arithmetics (FLASHKM_CUDA_MATH): the FFMA
// pass repeats the CPU's fast values, so its fix-up count equals the CPU's; the tensor-core
// pass has its own bound, so only its results, not its fix-up count, must match. Every test
// skips without a GPU.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "flashkm/kmeans.h"
#include "kernels/engine.h"
#include "kernels/exact_sum.h"
#include "kernels/reference.h"

#ifdef FLASHKM_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace flashkm {
namespace {

using detail::AssignOutcome;
using detail::Engine;

// Sets an environment variable of the CUDA engine for engines created while it lives.
class EnvScope {
 public:
  EnvScope(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~EnvScope() { unsetenv(name_); }

 private:
  const char* name_;
};

// Selects the CUDA first-pass arithmetic for engines created while it lives.
class MathScope : public EnvScope {
 public:
  explicit MathScope(const std::string& math) : EnvScope("FLASHKM_CUDA_MATH", math) {}
};

class CudaMath : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    scope_ = std::make_unique<MathScope>(GetParam());
  }
  void TearDown() override { scope_.reset(); }
  bool ffma() const { return GetParam() == "ffma"; }

 private:
  std::unique_ptr<MathScope> scope_;
};

struct Shape {
  int64_t n, d, k;
  Metric metric = Metric::L2;
  uint64_t seed = 1;
  float offset = 0;  ///< added to every coordinate: exercises the centring
  float scale = 1;   ///< multiplies every coordinate: exercises fp16 range scaling
};

std::string describe(const Shape& s) {
  return "n=" + std::to_string(s.n) + " d=" + std::to_string(s.d) + " k=" + std::to_string(s.k) +
         " metric=" + to_string(s.metric) + " seed=" + std::to_string(s.seed) +
         " offset=" + std::to_string(s.offset) + " scale=" + std::to_string(s.scale);
}

// Gaussian blobs around k/2 + 1 random centres, so clusters are uneven and some points sit
// near boundaries.
std::vector<float> make_data(const Shape& s) {
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> g(0.f, 1.f);
  const int64_t centres = s.k / 2 + 1;
  std::vector<float> c(centres * s.d), x(s.n * s.d);
  for (auto& v : c) v = 4.f * g(rng);
  for (int64_t i = 0; i < s.n; ++i) {
    const int64_t m = int64_t(rng() % uint64_t(centres));
    for (int64_t j = 0; j < s.d; ++j)
      x[i * s.d + j] = (c[m * s.d + j] + g(rng) + s.offset) * s.scale;
  }
  if (s.metric == Metric::InnerProduct) {
    for (int64_t i = 0; i < s.n; ++i) {
      double nn = 0;
      for (int64_t j = 0; j < s.d; ++j) nn += double(x[i * s.d + j]) * x[i * s.d + j];
      for (int64_t j = 0; j < s.d; ++j) x[i * s.d + j] = float(x[i * s.d + j] / std::sqrt(nn));
    }
  }
  return x;
}

// Initial centroids: k distinct rows, like random init.
std::vector<float> pick_rows(const std::vector<float>& x, int64_t n, int64_t d, int64_t k,
                             uint64_t seed) {
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(seed + 17);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<float> c(k * d);
  for (int64_t i = 0; i < k; ++i)
    std::copy(x.begin() + perm[i] * d, x.begin() + (perm[i] + 1) * d, c.begin() + i * d);
  return c;
}

// The oracle: nearest centroid in float64 with plain loops (ties: lowest index), and means
// from correctly rounded float64 sums (reference::means: Shewchuk's partials).
std::vector<int32_t> oracle_labels(Metric metric, const std::vector<float>& x, int64_t n, int64_t d,
                                   const std::vector<float>& c, int64_t k) {
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < k; ++j) {
      double v = 0;
      for (int64_t t = 0; t < d; ++t) {
        const double a = x[i * d + t], b = c[j * d + t];
        v += metric == Metric::L2 ? (a - b) * (a - b) : -a * b;
      }
      if (v < best) {
        best = v;
        labels[i] = int32_t(j);
      }
    }
  }
  return labels;
}

void oracle_means(const std::vector<float>& x, int64_t n, int64_t d, int64_t k,
                  const std::vector<int32_t>& labels, std::vector<float>* centroids,
                  std::vector<int64_t>* counts) {
  std::vector<double> means;
  reference::means(n, d, x.data(), labels.data(), k, &means, counts);
  for (int64_t c = 0; c < k; ++c)
    if ((*counts)[c] > 0)
      for (int64_t t = 0; t < d; ++t) (*centroids)[c * d + t] = float(means[c * d + t]);
}

struct Step {
  AssignOutcome out;
  std::vector<int32_t> labels;
  std::vector<float> dist;
  std::vector<float> centroids;  ///< after update (poisoned rows stay for empty clusters)
  std::vector<int64_t> counts;
};

Step run_step(Engine& e, const std::vector<float>& centroids) {
  Step s;
  e.set_centroids(centroids.data());
  s.dist.assign(e.n(), std::numeric_limits<float>::quiet_NaN());
  s.out = e.assign(s.dist.data());
  s.labels.assign(e.n(), -7);
  e.get_labels(s.labels.data());
  s.centroids = centroids;
  s.counts.assign(e.k(), -1);
  e.update(s.centroids.data(), s.counts.data());
  return s;
}

// fixups_equal: false when a is a tensor-core run and b the CPU (different bounds).
void expect_same(const Step& a, const Step& b, const std::string& what, bool fixups_equal = true) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.out.changed, b.out.changed);
  if (fixups_equal) {
    EXPECT_EQ(a.out.fixups, b.out.fixups);
  } else {
    EXPECT_LE(a.out.fixups, int64_t(a.labels.size()));
  }
  EXPECT_EQ(a.out.inertia, b.out.inertia);  // bit-identical, not approximately
  ASSERT_EQ(a.labels, b.labels);
  ASSERT_EQ(a.counts, b.counts);
  ASSERT_EQ(a.dist.size(), b.dist.size());
  for (size_t i = 0; i < a.dist.size(); ++i)
    ASSERT_EQ(a.dist[i], b.dist[i]) << "distance of point " << i;
  for (size_t i = 0; i < a.centroids.size(); ++i)
    ASSERT_EQ(a.centroids[i], b.centroids[i]) << "centroid value " << i;
}

// Two Lloyd steps from the same centroids on an engine built in the environment as it is and
// on one built with name=value set: everything, fix-up counts included, must be bit-identical.
// Returns the first engine's first step.
Step expect_env_changes_nothing(const Shape& s, const std::vector<float>& x,
                                const std::vector<float>& c, const KMeansParams& p,
                                const char* name, const char* value, const std::string& what) {
  auto plain = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  std::unique_ptr<Engine> other;
  {
    EnvScope scope(name, value);
    other = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  }
  Step a = run_step(*plain, c), b = run_step(*other, c);
  expect_same(a, b, what);
  expect_same(run_step(*plain, a.centroids), run_step(*other, b.centroids), "second step");
  return a;
}

// bounds off: the CPU backend's bound-based pruning settles rows without a distance pass, so
// its fix-up count would no longer be comparable with the FFMA pass's; the CUDA backend's
// centre-centre pruning is tested on its own below (check_pruning). Labels are identical
// either way.
KMeansParams params_for(const Shape& s) {
  KMeansParams p;
  p.n_clusters = int(s.k);
  p.metric = s.metric;
  p.threads = 2;
  p.bounds = false;
  return p;
}

// Runs `iters` Lloyd steps on the GPU and the CPU from the same centroids; every step must
// match the CPU exactly and the oracle's labels and means.
void check_against_cpu_and_oracle(const Shape& s, int iters, bool ffma) {
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  auto gpu = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), params_for(s));
  KMeansParams pc = params_for(s);
  auto cpu = detail::make_cpu_engine(s.n, s.d, s.k, x.data(), pc);
  std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  for (int it = 0; it < iters; ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it));
    const std::vector<int32_t> want = oracle_labels(s.metric, x, s.n, s.d, c, s.k);
    Step g = run_step(*gpu, c), h = run_step(*cpu, c);
    ASSERT_EQ(g.labels, want);
    expect_same(g, h, "GPU vs CPU engine", ffma);
    if (it == 0) EXPECT_EQ(g.out.changed, s.n);
    // Distances are the float64 formula rounded once.
    double inertia = 0;
    for (int64_t i = 0; i < s.n; ++i) {
      const float* xi = x.data() + i * s.d;
      const float* ci = c.data() + g.labels[i] * s.d;
      const double v =
          s.metric == Metric::L2 ? detail::exact_l2(xi, ci, s.d) : detail::exact_ip(xi, ci, s.d);
      ASSERT_EQ(g.dist[i], float(v)) << "point " << i;
      inertia += v;
    }
    EXPECT_NEAR(g.out.inertia, inertia, 1e-9 * std::abs(inertia) + 1e-12);
    std::vector<float> want_c = c;
    std::vector<int64_t> want_counts;
    oracle_means(x, s.n, s.d, s.k, g.labels, &want_c, &want_counts);
    ASSERT_EQ(g.counts, want_counts);
    for (size_t i = 0; i < want_c.size(); ++i) ASSERT_EQ(g.centroids[i], want_c[i]) << i;
    c = g.centroids;
  }
}

TEST_P(CudaMath, GaussianBlobsMatchOracleAndCpu) {
  check_against_cpu_and_oracle({3000, 24, 40}, 4, ffma());
}

TEST_P(CudaMath, LargeOffsetDataIsCentred) {
  check_against_cpu_and_oracle({2500, 32, 70, Metric::L2, 5, 1000.f}, 3, ffma());
}

// Far outside fp16's range (65504 .. 6e-8) both ways: the power-of-two scaling must keep
// the tensor-core pass finite and its bound honest.
TEST_P(CudaMath, HugeAndTinyMagnitudes) {
  check_against_cpu_and_oracle({1500, 20, 50, Metric::L2, 7, 0.f, 1e9f}, 2, ffma());
  check_against_cpu_and_oracle({1500, 20, 50, Metric::L2, 8, 0.f, 1e-9f}, 2, ffma());
}

TEST_P(CudaMath, InnerProductMatchesOracleAndCpu) {
  check_against_cpu_and_oracle({2000, 48, 130, Metric::InnerProduct, 3}, 3, ffma());
}

TEST_P(CudaMath, EdgeShapes) {
  check_against_cpu_and_oracle({1500, 1, 7, Metric::L2, 11}, 3, ffma());     // d = 1
  check_against_cpu_and_oracle({1100, 9, 33, Metric::L2, 12}, 2, ffma());    // d = 8 + 1
  check_against_cpu_and_oracle({700, 33, 129, Metric::L2, 13}, 2, ffma());   // d = 32 + 1
  check_against_cpu_and_oracle({700, 129, 129, Metric::L2, 13}, 2, ffma());  // d, k = 128 + 1
  check_against_cpu_and_oracle({1025, 5, 1, Metric::L2, 14}, 2, ffma());     // k = 1
  check_against_cpu_and_oracle({60, 3, 60, Metric::L2, 15}, 2, ffma());      // n == k
  check_against_cpu_and_oracle({64, 16, 64, Metric::InnerProduct, 16}, 2, ffma());
  // Clusters of ~700 rows and rows of 300 coordinates: the cluster sums stage several
  // batches of ids per cluster over several coordinate blocks, finalize several chunks.
  check_against_cpu_and_oracle({2000, 300, 3, Metric::L2, 17}, 2, ffma());
  check_against_cpu_and_oracle({2000, 300, 3, Metric::InnerProduct, 18}, 2, ffma());
}

TEST_P(CudaMath, TileShapesAreBitIdentical) {
  const Shape s{2300, 37, 150, Metric::L2, 21};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  std::vector<Step> steps;
  std::vector<TileConfig> shapes = {TileConfig{64, 64}, TileConfig{128, 128}};
  if (ffma()) shapes.push_back(TileConfig{32, 32});
  for (TileConfig t : shapes) {
    KMeansParams p = params_for(s);
    p.tiles = t;
    auto e = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
    Step a = run_step(*e, c);
    Step b = run_step(*e, a.centroids);
    steps.push_back(b);
  }
  for (size_t i = 1; i < steps.size(); ++i)
    expect_same(steps[0], steps[i], "shape 0 vs shape " + std::to_string(i));
}

TEST_P(CudaMath, UnknownTileShapeThrows) {
  const Shape s{100, 4, 5};
  const std::vector<float> x = make_data(s);
  KMeansParams p = params_for(s);
  p.tiles = TileConfig{48, 48};
  EXPECT_THROW(detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p), Error);
}

TEST_P(CudaMath, RunsAreDeterministic) {
  const Shape s{4000, 20, 90, Metric::L2, 31};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  auto a = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), params_for(s));
  auto b = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), params_for(s));
  Step sa = run_step(*a, c), sb = run_step(*b, c);
  expect_same(sa, sb, "first step");
  expect_same(run_step(*a, sa.centroids), run_step(*b, sb.centroids), "second step");
}

// A fresh engine's first pass must see all of x: the upload is ordered before the kernels
// that read it (a cudaMemcpy from pageable memory could return before its last bytes landed,
// and tail rows then got stale fast values now and then). Fast labels of fresh engines on
// the same large input must agree, tail included.
TEST_P(CudaMath, FreshEnginesSeeTheWholeUpload) {
  const Shape s{400000, 64, 40, Metric::L2, 37};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  KMeansParams p = params_for(s);
  p.precision = Precision::Fast;
  std::vector<int32_t> first;
  for (int rep = 0; rep < 4; ++rep) {
    auto e = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
    e->set_centroids(c.data());
    e->assign(nullptr);
    std::vector<int32_t> labels(s.n);
    e->get_labels(labels.data());
    if (rep == 0) {
      first = labels;
    } else {
      ASSERT_EQ(labels, first) << "engine " << rep;
    }
  }
}

// Streamed chunks leave host memory either straight from the caller's rows, page-locked in
// place, or through pinned staging buffers (FLASHKM_CUDA_STREAM); both must equal resident
// data bit for bit.
TEST_P(CudaMath, StreamingMatchesResident) {
  for (const char* path : {"registered", "staged"}) {
    for (Metric m : {Metric::L2, Metric::InnerProduct}) {
      const Shape s{5500, 16, 60, m, 41};
      SCOPED_TRACE(describe(s) + " host path " + path);
      const std::vector<float> x = make_data(s);
      KMeansParams p = params_for(s);
      auto resident = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
      // Room for about one 1024-row chunk (x twice, norms, the fp16 split), so 6 chunks
      // stream through.
      p.device_memory_budget = 1024 * (2 * sizeof(float) * s.d + sizeof(double) + 4 * 32);
      EnvScope scope("FLASHKM_CUDA_STREAM", path);
      auto streamed = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
      std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
      for (int it = 0; it < 3; ++it) {
        Step a = run_step(*resident, c), b = run_step(*streamed, c);
        expect_same(a, b, "iteration " + std::to_string(it));
        c = a.centroids;
      }
    }
  }
}

// The rows of one array can be page-locked only once: a second streamed engine on them
// falls back to staging (unless told to require the lock), and the lock is released with
// the engine that holds it, so a later engine gets it again.
TEST_P(CudaMath, SecondStreamedEngineOnTheSameRowsStages) {
  const Shape s{3000, 8, 20, Metric::L2, 43};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  KMeansParams p = params_for(s);
  auto resident = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  const Step want = run_step(*resident, c);
  // Room for about one 1024-row chunk of x (twice) and its norms: streamed with every first
  // pass (the FFMA pass keeps no fp16 split, so a budget counting one would hold its rows).
  p.device_memory_budget = 1024 * (2 * sizeof(float) * s.d + sizeof(double));
  {
    auto first = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);   // locks the rows
    auto second = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);  // stages
    {
      EnvScope scope("FLASHKM_CUDA_STREAM", "registered");
      EXPECT_THROW(detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p), Error);
    }
    expect_same(run_step(*first, c), want, "first streamed engine");
    expect_same(run_step(*second, c), want, "second streamed engine");
  }
  EnvScope scope("FLASHKM_CUDA_STREAM", "registered");
  auto again = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  expect_same(run_step(*again, c), want, "engine after the lock was released");
}

// A read-only shared mapping of a temporary file holding floats; unmapped and removed at
// scope exit whatever the test's outcome.
class MappedFile {
 public:
  explicit MappedFile(const std::vector<float>& x) : bytes_(x.size() * sizeof(float)) {
    fd_ = mkstemp(path_);
    if (fd_ < 0 || write(fd_, x.data(), bytes_) != ssize_t(bytes_)) return;
    void* m = mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd_, 0);
    if (m != MAP_FAILED) map_ = m;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (map_) munmap(map_, bytes_);
    if (fd_ >= 0) {
      close(fd_);
      unlink(path_);
    }
  }
  const float* data() const { return static_cast<const float*>(map_); }

 private:
  char path_[32] = "/tmp/flashkm-mapped-XXXXXX";
  size_t bytes_;
  int fd_ = -1;
  void* map_ = nullptr;
};

// Rows in a file mapping are streamed through the staging buffers, never page-locked in
// place (that would read the whole file in at once, and the driver marks every pinned page
// dirty on release, so the file would be written back): the forced in-place path refuses
// them for that reason, the default stages them, with the same results as resident rows.
TEST_P(CudaMath, FileMappedRowsAreStagedNotLocked) {
  const Shape s{3000, 8, 20, Metric::L2, 47};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  MappedFile file(x);
  ASSERT_NE(file.data(), nullptr) << "cannot map a temporary file";
  KMeansParams p = params_for(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  auto resident = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  const Step want = run_step(*resident, c);
  p.device_memory_budget = 1024 * (2 * sizeof(float) * s.d + sizeof(double));  // streamed
  {
    EnvScope scope("FLASHKM_CUDA_STREAM", "registered");
    try {
      detail::make_cuda_engine(s.n, s.d, s.k, file.data(), p);
      FAIL() << "a file mapping was page-locked";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("private anonymous"), std::string::npos) << e.what();
    }
  }
  p.verbose = true;  // the engine says how it streams
  for (const float* rows : {file.data(), x.data()}) {
    const bool mapped = rows == file.data();
    ::testing::internal::CaptureStderr();
    auto e = detail::make_cuda_engine(s.n, s.d, s.k, rows, p);
    const std::string said = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(said.find(mapped ? "streamed through pinned staging buffers"
                               : "streamed from page-locked host rows"),
              std::string::npos)
        << said;
    expect_same(run_step(*e, c), want, mapped ? "file-mapped rows" : "heap rows");
  }
}

TEST_P(CudaMath, EmptyClusterRowsAreUntouched) {
  const Shape s{1200, 8, 12, Metric::L2, 51};
  const std::vector<float> x = make_data(s);
  std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  for (int64_t j = 0; j < s.d; ++j) {
    c[3 * s.d + j] = 1e4f;  // far from every point
    c[9 * s.d + j] = -1e4f;
  }
  auto e = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), params_for(s));
  Step st = run_step(*e, c);
  EXPECT_EQ(st.counts[3], 0);
  EXPECT_EQ(st.counts[9], 0);
  for (int64_t j = 0; j < s.d; ++j) {
    EXPECT_EQ(st.centroids[3 * s.d + j], 1e4f);
    EXPECT_EQ(st.centroids[9 * s.d + j], -1e4f);
  }
  int64_t total = 0;
  for (int64_t v : st.counts) total += v;
  EXPECT_EQ(total, s.n);
}

// Integer points and duplicated centroids give exact ties: the fast bound cannot certify
// them, the float64 fix-up runs and must pick the lowest index, as the oracle does.
TEST_P(CudaMath, ExactTiesGoToLowestIndexThroughFixup) {
  const int64_t n = 3000, d = 6, k = 24;
  std::mt19937_64 rng(61);
  std::vector<float> x(n * d);
  for (auto& v : x) v = float(int(rng() % 7) - 3);
  std::vector<float> c(k * d);
  for (int64_t j = 0; j < k / 2; ++j)
    for (int64_t t = 0; t < d; ++t) c[j * d + t] = float(int(rng() % 5) - 2);
  for (int64_t j = k / 2; j < k; ++j)  // second half duplicates the first, in reverse
    std::copy(c.begin() + (k - 1 - j) * d, c.begin() + (k - j) * d, c.begin() + j * d);
  KMeansParams p;
  p.n_clusters = int(k);
  auto gpu = detail::make_cuda_engine(n, d, k, x.data(), p);
  auto cpu = detail::make_cpu_engine(n, d, k, x.data(), p);
  Step g = run_step(*gpu, c), h = run_step(*cpu, c);
  EXPECT_GT(g.out.fixups, 0);
  ASSERT_EQ(g.labels, oracle_labels(Metric::L2, x, n, d, c, k));
  for (int32_t l : g.labels) ASSERT_LT(l, k / 2);  // a duplicate never wins
  expect_same(g, h, "GPU vs CPU engine", ffma());
}

// Every row tied (each centroid has a duplicate): more uncertified rows than the wgmma
// collecting pass covers in one sweep of its blocks (one per SM, 128 rows each), so its
// grid-stride loop runs; labels must still be the oracle's and the CPU's.
TEST_P(CudaMath, ManyUncertifiedRowsAllFixedUp) {
  const int64_t n = 60000, d = 5, k = 16;
  std::mt19937_64 rng(67);
  std::vector<float> x(n * d), c(k * d);
  for (auto& v : x) v = float(int(rng() % 9) - 4);
  for (int64_t j = 0; j < k / 2; ++j)
    for (int64_t t = 0; t < d; ++t) c[j * d + t] = float(int(rng() % 7) - 3);
  for (int64_t j = k / 2; j < k; ++j)
    std::copy(c.begin() + (j - k / 2) * d, c.begin() + (j - k / 2 + 1) * d, c.begin() + j * d);
  KMeansParams p;
  p.n_clusters = int(k);
  p.bounds = false;
  auto gpu = detail::make_cuda_engine(n, d, k, x.data(), p);
  auto cpu = detail::make_cpu_engine(n, d, k, x.data(), p);
  Step g = run_step(*gpu, c), h = run_step(*cpu, c);
  EXPECT_EQ(g.out.fixups, n);
  ASSERT_EQ(g.labels, oracle_labels(Metric::L2, x, n, d, c, k));
  expect_same(g, h, "GPU vs CPU engine", ffma());
}

// More exactly tied centroids than a row keeps candidates (kTop = 4): the window cannot be
// closed from the candidate list, and those rows take the fix-up over all k.
TEST_P(CudaMath, ManyTiedCentroidsTakeTheFullFixup) {
  const int64_t n = 2000, d = 5, k = 20;
  std::mt19937_64 rng(91);
  std::vector<float> x(n * d), c(k * d);
  for (auto& v : x) v = float(int(rng() % 5) - 2);
  for (auto& v : c) v = float(int(rng() % 9) - 4);
  for (int64_t j : {3, 6, 7, 11, 12, 15, 19})  // seven copies of centroid 2
    std::copy(c.begin() + 2 * d, c.begin() + 3 * d, c.begin() + j * d);
  KMeansParams p;
  p.n_clusters = int(k);
  auto gpu = detail::make_cuda_engine(n, d, k, x.data(), p);
  auto cpu = detail::make_cpu_engine(n, d, k, x.data(), p);
  Step g = run_step(*gpu, c), h = run_step(*cpu, c);
  ASSERT_EQ(g.labels, oracle_labels(Metric::L2, x, n, d, c, k));
  int64_t on_copies = 0;
  for (int32_t l : g.labels) on_copies += l == 2;
  EXPECT_GT(on_copies, 0);
  expect_same(g, h, "GPU vs CPU engine", ffma());
}

TEST_P(CudaMath, FastPrecisionSkipsFixup) {
  const Shape s{3000, 32, 100, Metric::L2, 71};
  SCOPED_TRACE(describe(s));
  const std::vector<float> x = make_data(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  KMeansParams p = params_for(s);
  p.precision = Precision::Fast;
  auto gpu = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  Step g = run_step(*gpu, c);
  EXPECT_EQ(g.out.fixups, 0);
  const std::vector<int32_t> want = oracle_labels(s.metric, x, s.n, s.d, c, s.k);
  int64_t wrong = 0;
  for (int64_t i = 0; i < s.n; ++i) wrong += g.labels[i] != want[i];
  EXPECT_LE(wrong, s.n / 100);
  if (ffma()) {
    // Exact runs the same fmaf chain and differs from Fast only on the rows it recomputed
    // (the CPU backend has no Fast mode to compare with: it always certifies).
    p.precision = Precision::Exact;
    auto exact = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
    const Step ge = run_step(*exact, c);
    int64_t differ = 0;
    for (int64_t i = 0; i < s.n; ++i) differ += g.labels[i] != ge.labels[i];
    EXPECT_LE(differ, ge.out.fixups);
  }
}

// The whole Lloyd driver on both backends from the same given centroids: every iteration's
// statistics and the final model must be identical.
TEST_P(CudaMath, KMeansFitMatchesCpuEveryIteration) {
  const Shape s{3000, 16, 50, Metric::L2, 81};
  const std::vector<float> x = make_data(s);
  KMeansParams p;
  p.n_clusters = int(s.k);
  p.max_iter = 6;
  p.init = Init::Given;
  p.init_centroids = pick_rows(x, s.n, s.d, s.k, s.seed);
  p.threads = 2;
  p.bounds = false;  // see params_for
  p.device = Device::CPU;
  KMeansResult rc = KMeans(s.d, p).fit(s.n, x.data());
  p.device = Device::CUDA;
  KMeansResult rg = KMeans(s.d, p).fit(s.n, x.data());
  EXPECT_EQ(rg.device, Device::CUDA);
  ASSERT_EQ(rg.iterations.size(), rc.iterations.size());
  for (size_t i = 0; i < rc.iterations.size(); ++i) {
    SCOPED_TRACE("iteration " + std::to_string(i));
    EXPECT_EQ(rg.iterations[i].inertia, rc.iterations[i].inertia);
    EXPECT_EQ(rg.iterations[i].changed, rc.iterations[i].changed);
    if (ffma()) EXPECT_EQ(rg.iterations[i].fixups, rc.iterations[i].fixups);
    EXPECT_EQ(rg.iterations[i].empty_clusters, rc.iterations[i].empty_clusters);
  }
  EXPECT_EQ(rg.labels, rc.labels);
  EXPECT_EQ(rg.centroids, rc.centroids);
  EXPECT_EQ(rg.inertia, rc.inertia);
  // The same fit with the GPU's centre-centre pruning (the CPU keeps its bounds off, so
  // both decide every float64 near-tie alike), from k-means++ on the device (whose scratch
  // the pruning shares), through the final assignment pass.
  p.init = Init::KMeansPlusPlus;
  p.n_clusters = 120;  // about 4.6 centroids a blob
  p.device = Device::CPU;
  p.bounds = false;
  KMeansResult pc = KMeans(s.d, p).fit(s.n, x.data());
  p.device = Device::CUDA;
  p.bounds = true;
  KMeansResult pg = KMeans(s.d, p).fit(s.n, x.data());
  ASSERT_EQ(pg.iterations.size(), pc.iterations.size());
  int64_t pruned = 0;
  for (size_t i = 0; i < pc.iterations.size(); ++i) {
    SCOPED_TRACE("pruned fit, iteration " + std::to_string(i));
    EXPECT_EQ(pg.iterations[i].inertia, pc.iterations[i].inertia);
    EXPECT_EQ(pg.iterations[i].changed, pc.iterations[i].changed);
    EXPECT_EQ(pg.iterations[i].empty_clusters, pc.iterations[i].empty_clusters);
    pruned += pg.iterations[i].pruned;
  }
  EXPECT_GT(pruned, 0);
  EXPECT_EQ(pg.labels, pc.labels);
  EXPECT_EQ(pg.centroids, pc.centroids);
  EXPECT_EQ(pg.inertia, pc.inertia);
}

// Centre-centre pruning (KMeansParams::bounds, on by default): from the second pass on, the
// GPU decides a row over the centroids near its previous label only, and labels with more
// candidates than the pass takes fall back to the full pass. Every pass must still give the
// oracle's labels and exactly the CPU's results (the CPU without its own bounds); `settled`
// checks that pruning really ran: at least `min_pruned` rows in the first pass that can
// prune, and fewer than all of them when some labels must fall back. keep_init: every pass
// gets the initial centroids again (so exact ties among them persist), not the means.
void check_pruning(const Shape& s, const std::vector<float>& x, const std::vector<float>& init,
                   int iters, int64_t min_pruned, bool some_fall_back, bool keep_init = false) {
  SCOPED_TRACE(describe(s));
  KMeansParams pg = params_for(s);
  pg.bounds = true;
  auto gpu = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), pg);
  auto cpu = detail::make_cpu_engine(s.n, s.d, s.k, x.data(), params_for(s));
  std::vector<float> c = init;
  for (int it = 0; it < iters; ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it));
    const std::vector<int32_t> want = oracle_labels(s.metric, x, s.n, s.d, c, s.k);
    Step g = run_step(*gpu, c), h = run_step(*cpu, c);
    ASSERT_EQ(g.labels, want);
    expect_same(g, h, "GPU with pruning vs CPU engine", false);
    if (it == 0) EXPECT_EQ(g.out.pruned, 0);  // nothing to prune from yet
    if (it == 1) {
      EXPECT_GE(g.out.pruned, min_pruned);
      if (some_fall_back) EXPECT_LT(g.out.pruned, s.n);
    }
    if (!keep_init) c = g.centroids;
  }
}

// 2000 rows in a blob far away with 2 centroids (short candidate lists: pruned) and 3000 in a
// blob at the origin with 60 centroids (more candidates than a row tile may take,
// max(32, k / 8): those rows fall back to the full pass).
void check_fallback(int64_t d) {
  const Shape s{5000, d, 62, Metric::L2, 95};
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(s.n * s.d);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.d; ++j) x[i * s.d + j] = g(rng) + (i < 2000 ? 100.f : 0.f);
  std::vector<float> init(s.k * s.d);
  for (int64_t c = 0; c < s.k; ++c) {
    const int64_t row = c < 2 ? c * 7 : 2000 + c * 31;
    std::copy(x.begin() + row * s.d, x.begin() + (row + 1) * s.d, init.begin() + c * s.d);
  }
  check_pruning(s, x, init, 4, 2000, true);
}

// 2000 rows in a far blob with 2 centroids (pruned) and 4000 at the origin with 600
// centroids: every one of those labels has more candidates than its list holds
// (kPruneMaxCands = 512), so its rows fall back before any list is read past its end.
void check_list_overflow() {
  const Shape s{6000, 4, 602, Metric::L2, 101};
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(s.n * s.d);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.d; ++j) x[i * s.d + j] = g(rng) + (i < 2000 ? 100.f : 0.f);
  std::vector<float> init(s.k * s.d);
  for (int64_t c = 0; c < s.k; ++c) {
    const int64_t row = c < 2 ? c * 7 : 2000 + (c - 2) * 6;
    std::copy(x.begin() + row * s.d, x.begin() + (row + 1) * s.d, init.begin() + c * s.d);
  }
  check_pruning(s, x, init, 3, 2000, true);
}

// 12 blobs 100 apart on a line, `per` rows and m centroids each (rows of their own blob): with
// the defaults k = 1104, so several candidate tiles, more labels than the tile kernel's
// threads, and row tiles of a few rows with ~92 candidates (evaluated a thread a candidate,
// or with FLASHKM_CUDA_PRUNE_SMALL=never in group passes of 32, carrying each row's two best
// from group to group).
void check_many_candidates(int64_t m = 92, int64_t per = 250) {
  const int64_t blobs = 12;
  const Shape s{blobs * per, 8, blobs * m, Metric::L2, 99};
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(s.n * s.d), init(s.k * s.d);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.d; ++j) x[i * s.d + j] = g(rng) + (j == 0 ? 100.f * (i / per) : 0.f);
  for (int64_t c = 0; c < s.k; ++c) {
    const int64_t row = (c / m) * per + c % m;
    std::copy(x.begin() + row * s.d, x.begin() + (row + 1) * s.d, init.begin() + c * s.d);
  }
  check_pruning(s, x, init, 3, s.n / 2, false);
}

// d = 37: a partial last chunk of coordinates; offset data (raw, uncentred values).
void check_offset_d37() {
  const Shape s{3000, 37, 30, Metric::L2, 92, 500.f};
  const std::vector<float> x = make_data(s);
  check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 3, s.n / 2, false);
}

// Coordinates near 1e-20: float32 squares underflow, every row is decided in float64.
void check_underflow() {
  const Shape s{1500, 16, 20, Metric::L2, 94, 0.f, 1e-20f};
  const std::vector<float> x = make_data(s);
  check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 3, 1, false);
}

// k = 1 with coordinates near +-2e19, whose float32 squares overflow: the single candidate is
// the label regardless.
void check_one_centroid_overflow() {
  const Shape s{1000, 1, 1, Metric::L2, 100};
  std::mt19937_64 rng(s.seed);
  std::vector<float> x(s.n);
  for (auto& v : x) v = (rng() % 2 ? 2e19f : -2e19f) * (1.f + float(rng() % 100) / 100.f);
  check_pruning(s, x, {x[0]}, 3, 1, false);
}

// Integer points with duplicated centroids (the second half of the k repeats the first, so
// half the labels keep no rows): exact ties, which float32 cannot separate, so the float64
// formula decides them over the candidates and must pick the lowest index.
void check_ties(int64_t k, int64_t min_pruned = 1) {
  const Shape s{3000, 6, k, Metric::L2, 96};
  std::mt19937_64 rng(s.seed);
  std::vector<float> x(s.n * s.d), init(s.k * s.d);
  for (auto& v : x) v = float(int(rng() % 7) - 3) + (rng() % 2 ? 40.f : 0.f);
  for (int64_t j = 0; j < s.k / 2; ++j)
    for (int64_t t = 0; t < s.d; ++t) init[j * s.d + t] = float(int(rng() % 5) - 2);
  for (int64_t j = s.k / 2; j < s.k; ++j)
    std::copy(init.begin() + (j - s.k / 2) * s.d, init.begin() + (j - s.k / 2 + 1) * s.d,
              init.begin() + j * s.d);
  check_pruning(s, x, init, 3, min_pruned, min_pruned == 0, true);
}

// An engine built with `name` set to a value it does not know refuses it (Error).
void expect_unknown_value_refused(const char* name) {
  EnvScope bad(name, "sometimes");
  const std::vector<float> x(64 * 4, 1.f);
  KMeansParams p;
  p.n_clusters = 4;
  EXPECT_THROW(detail::make_cuda_engine(64, 4, 4, x.data(), p), Error);
}

TEST_P(CudaMath, CentrePruningMatchesOracleAndCpu) {
  {  // blobs far apart: the second pass settles most rows
    const Shape s{4000, 24, 40, Metric::L2, 91};
    const std::vector<float> x = make_data(s);
    check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 5, s.n / 2, false);
  }
  check_offset_d37();
  {  // d = 1
    const Shape s{2000, 1, 9, Metric::L2, 93};
    const std::vector<float> x = make_data(s);
    check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 3, 1, false);
  }
  check_underflow();
}

// check_fallback at d = 8 and at d = 300 (wgmma: the fallback rows are too wide to stay in
// shared memory and stream from the split arrays), list overflow, then exact ties.
TEST_P(CudaMath, CentrePruningFallsBackAndBreaksTies) {
  check_fallback(8);
  check_fallback(300);
  check_list_overflow();
  check_ties(24);
}

// Blobs on a line, 40 apart, 12 centroids each, first placed 15 off their blob's centre and
// then moved onto their rows' means: a label's radius adds how far its centroid moved, so its
// list holds the neighbouring blobs' centroids too (36, more than a row tile may evaluate:
// max(32, k / 8) = 32). The second pass prunes only if each row tile narrows the list to its
// own radius (its rows' float64 distances to the moved centroid).
TEST_P(CudaMath, CentrePruningNarrowsListsAfterBigMoves) {
  const int64_t blobs = 12, per = 300, m = 12;
  const Shape s{blobs * per, 8, blobs * m, Metric::L2, 98};
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_real_distribution<float> jitter(-0.5f, 0.5f);
  std::vector<float> x(s.n * s.d), init(s.k * s.d);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.d; ++j) x[i * s.d + j] = g(rng) + (j == 0 ? 40.f * (i / per) : 0.f);
  for (int64_t c = 0; c < s.k; ++c)
    for (int64_t j = 0; j < s.d; ++j)
      init[c * s.d + j] = jitter(rng) + (j == 0 ? 40.f * (c / m) : 0.f) + (j == 1 ? 15.f : 0.f);
  check_pruning(s, x, init, 3, s.n / 2, false);
}

// Blobs 100 apart, 92 centroids each (k = 1104: several candidate tiles and more labels
// than the tile kernel's threads): row tiles of a few rows with ~92 candidates each
// (check_many_candidates). Then k = 1 at +-2e19 (check_one_centroid_overflow).
TEST_P(CudaMath, CentrePruningManyCandidatesAndOneCentroid) {
  check_many_candidates();
  check_one_centroid_overflow();
}

// Large k finds candidates through groups of centroids around pivots rather than by
// measuring every pair (FLASHKM_CUDA_PRUNE_GROUPS=always takes that path at these sizes):
// blobs (k = 40: one group, so nothing is skipped), many candidates a label (k = 1104: 34
// groups, each label's own blob spread over several, the others skipped), a region whose
// labels fall back, labels whose candidate lists overflow, exact ties with labels without rows,
// and one blob (crowded labels; lists that overflow while their members are measured).
TEST_P(CudaMath, CentrePruningThroughGroups) {
  EnvScope groups("FLASHKM_CUDA_PRUNE_GROUPS", "always");
  {
    const Shape s{4000, 24, 40, Metric::L2, 91};
    const std::vector<float> x = make_data(s);
    check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 4, s.n / 2, false);
  }
  check_many_candidates();
  check_fallback(8);
  check_list_overflow();
  // Three groups, half the labels without rows; lists longer than a tile may take
  // (max(32, k / 8) = 32): the rows fall back, the candidate search still runs.
  check_ties(96, 0);
  // One blob with k = 4200: 132 groups, all within reach of one another (the pass over their
  // pivots takes two steps of 128), every label crowded (more than 24 pivots within reach),
  // so its rows fall back unmeasured. With k = 768: 24 groups, so no label is crowded, but
  // every list overflows in the member pass, which stops once all 16 labels' lists have.
  for (const int64_t k : {4200, 768}) {
    const Shape s{2 * k, 4, k, Metric::L2, 102};
    std::mt19937_64 rng(s.seed);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> x(s.n * s.d);
    for (auto& v : x) v = g(rng);
    check_pruning(s, x, pick_rows(x, s.n, s.d, s.k, s.seed), 2, 0, true);
  }
  expect_unknown_value_refused("FLASHKM_CUDA_PRUNE_GROUPS");
}

// Row tiles with few rows and many candidates are evaluated a thread a candidate (pair_block)
// where that takes fewer steps. FLASHKM_CUDA_PRUNE_SMALL=always takes that path for every
// tile (128-row tiles in steps of 16 rows, lists of one candidate, the label's own float64
// distance measured afterwards), =never for none; both must decide every row as the oracle
// does, through the cases above: partial coordinate chunks, float32 underflow and overflow,
// exact ties, narrowing, fallback, and lists longer than a step of candidates (k = 2400:
// ~200 a label, max_cands 300).
TEST_P(CudaMath, CentrePruningSmallTiles) {
  for (const char* mode : {"always", "never"}) {
    SCOPED_TRACE(std::string("FLASHKM_CUDA_PRUNE_SMALL=") + mode);
    EnvScope small("FLASHKM_CUDA_PRUNE_SMALL", mode);
    check_offset_d37();
    check_underflow();
    check_one_centroid_overflow();
    check_ties(24);
    check_fallback(8);
    check_fallback(300);
    check_many_candidates();
    check_many_candidates(200, 600);
    EnvScope groups("FLASHKM_CUDA_PRUNE_GROUPS", "always");
    check_many_candidates(200, 600);
  }
  expect_unknown_value_refused("FLASHKM_CUDA_PRUNE_SMALL");
}

// FLASHKM_CUDA_PRUNE=off keeps the full pass: the same results, nothing pruned.
TEST_P(CudaMath, CentrePruningOffGivesTheSameResults) {
  const Shape s{3000, 16, 30, Metric::L2, 97};
  const std::vector<float> x = make_data(s);
  KMeansParams p = params_for(s);
  p.bounds = true;
  auto on = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  std::unique_ptr<Engine> off;
  {
    EnvScope env("FLASHKM_CUDA_PRUNE", "off");
    off = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  }
  {
    EnvScope env("FLASHKM_CUDA_PRUNE", "sometimes");
    EXPECT_THROW(detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p), Error);
  }
  std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  int64_t pruned = 0;
  for (int it = 0; it < 3; ++it) {
    Step a = run_step(*on, c), b = run_step(*off, c);
    expect_same(a, b, "pruning on vs off, iteration " + std::to_string(it), false);
    EXPECT_EQ(b.out.pruned, 0);
    pruned += a.out.pruned;
    c = a.centroids;
  }
  EXPECT_GT(pruned, 0);
}

// The update's exact sums: rows whose values span subnormals to hundreds (six limbs), moved
// between clusters by the updates from moved rows even where many labels change
// (FLASHKM_CUDA_UPDATE=moved), and added in full every time (=full): both equal the default,
// which equals the CPU and the oracle (check_against_cpu_and_oracle's means).
TEST_P(CudaMath, UpdatesFromMovedRowsEqualFullUpdates) {
  const Shape s{4000, 12, 30, Metric::L2, 61};
  SCOPED_TRACE(describe(s));
  std::vector<float> x = make_data(s);
  for (int64_t i = 0; i < s.n; ++i) {
    x[i * s.d] *= 1e-39f;  // subnormal
    x[i * s.d + 1] *= 1e-20f;
  }
  const KMeansParams p = params_for(s);
  const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  for (const char* mode : {"moved", "full"})
    expect_env_changes_nothing(s, x, c, p, "FLASHKM_CUDA_UPDATE", mode, mode);
  auto gpu = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  auto cpu = detail::make_cpu_engine(s.n, s.d, s.k, x.data(), p);
  std::vector<float> cc = c;
  for (int it = 0; it < 5; ++it) {
    Step g = run_step(*gpu, cc), h = run_step(*cpu, cc);
    expect_same(g, h, "GPU vs CPU, iteration " + std::to_string(it), ffma());
    std::vector<float> want = cc;
    std::vector<int64_t> counts;
    oracle_means(x, s.n, s.d, s.k, g.labels, &want, &counts);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(g.centroids[i], want[i]) << i;
    cc = g.centroids;
  }
  expect_unknown_value_refused("FLASHKM_CUDA_UPDATE");
}

// k = 1: the centroid is the exact mean rounded, where a float64 running sum in row order
// loses the 1 next to +-2^60 (it would give 0), on every path of the update.
TEST_P(CudaMath, MeansAreExactWhereFloat64ChainsLose) {
  const int64_t n = 3000, d = 2;
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i) {
    x[i * d] = i % 3 == 0 ? std::ldexp(1.f, 60) : i % 3 == 1 ? 1.f : -std::ldexp(1.f, 60);
    x[i * d + 1] = float(i % 7) * 1e-30f;
  }
  std::vector<double> col1;
  for (int64_t i = 0; i < n; ++i) col1.push_back(x[i * d + 1]);
  const float want0 = float(1000.0 / 3000), want1 = float(reference::fsum(col1) / n);
  KMeansParams p;
  p.n_clusters = 1;
  p.threads = 2;
  for (const char* mode : {"moved", "full"}) {
    SCOPED_TRACE(mode);
    EnvScope scope("FLASHKM_CUDA_UPDATE", mode);
    auto gpu = detail::make_cuda_engine(n, d, 1, x.data(), p);
    std::vector<float> c = {0.f, 0.f};
    for (int it = 0; it < 2; ++it) {
      Step g = run_step(*gpu, c);
      ASSERT_EQ(g.counts[0], n);
      EXPECT_EQ(g.centroids[0], want0);
      EXPECT_EQ(g.centroids[1], want1);
      c = g.centroids;
    }
  }
}

// Rows stored on the device as fp16 alone (KMeansParams::device_rows): every step equals the
// CPU's bit for bit (labels, counts, distances, inertia, means) while the certification
// bound carries each row's fp16 rounding error and the fix-ups and the updates read the
// float32 rows in host memory. Shapes: d not a multiple of 64, inner product, offset data,
// tiny magnitudes (fp16 subnormals after scaling), d = 300 (wgmma streams row slices instead
// of keeping rows in shared memory), and a fit with tol (per-iteration inertia computed) and
// without (NaN until the final pass).
TEST_P(CudaMath, Fp16RowsGiveTheCpusResults) {
  if (ffma()) {
    KMeansParams p;
    p.n_clusters = 4;
    p.device_rows = DeviceRows::Float16;
    const std::vector<float> x(64 * 4, 1.f);
    EXPECT_THROW(detail::make_cuda_engine(64, 4, 4, x.data(), p), Error);  // no tensor cores
    return;
  }
  const Shape shapes[] = {{4000, 24, 40, Metric::L2, 5},
                          {3000, 48, 60, Metric::InnerProduct, 6},
                          {2500, 130, 33, Metric::L2, 7, 10.f},
                          {1500, 20, 50, Metric::L2, 8, 0.f, 1e-9f},
                          {1200, 300, 24, Metric::L2, 9}};  // rows too wide for shared memory
  int64_t fixups = 0;
  for (const Shape& s : shapes) {
    SCOPED_TRACE(describe(s));
    const std::vector<float> x = make_data(s);
    KMeansParams p = params_for(s);
    p.device_rows = DeviceRows::Float16;
    auto gpu = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
    auto cpu = detail::make_cpu_engine(s.n, s.d, s.k, x.data(), params_for(s));
    std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
    for (int it = 0; it < 4; ++it) {
      Step g = run_step(*gpu, c), h = run_step(*cpu, c);
      expect_same(g, h, "fp16 rows vs CPU, iteration " + std::to_string(it), false);
      fixups += g.out.fixups;
      c = g.centroids;
    }
    // Through KMeans::fit: without tol the iterations' inertia is not computed.
    KMeansParams f = params_for(s);
    f.max_iter = 5;
    f.init = Init::Given;
    f.init_centroids = pick_rows(x, s.n, s.d, s.k, s.seed);
    for (double tol : {0.0, 1e-7}) {
      f.tol = tol;
      f.device = Device::CPU;
      f.device_rows = DeviceRows::Float32;
      const KMeansResult rc = KMeans(s.d, f).fit(s.n, x.data());
      f.device = Device::CUDA;
      f.device_rows = DeviceRows::Float16;
      const KMeansResult rg = KMeans(s.d, f).fit(s.n, x.data());
      ASSERT_EQ(rg.iterations.size(), rc.iterations.size()) << "tol " << tol;
      for (size_t i = 0; i < rc.iterations.size(); ++i) {
        EXPECT_EQ(rg.iterations[i].changed, rc.iterations[i].changed);
        if (tol > 0) {
          EXPECT_EQ(rg.iterations[i].inertia, rc.iterations[i].inertia);
        } else {
          EXPECT_TRUE(std::isnan(rg.iterations[i].inertia));
        }
      }
      EXPECT_EQ(rg.labels, rc.labels);
      EXPECT_EQ(rg.centroids, rc.centroids);
      EXPECT_EQ(rg.inertia, rc.inertia);
    }
  }
  EXPECT_GT(fixups, 0);  // the fp16 bound left rows to the float32 rows in host memory
}

// Points that fp16 cannot place: two centroids, and points a hair (1e-4..1e-3, far above
// float32's resolution, far below fp16's at |x| ~ 20) to either side of their bisector. A
// bound that ignored the rows' fp16 rounding would certify about half of them wrongly; the
// fp16 rows must send them to the fix-up and give the oracle's labels.
TEST_P(CudaMath, Fp16RowsFixUpWhatFp16CannotPlace) {
  if (ffma()) GTEST_SKIP() << "fp16 rows need a tensor-core pass";
  const int64_t n = 3000, d = 32, k = 2;
  std::mt19937_64 rng(57);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> c0(d), u(d);
  double uu = 0;
  for (int64_t j = 0; j < d; ++j) {
    c0[j] = 4 * g(rng);
    u[j] = g(rng);
    uu += u[j] * u[j];
  }
  for (double& v : u) v *= 2 / std::sqrt(uu);  // c1 = c0 + u, |u| = 2
  std::vector<float> c(k * d), x(n * d);
  for (int64_t j = 0; j < d; ++j) {
    c[j] = float(c0[j]);
    c[d + j] = float(c0[j] + u[j]);
  }
  std::uniform_real_distribution<double> off(1e-4, 1e-3);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> w(d);
    double wu = 0;
    for (int64_t j = 0; j < d; ++j) {
      w[j] = 3 * g(rng);
      wu += w[j] * u[j];
    }
    // Onto the bisector (w orthogonal to u), then t along u's direction.
    const double t = (rng() & 1 ? 1 : -1) * off(rng) / 2;  // |u| = 2: t u moves 2|t|
    for (int64_t j = 0; j < d; ++j)
      x[i * d + j] = float(double(c[j]) + 0.5 * u[j] + w[j] - wu / 4 * u[j] + t * u[j]);
  }
  const Shape s{n, d, k, Metric::L2, 57};
  KMeansParams p = params_for(s);
  p.device_rows = DeviceRows::Float16;
  auto gpu = detail::make_cuda_engine(n, d, k, x.data(), p);
  auto cpu = detail::make_cpu_engine(n, d, k, x.data(), params_for(s));
  const Step a = run_step(*gpu, c), b = run_step(*cpu, c);
  ASSERT_EQ(a.labels, oracle_labels(Metric::L2, x, n, d, c, k));
  expect_same(a, b, "fp16 rows vs CPU at the bisector", false);
  int64_t ones = 0;
  for (int32_t l : a.labels) ones += l;
  EXPECT_GT(ones, n / 4);  // both sides are populated
  EXPECT_LT(ones, n - n / 4);
  EXPECT_GT(a.out.fixups, n / 2);  // fp16 could not decide them
}

// device_rows=fp16 needs float32 rows it can map from host memory: device memory and file
// mappings are refused with a message naming the reason; rows pinned by the caller are used
// as they are.
TEST_P(CudaMath, Fp16RowsRefuseWhatTheyCannotMap) {
  if (ffma()) GTEST_SKIP() << "fp16 rows need a tensor-core pass";
  const Shape s{2000, 16, 20, Metric::L2, 49};
  const std::vector<float> x = make_data(s);
  KMeansParams p = params_for(s);
  p.device_rows = DeviceRows::Float16;
  auto what = [&](const float* rows, bool on_device) {
    try {
      detail::make_cuda_engine(s.n, s.d, s.k, rows, p, on_device);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  MappedFile file(x);
  ASSERT_NE(file.data(), nullptr) << "cannot map a temporary file";
  EXPECT_NE(what(file.data(), false).find("private anonymous"), std::string::npos);
  const size_t bytes = sizeof(float) * x.size();
  float* raw = nullptr;
  ASSERT_EQ(cudaMalloc(&raw, bytes), cudaSuccess);
  const std::unique_ptr<float, decltype(&cudaFree)> dev(raw, &cudaFree);
  ASSERT_EQ(cudaMemcpy(dev.get(), x.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_NE(what(dev.get(), true).find("device memory already"), std::string::npos);
  p.device_memory_budget = 1000;
  EXPECT_NE(what(x.data(), false).find("the fp16 rows need"), std::string::npos);
  p.device_memory_budget = 0;
  // Pinned by the caller: used as it is. Pinned in part: refused.
  ASSERT_EQ(cudaMallocHost(&raw, bytes), cudaSuccess);
  const std::unique_ptr<float, decltype(&cudaFreeHost)> pinned(raw, &cudaFreeHost);
  std::copy(x.begin(), x.end(), pinned.get());
  {
    auto a = detail::make_cuda_engine(s.n, s.d, s.k, pinned.get(), p);
    auto b = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), params_for(s));
    const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
    expect_same(run_step(*a, c), run_step(*b, c), "pinned rows as fp16", false);
  }
  std::vector<float> big(x);
  big.resize(size_t(1) << 27, 0.f);  // 512 MiB: the probes look every 256 MiB
  ASSERT_EQ(
      cudaHostRegister(big.data(), sizeof(float) * (size_t(1) << 26), cudaHostRegisterDefault),
      cudaSuccess);  // the first half only
  const int64_t big_n = int64_t(big.size()) / s.d;
  try {
    detail::make_cuda_engine(big_n, s.d, s.k, big.data(), p);
    ADD_FAILURE() << "rows page-locked in part were mapped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only in part"), std::string::npos) << e.what();
  }
  cudaHostUnregister(big.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the probes left no error behind
}

// Fast precision with fp16 rows: the same fp16 halves as the float32 rows' in-kernel split,
// so the same labels and means as Fast on float32 rows, with no fix-up.
TEST_P(CudaMath, Fp16RowsInFastPrecisionEqualFloat32Rows) {
  if (ffma()) GTEST_SKIP() << "fp16 rows need a tensor-core pass";
  const Shape s{3000, 40, 30, Metric::L2, 63};
  const std::vector<float> x = make_data(s);
  KMeansParams p = params_for(s);
  p.precision = Precision::Fast;
  auto f32 = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  p.device_rows = DeviceRows::Float16;
  auto f16 = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
  std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
  for (int it = 0; it < 3; ++it) {
    const Step a = run_step(*f16, c), b = run_step(*f32, c);
    expect_same(a, b, "fast, fp16 rows vs float32 rows, iteration " + std::to_string(it));
    EXPECT_EQ(a.out.fixups, 0);
    c = a.centroids;
  }
}

// fp16: the device's best tensor-core pass (wgmma on compute capability 9.0); fp16-sync:
// the mma.sync pass, which every other device with tensor cores runs.
INSTANTIATE_TEST_SUITE_P(FirstPass, CudaMath, ::testing::Values("ffma", "fp16", "fp16-sync"),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string name = i.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Fast: the wgmma and mma.sync passes accumulate the same single product in the same order,
// so their values and labels must be identical, whatever the tile shape. Exact: wgmma keeps
// hi.hi and hi.lo + lo.hi in two accumulators (a tighter bound, other fast values), so only
// its results must equal mma.sync's; its fix-up decisions must still not depend on the tile
// shape.
TEST(CudaTensorPasses, WgmmaAndMmaSyncAgreeBitForBit) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  int64_t fixups = 0;
  for (const Shape& s :
       {Shape{3000, 40, 200, Metric::L2, 101}, Shape{2000, 130, 70, Metric::L2, 102, 0.f, 3.f},
        Shape{2500, 300, 150, Metric::L2, 104}, Shape{1500, 64, 129, Metric::InnerProduct, 103}}) {
    const std::vector<float> x = make_data(s);
    const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
    for (Precision precision : {Precision::Exact, Precision::Fast}) {
      Step first[2];  // per pass: its 64x64 run
      for (TileConfig t : {TileConfig{64, 64}, TileConfig{128, 128}}) {
        for (int pass = 0; pass < 2; ++pass) {
          const char* math = pass == 0 ? "fp16-sync" : "fp16";
          SCOPED_TRACE(describe(s) + " precision=" + to_string(precision) +
                       " tiles=" + std::to_string(t.rows) + " math=" + math);
          MathScope scope(math);
          KMeansParams p = params_for(s);
          p.tiles = t;
          p.precision = precision;
          auto e = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
          Step st = run_step(*e, c);
          fixups += st.out.fixups;
          if (t.rows == 64) {
            first[pass] = st;
            if (pass == 1)
              expect_same(first[0], st, "wgmma vs mma.sync", precision == Precision::Fast);
          } else {
            expect_same(first[pass], st, "64x64 vs 128x128");
          }
        }
      }
    }
  }
  EXPECT_GT(fixups, 0);  // the bound was exercised
}

#ifdef FLASHKM_WITH_CUDA
// True on compute capability 9.0, the devices whose fp16 pass is wgmma.
bool wgmma_device() {
  int dev = 0;
  cudaDeviceProp prop;
  return cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess &&
         prop.major == 9 && prop.minor == 0;
}

// The wgmma pass splits resident rows into fp16 hi / lo while staging them into shared
// memory; FLASHKM_CUDA_ROW_SPLIT=arrays makes the engine split them into device arrays first
// (split_rows) as the streamed-rows and mma.sync passes do. The halves must be the same, so
// everything, fix-up counts included, must be bit-identical: d a multiple of 4 (vector
// loads) and not (d = 130: scalar loads, a partial 64-wide slice), d = 256 (the widest
// resident Exact rows), d = 300 (Exact streams its rows from the arrays, Fast splits them),
// both tile shapes, both precisions, inner product, streamed chunks, rows in device memory
// at an address that is not 16-byte aligned (scalar loads at d % 4 == 0), and coordinates
// near 1e-35, whose scale 2^130 is no float (ldexpf instead of one multiplication).
TEST(CudaTensorPasses, RowSplitInSharedMemoryEqualsSplitArrays) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!wgmma_device()) GTEST_SKIP() << "the in-kernel row split is wgmma's (compute 9.0)";
  MathScope math("fp16");
  int64_t fixups = 0;
  for (const Shape& s :
       {Shape{3000, 24, 200, Metric::L2, 301, 5.f}, Shape{2000, 130, 70, Metric::L2, 302, 0.f, 3.f},
        Shape{1500, 256, 129, Metric::L2, 303}, Shape{1200, 300, 90, Metric::L2, 304},
        Shape{2500, 64, 150, Metric::InnerProduct, 305},
        Shape{2000, 40, 50, Metric::L2, 306, 0.f, 1e-36f}}) {
    const std::vector<float> x = make_data(s);
    const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
    for (Precision precision : {Precision::Exact, Precision::Fast}) {
      for (TileConfig t : {TileConfig{64, 64}, TileConfig{128, 128}}) {
        for (size_t budget : {size_t(0), size_t(512) * (8 * s.d + 8)}) {
          SCOPED_TRACE(describe(s) + " precision=" + to_string(precision) +
                       " tiles=" + std::to_string(t.rows) + " budget=" + std::to_string(budget));
          KMeansParams p = params_for(s);
          p.tiles = t;
          p.precision = precision;
          p.device_memory_budget = budget;
          fixups += expect_env_changes_nothing(s, x, c, p, "FLASHKM_CUDA_ROW_SPLIT", "arrays",
                                               "in-kernel split vs split arrays")
                        .out.fixups;
        }
      }
    }
    // The same rows in device memory, one float past a 16-byte boundary.
    float* dev = nullptr;
    ASSERT_EQ(cudaMalloc(&dev, sizeof(float) * (x.size() + 1)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dev + 1, x.data(), sizeof(float) * x.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    {
      SCOPED_TRACE(describe(s) + " device rows at an odd address");
      KMeansParams p = params_for(s);
      auto host = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
      auto device = detail::make_cuda_engine(s.n, s.d, s.k, dev + 1, p, true);
      expect_same(run_step(*device, c), run_step(*host, c), "device rows vs host rows");
    }
    ASSERT_EQ(cudaFree(dev), cudaSuccess);
  }
  EXPECT_GT(fixups, 0);  // the lo halves were exercised by the bound
}

// The ping-pong kernel (Fast and Screen on resident rows of the 128-row shape: a TMA producer
// warpgroup, three (Fast, 192-row tiles) or two (Screen, 128) consumer warpgroups taking
// turns, a persistent grid) feeds every accumulator the same wgmma sequence as the lockstep
// kernel (FLASHKM_CUDA_WGMMA=lockstep), so everything, fix-up counts included, must be
// bit-identical. Shapes: more row tiles than SMs (30000 rows: 157 Fast / 235 Screen tiles,
// so some blocks walk two), a partial last tile, k not a
// multiple of 128 (padding columns), d = 200 (four k-slices: Fast takes the ping-pong kernel
// with 8 stages, Exact's rows leave too little room and it stays lockstep), d = 64 (one
// k-slice), inner product; rows split in shared memory and from split arrays; resident and
// streamed chunks.
TEST(CudaTensorPasses, PingPongEqualsLockstep) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!wgmma_device()) GTEST_SKIP() << "the ping-pong kernel is wgmma's (compute 9.0)";
  MathScope math("fp16");
  int64_t fixups = 0;
  for (const Shape& s :
       {Shape{30000, 32, 300, Metric::L2, 401}, Shape{3000, 128, 1000, Metric::L2, 402},
        Shape{5000, 200, 260, Metric::L2, 403, 2.f},
        Shape{2500, 64, 150, Metric::InnerProduct, 404}}) {
    const std::vector<float> x = make_data(s);
    const std::vector<float> c = pick_rows(x, s.n, s.d, s.k, s.seed);
    for (Precision precision : {Precision::Exact, Precision::Fast}) {
      for (bool arrays : {false, true}) {
        for (size_t budget : {size_t(0), size_t(2048) * (8 * s.d + 8)}) {
          SCOPED_TRACE(describe(s) + " precision=" + to_string(precision) +
                       " arrays=" + std::to_string(arrays) + " budget=" + std::to_string(budget));
          std::unique_ptr<EnvScope> split;
          if (arrays) split = std::make_unique<EnvScope>("FLASHKM_CUDA_ROW_SPLIT", "arrays");
          KMeansParams p = params_for(s);
          p.precision = precision;
          p.device_memory_budget = budget;
          fixups += expect_env_changes_nothing(s, x, c, p, "FLASHKM_CUDA_WGMMA", "lockstep",
                                               "ping-pong vs lockstep")
                        .out.fixups;
        }
      }
    }
  }
  EXPECT_GT(fixups, 0);  // Screen listed rows for the collecting pass
}

// Device memory the engine holds (its own count, printed when verbose): with the rows split
// in shared memory, resident data costs x and 52 bytes a row of scratch; the split arrays
// would add exactly 4 dpad bytes a row.
TEST(CudaTensorPasses, ResidentRowsHoldNoSplitArrays) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!wgmma_device()) GTEST_SKIP() << "the in-kernel row split is wgmma's (compute 9.0)";
  MathScope math("fp16");
  const Shape s{100000, 128, 1024, Metric::L2, 311};
  const std::vector<float> x = make_data(s);
  auto engine_mb = [&](bool arrays) {
    std::unique_ptr<EnvScope> scope;
    if (arrays) scope = std::make_unique<EnvScope>("FLASHKM_CUDA_ROW_SPLIT", "arrays");
    KMeansParams p = params_for(s);
    p.verbose = true;
    ::testing::internal::CaptureStderr();
    auto e = detail::make_cuda_engine(s.n, s.d, s.k, x.data(), p);
    const std::string log = ::testing::internal::GetCapturedStderr();
    const size_t at = log.find(" MB of device memory");
    EXPECT_NE(at, std::string::npos) << log;
    EXPECT_NE(log.find("resident"), std::string::npos) << log;
    const size_t from = log.rfind(' ', at - 1) + 1;
    return std::stod(log.substr(from, at - from));
  };
  const double in_kernel = engine_mb(false), arrays = engine_mb(true);
  const double x_mb = 4.0 * s.n * s.d / 1e6, split_mb = 4.0 * s.n * 128 / 1e6;
  EXPECT_NEAR(arrays - in_kernel, split_mb, 0.11);
  // x, then 52 bytes a row of scratch (labels, norms, distances, candidate lists, which the
  // sort reuses) and 12 for the updates from moved rows (the labelling the sums hold, its
  // sort), and the centroid arrays (K x d x 32 bytes) with the exact sums (8 a limb).
  EXPECT_LE(in_kernel,
            x_mb + 68.0 * s.n / 1e6 + (32.0 + 8.0 * detail::kExactMaxLimbs) * s.k * s.d / 1e6)
      << "x: " << x_mb;
}
#endif  // FLASHKM_WITH_CUDA

// k-means++ on the device picks exactly the CPU's points: the same float64 distances and
// per-1024-row sums, the same draws. Shapes: n not a multiple of the 1024-row block, d not a
// multiple of the 32-column staging tile, d = 1, inner product data, and fewer distinct points
// than k (the sums reach zero and the draws fall back to uniform picks). Streamed data keeps
// the host seeding and must give the same centroids as well.
TEST(CudaKMeansPlusPlus, PicksTheCpusPoints) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  struct Case {
    Shape s;
    bool duplicate;
    size_t budget;
  };
  for (const Case& c : {Case{Shape{5000, 37, 64, Metric::L2, 201}, false, 0},
                        Case{Shape{3001, 1, 20, Metric::L2, 202}, false, 0},
                        Case{Shape{2100, 70, 33, Metric::InnerProduct, 203}, false, 0},
                        Case{Shape{1500, 8, 40, Metric::L2, 204}, true, 0},
                        Case{Shape{4000, 16, 50, Metric::L2, 205}, false, 100 * 1024}}) {
    SCOPED_TRACE(describe(c.s) + (c.duplicate ? " duplicates" : "") +
                 (c.budget ? " streamed" : ""));
    std::vector<float> x = make_data(c.s);
    if (c.duplicate)  // only 5 distinct points
      for (int64_t i = 5; i < c.s.n; ++i)
        std::copy(x.begin() + (i % 5) * c.s.d, x.begin() + (i % 5 + 1) * c.s.d,
                  x.begin() + i * c.s.d);
    KMeansParams p;
    p.n_clusters = int(c.s.k);
    p.metric = c.s.metric;
    p.init = Init::KMeansPlusPlus;
    p.seed = c.s.seed;
    p.max_iter = 0;  // the seeding itself (then one assignment pass)
    p.empty_policy = EmptyClusterPolicy::Keep;
    p.device_memory_budget = c.budget;
    p.device = Device::CPU;
    const KMeansResult rc = KMeans(c.s.d, p).fit(c.s.n, x.data());
    p.device = Device::CUDA;
    const KMeansResult rg = KMeans(c.s.d, p).fit(c.s.n, x.data());
    EXPECT_EQ(rg.centroids, rc.centroids);
    EXPECT_EQ(rg.labels, rc.labels);
    p.max_iter = 3;
    p.bounds = false;
    EXPECT_EQ(KMeans(c.s.d, p).fit(c.s.n, x.data()).centroids, [&] {
      KMeansParams q = p;
      q.device = Device::CPU;
      return KMeans(c.s.d, q).fit(c.s.n, x.data()).centroids;
    }());
  }
}

}  // namespace
}  // namespace flashkm
