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

// faiss's distance of one centroid, the loop of argmin_scalar.
float faiss_distance(const float* r, const float* ct, int64_t dsub, int64_t ksub, int64_t k) {
  float dist = 0.f;
  for (int64_t j = 0; j < dsub; ++j) {
    float t = r[j] - ct[j * ksub + k];
    dist = dist + rounded(t * t);
  }
  return dist;
}

// Screen: S_k = sum_j (r_j - c_jk)^2 with one fused multiply-add a term (half the instructions of
// faiss's sub, mul, add, and they go to both kinds of floating-point pipe), for V vectors at
// once so that 4 V independent accumulators hide the fma latency. S_k differs from the exact
// D_k, and so does faiss's float32 value F_k, by at most a factor (1 +- g), g = n u / (1 - n u),
// n = dsub + 2, u = 2^-24: every term is >= 0 and passes through at most n roundings (the
// difference, then the square and the partial sums: fma rounds once where faiss rounds twice).
// If F_k* is faiss's minimum and m the screen's, S_k* <= F_k* (1 + g) / (1 - g) <= F_m (1 + g) /
// (1 - g) <= S_m ((1 + g) / (1 - g))^2. Underflow adds absolute errors: <= 2^-150 a rounding,
// or < 2^-126 where the thread flushes subnormals to zero (FTZ/DAZ, as -ffast-math code sets;
// both paths then see the same flushed operands), under 2 (dsub + 2) 2^-126 < 2^-120 for both
// sums together; the threshold's floor of 2^-118 covers it. So every centroid with S_k above
// the threshold loses to m in faiss's arithmetic too; the rest, usually just m, are the
// candidates, and faiss's first minimum among them (re-computed in its arithmetic, ascending k)
// is its overall first minimum. Requires ksub % 32 == 0; s receives V rows of ksub screen
// values, s_min their minima.
template <int V>
__attribute__((target("avx2,fma"))) void screen_avx2(const float* const* r, const float* ct,
                                                     int64_t dsub, int64_t ksub, float* s,
                                                     float* s_min) {
  __m256 mn[V];
  for (int v = 0; v < V; ++v) mn[v] = _mm256_set1_ps(kNoMinimum);
  for (int64_t k = 0; k < ksub; k += 32) {
    __m256 a[V][4];
    for (int v = 0; v < V; ++v) {
      for (int q = 0; q < 4; ++q) a[v][q] = _mm256_setzero_ps();
    }
    for (int64_t j = 0; j < dsub; ++j) {
      const float* c = ct + j * ksub + k;
      __m256 rj[V];
      for (int v = 0; v < V; ++v) rj[v] = _mm256_set1_ps(r[v][j]);
      for (int q = 0; q < 4; ++q) {
        // One load of the centroids for all V vectors: left to itself the compiler folds the
        // load into every subtraction, and the loads (two 32-byte ones a cycle) then bound the
        // loop (-15 % time on the VM, one thread).
        __m256 cq = _mm256_loadu_ps(c + 8 * q);
        asm("" : "+x"(cq));
        for (int v = 0; v < V; ++v) {
          const __m256 t = _mm256_sub_ps(rj[v], cq);
          a[v][q] = _mm256_fmadd_ps(t, t, a[v][q]);
        }
      }
    }
    for (int v = 0; v < V; ++v) {
      for (int q = 0; q < 4; ++q) _mm256_storeu_ps(s + v * ksub + k + 8 * q, a[v][q]);
      // A NaN lane (NaN input) drops the lane's earlier minimum: the result can only be too
      // large or NaN, which widens the candidates or sends the vector to faiss's loop.
      mn[v] = _mm256_min_ps(mn[v], _mm256_min_ps(_mm256_min_ps(a[v][0], a[v][1]),
                                                 _mm256_min_ps(a[v][2], a[v][3])));
    }
  }
  for (int v = 0; v < V; ++v) {
    __m128 h = _mm_min_ps(_mm256_castps256_ps128(mn[v]), _mm256_extractf128_ps(mn[v], 1));
    h = _mm_min_ps(h, _mm_movehl_ps(h, h));
    h = _mm_min_ss(h, _mm_shuffle_ps(h, h, 1));
    s_min[v] = _mm_cvtss_f32(h);
  }
}

