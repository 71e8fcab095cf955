// PRIVATE to plugin/ (also used by index/, the layer above): IndexIVFPQ codes with 8-bit
// sub-quantizers, byte for byte what faiss 1.7.3's IndexIVFPQ::encode_vectors writes, faster.
//
// faiss 1.7.3 encodes sub-vectors of fewer than 16 dimensions one vector and one centroid at a
// time (a scalar loop on Debian's generic build), then scans the ksub distances for the first
// minimum (fvec_L2sqr_ny_nearest: from +inf, strict <, ascending k). The portable path computes
// the same float32 distances in the same order (per centroid: sum over j ascending of
// (r_j - c_j)^2, every product and sum rounded on its own, no fused multiply-add). The AVX2 path
// screens all centroids with fused multiply-adds (two vectors and 32 centroids at a time; half
// the instructions), keeps every centroid whose screened distance is within the rounding bound of
// the smallest (nearly always just that one), and, when more than one remains, decides among them
// by faiss's own arithmetic: the result is faiss's first minimum, byte for byte (the bound is
// derived in pq_encoder.cpp). Residuals (x - coarse centroid) are the same float subtractions,
// computed once per vector.
// tests/index/pq_encoder_test.cpp checks the bytes against faiss on both paths, including exact
// ties, near ties decided by rounding (they catch any fused multiply-add), and huge or
// overflowing distances.
//
// Thread safety: encode() is const and may run from several threads at once; it parallelises
// over vectors with OpenMP itself.
#pragma once

#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace flashkm {
namespace plugin {

class PQEncoder {
 public:
  /// An encoder for ivf's current parameters (quantizer centroids and PQ codebooks are copied:
  /// later changes to ivf are not seen), or nullptr when ivf is not a trained IndexIVFPQ with
  /// 8-bit codes and sub-vectors of fewer than 16 dimensions (then use ivf.encode_vectors). simd =
  /// false keeps to the portable loop (same bytes; lets tests cover both paths).
  static std::unique_ptr<PQEncoder> make(const faiss::IndexIVF& ivf, bool simd = true);

  /// Codes of n vectors: x is n x d (row-major float32), lists holds each vector's inverted
  /// list (0 <= lists[i] < nlist; the residual is taken against that list's centroid when the
  /// index encodes residuals), codes receives n x code_size bytes. Equals
  /// ivf.encode_vectors(n, x, lists, codes) (include_listnos = false).
  void encode(int64_t n, const float* x, const faiss::Index::idx_t* lists, uint8_t* codes) const;

  int64_t code_size() const { return M_; }

 private:
  PQEncoder(const faiss::IndexIVFPQ& ivf, bool simd);
  int64_t d_, nlist_, M_, dsub_, ksub_;
  bool by_residual_, simd_;
  std::vector<float> coarse_;  // nlist x d, when by_residual
  std::vector<float> ct_;      // M x dsub x ksub: centroids transposed, ksub contiguous
};

}  // namespace plugin
}  // namespace flashkm
