// Data given in device memory: KMeans::fit and assign on a cudaMalloc'd copy of x must give
// what they give on the host copy, bit for bit (labels, centroids, inertia, per-iteration
// statistics, distances), for every init and both metrics; bad input is refused with the
// row and column named. The host-input path is the oracle here: it is checked against the
// float64 reference and the CPU backend in test_cuda.cpp. Every test skips without a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "flashkm/kmeans.h"
#include "kernels/engine.h"

#ifdef FLASHKM_WITH_CUDA
#include <cuda.h>  // driver API types; the entry point is looked up at run time
#include <cuda_runtime.h>

namespace flashkm {
namespace {

// A device copy of host floats, freed at scope exit.
class DeviceCopy {
 public:
  explicit DeviceCopy(const std::vector<float>& host) {
    EXPECT_EQ(cudaMalloc(&p_, host.size() * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p_, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
  ~DeviceCopy() { cudaFree(p_); }
  const float* get() const { return p_; }

 private:
  float* p_ = nullptr;
};

class DeviceInput : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    setenv("FLASHKM_CUDA_MATH", GetParam().c_str(), 1);
  }
  void TearDown() override { unsetenv("FLASHKM_CUDA_MATH"); }
};

// Twelve Gaussian blobs, shifted by offset.
std::vector<float> blobs(int64_t n, int64_t d, uint64_t seed, float offset) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.f, 1.f);
  std::uniform_real_distribution<float> centre(-8.f, 8.f);
  std::vector<float> centres(12 * d), x(n * d);
  for (float& v : centres) v = centre(rng);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = centres[(i % 12) * d + j] + noise(rng) + offset;
  return x;
}

void expect_same_fit(const KMeansResult& h, const KMeansResult& g, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(g.device, Device::CUDA);
  ASSERT_EQ(h.labels, g.labels);
  ASSERT_EQ(h.centroids.size(), g.centroids.size());
  for (size_t i = 0; i < h.centroids.size(); ++i)
    ASSERT_EQ(h.centroids[i], g.centroids[i]) << "centroid value " << i;
  EXPECT_EQ(h.inertia, g.inertia);
  ASSERT_EQ(h.iterations.size(), g.iterations.size());
  for (size_t i = 0; i < h.iterations.size(); ++i) {
    EXPECT_EQ(h.iterations[i].inertia, g.iterations[i].inertia) << "iteration " << i;
    EXPECT_EQ(h.iterations[i].changed, g.iterations[i].changed) << "iteration " << i;
    // Same shift and fp16 scale from the device reductions: the same uncertified rows.
    EXPECT_EQ(h.iterations[i].fixups, g.iterations[i].fixups) << "iteration " << i;
  }
}

TEST_P(DeviceInput, FitEqualsHostInputForEveryInitAndMetric) {
  // 3001 rows: not a multiple of the 1024-row reduction block; d = 37: no vector width.
  const int64_t n = 3001, d = 37, k = 23;
  const std::vector<float> x = blobs(n, d, 7, 40.f);  // offset: the centring matters
  DeviceCopy xd(x);
  for (Metric metric : {Metric::L2, Metric::InnerProduct}) {
    for (Init init : {Init::Random, Init::KMeansPlusPlus, Init::Given}) {
      KMeansParams p;
      p.n_clusters = int(k);
      p.max_iter = 6;
      p.device = Device::CUDA;
      p.metric = metric;
      p.init = init;
      if (init == Init::Given)
        p.init_centroids.assign(x.begin() + 100 * d, x.begin() + (100 + k) * d);
      const KMeansResult h = KMeans(d, p).fit(n, x.data());
      p.device = Device::Auto;  // device data picks the GPU by itself
      const KMeansResult g = KMeans(d, p).fit(n, xd.get());
      expect_same_fit(h, g, std::string(to_string(metric)) + " init " + to_string(init));
    }
  }
}

TEST_P(DeviceInput, AssignEqualsHostInput) {
  const int64_t n = 5000, d = 64, k = 40;
  const std::vector<float> x = blobs(n, d, 3, -5.f);
  DeviceCopy xd(x);
  KMeansParams p;
  p.n_clusters = int(k);
  p.max_iter = 3;
  p.device = Device::CUDA;
  KMeans km(d, p);
  km.fit(n, x.data());
  std::vector<int32_t> lh(n), lg(n);
  std::vector<float> dh(n), dg(n);
  km.assign(n, x.data(), lh.data(), dh.data());
  km.assign(n, xd.get(), lg.data(), dg.data());
  EXPECT_EQ(lh, lg);
  EXPECT_EQ(dh, dg);
}

TEST_P(DeviceInput, NonFiniteValueIsNamedAndNothingRuns) {
  const int64_t n = 2000, d = 16;
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x = blobs(n, d, 5, 0.f);
    x[1234 * d + 7] = bad;
    x[1500 * d + 2] = bad;  // a later one: the first is reported
    DeviceCopy xd(x);
    KMeansParams p;
    p.n_clusters = 8;
    try {
      KMeans(d, p).fit(n, xd.get());
      FAIL() << "a non-finite value was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("row 1234, column 7"), std::string::npos) << e.what();
    }
  }
}

