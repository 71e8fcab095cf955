// PRIVATE to kernels/cuda: the host-side reductions of the engine's set-up, for data that is
// already in device memory (KMeans::fit / assign given a device pointer). Each gives the value
// its host counterpart in cuda_engine.cpp gives, bit for bit, so the same data yields the same
// shift, the same fp16 scale and therefore the same fast values and fix-ups wherever it lives.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace flashkm {
namespace detail {
namespace cuda {

/// Column means of x (n x d, device), float64: per block of `block` rows the column sums in
/// row order, then the block sums in block order, then / n (the host column_mean's order).
std::vector<double> column_mean_device(const float* x, int64_t n, int64_t d, int64_t block,
                                       cudaStream_t stream);

/// max over all values of |float(double(x) - shift[column])|, shift on the device (d values).
float max_abs_centred_device(const float* x, int64_t n, int64_t d, const double* shift,
                             cudaStream_t stream);

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
