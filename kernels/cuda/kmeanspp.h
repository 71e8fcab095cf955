// PRIVATE to kernels/cuda: k-means++ seeding on the device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flashkm {
namespace detail {
namespace cuda {

/// D^2 sampling of k centroids from the n x d points, the same picks as the CPU's
/// Engine::kmeanspp for the same seed: float64 distances and per-1024-row sums on the device
/// (in the CPU's order), the random draws and the walk over the sums on the host. x_host
/// (null when the data lives only on the device) and x_dev hold the same rows; dmin (n doubles) and bsum (ceil(n / 1024) doubles) are device
/// scratch; centroids (k x d, host) receives copies of the picked rows. Synchronises stream at
/// every step.
void kmeanspp_device(const float* x_host, const float* x_dev, int64_t n, int64_t d, int64_t k,
                     uint64_t seed, cudaStream_t stream, double* dmin, double* bsum,
                     float* centroids);

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