TEST_P(DeviceInput, CpuDeviceAndTooSmallBudgetAreRefused) {
  const int64_t n = 4096, d = 32;
  const std::vector<float> x = blobs(n, d, 9, 0.f);
  DeviceCopy xd(x);
  KMeansParams p;
  p.n_clusters = 10;
  p.device = Device::CPU;
  try {
    KMeans(d, p).fit(n, xd.get());
    FAIL() << "device=cpu read device memory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device memory"), std::string::npos) << e.what();
  }
  p.device = Device::CUDA;
  p.device_memory_budget = 1000;  // bytes: not even the row norms fit
  try {
    KMeans(d, p).fit(n, xd.get());
    FAIL() << "the budget was ignored";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("per-row arrays"), std::string::npos) << e.what();
  }
}

TEST(DeviceInputPointer, HostMemoryOfEveryKindIsHost) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::vector<float> pageable(16);
  EXPECT_FALSE(detail::is_device_pointer(pageable.data()));
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 64), cudaSuccess);
  EXPECT_FALSE(detail::is_device_pointer(pinned));
  cudaFreeHost(pinned);
  float* managed = nullptr;
  ASSERT_EQ(cudaMallocManaged(&managed, 64), cudaSuccess);
  EXPECT_FALSE(detail::is_device_pointer(managed));
  cudaFree(managed);
  float* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, 64), cudaSuccess);
  EXPECT_TRUE(detail::is_device_pointer(dev));
  EXPECT_TRUE(detail::is_device_pointer(dev + 3));  // inside an allocation
  cudaFree(dev);
}

// Whether device 0's primary context is active (1) or not (0), asked of the driver without
// creating one; -1 when the driver cannot be asked.
int primary_context_active() {
  using GetState = CUresult (*)(CUdevice, unsigned int*, int*);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found;
  if (cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn, 12000, cudaEnableDefault,
                                       &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess || fn == nullptr)
    return -1;
  unsigned int flags = 0;
  int active = 0;
  if (reinterpret_cast<GetState>(fn)(0, &flags, &active) != CUDA_SUCCESS) return -1;
  return active != 0 ? 1 : 0;
}

// Host data on device=cpu must not start CUDA: a context holds GPU memory, and a process forked
// after it can no longer use CUDA. Only a process that has no context yet can show it, so the
// device run also runs this test alone; in the full suite an earlier test made one (skip).
TEST(DeviceInputPointer, HostDataOnCpuStartsNoContext) {
  if (detail::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  ASSERT_NE(primary_context_active(), -1) << "the driver cannot be asked";
  if (primary_context_active() == 1)
    GTEST_SKIP() << "a context exists already (run this test alone)";
  const int64_t n = 500, d = 8;
  const std::vector<float> x = blobs(n, d, 2, 0.f);
  KMeansParams p;
  p.n_clusters = 5;
  p.device = Device::CPU;
  KMeans km(d, p);
  km.fit(n, x.data());
  std::vector<int32_t> labels(n);
  km.assign(n, x.data(), labels.data());
  EXPECT_FALSE(detail::is_device_pointer(x.data()));
  EXPECT_EQ(primary_context_active(), 0);
}

INSTANTIATE_TEST_SUITE_P(FirstPass, DeviceInput, ::testing::Values("ffma", "fp16", "fp16-sync"),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string name = i.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace flashkm

#else

// Without CUDA every pointer is host memory, so device data can never be mistaken for it.
TEST(DeviceInputPointer, WithoutCudaEverythingIsHost) {
  std::vector<float> v(4);
  EXPECT_FALSE(flashkm::detail::is_device_pointer(v.data()));
}

#endif
