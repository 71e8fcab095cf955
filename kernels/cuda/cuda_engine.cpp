// The CUDA backend of the Lloyd driver (see kernels/engine.h): data-sized state lives on the
// device; data that does not fit is streamed from host memory in chunks into two device
// buffers, the copy of chunk i+1 overlapping the kernels of chunk i. The copies read the
// caller's rows directly once they are page-locked in place (cudaHostRegister), else they go
// through two pinned staging buffers filled by host threads.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_input.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/kmeanspp.h"
#include "kernels/cuda/tile_config.h"
#include "kernels/engine.h"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

/// Owning device array; allocations are added to a byte counter for reporting.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (p_) cudaFree(p_);  // errors at teardown cannot be reported; the context is dying
  }
  void allocate(size_t count, size_t* counter) {
    FLASHKM_ASSERT(p_ == nullptr);
    if (count == 0) count = 1;
    FLASHKM_CUDA_CHECK(cudaMalloc(&p_, count * sizeof(T)));
    *counter += count * sizeof(T);
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

/// Owning page-locked host array (the source of asynchronous copies).
template <class T>
class PinnedArray {
 public:
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (p_) cudaFreeHost(p_);
  }
  void allocate(size_t count) {
    FLASHKM_ASSERT(p_ == nullptr);
    FLASHKM_CUDA_CHECK(cudaMallocHost(&p_, std::max<size_t>(count, 1) * sizeof(T)));
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

/// Page-locks a caller's host range in place for the engine's lifetime (declared first in the
/// engine, so it is released last, after every stream and buffer).
class HostRegistration {
 public:
  HostRegistration() = default;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  ~HostRegistration() {
    // ~CudaEngine synchronized both streams first, so no transfer reads the range any more.
    // Errors at teardown cannot be reported.
    if (p_) cudaHostUnregister(p_);
  }
  /// Returns the driver's answer; on failure the (non-sticky) error is cleared. A range
  /// whose ends are already known to the driver (page-locked by another engine, or pinned)
  /// is not asked for: the refusal would be reported as an API error by compute-sanitizer.
  cudaError_t lock(void* p, size_t bytes) {
    FLASHKM_ASSERT(p_ == nullptr);
    const char* ends[2] = {static_cast<const char*>(p), static_cast<const char*>(p) + bytes - 1};
    for (const char* e : ends) {
      cudaPointerAttributes attr;
      FLASHKM_CUDA_CHECK(cudaPointerGetAttributes(&attr, e));
      if (attr.type != cudaMemoryTypeUnregistered) return cudaErrorHostMemoryAlreadyRegistered;
    }
    cudaError_t err = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    if (err != cudaSuccess) {
      cudaGetLastError();  // then try the form for read-only mappings
      err = cudaHostRegister(p, bytes, cudaHostRegisterReadOnly);
    }
    if (err == cudaSuccess) {
      p_ = p;
    } else {
      cudaGetLastError();
    }
    return err;
  }
  bool locked() const { return p_ != nullptr; }

 private:
  void* p_ = nullptr;
};

/// True when [p, p + bytes) lies in private anonymous mappings (the heap, malloc'd or
/// anonymous mmap'd memory), the only host memory page-locked in place. A file mapping is
/// staged instead: pinning would read the whole file into RAM at once, a private writable
/// mapping would lose copy-on-write (twice its memory), and the driver marks every pinned
/// page dirty on release, so a shared mapping's file would be written back in full.
bool private_anonymous(const void* p, size_t bytes) {
  std::FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) return false;
  uintptr_t next = reinterpret_cast<uintptr_t>(p);
  const uintptr_t end = next + bytes;
  bool covered = false;
  char line[4096];
  // Lines are sorted by address: walk the mappings that cover [next, end) without a hole.
  while (!covered && std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long lo = 0, hi = 0, offset = 0, inode = 0;
    char perms[8] = {0}, dev[32] = {0};
    int name = 0;
    if (std::sscanf(line, "%lx-%lx %7s %lx %31s %lu %n", &lo, &hi, perms, &offset, dev, &inode,
                    &name) < 6)
      continue;
    if (hi <= next) continue;
    if (lo > next) break;
    const char* path = line + name;
    const bool anonymous =
        inode == 0 && perms[3] == 'p' &&
        (path[0] == '\0' || path[0] == '\n' || std::strncmp(path, "[heap]", 6) == 0);
    if (!anonymous) break;
    next = hi;
    covered = next >= end;
  }
  std::fclose(maps);
  return covered;
}

/// Streams and events of one engine: `compute` runs every kernel in order; `copy` moves
/// streamed chunks; events pace the two staging buffers.
class Resources {
 public:
  Resources() {
    FLASHKM_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    FLASHKM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    for (int b = 0; b < 2; ++b) {
      FLASHKM_CUDA_CHECK(cudaEventCreateWithFlags(&h2d_done[b], cudaEventDisableTiming));
      FLASHKM_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done[b], cudaEventDisableTiming));
    }
  }
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;
  ~Resources() {
    for (int b = 0; b < 2; ++b) {
      if (h2d_done[b]) cudaEventDestroy(h2d_done[b]);
      if (compute_done[b]) cudaEventDestroy(compute_done[b]);
    }
    if (compute) cudaStreamDestroy(compute);
    if (copy) cudaStreamDestroy(copy);
  }
  void sync() { FLASHKM_CUDA_CHECK(cudaStreamSynchronize(compute)); }

  cudaStream_t compute = nullptr, copy = nullptr;
  cudaEvent_t h2d_done[2] = {nullptr, nullptr};
  cudaEvent_t compute_done[2] = {nullptr, nullptr};
  size_t device_bytes = 0;  ///< everything this engine allocated on the device
};

// Column means in float64 exactly as the CPU backend computes them (per kReduceBlock rows,
// then the blocks in order), so both backends centre the data identically.
std::vector<double> column_mean(int64_t n, int64_t d, const float* x, unsigned threads) {
  const int64_t nblocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> part(nblocks * d, 0.0);
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(nblocks, threads));
  std::vector<std::thread> pool;
  for (int64_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int64_t b = w; b < nblocks; b += workers) {
        double* p = part.data() + b * d;
        for (int64_t i = b * kReduceBlock; i < std::min(n, (b + 1) * kReduceBlock); ++i)
          for (int64_t j = 0; j < d; ++j) p[j] += x[i * d + j];
      }
    });
  }
  for (auto& t : pool) t.join();
  std::vector<double> mean(d, 0.0);
  for (int64_t b = 0; b < nblocks; ++b)
    for (int64_t j = 0; j < d; ++j) mean[j] += part[b * d + j];
  for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
  return mean;
}

// Largest |float(x - shift)| over the data: sets the tensor-core pass's power-of-two scale.
float max_abs_centred(int64_t n, int64_t d, const float* x, const std::vector<double>& shift,
                      unsigned threads) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n / 4096 + 1, threads));
  std::vector<float> part(workers, 0.f);
  std::vector<std::thread> pool;
  for (int64_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      float m = 0;
      for (int64_t i = w; i < n; i += workers)
        for (int64_t j = 0; j < d; ++j)
          m = std::max(m, std::fabs(float(double(x[i * d + j]) - shift[j])));
      part[w] = m;
    });
  }
  for (auto& t : pool) t.join();
  return *std::max_element(part.begin(), part.end());
}

