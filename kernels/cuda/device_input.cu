// Data given in device memory: where a pointer lives, the input checks and the initial rows
// read on the device, and the engine's set-up reductions (device_input.h).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_input.h"
#include "kernels/engine.h"

namespace flashkm {
namespace detail {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t work) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, 4096)));
}

/// Scratch device memory for one call; freed on every path.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (void* p : owned_) cudaFree(p);  // teardown errors cannot be reported from here
  }
  template <class T>
  T* alloc(size_t count) {
    void* p = nullptr;
    FLASHKM_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
    owned_.push_back(p);
    return static_cast<T*>(p);
  }

 private:
  std::vector<void*> owned_;
};

/// A private non-blocking stream for one call.
class Stream {
 public:
  Stream() { FLASHKM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// Each thread walks its elements in ascending order, so its first non-finite one is its
// smallest; atomicMin on an integer index is order-free.
__global__ void first_nonfinite_kernel(const float* x, long long count, unsigned long long* first) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
    if (!isfinite(x[i])) {
      atomicMin(first, (unsigned long long)i);
      return;
    }
  }
}

__global__ void gather_rows_kernel(const float* x, long long d, const long long* rows, long long m,
                                   float* out) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < m * d; t += stride) {
    const long long r = t / d, j = t - r * d;
    out[t] = x[rows[r] * d + j];
  }
}

// One thread per (row block, column): that column's sum over the block's rows in row order,
// as the host's p[j] += x[i * d + j] from 0.
__global__ void column_block_sums_kernel(const float* x, long long n, long long d, long long block,
                                         double* part) {
  const long long nblocks = (n + block - 1) / block;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < nblocks * d;
       t += stride) {
    const long long b = t / d, j = t - b * d;
    const long long end = min(n, (b + 1) * block);
    double s = 0;
    for (long long i = b * block; i < end; ++i) s = __dadd_rn(s, double(x[i * d + j]));
    part[t] = s;
  }
}

// One thread per column: the block sums in block order.
__global__ void column_sums_kernel(const double* part, long long nblocks, long long d,
                                   double* sums) {
  const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double s = 0;
  for (long long b = 0; b < nblocks; ++b) s = __dadd_rn(s, part[b * d + j]);
  sums[j] = s;
}

// Non-negative floats order as their bit patterns, so the maximum is an integer atomicMax
// (order-free, hence deterministic).
__global__ void max_abs_centred_kernel(const float* x, long long count, long long d,
                                       const double* shift, unsigned* out) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  float m = 0.f;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    m = fmaxf(m, fabsf(__double2float_rn(__dsub_rn(double(x[i]), shift[i % d]))));
  for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(m));
}

}  // namespace

bool is_device_pointer(const void* p) {
  // No driver or no device: no device memory either.
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (count == 0) return false;
  // With the CUDA 13 runtime (linked statically) this query creates no context, so host
  // data on device=cpu costs no GPU memory and leaves a later fork() free to use CUDA (test
  // HostDataOnCpuStartsNoContext, run alone). It sees memory of every context, primary or
  // not (a driver-API library's cuMemAlloc).
  cudaPointerAttributes attr;
  const cudaError_t err = cudaPointerGetAttributes(&attr, p);
  if (err != cudaSuccess) {
    cudaGetLastError();
    // Not knowing is not "host": reading device memory on the host would crash.
    FLASHKM_THROW(
        "cannot tell whether x (%p) is host or device memory: "
        "cudaPointerGetAttributes failed: %s (%s)",
        p, cudaGetErrorName(err), cudaGetErrorString(err));
  }
  if (attr.type != cudaMemoryTypeDevice) return false;
  int current = 0;
  FLASHKM_CUDA_CHECK(cudaGetDevice(&current));
  FLASHKM_THROW_IF_NOT(attr.device == current,
                       "x is device memory of CUDA device %d, but the current device is %d "
                       "(call cudaSetDevice(%d) first, or pass host memory)",
                       attr.device, current, attr.device);
  return true;
}

