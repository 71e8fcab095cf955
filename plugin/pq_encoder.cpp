#include "plugin/pq_encoder.h"

#include <immintrin.h>

#include <algorithm>

#include "flashkm/error.h"

namespace flashkm {
namespace plugin {

namespace {

// Every product must be rounded before it is added, as in faiss's scalar loop. An empty asm
// that "modifies" the product hides it from the compiler, so no build flag (-mfma,
// -march=native with -ffp-contract=fast) can fuse the multiply into the add; it emits nothing.
inline float rounded(float v) {
  asm("" : "+x"(v));
  return v;
}
__attribute__((target("avx2"))) inline __m256 rounded(__m256 v) {
  asm("" : "+x"(v));
  return v;
}

// faiss 1.7.3 (fvec_L2sqr_ny_nearest) starts its minimum search at +inf: when every distance
// overflows to inf the code is 0.
constexpr float kNoMinimum = __builtin_inff();

// Vectors encoded per block: their residuals stay in L1 while one sub-quantizer's codebook
// (dsub x ksub floats, 8 KB for dsub 8) is scanned for all of them.
constexpr int64_t kBlock = 32;

// First minimum over k of sum_j (r[j] - ct[j * ksub + k])^2, j ascending.
int64_t argmin_scalar(const float* r, const float* ct, int64_t dsub, int64_t ksub) {
  float best = kNoMinimum;
  int64_t best_k = 0;
  for (int64_t k = 0; k < ksub; ++k) {
    float dist = 0.f;
    for (int64_t j = 0; j < dsub; ++j) {
      float t = r[j] - ct[j * ksub + k];
      dist = dist + rounded(t * t);
    }
    if (dist < best) {
      best = dist;
      best_k = k;
    }
  }
  return best_k;
}

// Lanes where dist < best take (dist, kv); kv moves on to the next 8 centroids.
__attribute__((target("avx2"))) inline void keep_min(__m256 dist, __m256* kv, __m256* best,
                                                     __m256* best_k) {
  __m256 lt = _mm256_cmp_ps(dist, *best, _CMP_LT_OQ);
  *best = _mm256_blendv_ps(*best, dist, lt);
  *best_k = _mm256_blendv_ps(*best_k, *kv, lt);
  *kv = _mm256_add_ps(*kv, _mm256_set1_ps(8.f));
}

// The same, 32 centroids per pass in four independent accumulators (one accumulator's chain of
// adds is latency-bound; four keep the adder busy). Lane l of the running minimum sees the
// centroids k = l (mod 8) in ascending order, so with strict < it holds their first minimum;
// the lowest index among the lanes with the smallest value is then the overall first minimum.
// Requires ksub % 32 == 0.
__attribute__((target("avx2"))) int64_t argmin_avx2(const float* r, const float* ct, int64_t dsub,
                                                    int64_t ksub) {
  __m256 best = _mm256_set1_ps(kNoMinimum);
  __m256 best_k = _mm256_setzero_ps();  // indices as floats: exact below 2^24
  __m256 kv = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
  for (int64_t k = 0; k < ksub; k += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < dsub; ++j) {
      const __m256 rj = _mm256_set1_ps(r[j]);
      const float* c = ct + j * ksub + k;
      __m256 t0 = _mm256_sub_ps(rj, _mm256_loadu_ps(c));
      __m256 t1 = _mm256_sub_ps(rj, _mm256_loadu_ps(c + 8));
      __m256 t2 = _mm256_sub_ps(rj, _mm256_loadu_ps(c + 16));
      __m256 t3 = _mm256_sub_ps(rj, _mm256_loadu_ps(c + 24));
      a0 = _mm256_add_ps(a0, rounded(_mm256_mul_ps(t0, t0)));
      a1 = _mm256_add_ps(a1, rounded(_mm256_mul_ps(t1, t1)));
      a2 = _mm256_add_ps(a2, rounded(_mm256_mul_ps(t2, t2)));
      a3 = _mm256_add_ps(a3, rounded(_mm256_mul_ps(t3, t3)));
    }
    keep_min(a0, &kv, &best, &best_k);
    keep_min(a1, &kv, &best, &best_k);
    keep_min(a2, &kv, &best, &best_k);
    keep_min(a3, &kv, &best, &best_k);
  }
  alignas(32) float v[8], kf[8];
  _mm256_store_ps(v, best);
  _mm256_store_ps(kf, best_k);
  int l_best = 0;
  for (int l = 1; l < 8; ++l) {
    if (v[l] < v[l_best] || (v[l] == v[l_best] && kf[l] < kf[l_best])) l_best = l;
  }
  return int64_t(kf[l_best]);
}

}  // namespace

std::unique_ptr<PQEncoder> PQEncoder::make(const faiss::IndexIVF& ivf, bool simd) {
  auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf);
  if (pq == nullptr || !pq->is_trained || pq->pq.nbits != 8 || pq->pq.code_size != pq->pq.M ||
      pq->code_size != pq->pq.code_size) {
    return nullptr;
  }
  // faiss's per-vector loop (the one reproduced here) runs only for sub-vectors under 16
  // dimensions and without transposed centroids; otherwise ProductQuantizer::compute_codes
  // takes BLAS distance tables (|x|^2 + |c|^2 - 2 x.c, other roundings), so its bytes are
  // faiss's own to write.
  if (pq->pq.dsub >= 16 || !pq->pq.transposed_centroids.empty()) return nullptr;
  return std::unique_ptr<PQEncoder>(new PQEncoder(*pq, simd));
}