// ((1 + g) / (1 - g))^2 of screen_avx2 with room for the rounding of the threshold's own product
// and sum, as a float.
float screen_factor(int64_t dsub) {
  const double n = double(dsub + 2), u = 0x1p-24, g = n * u / (1 - n * u);
  const double f = (1 + g) / (1 - g) * (1 + g) / (1 - g) * (1 + 0x1p-20);
  float ff = float(f);
  return double(ff) < f ? std::nextafter(ff, kNoMinimum) : ff;
}

// faiss's first minimum for one sub-vector from its screen values s and their minimum s_min.
__attribute__((target("avx2"))) int64_t argmin_screened(const float* r, const float* ct,
                                                        int64_t dsub, int64_t ksub,
                                                        const float* s, float s_min,
                                                        float factor) {
  // Near overflow the bound no longer holds (faiss's value may be inf where the screen's is
  // not), and a NaN minimum bounds nothing: faiss's own loop decides.
  if (!(s_min <= 1e37f)) return argmin_avx2(r, ct, dsub, ksub);
  const __m256 limit = _mm256_set1_ps(s_min * factor + 0x1p-118f);
  int64_t best_k = -1;
  float best = kNoMinimum;
  int count = 0;
  for (int64_t k = 0; k < ksub; k += 32) {
    const __m256 l0 = _mm256_cmp_ps(_mm256_loadu_ps(s + k), limit, _CMP_LE_OQ);
    const __m256 l1 = _mm256_cmp_ps(_mm256_loadu_ps(s + k + 8), limit, _CMP_LE_OQ);
    const __m256 l2 = _mm256_cmp_ps(_mm256_loadu_ps(s + k + 16), limit, _CMP_LE_OQ);
    const __m256 l3 = _mm256_cmp_ps(_mm256_loadu_ps(s + k + 24), limit, _CMP_LE_OQ);
    const __m256 any = _mm256_or_ps(_mm256_or_ps(l0, l1), _mm256_or_ps(l2, l3));
    if (_mm256_testz_ps(any, any)) continue;
    const uint32_t bits = uint32_t(_mm256_movemask_ps(l0)) |
                          uint32_t(_mm256_movemask_ps(l1)) << 8 |
                          uint32_t(_mm256_movemask_ps(l2)) << 16 |
                          uint32_t(_mm256_movemask_ps(l3)) << 24;
    for (uint32_t mask = bits; mask != 0; mask &= mask - 1) {
      const int64_t c = k + __builtin_ctz(mask);
      if (++count == 1) {
        best_k = c;  // alone, it is the minimum; its distance is needed only against another
        continue;
      }
      if (count == 2) best = faiss_distance(r, ct, dsub, ksub, best_k);
      const float dist = faiss_distance(r, ct, dsub, ksub, c);
      if (dist < best) {
        best = dist;
        best_k = c;
      }
    }
  }
  return best_k;
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
      simd_(simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            ksub_ % 32 == 0) {
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
  const float factor = screen_factor(dsub_);
#pragma omp parallel if (n_blocks > 1)
  {
    std::vector<float> r(size_t(kBlock * d_));
    std::vector<float> s(simd_ ? size_t(2 * ksub_) : 0);
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
        auto sub = [&](int64_t i) { return &r[size_t(i * d_ + m * dsub_)]; };
        if (!simd_) {
          for (int64_t i = 0; i < nb; ++i) {
            codes[(i0 + i) * M_ + m] = uint8_t(argmin_scalar(sub(i), ct, dsub_, ksub_));
          }
          continue;
        }
        for (int64_t i = 0; i < nb; i += 2) {
          const float* pair[2] = {sub(i), sub(std::min(i + 1, nb - 1))};
          float s_min[2];
          if (i + 1 < nb) {
            screen_avx2<2>(pair, ct, dsub_, ksub_, s.data(), s_min);
          } else {
            screen_avx2<1>(pair, ct, dsub_, ksub_, s.data(), s_min);
          }
          for (int64_t v = 0; v < std::min<int64_t>(2, nb - i); ++v) {
            codes[(i0 + i + v) * M_ + m] = uint8_t(argmin_screened(
                pair[v], ct, dsub_, ksub_, &s[size_t(v * ksub_)], s_min[v], factor));
          }
        }
      }
    }
  }
}

}  // namespace plugin
}  // namespace flashkm