// Runs fn(begin, end) on consecutive ranges of [0, count) with `threads` threads when the
// work is large (cost: count x unit bytes), else on the calling thread.
template <class Fn>
void parallel_ranges(size_t count, size_t unit, unsigned threads, Fn&& fn) {
  const size_t workers = count * unit < (size_t(4) << 20) ? 1 : std::max(1u, threads);
  if (workers == 1) {
    fn(size_t(0), count);
    return;
  }
  std::vector<std::thread> pool;
  const size_t per = (count + workers - 1) / workers;
  for (size_t w = 0; w < workers; ++w) {
    const size_t b = w * per, e = std::min(count, b + per);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  for (auto& t : pool) t.join();
}

// Copies floats between host arrays with `threads` threads: one thread cannot keep up with
// the host-to-device copy, and with 8 the staged stream ran at 37.6 GB/s against the bus's
// 53.8 (bench/NOTES-cuda.md, run 29).
void parallel_copy(float* dst, const float* src, size_t count, unsigned threads) {
  parallel_ranges(count, sizeof(float), threads, [=](size_t b, size_t e) {
    std::memcpy(dst + b, src + b, sizeof(float) * (e - b));
  });
}

/// The position of environment variable `name`'s value among `values`, -1 when it is unset;
/// any other value is refused with an error that lists them.
int env_choice(const char* name, std::initializer_list<const char*> values) {
  const char* env = std::getenv(name);
  if (env == nullptr) return -1;
  std::string expected;
  int i = 0;
  for (const char* v : values) {
    if (std::strcmp(env, v) == 0) return i;
    expected += (i++ ? " or " : "");
    expected += v;
  }
  FLASHKM_THROW("%s=%s: expected %s (or unset)", name, env, expected.c_str());
}

/// How streamed chunks leave host memory: FLASHKM_CUDA_STREAM=staged always copies through
/// the pinned staging buffers, =registered requires page-locking the caller's rows in place
/// (throws when the driver refuses), unset tries in place and falls back to staging. Tests
/// run both paths; results are identical.
enum class HostPath { Auto, Staged, Registered };

HostPath host_path() {
  switch (env_choice("FLASHKM_CUDA_STREAM", {"staged", "registered"})) {
    case 0:
      return HostPath::Staged;
    case 1:
      return HostPath::Registered;
    default:
      return HostPath::Auto;
  }
}

/// Largest streamed chunk: 1 GiB of float32 rows. Small enough that the first copy, the only
/// one nothing overlaps, is short, and that copies and kernels pipeline over many chunks
/// (run 29: 100M x 128 rows in 3 budget-sized chunks of 46M rows took 2.0 s an iteration,
/// in 18 chunks 1.36 s); large enough that per-chunk launches do not matter.
constexpr size_t kMaxChunkBytes = size_t(1) << 30;

/// FLASHKM_CUDA_ROW_SPLIT=arrays keeps the rows' fp16 split in device arrays (4 dpad bytes a
/// row, split_rows) where the wgmma pass would split them in shared memory; tests compare
/// the two (identical halves, so identical values, fix-up counts and labels).
bool row_split_arrays_forced() { return env_choice("FLASHKM_CUDA_ROW_SPLIT", {"arrays"}) == 0; }

/// FLASHKM_CUDA_WGMMA=lockstep keeps the wgmma kernel whose warpgroups multiply and fold
/// together (the default before the ping-pong kernel); =pingpong or unset: the ping-pong
/// kernel where it applies. Tests compare the two (bit-identical outputs).
bool wgmma_pingpong() { return env_choice("FLASHKM_CUDA_WGMMA", {"pingpong", "lockstep"}) != 1; }

/// FLASHKM_CUDA_PRUNE=off keeps the full assignment pass in every iteration where
/// KMeansParams::bounds would prune (=on or unset: prune); the bench's A/B, and tests
/// comparing the two (identical results).
bool prune_allowed() { return env_choice("FLASHKM_CUDA_PRUNE", {"on", "off"}) != 1; }

/// Largest k the pruning pass takes: kPruneMaxGroups groups of kPivotStride centroids.
constexpr int64_t kPruneMaxK = int64_t(kPruneMaxGroups) * kPivotStride;
/// From this k on, candidates are found through groups around pivots (k^2 d / 16 work)
/// rather than by measuring every pair (k^2 d): at k = 8192 and d = 128 that already costs
/// about a tenth of the full pass.
constexpr int64_t kPruneGroupsFromK = 8192;

/// Groups of the pruning pass's candidate search: FLASHKM_CUDA_PRUNE_GROUPS=always takes
/// groups at every k, =never measures every pair (tests compare both with the default).
int64_t prune_groups(int64_t k) {
  const int choice = env_choice("FLASHKM_CUDA_PRUNE_GROUPS", {"always", "never"});
  const bool use = choice < 0 ? k >= kPruneGroupsFromK : choice == 0;
  return use ? std::max<int64_t>(1, k / kPivotStride) : 0;
}
/// PruneArgs::small_tiles: FLASHKM_CUDA_PRUNE_SMALL=always or =never (tests compare both with
/// the default).
int prune_small_tiles() {
  const int choice = env_choice("FLASHKM_CUDA_PRUNE_SMALL", {"always", "never"});
  return choice < 0 ? 1 : choice == 0 ? 2 : 0;
}
/// Passes that skip pruning after one that settled too few rows.
constexpr int kPruneRest = 8;

/// FLASHKM_CUDA_UPDATE=full adds every row at each update, =moved moves the rows whose label
/// changed whenever the sums hold earlier labels (tests: identical means); unset, 0 (auto).
int update_mode() {
  const int choice = env_choice("FLASHKM_CUDA_UPDATE", {"full", "moved"});
  return choice < 0 ? 0 : choice == 0 ? 1 : 2;
}
/// Updates move the changed rows when at most n / kMovedFraction labels changed since the
/// sums were made; above, adding all rows once is cheaper than taking the moved ones out and
/// putting them in (each read twice), and the first pass moves every row.
constexpr int64_t kMovedFraction = 8;

class CudaEngine final : public Engine {
 public:
  // x_on_device: x is device memory (is_device_pointer) and is used in place as the resident
  // data; the host never reads it.
  CudaEngine(int64_t n, int64_t d, int64_t k, const float* x, const KMeansParams& p,
             bool x_on_device)
      : Engine(n, d, k, x, p), x_on_device_(x_on_device) {
    FLASHKM_THROW_IF_NOT(cuda_device_count() > 0,
                         "device=cuda requested but no CUDA device "
                         "is visible");
    FLASHKM_THROW_IF_NOT(n <= INT_MAX, "CUDA backend: n=%lld exceeds %d points (int32 ids)",
                         (long long)n, INT_MAX);
    FLASHKM_THROW_IF_NOT(d <= INT_MAX / 4 && k <= INT_MAX / 4,
                         "CUDA backend: d=%lld or k=%lld too large", (long long)d, (long long)k);
    int dev = 0;
    FLASHKM_CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    FLASHKM_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    sm_count_ = prop.multiProcessorCount;
    math_ = select_math(prop.major, prop.minor);
    pingpong_ = wgmma_pingpong();
    const bool mma = math_ != AssignMath::Ffma;
    if (mma) {
      mma_shape_ = select_mma_shape(k, p.tiles);
    } else {
      shape_ = select_assign_shape(prop.major, k, p.tiles);
    }
    kpad_ = (k + kCentroidPad - 1) / kCentroidPad * kCentroidPad;
    dpad_ = (d + kMmaDepth - 1) / kMmaDepth * kMmaDepth;
    split_arrays_ =
        mma && !(math_ == AssignMath::Fp16Wgmma && !row_split_arrays_forced() &&
                 wgmma_splits_rows(mma_shape_, p.precision == Precision::Exact, int(dpad_)));
    // Centre-centre pruning (prune_kernels.cu): Exact L2 on resident data, from the second
    // assignment on. Unlabelled first passes and streamed chunks take the full pass.
    prune_ = p.bounds && p.metric == Metric::L2 && p.precision == Precision::Exact &&
             k <= kPruneMaxK && d <= kPruneMaxDim && prune_allowed();
    fp16_rows_ = p.device_rows == DeviceRows::Float16;
    if (fp16_rows_) {
      FLASHKM_THROW_IF_NOT(!x_on_device,
                           "device_rows=fp16: x is device memory already (the "
                           "fp16 copy is made from float32 rows in host memory)");
      FLASHKM_THROW_IF_NOT(mma,
                           "device_rows=fp16 needs a tensor-core pass (compute capability "
                           "8.0 or later); this engine runs the %s",
                           pass_name());
      prune_ = false;  // it would read every float32 row
      split_arrays_ = false;
    }
    plan_memory(p.device_memory_budget);
    prune_ = prune_ && resident_;
    if (prune_) {
      prune_groups_ = prune_groups(k);
      prune_small_ = prune_small_tiles();
    }
    if (fp16_rows_) {
      map_host_rows();
    } else if (!resident_) {
      register_host_rows();
    }
    allocate();

    std::vector<double> shift(d, 0.0);
    if (p.metric == Metric::L2)
      shift = x_on_device_ ? column_mean_device(x, n, d, kReduceBlock, res_.compute)
                           : column_mean(n, d, x, host_threads());
    if (mma && !x_on_device_)
      x_scale_exp_ = mma_scale_exp(max_abs_centred(n, d, x, shift, host_threads()));
    // Copies go on the compute stream, ordered before the kernels that read them: a plain
    // cudaMemcpy from pageable memory may return before its DMA lands, and the non-blocking
    // compute stream does not wait for it (the last rows of x were then read stale, now and
    // then: wrong fast values, and with them wrongly certified labels).
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(shift_.get(), shift.data(), sizeof(double) * d,
                                       cudaMemcpyHostToDevice, res_.compute));
    if (mma && x_on_device_)
      x_scale_exp_ = mma_scale_exp(max_abs_centred_device(x, n, d, shift_.get(), res_.compute));
    FLASHKM_CUDA_CHECK(cudaMemsetAsync(labels_.get(), 0xff, sizeof(int) * n, res_.compute));
    if (fp16_rows_) {
      store_fp16_rows();
      int lo, hi;
      exact_exponent_range(x, n * d, int(host_threads()), &lo, &hi);
      format_ = exact_format(lo, hi);
    } else if (resident_) {
      if (!x_on_device_)
        FLASHKM_CUDA_CHECK(cudaMemcpyAsync(x_dev_.get(), x, sizeof(float) * n * d,
                                           cudaMemcpyHostToDevice, res_.compute));
      row_norms(x_resident(), n, int(d), shift_.get(), xnorm_.get(), res_.compute);
      if (split_arrays_)
        split_rows(x_resident(), n, int(d), shift_.get(), int(dpad_), x_scale_exp_, x16_hi_.get(),
                   x16_lo_.get(), res_.compute);
      format_ = exact_format_device(x_resident(), n * d, range_scratch_.get(), res_.compute);
    } else {
      int lo, hi;
      exact_exponent_range(x, n * d, int(host_threads()), &lo, &hi);
      format_ = exact_format(lo, hi);
    }
    limbs_.allocate(k_ * d_ * format_.limbs, &res_.device_bytes);
    // Updates from the rows that moved need the labels the sums hold, and room in the limbs
    // for the moves on top of the rows (exact_sum.h).
    update_mode_ = update_mode();  // read once: the engine keeps what it was built with
    moved_updates_ = resident_ && n <= (int64_t(1) << 30) && update_mode_ != 1;
    if (moved_updates_) {
      sum_labels_.allocate(n, &res_.device_bytes);
      if (!fp16_rows_) {  // fp16 rows move rows in one pass (accumulate_moved), without sorts
        sum_keys_.allocate(n, &res_.device_bytes);
        sum_ids_.allocate(n, &res_.device_bytes);
      }
    }
    res_.sync();
    if (p.verbose)
      std::fprintf(stderr,
                   "flashkm cuda: %s, %s data (%lld rows a chunk), %.1f MB of device memory "
                   "(CUB's sort scratch: %.1f MB, in the candidate slots)\n",
                   pass_name(),
                   fp16_rows_         ? "fp16 rows resident (float32 rows mapped from host)"
                   : resident_        ? "resident"
                   : host_registered_ ? "streamed from page-locked host rows"
                                      : "streamed through pinned staging buffers",
                   (long long)chunk_rows_, double(res_.device_bytes) / 1e6,
                   double(sort_temp_bytes_) / 1e6);
  }

  // An exception can leave copies or kernels queued (an assign() cut short, a callback that
  // throws after set_centroids): they finish before any buffer, or the page-locked rows they
  // read, is released. Errors cannot be reported from here.
  ~CudaEngine() override {
    cudaStreamSynchronize(res_.copy);
    cudaStreamSynchronize(res_.compute);
  }

  // k-means++ on the device when the data is resident (the same picks as the CPU's), in the
  // assignment's float64 scratch, which holds n and n / kReduceBlock values then and is free
  // until the first assign(); streamed data keeps the host implementation.
  void kmeanspp(uint64_t seed, float* centroids) override {
    static_assert(kReduceBlock == kKMeansPPBlock, "block sums are shared scratch");
    prune_ready_ = false;  // dist64_ is its scratch: the next pass must not prune from it
    if (!resident_ || fp16_rows_) {  // fp16 rows: it would read every float32 row each draw
      Engine::kmeanspp(seed, centroids);
      return;
    }
    kmeanspp_device(x_on_device_ ? nullptr : x_, x_resident(), n_, d_, k_, seed, res_.compute,
                    dist64_.get(), block_inertia_.get(), centroids);
  }

  // The centroids cross the bus through a pinned buffer: a copy from pageable memory ran at
  // 5.7 GB/s (run 29: 5.9 ms for K 65536 x 128), one from pinned memory at 53.8.
  void set_centroids(const float* centroids) override {
    res_.sync();  // the buffer's previous upload has landed
    parallel_copy(c_host_.get(), centroids, size_t(k_ * d_), host_threads());
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(c_raw_.get(), c_host_.get(), sizeof(float) * k_ * d_,
                                       cudaMemcpyHostToDevice, res_.compute));
    prepare_centroids(c_raw_.get(), shift_.get(), int(k_), int(d_), int(kpad_), params_.metric,
                      c_shifted_t_.get(), c_beta_.get(), c_raw_t_.get(), c_norm_sq_.get(),
                      c_max_norm_.get(), res_.compute);
    if (math_ != AssignMath::Ffma)
      split_centroids(centroids_view(), int(dpad_), c_max_abs_.get(), c_scale_exp_.get(),
                      c16_hi_.get(), c16_lo_.get(), res_.compute);
    have_centroids_ = true;
  }

  AssignOutcome assign(float* distances, bool want_inertia) override {
    FLASHKM_THROW_IF_NOT(have_centroids_, "CUDA engine: assign() called before set_centroids()");
    const bool certify = params_.precision == Precision::Exact;
    if (distances && !dist_.get()) dist_.allocate(chunk_rows_, &res_.device_bytes);
    const bool mma = math_ != AssignMath::Ffma;
    FLASHKM_CUDA_CHECK(
        cudaMemsetAsync(counters_.get(), 0, sizeof(int) * counter_count(), res_.compute));
    // Streaming: the update's sums are accumulated here, from the chunk already on the
    // device, so an iteration moves the data over the bus once instead of twice.
    sums_ready_ = !resident_;
    if (sums_ready_) clear_sums();
    // Pruning needs the last pass's labels, distances and centroids, and update()'s segments.
    const bool could_prune = prune_ && prune_ready_ && segments_ready_;
    const bool prune = could_prune && prune_rest_ == 0;
    if (could_prune && !prune) --prune_rest_;
    // Until this pass completes, its scratch describes no previous pass (an exception below
    // leaves the engine unable to prune, not pruning from half-written state).
    prune_ready_ = segments_ready_ = false;
    bool skipped_inertia = false;
    for_each_chunk([&](const float* xd, int64_t off, int64_t rows, int64_t chunk) {
      if (!resident_) {
        row_norms(xd, rows, int(d_), shift_.get(), xnorm_.get(), res_.compute);
        if (split_arrays_)
          split_rows(xd, rows, int(d_), shift_.get(), int(dpad_), x_scale_exp_, x16_hi_.get(),
                     x16_lo_.get(), res_.compute);
      }
      AssignArgs a;
      a.x = xd;
      a.rows = rows;
      a.d = int(d_);
      a.shift = shift_.get();
      a.xnorm = resident_ ? xnorm_.get() + off : xnorm_.get();
      a.c = centroids_view();
      a.inner_product = params_.metric == Metric::InnerProduct;
      a.certify = certify;
      a.cand = cand_.get();
      a.fix_list = fix_list_.get();
      a.fix_count = fix_counts() + chunk;
      a.win_list = win_list_.get();
      a.win_count = win_counts() + chunk;
      a.cand_top = cand_top_.get();
      a.recheck_list = recheck_list_.get();
      a.recheck_count = recheck_count_.get();
      SplitRows xs;
      SplitCentroids cs;
      if (fp16_rows_) a.row_err = row_err_.get();
      if (mma) {
        if (split_arrays_) {
          const int64_t xoff = resident_ ? off * dpad_ : 0;
          xs.hi = x16_hi_.get() + xoff;
          xs.lo = x16_lo_.get() + xoff;
        } else if (fp16_rows_) {
          xs.hi = x16_hi_.get();  // lo null: the rows are fp16 alone
        }
        xs.dpad = int(dpad_);
        xs.scale_exp = x_scale_exp_;
        cs.hi = c16_hi_.get();
        cs.lo = c16_lo_.get();
        cs.scale_exp = c_scale_exp_.get();
      }
      if (prune) {
        // Rows settled by pruning get their label in cand; the rows of labels with too many
        // candidates go to the collecting pass (wgmma) or to the float64 fix-up over all k.
        const bool collect = math_ == AssignMath::Fp16Wgmma;
        if (collect)
          FLASHKM_CUDA_CHECK(cudaMemsetAsync(a.recheck_count, 0, sizeof(int), res_.compute));
        const UpdateScratch sorted = update_scratch();
        PruneArgs pa;
        pa.x = xd;
        pa.rows = rows;
        pa.d = int(d_);
        pa.k = int(k_);
        pa.c_raw = c_raw_.get();
        pa.c_raw_t = c_raw_t_.get();
        pa.c_prev = c_prev_.get();
        pa.dist_prev = dist64_.get();
        pa.sorted_ids = sorted.ids_out;
        pa.seg_begin = sorted.seg_begin;
        pa.seg_end = sorted.seg_end;
        pa.max_cands = prune_max_cands();
        pa.small_tiles = prune_small_;
        pa.cand = a.cand;
        pa.labels = labels_.get() + off;
        pa.dist = distances ? dist_.get() : nullptr;
        pa.dist64 = dist64_.get();
        pa.changed = changed_counts() + chunk;
        pa.fallback_list = collect ? a.recheck_list : a.fix_list;
        pa.fallback_count = collect ? a.recheck_count : a.fix_count;
        pa.stats = prune_stats();
        pa.radius2 = prune_radius2_.get();
        pa.list_count = prune_list_count_.get();
        pa.lists = prune_lists_.get();
        pa.list_lower = prune_list_lower_.get();
        pa.tiles = prune_tiles_.get();
        pa.tile_count = prune_tile_count_.get();
        pa.sm_count = sm_count_;
        pa.groups = int(prune_groups_);
        pa.pivots_t = pivots_t_.get();
        pa.nearest = nearest_.get();
        pa.group_radius = group_radius_.get();
        pa.group_count = group_count_.get();
        pa.group_start = group_start_.get();
        pa.group_fill = group_fill_.get();
        pa.members = members_.get();
        launch_prune(pa, res_.compute);
        if (collect) launch_wgmma_collect(mma_shape_, a, xs, cs, sm_count_, res_.compute);
      } else if (mma) {
        if (math_ == AssignMath::Fp16Wgmma) {
          launch_wgmma_assign(mma_shape_, a, xs, cs, sm_count_, pingpong_, res_.compute);
        } else {
          launch_mma_assign(mma_shape_, a, xs, cs, res_.compute);
        }
      } else {
        launch_flash_assign(shape_, a, res_.compute);
      }
      if (certify) launch_fixup(a, sm_count_, res_.compute);
      // The pruning pass finalized the rows it settled; its fallback rows are finalized here,
      // before the sort takes the recheck list's storage.
      if (prune) {
        const bool collected = math_ == AssignMath::Fp16Wgmma;
        launch_finalize_list(a, collected ? a.recheck_list : a.fix_list,
                             collected ? a.recheck_count : a.fix_count, labels_.get() + off,
                             distances ? dist_.get() : nullptr, dist64_.get(),
                             changed_counts() + chunk, sm_count_, res_.compute);
      }
      // Sorting by label here serves the finalize pass (rows of one centroid together) and
      // the update (the sort-inverse order).
      const UpdateScratch scratch = update_scratch();
      fill_iota(scratch.ids_in, rows, res_.compute);  // its storage held the recheck list
      sort_by_label(cand_.get(), rows, int(k_), scratch, res_.compute);
      if (prune) {
        launch_block_inertia(dist64_.get(), rows, block_inertia_.get() + off / kReduceBlock,
                             res_.compute);
      } else {
        // Rows stored as fp16: distances read every float32 row from host memory, so only
        // where asked for.
        const bool exact_dist = !fp16_rows_ || want_inertia || distances;
        launch_finalize(a, scratch.keys_out, scratch.ids_out, labels_.get() + off,
                        distances ? dist_.get() : nullptr, exact_dist ? dist64_.get() : nullptr,
                        block_inertia_.get() + off / kReduceBlock, changed_counts() + chunk,
                        res_.compute);
        skipped_inertia = !exact_dist;
      }
      if (distances) {
        FLASHKM_CUDA_CHECK(cudaMemcpyAsync(distances + off, dist_.get(), sizeof(float) * rows,
                                           cudaMemcpyDeviceToHost, res_.compute));
      }
      if (sums_ready_) {
        segment_bounds(rows, int(k_), scratch, res_.compute);
        segment_counts(int(k_), scratch, counts_.get(), res_.compute);
        accumulate_sorted(xd, rows, int(d_), scratch.keys_out, scratch.ids_out, nullptr, false,
                          format_, limbs_.get(), res_.compute);
      }
    });
    // The next pass may prune from this one: its centroids join its distances (dist64_)
    // and its sort, which update() cuts into segments.
    if (prune_)
      FLASHKM_CUDA_CHECK(cudaMemcpyAsync(c_prev_.get(), c_raw_.get(), sizeof(float) * k_ * d_,
                                         cudaMemcpyDeviceToDevice, res_.compute));
    // The pass's sums and counters come back in two copies into pinned memory (copies into
    // pageable memory wait for the device one by one).
    const int64_t nblocks = (n_ + kReduceBlock - 1) / kReduceBlock;
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(inertia_host_.get(), block_inertia_.get(),
                                       sizeof(double) * nblocks, cudaMemcpyDeviceToHost,
                                       res_.compute));
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(counters_host_.get(), counters_.get(),
                                       sizeof(int) * counter_count(), cudaMemcpyDeviceToHost,
                                       res_.compute));
    res_.sync();
    const double* inertia = inertia_host_.get();
    const int* changed = counters_host_.get();
    const int* fixups = changed + nchunks_;
    const int* windowed = fixups + nchunks_;
    const int* stats = windowed + nchunks_;
    prune_ready_ = prune_;
    const int64_t pruned = stats[0];
    // A pass that settles under three quarters of the rows costs about what it saves (the
    // rest take the full pass): the next kPruneRest passes skip it. Without the collecting
    // pass (devices before Hopper) the rest are recomputed in float64 over all k, which on
    // GPUs with slow float64 outweighs the pruning already at a few percent of the rows.
    const int64_t worth = math_ == AssignMath::Fp16Wgmma ? n_ / 4 * 3 : n_ - n_ / 50;
    if (prune && pruned < worth) prune_rest_ = kPruneRest;
    AssignOutcome out;
    out.pruned = pruned;
    int64_t window_fixups = 0;
    for (int64_t b = 0; b < nblocks; ++b) out.inertia += inertia[b];
    if (skipped_inertia) out.inertia = std::numeric_limits<double>::quiet_NaN();
    sorted_ = true;
    for (int64_t c = 0; c < nchunks_; ++c) {
      out.changed += changed[c];
      moved_since_sums_ += changed[c];
      out.fixups += fixups[c] + windowed[c];
      window_fixups += windowed[c];
    }
    if (params_.verbose && prune)
      std::fprintf(stderr,
                   "flashkm cuda prune: %lld rows settled, %.1f candidates a row tile, %lld rows "
                   "decided in float64, %d rows fell back to the full pass\n",
                   (long long)pruned, double(stats[1]) / std::max(1, stats[4]), (long long)stats[2],
                   stats[3]);
    if (params_.verbose && prune && prune_groups_ > 0)
      std::fprintf(stderr,
                   "flashkm cuda prune: candidate search measured %lld label-centroid pairs "
                   "(%.2f%% of k^2; the reached groups hold %lld)\n",
                   (long long)stats[5] * kPruneSmallRows,
                   100.0 * stats[5] * kPruneSmallRows / (double(k_) * k_),
                   (long long)stats[6] * 16);
    if (params_.verbose)
      std::fprintf(stderr,
                   "flashkm cuda assign: %s, %lld of %lld rows recomputed in float64 "
                   "(%lld over their <= %d candidates, the rest over all k); %lld settled by "
                   "centre-centre pruning%s\n",
                   pass_name(), (long long)out.fixups, (long long)n_, (long long)window_fixups,
                   kTop, (long long)pruned,
                   prune ? "" : (could_prune ? " (resting)" : " (off or no previous pass)"));
    return out;
  }

  void update(float* centroids, int64_t* counts) override {
    if (!sums_ready_) {
      // Resident data: the sort of the last assign() is still in the scratch arrays.
      FLASHKM_THROW_IF_NOT(resident_ && sorted_, "CUDA engine: update() called before assign()");
      // Once few rows move, moving them costs less than adding all: the sums are exact, so
      // both give the same limbs (FLASHKM_CUDA_UPDATE=moved|full forces one, for tests).
      const UpdateScratch sorted = update_scratch();
      segment_bounds(n_, int(k_), sorted, res_.compute);
      const int mode = update_mode_;
      // fp16 rows: every row read crosses the bus, so moving rows pays until half move.
      const int64_t most_moved = fp16_rows_ ? n_ / 2 : n_ / kMovedFraction;
      const bool moved = sums_hold_labels_ && (mode == 2 || moved_since_sums_ <= most_moved);
      if (moved) {
        FLASHKM_CUDA_CHECK(cudaMemsetAsync(counts_.get(), 0, sizeof(long long) * k_, res_.compute));
      } else {
        clear_sums();
      }
      segment_counts(int(k_), sorted, counts_.get(), res_.compute);
      if (moved && fp16_rows_) {
        accumulate_moved(x_resident(), n_, int(d_), labels_.get(), sum_labels_.get(), format_,
                         limbs_.get(), sm_count_, res_.compute);
      } else if (moved) {
        // Out of their old labels, in the old sort; into the new ones, in this one.
        accumulate_sorted(x_resident(), n_, int(d_), sum_keys_.get(), sum_ids_.get(), labels_.get(),
                          true, format_, limbs_.get(), res_.compute);
        accumulate_sorted(x_resident(), n_, int(d_), sorted.keys_out, sorted.ids_out,
                          sum_labels_.get(), false, format_, limbs_.get(), res_.compute);
      } else {
        accumulate_sorted(x_resident(), n_, int(d_), sorted.keys_out, sorted.ids_out, nullptr,
                          false, format_, limbs_.get(), res_.compute);
      }
      if (moved_updates_) {
        // The labelling the sums now hold, and its sort, for the next update.
        FLASHKM_CUDA_CHECK(cudaMemcpyAsync(sum_labels_.get(), labels_.get(), sizeof(int) * n_,
                                           cudaMemcpyDeviceToDevice, res_.compute));
        if (!fp16_rows_) {
          FLASHKM_CUDA_CHECK(cudaMemcpyAsync(sum_keys_.get(), sorted.keys_out, sizeof(int) * n_,
                                             cudaMemcpyDeviceToDevice, res_.compute));
          FLASHKM_CUDA_CHECK(cudaMemcpyAsync(sum_ids_.get(), sorted.ids_out, sizeof(int) * n_,
                                             cudaMemcpyDeviceToDevice, res_.compute));
        }
        sums_hold_labels_ = true;
      }
      moved_since_sums_ = 0;
      segments_ready_ = true;  // the segments of the last assign()'s labels, for pruning
    }
    sums_ready_ = false;
    compute_means(limbs_.get(), counts_.get(), int(k_), int(d_), format_, means_dev_.get(),
                  res_.compute);
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(c_host_.get(), means_dev_.get(), sizeof(float) * k_ * d_,
                                       cudaMemcpyDeviceToHost, res_.compute));
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(counts_host_.get(), counts_.get(), sizeof(long long) * k_,
                                       cudaMemcpyDeviceToHost, res_.compute));
    res_.sync();
    const long long* cnt = counts_host_.get();
    const float* means = c_host_.get();
    parallel_ranges(size_t(k_), sizeof(float) * d_, host_threads(), [&](size_t b, size_t e) {
      for (size_t c = b; c < e; ++c) {
        counts[c] = cnt[c];
        if (cnt[c] > 0) std::memcpy(centroids + c * d_, means + c * d_, sizeof(float) * d_);
      }
    });
  }

  void get_labels(int32_t* labels) override {
    FLASHKM_CUDA_CHECK(cudaMemcpyAsync(labels, labels_.get(), sizeof(int32_t) * n_,
                                       cudaMemcpyDeviceToHost, res_.compute));
    res_.sync();
  }

 private:
  const char* pass_name() const {
    switch (math_) {
      case AssignMath::Fp16Wgmma:
        return pingpong_ ? "3xfp16 tensor-core pass (wgmma, ping-pong)"
                         : "3xfp16 tensor-core pass (wgmma, lockstep)";
      case AssignMath::Fp16Mma:
        return "3xfp16 tensor-core pass (mma.sync)";
      default:
        return "fp32 FFMA pass";
    }
  }

  // Resident when the data (x and its row norms) fits the budget; otherwise chunks of a
  // multiple of kReduceBlock rows (at most kMaxChunkBytes of x), two on the device at a time.
  void plan_memory(size_t user_budget) {
    // Per row: x, its norm, and for the mma.sync pass (and wgmma on rows too wide to stay in
    // shared memory) its fp16 hi / lo split.
    const size_t split_bytes = split_arrays_ ? 2 * sizeof(uint16_t) * dpad_ : 0;
    const size_t row_bytes = sizeof(float) * d_ + sizeof(double) + split_bytes;
    size_t budget = user_budget;
    if (budget == 0) {
      size_t free_bytes = 0, total = 0;
      FLASHKM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
      // Leave room for the per-point arrays (labels, distances, candidate lists shared with
      // the sort: 44 bytes a point, a little more where CUB's temporary storage outgrows the
      // candidate slots), the centroid arrays and a 1 GiB margin for the runtime and others.
      // Pruning adds its candidate lists (8 bytes a slot) and the previous centroids.
      const size_t prune_bytes = prune_ ? size_t(k_) * (kPruneMaxCands * 8 + d_ * 4 + 32) : 0;
      // The exact sums take up to kExactMaxLimbs limbs a coordinate (the data decides), and
      // updates from moved rows a label and a sort position a row.
      const size_t other = size_t(n_) * 60 + size_t(k_) * d_ * (16 + 8 * kExactMaxLimbs) +
                           prune_bytes + (size_t(1) << 30);
      budget = free_bytes > other ? (free_bytes - other) / 10 * 9 : 0;
    }
    if (fp16_rows_) {
      // fp16 halves, the norm and the fp16 rounding error of every row.
      const size_t need = size_t(n_) * (2 * dpad_ + sizeof(double) + sizeof(float));
      FLASHKM_THROW_IF_NOT(need <= budget,
                           "device_rows=fp16: the fp16 rows need %.1f MB of device memory, "
                           "above the %.1f MB available (device_memory_budget or free memory); "
                           "device_rows=fp32 streams data of any size",
                           double(need) / 1e6, double(budget) / 1e6);
      resident_ = true;
      chunk_rows_ = n_;
    } else if (x_on_device_) {
      // The caller's rows are resident already; flashkm adds their norms and fp16 split.
      const size_t need = size_t(n_) * (row_bytes - sizeof(float) * d_);
      FLASHKM_THROW_IF_NOT(need <= budget,
                           "x is device memory: its per-row arrays (norms%s) need %.1f MB of "
                           "device memory, above the %.1f MB available (device_memory_budget "
                           "or free memory); pass host memory to have it streamed",
                           split_bytes ? ", fp16 split" : "", double(need) / 1e6,
                           double(budget) / 1e6);
      resident_ = true;
      chunk_rows_ = n_;
    } else if (size_t(n_) * row_bytes <= budget) {
      resident_ = true;
      chunk_rows_ = n_;
    } else {
      resident_ = false;
      const int64_t fit = int64_t(budget / (row_bytes + sizeof(float) * d_));
      const int64_t rows = std::min<int64_t>(fit, int64_t(kMaxChunkBytes / (sizeof(float) * d_)));
      chunk_rows_ = std::max<int64_t>(kReduceBlock, rows / kReduceBlock * kReduceBlock);
    }
    nchunks_ = std::max<int64_t>(1, (n_ + chunk_rows_ - 1) / chunk_rows_);
  }

  // Page-locks the caller's rows in place, so that chunk copies read them directly at the
  // bus's rate, with no host copy into staging buffers. The driver may refuse (memory
  // already registered, e.g. by another engine, read-only mappings on some systems, lock
  // limits): the engine then stages, unless FLASHKM_CUDA_STREAM=registered.
  void register_host_rows() {
    const HostPath path = host_path();
    if (path == HostPath::Staged) return;
    // One pass (assign(), or fit with max_iter = 0): locking costs more than it saves (run
    // 30: 1.4 s more set-up for 51.2 GB, a pass 0.95 s in place against 1.24 s staged).
    if (path == HostPath::Auto && params_.max_iter == 0) return;
    const size_t bytes = sizeof(float) * size_t(n_) * size_t(d_);
    const bool anonymous = private_anonymous(x_, bytes);
    FLASHKM_THROW_IF_NOT(anonymous || path != HostPath::Registered,
                         "FLASHKM_CUDA_STREAM=registered: the rows are not (all) private "
                         "anonymous memory (a file mapping?), which is never page-locked");
    if (!anonymous) return;
    const cudaError_t err = host_rows_.lock(const_cast<float*>(x_), bytes);
    FLASHKM_THROW_IF_NOT(err == cudaSuccess || path != HostPath::Registered,
                         "FLASHKM_CUDA_STREAM=registered: cudaHostRegister of %zu bytes of rows "
                         "failed: %s",
                         bytes, cudaGetErrorString(err));
    host_registered_ = host_rows_.locked();
  }

  // fp16 rows: the float32 rows stay in host memory, page-locked and mapped into the device's
  // address space, so that the fix-ups and the update read the rows they need in place. Rows
  // the caller keeps page-locked (cudaHostAlloc, cudaHostRegister) are mapped as they are:
  // they must stay locked for the engine's life. A range that is only partly locked is
  // refused where a probe (its ends, and every 256 MiB) finds it.
  void map_host_rows() {
    const size_t count = size_t(n_) * size_t(d_), bytes = sizeof(float) * count;
    // Asked first whether p is page-locked at all, so that a refusal is no API error
    // (compute-sanitizer would count one).
    auto mapped = [](const float* p) -> const float* {
      cudaPointerAttributes a;
      FLASHKM_CUDA_CHECK(cudaPointerGetAttributes(&a, p));
      if (a.type != cudaMemoryTypeHost) return nullptr;
      void* dev = nullptr;
      FLASHKM_CUDA_CHECK(cudaHostGetDevicePointer(&dev, const_cast<float*>(p), 0));
      return static_cast<const float*>(dev);
    };
    cudaPointerAttributes attr;
    FLASHKM_CUDA_CHECK(cudaPointerGetAttributes(&attr, x_));
    if (attr.type != cudaMemoryTypeHost) {
      FLASHKM_THROW_IF_NOT(private_anonymous(x_, bytes),
                           "device_rows=fp16: the rows are not (all) private anonymous memory "
                           "(a file mapping?), which flashkm never page-locks; use "
                           "device_rows=fp32, which streams them");
      const cudaError_t err = host_rows_.lock(const_cast<float*>(x_), bytes);
      FLASHKM_THROW_IF_NOT(err == cudaSuccess,
                           "device_rows=fp16: cudaHostRegister of %zu bytes of rows failed: %s",
                           bytes, cudaGetErrorString(err));
    }
    x_mapped_ = mapped(x_);
    const size_t probe = (size_t(256) << 20) / sizeof(float);
    bool whole = x_mapped_ != nullptr;
    for (size_t at = probe - 1; whole && at < count; at += probe)
      whole = mapped(x_ + at) == x_mapped_ + at;
    if (whole) whole = mapped(x_ + (count - 1)) == x_mapped_ + (count - 1);
    FLASHKM_THROW_IF_NOT(whole,
                         "device_rows=fp16: the rows are page-locked only in part (or in "
                         "separate ranges): lock all %zu bytes as one range, or none",
                         bytes);
    host_registered_ = true;
  }

  // The fp16 copy of the rows, its norms and the rows' fp16 rounding errors, made on the device
  // from chunks of the float32 rows copied through one buffer.
  void store_fp16_rows() {
    const int64_t chunk =
        std::max<int64_t>(1, std::min<int64_t>(n_, int64_t(kMaxChunkBytes / (sizeof(float) * d_))));
    size_t scratch_bytes = 0;
    DeviceArray<float> stage;
    stage.allocate(size_t(chunk * d_), &scratch_bytes);
    for (int64_t off = 0; off < n_; off += chunk) {
      const int64_t rows = std::min(chunk, n_ - off);
      FLASHKM_CUDA_CHECK(cudaMemcpyAsync(stage.get(), x_ + off * d_, sizeof(float) * rows * d_,
                                         cudaMemcpyHostToDevice, res_.compute));
      fp16_rows(stage.get(), rows, int(d_), shift_.get(), int(dpad_), x_scale_exp_,
                x16_hi_.get() + off * dpad_, xnorm_.get() + off, row_err_.get() + off,
                res_.compute);
    }
    res_.sync();  // before the buffer goes
  }

  void allocate() {
    size_t* b = &res_.device_bytes;
    const int64_t nblocks = (n_ + kReduceBlock - 1) / kReduceBlock;
    shift_.allocate(d_, b);
    labels_.allocate(n_, b);
    block_inertia_.allocate(nblocks, b);
    counters_.allocate(counter_count(), b);
    counters_host_.allocate(counter_count());
    inertia_host_.allocate(nblocks);
    dist64_.allocate(chunk_rows_, b);
    cand_.allocate(chunk_rows_, b);
    // The candidate lists live from the assignment pass to the end of the fix-ups; the sort
    // by label, which follows, takes their storage (update_scratch), so they cost no more
    // device memory than the sort's own buffers (bench/NOTES-cuda.md, run 36).
    fix_list_.allocate(chunk_rows_, b);
    win_list_.allocate(chunk_rows_, b);
    recheck_list_.allocate(chunk_rows_, b);
    sort_temp_bytes_ = sort_temp_bytes(chunk_rows_);
    cand_top_.allocate(std::max<size_t>(chunk_rows_ * kTop, (sort_temp_bytes_ + 3) / 4), b);
    if (math_ == AssignMath::Fp16Wgmma) recheck_count_.allocate(1, b);
    if (prune_) {
      c_prev_.allocate(k_ * d_, b);
      prune_radius2_.allocate(k_, b);
      prune_list_count_.allocate(k_, b);
      prune_lists_.allocate(k_ * kPruneMaxCands, b);
      prune_list_lower_.allocate(k_ * kPruneMaxCands, b);
      prune_tiles_.allocate(2 * prune_max_tiles(n_, int(k_)), b);
      prune_tile_count_.allocate(3, b);
      if (prune_groups_ > 0) {
        pivots_t_.allocate(d_ * prune_groups_, b);
        nearest_.allocate(k_, b);
        group_radius_.allocate(prune_groups_, b);
        group_count_.allocate(prune_groups_, b);
        group_start_.allocate(prune_groups_ + 1, b);
        group_fill_.allocate(prune_groups_, b);
        members_.allocate(k_, b);
      }
    }
    xnorm_.allocate(chunk_rows_, b);
    seg_begin_.allocate(k_, b);
    seg_end_.allocate(k_, b);
    c_raw_.allocate(k_ * d_, b);
    c_raw_t_.allocate(k_ * d_, b);
    c_shifted_t_.allocate(kpad_ * d_, b);
    c_beta_.allocate(kpad_, b);
    c_norm_sq_.allocate(k_, b);
    c_max_norm_.allocate(1, b);
    counts_.allocate(k_, b);
    range_scratch_.allocate(2, b);
    means_dev_.allocate(k_ * d_, b);
    c_host_.allocate(k_ * d_);
    counts_host_.allocate(k_);
    if (split_arrays_) {
      x16_hi_.allocate(chunk_rows_ * dpad_, b);
      x16_lo_.allocate(chunk_rows_ * dpad_, b);
    }
    if (fp16_rows_) {
      x16_hi_.allocate(n_ * dpad_, b);
      row_err_.allocate(n_, b);
    }
    if (math_ != AssignMath::Ffma) {
      c16_hi_.allocate(kpad_ * dpad_, b);
      c16_lo_.allocate(kpad_ * dpad_, b);
      c_max_abs_.allocate(k_, b);
      c_scale_exp_.allocate(1, b);
    }
    if (resident_) {
      if (!x_on_device_ && !fp16_rows_) x_dev_.allocate(n_ * d_, b);
    } else {
      for (int s = 0; s < 2; ++s) {
        stage_[s].allocate(chunk_rows_ * d_, b);
        if (!host_registered_) pinned_[s].allocate(chunk_rows_ * d_);
      }
    }
  }

  void clear_sums() {
    FLASHKM_CUDA_CHECK(cudaMemsetAsync(limbs_.get(), 0, sizeof(long long) * k_ * d_ * format_.limbs,
                                       res_.compute));
    FLASHKM_CUDA_CHECK(cudaMemsetAsync(counts_.get(), 0, sizeof(long long) * k_, res_.compute));
  }

  // The sort's buffers share storage with the candidate lists, which are dead by then: the
  // ids come in through the recheck list, sorted keys and ids go to the fix and window
  // lists, and CUB's temporary storage is the candidate slots (allocated large enough).
  // The sorted keys and ids stay there until update() (resident data) has read them.
  UpdateScratch update_scratch() const {
    UpdateScratch s;
    s.keys_out = fix_list_.get();
    s.ids_in = recheck_list_.get();
    s.ids_out = win_list_.get();
    s.seg_begin = seg_begin_.get();
    s.seg_end = seg_end_.get();
    s.sort_temp = cand_top_.get();
    s.sort_temp_bytes = sort_temp_bytes_;
    return s;
  }

  DeviceCentroids centroids_view() const {
    DeviceCentroids c;
    c.k = int(k_);
    c.d = int(d_);
    c.kpad = int(kpad_);
    c.shifted_t = c_shifted_t_.get();
    c.beta = c_beta_.get();
    c.raw_t = c_raw_t_.get();
    c.raw = c_raw_.get();
    c.max_norm = c_max_norm_.get();
    return c;
  }

  // Calls fn(device rows, first row, row count, chunk number) on the compute stream for
  // every chunk in ascending order. Streaming: chunk i is copied into device buffer i % 2
  // while the device still works on chunk i - 1; events keep a buffer from being
  // overwritten before the kernels reading it are done. Staged, the host first copies the
  // chunk into pinned buffer i % 2, once the previous copy out of it has finished.
  template <class Fn>
  void for_each_chunk(Fn&& fn) {
    if (resident_) {
      fn(x_resident(), int64_t(0), n_, int64_t(0));
      return;
    }
    for (int64_t c = 0; c < nchunks_; ++c) {
      const int b = int(c % 2);
      const int64_t off = c * chunk_rows_, rows = std::min(chunk_rows_, n_ - off);
      const float* src = x_ + off * d_;
      if (!host_registered_) {
        FLASHKM_CUDA_CHECK(cudaEventSynchronize(res_.h2d_done[b]));
        parallel_copy(pinned_[b].get(), src, size_t(rows * d_), host_threads());
        src = pinned_[b].get();
      }
      FLASHKM_CUDA_CHECK(cudaStreamWaitEvent(res_.copy, res_.compute_done[b], 0));
      FLASHKM_CUDA_CHECK(cudaMemcpyAsync(stage_[b].get(), src, sizeof(float) * rows * d_,
                                         cudaMemcpyHostToDevice, res_.copy));
      FLASHKM_CUDA_CHECK(cudaEventRecord(res_.h2d_done[b], res_.copy));
      FLASHKM_CUDA_CHECK(cudaStreamWaitEvent(res_.compute, res_.h2d_done[b], 0));
      fn(static_cast<const float*>(stage_[b].get()), off, rows, c);
      FLASHKM_CUDA_CHECK(cudaEventRecord(res_.compute_done[b], res_.compute));
    }
  }

  HostRegistration host_rows_;  // first: released after everything that may read the rows
  Resources res_;
  int sm_count_ = 0;
  AssignMath math_ = AssignMath::Ffma;
  int shape_ = 0, mma_shape_ = 0;
  int x_scale_exp_ = 0;
  int64_t kpad_ = 0, dpad_ = 0;
  bool resident_ = true;
  bool pingpong_ = true;  ///< the wgmma pass may use its ping-pong kernel (wgmma_pingpong)
  /// The rows' fp16 split lives in device arrays (x16_hi_ / x16_lo_); else the wgmma pass
  /// splits the float32 rows while staging them into shared memory.
  bool split_arrays_ = false;
  /// x_ is page-locked in place (streamed data), or page-locked and mapped (fp16 rows)
  bool host_registered_ = false;
  /// Host threads for copies and set-up reductions: KMeansParams::threads, 0 = all.
  unsigned host_threads() const {
    return params_.threads > 0 ? unsigned(params_.threads)
                               : std::max(1u, std::thread::hardware_concurrency());
  }
  const bool x_on_device_;  ///< x is the caller's device memory, used in place
  int64_t chunk_rows_ = 0, nchunks_ = 1;
  bool have_centroids_ = false;
  bool sums_ready_ = false;  ///< limbs_ / counts_ hold the labels of the last assign()
  bool sorted_ = false;      ///< the scratch holds the last assign()'s sort (resident data)
  bool prune_ = false;       ///< centre-centre pruning applies to this engine's passes
  /// c_prev_ and dist64_ describe the last assign(), and update() has since cut its sort
  /// into segments: the next assign() may prune.
  bool prune_ready_ = false, segments_ready_ = false;
  /// Passes left before pruning is tried again, after one that settled too few rows.
  int prune_rest_ = 0;
  size_t sort_temp_bytes_ = 0;

  DeviceArray<double> shift_, xnorm_, block_inertia_, dist64_;
  DeviceArray<int> labels_, cand_, fix_list_;
  DeviceArray<int> win_list_, cand_top_, recheck_list_, recheck_count_;
  /// One pass's counters, zeroed and read back together: changed labels, rows fixed up over
  /// all k, rows fixed up over their window (nchunks_ each), the pruning pass's stats.
  DeviceArray<int> counters_;
  PinnedArray<int> counters_host_;
  PinnedArray<double> inertia_host_;  ///< the per-kReduceBlock inertia sums, read back
  int64_t counter_count() const { return 3 * nchunks_ + kPruneStats; }
  int* changed_counts() const { return counters_.get(); }
  int* fix_counts() const { return counters_.get() + nchunks_; }
  int* win_counts() const { return counters_.get() + 2 * nchunks_; }
  int* prune_stats() const { return counters_.get() + 3 * nchunks_; }
  DeviceArray<int> seg_begin_, seg_end_;
  /// Pruning: the centroids of the last assign() (its float64 distances are in dist64_ and
  /// its sort in the update scratch), then the pruning pass's scratch (PruneArgs).
  DeviceArray<float> c_prev_;
  DeviceArray<int> prune_list_count_, prune_lists_, prune_tiles_, prune_tile_count_;
  DeviceArray<double> prune_radius2_;
  DeviceArray<float> prune_list_lower_, pivots_t_;
  DeviceArray<unsigned long long> nearest_;
  DeviceArray<unsigned> group_radius_;
  DeviceArray<int> group_count_, group_start_, group_fill_, members_;
  int64_t prune_groups_ = 0;  ///< PruneArgs::groups
  int prune_small_ = 1;       ///< PruneArgs::small_tiles
  /// Candidates a row tile may evaluate: more, and its rows take the full pass.
  int prune_max_cands() const {
    return int(std::min<int64_t>(kPruneMaxCands, std::max<int64_t>(32, k_ / 8)));
  }
  DeviceArray<float> c_raw_, c_raw_t_, c_shifted_t_, c_beta_, means_dev_, dist_;
  DeviceArray<double> c_norm_sq_, c_max_norm_;
  /// The update's exact sums (k x d x format_.limbs) and cluster sizes; with moved updates,
  /// the labelling they hold (sum_labels_) and its sort (keys, ids) once sums_hold_labels_.
  ExactFormat format_;
  DeviceArray<unsigned long long> limbs_;
  DeviceArray<long long> counts_;
  DeviceArray<int> sum_labels_, sum_keys_, sum_ids_, range_scratch_;
  bool moved_updates_ = false, sums_hold_labels_ = false;
  int update_mode_ = 0;           ///< update_mode() when the engine was built
  int64_t moved_since_sums_ = 0;  ///< label changes the assign() passes counted since then
  DeviceArray<float> x_dev_, stage_[2];
  /// The resident rows: the caller's device memory or the uploaded copy.
  /// fp16 rows: the float32 rows in host memory, mapped (only listed rows are read there).
  const float* x_resident() const {
    return fp16_rows_ ? x_mapped_ : x_on_device_ ? x_ : x_dev_.get();
  }
  bool fp16_rows_ = false;  ///< KMeansParams::device_rows == Float16
  const float* x_mapped_ = nullptr;
  DeviceArray<float> row_err_;                               ///< fp16 rows: AssignArgs::row_err
  DeviceArray<uint16_t> x16_hi_, x16_lo_, c16_hi_, c16_lo_;  // fp16 bit patterns
  DeviceArray<float> c_max_abs_;
  DeviceArray<int> c_scale_exp_;
  PinnedArray<float> pinned_[2];
  PinnedArray<float> c_host_;  ///< centroids on their way to the device, means on their way back
  PinnedArray<long long> counts_host_;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Engine> make_cuda_engine(int64_t n, int64_t d, int64_t k, const float* x,
                                         const KMeansParams& p, bool x_on_device) {
  return std::make_unique<cuda::CudaEngine>(n, d, k, x, p, x_on_device);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky-free error, report none
    return 0;
  }
  return count;
}

}  // namespace detail
}  // namespace flashkm
