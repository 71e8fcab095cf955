// PRIVATE to index/: a faster encoder for IndexIVFPQ codes with 8-bit sub-quantizers, giving
// the same bytes as faiss's encode_vectors.
//
// faiss 1.7.3 encodes sub-vectors of fewer than 16 dimensions one vector and one centroid at a
// time (a scalar loop on Debian's generic build), which made it the bottleneck of adds. This
// encoder computes the same float32 distances in the same order (per centroid: sum over j of
// (x_j - c_j)^2, each product and sum rounded separately, j ascending), eight centroids per AVX2
// instruction where available, and picks the first minimum as faiss does; residuals are the
// same float subtractions. tests/index/pq_encoder_test.cpp checks the bytes against faiss.
#pragma once

#include <faiss/IndexIVFPQ.h>

#include <memory>
#include <vector>

namespace flashkm {
namespace index {

class PQEncoder {
 public:
  /// An encoder for ivf, or nullptr when ivf is not an IndexIVFPQ with 8-bit codes. simd =
  /// false keeps to the portable loop (same bytes; lets tests cover both paths).
  static std::unique_ptr<PQEncoder> make(const faiss::IndexIVF& ivf, bool simd = true);

  /// codes (n x M bytes) of n vectors x (n x d) assigned to lists (n values).
  void encode(int64_t n, const float* x, const faiss::Index::idx_t* lists, uint8_t* codes) const;

 private:
  PQEncoder(const faiss::IndexIVFPQ& ivf, bool simd);
  int64_t d_, M_, dsub_, ksub_;
  bool by_residual_, avx2_;
  std::vector<float> coarse_;  // nlist x d, when by_residual
  std::vector<float> ct_;      // M x dsub x ksub: centroids transposed, ksub contiguous
};

}  // namespace index
}  // namespace flashkm
