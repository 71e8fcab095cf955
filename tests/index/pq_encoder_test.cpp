// plugin::PQEncoder against faiss's own encode_vectors: the same bytes, every one, on the SIMD
// and the portable path. (The encoder lives in plugin/; its main user is the persisted index,
// so its test stays with the index's.)
#include "plugin/pq_encoder.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/index_factory.h>
#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "flashkm/error.h"
#include "tests/index/index_test_util.h"

namespace flashkm {
namespace plugin {
namespace {

std::unique_ptr<faiss::IndexIVFPQ> trained_ivfpq(int d, const char* factory, bool by_residual,
                                                 const std::vector<float>& x) {
  std::unique_ptr<faiss::IndexIVFPQ> ivf(
      dynamic_cast<faiss::IndexIVFPQ*>(faiss::index_factory(d, factory)));
  EXPECT_NE(ivf, nullptr);
  if (!ivf) return ivf;
  ivf->by_residual = by_residual;
  ivf->train(int64_t(x.size()) / d, x.data());
  return ivf;
}

// Encodes x (n x d) with faiss and with both encoder paths; every byte must agree.
void expect_faiss_bytes(const faiss::IndexIVFPQ& ivf, int64_t n, const float* x,
                        const std::string& what) {
  SCOPED_TRACE(what);
  std::vector<faiss::Index::idx_t> lists(n);
  ivf.quantizer->assign(n, x, lists.data());
  const size_t cs = ivf.code_size;
  std::vector<uint8_t> theirs(n * cs);
  ivf.encode_vectors(n, x, lists.data(), theirs.data());
  for (bool simd : {true, false}) {
    auto enc = PQEncoder::make(ivf, simd);
    ASSERT_NE(enc, nullptr);
    EXPECT_EQ(int64_t(cs), enc->code_size());
    std::vector<uint8_t> ours(n * cs);
    enc->encode(n, x, lists.data(), ours.data());
    ASSERT_EQ(ours, theirs) << "simd " << simd;
    // Alone, a vector gets the same code as within a batch (blocks and threads do not matter).
    std::vector<uint8_t> one(cs);
    for (int64_t i : {int64_t(0), n / 2, n - 1}) {
      enc->encode(1, x + i * ivf.d, lists.data() + i, one.data());
      EXPECT_EQ(0, std::memcmp(one.data(), &theirs[i * cs], cs)) << "vector " << i;
    }
  }
}

TEST(PQEncoder, SameBytesAsFaiss) {
  // dsub 8 (the 128-d PQ16 shape), 4 and 3; residuals and raw vectors.
  for (auto [d, factory] :
       {std::pair<int, const char*>{32, "IVF16,PQ4np"}, {16, "IVF16,PQ4np"}, {15, "IVF8,PQ5np"}}) {
    for (bool by_residual : {true, false}) {
      std::vector<float> x = testing::skewed_blobs(6000, d, 20, 101);
      auto ivf = trained_ivfpq(d, factory, by_residual, x);
      ASSERT_NE(ivf, nullptr);
      expect_faiss_bytes(*ivf, 3001, x.data() + 2999 * d,
                         std::string(factory) + " d " + std::to_string(d) + " by_residual " +
                             std::to_string(by_residual));
    }
  }
}

// Equal distances: faiss keeps the first minimum (lowest centroid index). Duplicated centroids
// make every vector tie, within one SIMD lane (k and k + 128) and across lanes (k and 255 - k).
TEST(PQEncoder, TiesGoToTheLowestCentroid) {
  const int d = 16;
  std::vector<float> x = testing::skewed_blobs(6000, d, 20, 7);
  auto ivf = trained_ivfpq(d, "IVF8,PQ2np", true, x);
  ASSERT_NE(ivf, nullptr);
  faiss::ProductQuantizer& pq = ivf->pq;
  for (size_t k = 0; k < 128; ++k) {
    std::memcpy(pq.get_centroids(0, k + 128), pq.get_centroids(0, k), sizeof(float) * pq.dsub);
    std::memcpy(pq.get_centroids(1, 255 - k), pq.get_centroids(1, k), sizeof(float) * pq.dsub);
  }
  const int64_t n = 2000;
  expect_faiss_bytes(*ivf, n, x.data(), "duplicated centroids");
  // The ties really happened: no vector took a duplicate, yet the originals were all used.
  auto enc = PQEncoder::make(*ivf);
  std::vector<faiss::Index::idx_t> lists(n);
  ivf->quantizer->assign(n, x.data(), lists.data());
  std::vector<uint8_t> codes(n * 2);
  enc->encode(n, x.data(), lists.data(), codes.data());
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_LT(codes[i * 2], 128) << "vector " << i;
    EXPECT_LT(codes[i * 2 + 1], 128) << "vector " << i;
  }
}

// Huge inputs: distances far above any usual bound must still be compared (no early cut-off
// such as an initial minimum of 1e20), and distances that overflow to inf give code 0, as in
// faiss (its minimum search starts at +inf, with strict <).
TEST(PQEncoder, HugeAndOverflowingDistances) {
  const int d = 16;
  std::vector<float> x = testing::skewed_blobs(6000, d, 20, 3);
  auto ivf = trained_ivfpq(d, "IVF8,PQ4np", false, x);
  ASSERT_NE(ivf, nullptr);
  // Centroid k of every sub-quantizer sits at k * 1e11 in each dimension; vectors half-way
  // between two centroids are >= 4 * (0.5e11)^2 = 1e22 away from all of them.
  for (size_t m = 0; m < ivf->pq.M; ++m) {
    for (size_t k = 0; k < ivf->pq.ksub; ++k) {
      float* c = ivf->pq.get_centroids(m, k);
      for (size_t j = 0; j < ivf->pq.dsub; ++j) c[j] = float(k) * 1e11f;
    }
  }
  const int64_t n = 40, finite_rows = 20;
  std::vector<float> huge(size_t(n) * d);
  for (size_t i = 0; i < huge.size(); ++i) {
    huge[i] =
        int64_t(i) < finite_rows * d ? (float(i % 200) + 0.5f) * 1e11f : (i % 3 ? 3e19f : -2e19f);
  }
  expect_faiss_bytes(*ivf, n, huge.data(), "huge values");
  // What the comparison above covered: nonzero codes among the finite rows, zeros after them.
  std::vector<uint8_t> theirs(n * 4);
  std::vector<faiss::Index::idx_t> lists(n, 0);
  ivf->encode_vectors(n, huge.data(), lists.data(), theirs.data());
  EXPECT_NE(std::count(theirs.begin(), theirs.begin() + finite_rows * 4, 0), finite_rows * 4);
  EXPECT_EQ(std::count(theirs.begin() + finite_rows * 4, theirs.end(), 0), (n - finite_rows) * 4);
}

// Near ties: centroids on a grid of step 0.1 (not exactly representable) and vectors half-way
// between two of them, nudged by a few ulps, so that the two nearest distances differ only by
// float32 rounding. Any other arithmetic (a fused multiply-add, another summation order, ranking
// by |c|^2 - 2 r.c without an exact re-check) picks the other centroid for some of them.
TEST(PQEncoder, NearTiesFollowFaissRounding) {
  const int d = 16;
  std::vector<float> x = testing::skewed_blobs(6000, d, 20, 9);
  auto ivf = trained_ivfpq(d, "IVF8,PQ4np", false, x);
  ASSERT_NE(ivf, nullptr);
  faiss::ProductQuantizer& pq = ivf->pq;
  for (size_t m = 0; m < pq.M; ++m) {
    for (size_t k = 0; k < pq.ksub; ++k) {
      float* c = pq.get_centroids(m, k);
      for (size_t j = 0; j < pq.dsub; ++j) c[j] = 0.1f * float(k) + (j == 0 ? 0.f : 0.3f * j);
    }
  }
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pick(0, 254), nudge(-6, 6);
  const int64_t n = 4000;
  std::vector<float> v(size_t(n) * d);
  for (int64_t i = 0; i < n; ++i) {
    for (size_t m = 0; m < pq.M; ++m) {
      const int k = pick(rng);
      for (size_t j = 0; j < pq.dsub; ++j) {
        float mid = 0.5f * (pq.get_centroids(m, k)[j] + pq.get_centroids(m, k + 1)[j]);
        for (int s = nudge(rng); s != 0; s += s > 0 ? -1 : 1) {
          mid = std::nextafter(mid, s > 0 ? 1e30f : -1e30f);
        }
        v[size_t(i) * d + m * pq.dsub + j] = mid;
      }
    }
  }
  expect_faiss_bytes(*ivf, n, v.data(), "near ties");
}

// Code that flushes subnormals to zero (FTZ/DAZ in MXCSR, as -ffast-math objects set for their
// thread) makes each rounding of a tiny value lose up to 2^-126. Centroid 0 is ~3 2^-125 away
// and centroid 1 ~2^-125 plus fourteen terms of 0.9 2^-126 that faiss flushes to zero: faiss
// (in that mode) takes centroid 1, so a screen that allows only IEEE underflow would keep 0.
TEST(PQEncoder, SameBytesWhenSubnormalsFlushToZero) {
  const int d = 15;
  faiss::IndexFlatL2 quantizer(d);
  faiss::IndexIVFPQ ivf(&quantizer, d, 1, 1, 8);
  ivf.by_residual = false;
  std::vector<float> zero(d, 0.f);
  quantizer.add(1, zero.data());
  for (size_t k = 0; k < ivf.pq.ksub; ++k) {
    std::fill(ivf.pq.get_centroids(0, k), ivf.pq.get_centroids(0, k) + d, 1.f);
  }
  float* c0 = ivf.pq.get_centroids(0, 0);
  std::fill(c0, c0 + d, 0.f);
  c0[0] = std::sqrt(std::ldexp(3.f, -125));
  float* c1 = ivf.pq.get_centroids(0, 1);
  std::fill(c1, c1 + d, std::sqrt(std::ldexp(0.9f, -126)));
  c1[0] = std::sqrt(std::ldexp(1.f, -125));
  ivf.is_trained = true;
  faiss::Index::idx_t list = 0;
  const unsigned saved = _mm_getcsr();
  uint8_t ieee = 0xff, theirs = 0xff, simd = 0xff, portable = 0xff;
  ivf.encode_vectors(1, zero.data(), &list, &ieee);
  _mm_setcsr(saved | 0x8040);  // FTZ | DAZ, on this thread only: one vector is encoded here
  ivf.encode_vectors(1, zero.data(), &list, &theirs);
  PQEncoder::make(ivf, true)->encode(1, zero.data(), &list, &simd);
  PQEncoder::make(ivf, false)->encode(1, zero.data(), &list, &portable);
  _mm_setcsr(saved);
  EXPECT_EQ(ieee, 0);    // gradual underflow: the fourteen small terms count
  EXPECT_EQ(theirs, 1);  // flushed: they do not
  EXPECT_EQ(simd, theirs);
  EXPECT_EQ(portable, theirs);
}

TEST(PQEncoder, OnlyForTrained8BitPQ) {
  std::unique_ptr<faiss::Index> flat(faiss::index_factory(8, "IVF4,Flat"));
  std::unique_ptr<faiss::Index> pq4(faiss::index_factory(8, "IVF4,PQ2x4"));
  std::unique_ptr<faiss::Index> untrained(faiss::index_factory(8, "IVF4,PQ2np"));
  EXPECT_EQ(PQEncoder::make(*dynamic_cast<faiss::IndexIVF*>(flat.get())), nullptr);
  EXPECT_EQ(PQEncoder::make(*dynamic_cast<faiss::IndexIVF*>(pq4.get())), nullptr);
  EXPECT_EQ(PQEncoder::make(*dynamic_cast<faiss::IndexIVF*>(untrained.get())), nullptr);
}

TEST(PQEncoder, RejectsListsOutOfRange) {
  const int d = 16;
  std::vector<float> x = testing::skewed_blobs(3000, d, 8, 5);
  auto ivf = trained_ivfpq(d, "IVF8,PQ2np", true, x);
  ASSERT_NE(ivf, nullptr);
  auto enc = PQEncoder::make(*ivf);
  std::vector<uint8_t> codes(2 * 2);
  for (faiss::Index::idx_t bad : {faiss::Index::idx_t(-1), faiss::Index::idx_t(8)}) {
    faiss::Index::idx_t lists[2] = {0, bad};
    EXPECT_THROW(enc->encode(2, x.data(), lists, codes.data()), Error) << "list " << bad;
  }
}

}  // namespace
}  // namespace plugin
}  // namespace flashkm
