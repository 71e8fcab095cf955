#include "index/pq_encoder.h"

#include <immintrin.h>

#include "flashkm/error.h"

namespace flashkm {
namespace index {

namespace {

// dist[k] = sum_j (x[j] - ct[j * ksub + k])^2, j ascending, no fused multiply-add.
void distances_scalar(const float* x, const float* ct, int64_t dsub, int64_t ksub, float* dist) {
  for (int64_t k = 0; k < ksub; ++k) dist[k] = 0.f;
  for (int64_t j = 0; j < dsub; ++j) {
    const float xj = x[j];
    const float* c = ct + j * ksub;
    for (int64_t k = 0; k < ksub; ++k) {
      float t = xj - c[k];
      float sq = t * t;
      dist[k] = dist[k] + sq;
    }
  }
}

// Four independent accumulators (32 centroids) per pass: one accumulator's chain of adds is
// latency-bound, four keep the adder busy. Each lane still sums j in ascending order.
__attribute__((target("avx2"))) void distances_avx2(const float* x, const float* ct, int64_t dsub,
                                                    int64_t ksub, float* dist) {
  int64_t k = 0;
  for (; k + 32 <= ksub; k += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < dsub; ++j) {
      const __m256 xj = _mm256_set1_ps(x[j]);
      const float* c = ct + j * ksub + k;
      __m256 t0 = _mm256_sub_ps(xj, _mm256_loadu_ps(c));
      __m256 t1 = _mm256_sub_ps(xj, _mm256_loadu_ps(c + 8));
      __m256 t2 = _mm256_sub_ps(xj, _mm256_loadu_ps(c + 16));
      __m256 t3 = _mm256_sub_ps(xj, _mm256_loadu_ps(c + 24));
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(t0, t0));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(t1, t1));
      a2 = _mm256_add_ps(a2, _mm256_mul_ps(t2, t2));
      a3 = _mm256_add_ps(a3, _mm256_mul_ps(t3, t3));
    }
    _mm256_storeu_ps(dist + k, a0);
    _mm256_storeu_ps(dist + k + 8, a1);
    _mm256_storeu_ps(dist + k + 16, a2);
    _mm256_storeu_ps(dist + k + 24, a3);
  }
  for (; k < ksub; k += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < dsub; ++j) {
      __m256 t = _mm256_sub_ps(_mm256_set1_ps(x[j]), _mm256_loadu_ps(ct + j * ksub + k));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(t, t));
    }
    _mm256_storeu_ps(dist + k, acc);
  }
}

}  // namespace

std::unique_ptr<PQEncoder> PQEncoder::make(const faiss::IndexIVF& ivf, bool simd) {
  auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf);
  if (pq == nullptr || pq->pq.nbits != 8 || pq->pq.code_size != pq->pq.M ||
      pq->code_size != pq->pq.code_size) {
    return nullptr;
  }
  return std::unique_ptr<PQEncoder>(new PQEncoder(*pq, simd));
}

PQEncoder::PQEncoder(const faiss::IndexIVFPQ& ivf, bool simd)
    : d_(ivf.d),
      M_(int64_t(ivf.pq.M)),
      dsub_(int64_t(ivf.pq.dsub)),
      ksub_(int64_t(ivf.pq.ksub)),
      by_residual_(ivf.by_residual),
      avx2_(simd && __builtin_cpu_supports("avx2") && ksub_ % 8 == 0) {
  if (by_residual_) {
    coarse_.resize(ivf.nlist * ivf.d);
    ivf.quantizer->reconstruct_n(0, int64_t(ivf.nlist), coarse_.data());
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
  const bool avx2 = avx2_;
#pragma omp parallel
  {
    std::vector<float> r(d_), dist(ksub_);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * d_;
      if (by_residual_) {
        FLASHKM_ASSERT(lists[i] >= 0 && lists[i] * d_ < int64_t(coarse_.size()));
        const float* c = &coarse_[lists[i] * d_];
        for (int64_t j = 0; j < d_; ++j) r[j] = xi[j] - c[j];
      } else {
        for (int64_t j = 0; j < d_; ++j) r[j] = xi[j];
      }
      for (int64_t m = 0; m < M_; ++m) {
        const float* ct = &ct_[m * dsub_ * ksub_];
        if (avx2) {
          distances_avx2(&r[m * dsub_], ct, dsub_, ksub_, dist.data());
        } else {
          distances_scalar(&r[m * dsub_], ct, dsub_, ksub_, dist.data());
        }
        int64_t best = 0;
        for (int64_t k = 1; k < ksub_; ++k) {
          if (dist[k] < dist[best]) best = k;
        }
        codes[i * M_ + m] = uint8_t(best);
      }
    }
  }
}

}  // namespace index
}  // namespace flashkm