int64_t device_first_nonfinite(const float* x, int64_t count, float* value) {
  // The caller's writes to x may still be queued on streams of its own.
  FLASHKM_CUDA_CHECK(cudaDeviceSynchronize());
  Scratch s;
  Stream stream;
  unsigned long long* first = s.alloc<unsigned long long>(1);
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream));
  first_nonfinite_kernel<<<grid_for(count), kThreads, 0, stream>>>(x, count, first);
  FLASHKM_CUDA_CHECK_LAUNCH(first_nonfinite_kernel);
  unsigned long long host = 0;
  FLASHKM_CUDA_CHECK(cudaMemcpyAsync(&host, first, sizeof(host), cudaMemcpyDeviceToHost, stream));
  FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (host == ULLONG_MAX) return -1;
  FLASHKM_CUDA_CHECK(cudaMemcpy(value, x + host, sizeof(float), cudaMemcpyDeviceToHost));
  return static_cast<int64_t>(host);
}

void device_gather_rows(const float* x, int64_t d, const int64_t* rows, int64_t m, float* out) {
  Scratch s;
  Stream stream;
  long long* rows_dev = s.alloc<long long>(m);
  float* out_dev = s.alloc<float>(size_t(m) * d);
  static_assert(sizeof(long long) == sizeof(int64_t), "row indices are copied as they are");
  FLASHKM_CUDA_CHECK(
      cudaMemcpyAsync(rows_dev, rows, sizeof(int64_t) * m, cudaMemcpyHostToDevice, stream));
  gather_rows_kernel<<<grid_for(m * d), kThreads, 0, stream>>>(x, d, rows_dev, m, out_dev);
  FLASHKM_CUDA_CHECK_LAUNCH(gather_rows_kernel);
  FLASHKM_CUDA_CHECK(
      cudaMemcpyAsync(out, out_dev, sizeof(float) * m * d, cudaMemcpyDeviceToHost, stream));
  FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

namespace cuda {

std::vector<double> column_mean_device(const float* x, int64_t n, int64_t d, int64_t block,
                                       cudaStream_t stream) {
  const int64_t nblocks = (n + block - 1) / block;
  Scratch s;
  double* part = s.alloc<double>(size_t(nblocks) * d);
  double* sums = s.alloc<double>(d);
  column_block_sums_kernel<<<grid_for(nblocks * d), kThreads, 0, stream>>>(x, n, d, block, part);
  FLASHKM_CUDA_CHECK_LAUNCH(column_block_sums_kernel);
  column_sums_kernel<<<unsigned((d + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      part, nblocks, d, sums);
  FLASHKM_CUDA_CHECK_LAUNCH(column_sums_kernel);
  std::vector<double> mean(d);
  FLASHKM_CUDA_CHECK(
      cudaMemcpyAsync(mean.data(), sums, sizeof(double) * d, cudaMemcpyDeviceToHost, stream));
  FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
  return mean;
}

float max_abs_centred_device(const float* x, int64_t n, int64_t d, const double* shift,
                             cudaStream_t stream) {
  Scratch s;
  unsigned* out = s.alloc<unsigned>(1);
  FLASHKM_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(unsigned), stream));
  max_abs_centred_kernel<<<grid_for(n * d), kThreads, 0, stream>>>(x, n * d, d, shift, out);
  FLASHKM_CUDA_CHECK_LAUNCH(max_abs_centred_kernel);
  unsigned bits = 0;
  FLASHKM_CUDA_CHECK(cudaMemcpyAsync(&bits, out, sizeof(bits), cudaMemcpyDeviceToHost, stream));
  FLASHKM_CUDA_CHECK(cudaStreamSynchronize(stream));
  float m;
  static_assert(sizeof(m) == sizeof(bits), "float bits");
  std::memcpy(&m, &bits, sizeof(m));
  return m;
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