PQEncoder::PQEncoder(const faiss::IndexIVFPQ& ivf, bool simd)
    : d_(ivf.d),
      nlist_(int64_t(ivf.nlist)),
      M_(int64_t(ivf.pq.M)),
      dsub_(int64_t(ivf.pq.dsub)),
      ksub_(int64_t(ivf.pq.ksub)),
      by_residual_(ivf.by_residual),
      avx2_(simd && __builtin_cpu_supports("avx2") && ksub_ % 32 == 0) {
  if (by_residual_) {
    coarse_.resize(size_t(nlist_ * d_));
    ivf.quantizer->reconstruct_n(0, nlist_, coarse_.data());
  }
  ct_.resize(size_t(M_ * dsub_ * ksub_));
  for (int64_t m = 0; m < M_; ++m) {
    for (int64_t k = 0; k < ksub_; ++k) {
      const float* c = ivf.pq.get_centroids(size_t(m), size_t(k));
      for (int64_t j = 0; j < dsub_; ++j) ct_[(m * dsub_ + j) * ksub_ + k] = c[j];
    }
  }
}

void PQEncoder::encode(int64_t n, const float* x, const faiss::Index::idx_t* lists,
                       uint8_t* codes) const {
  for (int64_t i = 0; i < n && by_residual_; ++i) {
    FLASHKM_THROW_IF_NOT(lists[i] >= 0 && lists[i] < nlist_,
                         "PQEncoder::encode: lists[%lld] = %lld, expected 0 <= list < nlist = %lld",
                         (long long)i, (long long)lists[i], (long long)nlist_);
  }
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel if (n_blocks > 1)
  {
    std::vector<float> r(size_t(kBlock * d_));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t i0 = b * kBlock, nb = std::min(kBlock, n - i0);
      for (int64_t i = 0; i < nb; ++i) {
        const float* xi = x + (i0 + i) * d_;
        float* ri = &r[size_t(i * d_)];
        if (by_residual_) {
          const float* c = &coarse_[size_t(lists[i0 + i] * d_)];
          for (int64_t j = 0; j < d_; ++j) ri[j] = xi[j] - c[j];
        } else {
          std::copy(xi, xi + d_, ri);
        }
      }
      for (int64_t m = 0; m < M_; ++m) {
        const float* ct = &ct_[size_t(m * dsub_ * ksub_)];
        for (int64_t i = 0; i < nb; ++i) {
          const float* rs = &r[size_t(i * d_ + m * dsub_)];
          int64_t k =
              avx2_ ? argmin_avx2(rs, ct, dsub_, ksub_) : argmin_scalar(rs, ct, dsub_, ksub_);
          codes[(i0 + i) * M_ + m] = uint8_t(k);
        }
      }
    }
  }
}

}  // namespace plugin
}  // namespace flashkm
