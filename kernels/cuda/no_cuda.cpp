// Built instead of the CUDA backend when CUDA is off: a clear error, no GPU.
#include "kernels/engine.h"

namespace flashkm {
namespace detail {

std::unique_ptr<Engine> make_cuda_engine(int64_t, int64_t, int64_t, const float*,
                                         const KMeansParams&) {
  FLASHKM_THROW("device=cuda requested but flashkm was built without CUDA "
                "(configure with -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)");
}

int cuda_device_count() { return 0; }

}  // namespace detail
}  // namespace flashkm
