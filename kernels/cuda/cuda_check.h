// PRIVATE to kernels/cuda: checking every CUDA runtime call and kernel launch.
#pragma once

#include <cuda_runtime.h>

#include "flashkm/error.h"

/// Throws flashkm::Error naming the failed call and CUDA's description of the error.
#define FLASHKM_CUDA_CHECK(call)                                                           \
  do {                                                                                     \
    const cudaError_t flashkm_err_ = (call);                                               \
    if (flashkm_err_ != cudaSuccess) {                                                     \
      FLASHKM_THROW("CUDA call %s failed: %s (%s)", #call, cudaGetErrorName(flashkm_err_), \
                    cudaGetErrorString(flashkm_err_));                                     \
    }                                                                                      \
  } while (0)

/// Checks the launch of kernel `name` that precedes it (bad configuration, missing image).
#define FLASHKM_CUDA_CHECK_LAUNCH(name)                                                         \
  do {                                                                                          \
    const cudaError_t flashkm_err_ = cudaPeekAtLastError();                                     \
    if (flashkm_err_ != cudaSuccess) {                                                          \
      FLASHKM_THROW("CUDA launch of %s failed: %s (%s)", #name, cudaGetErrorName(flashkm_err_), \
                    cudaGetErrorString(flashkm_err_));                                          \
    }                                                                                           \
  } while (0)
