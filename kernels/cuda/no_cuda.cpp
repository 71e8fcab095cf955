// Built instead of the CUDA backend when CUDA is off: a clear error, no GPU.
#include "kernels/engine.h"

namespace flashkm {
namespace detail {

namespace {
[[noreturn]] void no_cuda() {
  FLASHKM_THROW(
      "device=cuda requested but flashkm was built without CUDA "
      "(configure with -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)");
}
}  // namespace

std::unique_ptr<Engine> make_cuda_engine(int64_t, int64_t, int64_t, const float*,
                                         const KMeansParams&, bool) {
  no_cuda();
}

int cuda_device_count() { return 0; }

// Without CUDA no pointer can be device memory: every pointer is read as host memory.
bool is_device_pointer(const void*) { return false; }
int64_t device_first_nonfinite(const float*, int64_t, float*) { no_cuda(); }
void device_gather_rows(const float*, int64_t, const int64_t*, int64_t, float*) { no_cuda(); }

}  // namespace detail
}  // namespace flashkm
