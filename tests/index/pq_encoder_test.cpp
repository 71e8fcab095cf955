// PQEncoder against faiss's own encode_vectors: the same bytes, every one.
#include "index/pq_encoder.h"

#include <faiss/IndexIVFPQ.h>
#include <faiss/index_factory.h>
#include <gtest/gtest.h>

#include "tests/index/index_test_util.h"

namespace flashkm {
namespace index {
namespace {

TEST(PQEncoder, SameBytesAsFaiss) {
  for (const char* factory : {"IVF16,PQ4np", "IVF8,PQ5np"}) {
    for (bool by_residual : {true, false}) {
      const int d = factory == std::string("IVF8,PQ5np") ? 15 : 16;  // dsub 4 and 3
      std::vector<float> x = testing::skewed_blobs(6000, d, 20, 101);
      std::unique_ptr<faiss::IndexIVFPQ> ivf(
          dynamic_cast<faiss::IndexIVFPQ*>(faiss::index_factory(d, factory)));
      ASSERT_NE(ivf, nullptr);
      ivf->by_residual = by_residual;
      ivf->train(6000, x.data());
      auto enc = PQEncoder::make(*ivf);
      auto portable = PQEncoder::make(*ivf, false);
      ASSERT_NE(enc, nullptr);
      const int64_t n = 3001;
      const float* xs = x.data() + 2999 * d;
      std::vector<faiss::Index::idx_t> lists(n);
      ivf->quantizer->assign(n, xs, lists.data());
      std::vector<uint8_t> ours(n * ivf->code_size), theirs(n * ivf->code_size);
      enc->encode(n, xs, lists.data(), ours.data());
      ivf->encode_vectors(n, xs, lists.data(), theirs.data());
      ASSERT_EQ(ours, theirs) << factory << " by_residual " << by_residual;
      std::vector<uint8_t> plain(n * ivf->code_size);
      portable->encode(n, xs, lists.data(), plain.data());
      ASSERT_EQ(plain, theirs) << factory << " by_residual " << by_residual << " (portable)";
      std::vector<uint8_t> one(ivf->code_size);
      enc->encode(1, xs + 5 * d, lists.data() + 5, one.data());
      EXPECT_EQ(0, std::memcmp(one.data(), &ours[5 * ivf->code_size], ivf->code_size));
    }
  }
}

TEST(PQEncoder, OnlyFor8BitPQ) {
  std::unique_ptr<faiss::Index> flat(faiss::index_factory(8, "IVF4,Flat"));
  std::unique_ptr<faiss::Index> pq4(faiss::index_factory(8, "IVF4,PQ2x4"));
  EXPECT_EQ(PQEncoder::make(*dynamic_cast<faiss::IndexIVF*>(flat.get())), nullptr);
  EXPECT_EQ(PQEncoder::make(*dynamic_cast<faiss::IndexIVF*>(pq4.get())), nullptr);
}

}  // namespace
}  // namespace index
}  // namespace flashkm
