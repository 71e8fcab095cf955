// The IVF side of the plugin against faiss 1.7.3 itself and a float64 brute-force oracle.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/clone_index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <typeinfo>

#include "flashkm/faiss.h"
#include "plugin_test_util.h"

namespace flashkm {
namespace {

using idx_t = faiss::Index::idx_t;
using test::blobs;

constexpr int64_t kD = 32, kN = 10000, kNq = 200, kNlist = 32, kK = 10;

struct Family {
  const char* description;
  faiss::MetricType metric;
  int64_t n = kN;  ///< base = training points; fewer where faiss's own PQ/OPQ training is slow
};

void PrintTo(const Family& f, std::ostream* os) {
  *os << f.description << (f.metric == faiss::METRIC_L2 ? " L2" : " IP") << " n=" << f.n;
}

std::string family_name(const testing::TestParamInfo<Family>& info) {
  std::string s =
      std::string(info.param.description) + (info.param.metric == faiss::METRIC_L2 ? "_L2" : "_IP");
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

faiss::IndexIVF* ivf_of(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(index);
  EXPECT_NE(ivf, nullptr);
  return ivf;
}

// Vectors in the space the IVF sees (after the pre-transforms of index).
std::vector<float> ivf_space(const faiss::Index* index, int64_t n, const float* x) {
  auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index);
  if (pt == nullptr) return std::vector<float>(x, x + n * index->d);
  std::unique_ptr<const float[]> xt(pt->apply_chain(n, x));
  return std::vector<float>(xt.get(), xt.get() + n * pt->index->d);
}

struct Search {
  std::vector<float> distances;
  std::vector<idx_t> labels;
};

Search search(const faiss::Index* index, const std::vector<float>& q, int nprobe) {
  faiss::IndexIVF* ivf = ivf_of(const_cast<faiss::Index*>(index));
  ivf->nprobe = nprobe;
  const int64_t nq = int64_t(q.size()) / index->d;
  Search s{std::vector<float>(nq * kK), std::vector<idx_t>(nq * kK)};
  index->search(nq, q.data(), kK, s.distances.data(), s.labels.data());
  return s;
}

class FamilyTest : public testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    // Queries come from the same mixture as the base (same centers), held out of it.
    n_ = GetParam().n;
    x_ = blobs(n_ + kNq, kD, 64, 11);
    q_.assign(x_.begin() + n_ * kD, x_.end());
    x_.resize(n_ * kD);
    if (ip()) {
      test::normalize(x_, kD);
      test::normalize(q_, kD);
    }
    params_.exec.device = Device::CPU;
  }
  bool ip() const { return GetParam().metric == faiss::METRIC_INNER_PRODUCT; }
  std::unique_ptr<faiss::Index> flashkm_index() const {
    return flashkm::index_factory(kD, GetParam().description, GetParam().metric, params_);
  }
  std::unique_ptr<faiss::Index> faiss_index() const {
    return std::unique_ptr<faiss::Index>(
        faiss::index_factory(kD, GetParam().description, GetParam().metric));
  }

  int64_t n_ = 0;
  std::vector<float> x_, q_;
  IVFTrainParams params_;
};

// index->train of a flashkm index, against faiss's own train from the same random init (both
// draw rand_perm(n, 1234 + 1)) on all points: the coarse centroids agree to float32 rounding
// and put every training point in the same list.
TEST_P(FamilyTest, CoarseCentroidsMatchFaissFromSameInit) {
  auto a = flashkm_index();
  a->train(n_, x_.data());
  auto f = faiss_index();
  ivf_of(f.get())->cp.max_points_per_centroid = 1 << 30;  // faiss on all points as well
  f->train(n_, x_.data());
  ASSERT_TRUE(a->is_trained);

  const std::vector<float> ca = coarse_centroids(a.get()), cf = coarse_centroids(f.get());
  const int64_t d_ivf = ivf_of(a.get())->d;
  EXPECT_LT(test::max_rel_diff(ca, cf), 1e-4) << GetParam().description;

  const std::vector<float> xt = ivf_space(a.get(), n_, x_.data());
  EXPECT_EQ(xt, ivf_space(f.get(), n_, x_.data())) << "pre-transforms trained differently";
  const auto la = test::knn_reference(xt.data(), n_, ca.data(), kNlist, d_ivf, 1, ip());
  const auto lf = test::knn_reference(xt.data(), n_, cf.data(), kNlist, d_ivf, 1, ip());
  int64_t differ = 0;
  for (int64_t i = 0; i < n_; ++i) differ += la[i] != lf[i];
  EXPECT_EQ(differ, 0) << GetParam().description;
  if (ip()) {
    for (int64_t c = 0; c < kNlist; ++c) {
      double s = 0;
      for (int64_t j = 0; j < d_ivf; ++j) s += double(ca[c * d_ivf + j]) * ca[c * d_ivf + j];
      EXPECT_NEAR(s, 1.0, 1e-5) << "centroid " << c << " is not unit norm";
    }
  }
}

// Once the quantizer holds the same centroids, everything else is faiss's: train_ivf + add_ivf
// give the same transforms, codebooks, inverted lists and search results as faiss's train +
// add, bit for bit.
TEST_P(FamilyTest, TrainIvfAndAddIvfEqualFaissGivenTheCentroids) {
  auto a = flashkm_index();
  IVFTrainReport rep = train_ivf(a.get(), n_, x_.data(), params_);
  EXPECT_EQ(rep.train_points, n_);
  EXPECT_EQ(rep.nlist, kNlist);
  EXPECT_GE(int(rep.iterations.size()), 1);
  const std::vector<float> ca = coarse_centroids(a.get());

  auto b = faiss_index();
  faiss::IndexIVF* ivf_b = ivf_of(b.get());
  ivf_b->quantizer->add(kNlist, ca.data());  // full quantizer: faiss skips its k-means
  b->train(n_, x_.data());
  EXPECT_EQ(coarse_centroids(b.get()), ca);

  add_ivf(a.get(), n_, x_.data());
  b->add(n_, x_.data());
  ASSERT_EQ(a->ntotal, n_);
  ASSERT_EQ(b->ntotal, n_);

  const faiss::InvertedLists* la = ivf_of(a.get())->invlists;
  const faiss::InvertedLists* lb = ivf_b->invlists;
  ASSERT_EQ(la->code_size, lb->code_size);
  for (int64_t l = 0; l < kNlist; ++l) {
    ASSERT_EQ(la->list_size(l), lb->list_size(l)) << "list " << l;
    const size_t sz = la->list_size(l);
    EXPECT_EQ(0, std::memcmp(la->get_ids(l), lb->get_ids(l), sz * sizeof(idx_t)))
        << "ids of list " << l;
    EXPECT_EQ(0, std::memcmp(la->get_codes(l), lb->get_codes(l), sz * la->code_size))
        << "codes of list " << l;
  }

  const Search sa = search(a.get(), q_, 4), sb = search(b.get(), q_, 4);
  EXPECT_EQ(sa.labels, sb.labels);
  EXPECT_EQ(sa.distances, sb.distances);
}

// write_index of a trained and filled flashkm index is a stock faiss file.
TEST_P(FamilyTest, ExportedFileSearchesIdenticallyInStockFaiss) {
  auto a = flashkm_index();
  a->train(n_, x_.data());
  add_ivf(a.get(), n_, x_.data());
  char path[] = "/tmp/flashkm_test_plugin_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  faiss::write_index(a.get(), path);
  std::unique_ptr<faiss::Index> r(faiss::read_index(path));
  std::remove(path);

  const faiss::Index* q = ivf_of(r.get())->quantizer;
  EXPECT_EQ(dynamic_cast<const KMeansQuantizerFlat*>(q), nullptr);
  EXPECT_EQ(dynamic_cast<const KMeansQuantizerHNSW*>(q), nullptr);
  EXPECT_EQ(r->ntotal, n_);
  for (int nprobe : {1, 4, 32}) {
    const Search sa = search(a.get(), q_, nprobe), sr = search(r.get(), q_, nprobe);
    EXPECT_EQ(sa.labels, sr.labels) << "nprobe " << nprobe;
    EXPECT_EQ(sa.distances, sr.distances) << "nprobe " << nprobe;
  }
}

// Exact k-means on all points is at least as good for search as faiss's default training,
// which subsamples 256 points per centroid (8192 points when there are more).
TEST_P(FamilyTest, RecallAtLeastFaissDefaultTraining) {
  auto a = flashkm_index();
  a->train(n_, x_.data());
  add_ivf(a.get(), n_, x_.data());
  auto f = faiss_index();
  f->train(n_, x_.data());
  f->add(n_, x_.data());

  const auto gt = test::knn_reference(q_.data(), kNq, x_.data(), n_, kD, kK, ip());
  for (int nprobe : {2, 8}) {
    const double ra = test::recall(gt, search(a.get(), q_, nprobe).labels, kNq, kK);
    const double rf = test::recall(gt, search(f.get(), q_, nprobe).labels, kNq, kK);
    // With PQ codes, recall is dominated by codebooks trained on residuals of different
    // centroids, which moves it a few points either way; exact codes leave the coarse
    // quantizer alone to decide.
    const bool pq = std::string(GetParam().description).find("PQ") != std::string::npos;
    EXPECT_GE(ra, rf - (pq ? 0.03 : 0.01))
        << "nprobe " << nprobe << ": flashkm " << ra << ", faiss " << rf;
    if (std::string(GetParam().description).rfind("IVF32,Flat", 0) == 0) {
      EXPECT_GT(ra, 0.9) << "nprobe " << nprobe;  // exact codes: only the probing loses
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Plugin, FamilyTest,
    testing::Values(
        Family{"IVF32,Flat", faiss::METRIC_L2}, Family{"IVF32,Flat", faiss::METRIC_INNER_PRODUCT},
        // "np": faiss's polysemous training takes minutes and is not ours to test.
        Family{"IVF32,PQ8np", faiss::METRIC_L2, 3000}, Family{"IVF32,PQ8x4np", faiss::METRIC_L2},
        Family{"IVF32,SQ8", faiss::METRIC_L2}, Family{"IVF32,SQ8", faiss::METRIC_INNER_PRODUCT},
        Family{"IVF32,SQ4", faiss::METRIC_L2}, Family{"IVF32,SQ6", faiss::METRIC_L2},
        Family{"IVF32,SQfp16", faiss::METRIC_L2},
        Family{"OPQ4_16,IVF32,PQ4np", faiss::METRIC_L2, 2000},
        Family{"PCA16,IVF32,Flat", faiss::METRIC_L2}, Family{"IVF32_HNSW8,Flat", faiss::METRIC_L2}),
    family_name);

// The brief's recipe for "same init": faiss::Clustering with preset centroids (not frozen) on
// all points, against train_ivf with Init::Given.
TEST(PluginIvf, GivenInitMatchesFaissClusteringWithPresetCentroids) {
  const std::vector<float> x = blobs(kN, kD, 64, 5);
  std::vector<float> init(kNlist * kD);
  for (int64_t c = 0; c < kNlist; ++c)
    std::memcpy(&init[c * kD], &x[(c * 257 + 3) * kD], sizeof(float) * kD);

  faiss::ClusteringParameters cp;
  cp.niter = 10;
  cp.max_points_per_centroid = 1 << 30;
  faiss::Clustering clus(kD, kNlist, cp);
  clus.centroids = init;
  faiss::IndexFlatL2 assigner(kD);
  clus.train(kN, x.data(), assigner);

  IVFTrainParams p;
  p.init = Init::Given;
  p.init_centroids = init;
  p.exec.device = Device::CPU;
  auto a = flashkm::index_factory(kD, "IVF32,Flat", faiss::METRIC_L2, p);
  a->train(kN, x.data());
  EXPECT_LT(test::max_rel_diff(coarse_centroids(a.get()), clus.centroids), 1e-4);

  // A different init must not match: the comparison above can fail.
  p.init = Init::Random;
  p.seed = 99;
  auto other = flashkm::index_factory(kD, "IVF32,Flat", faiss::METRIC_L2, p);
  other->train(kN, x.data());
  EXPECT_GT(test::max_rel_diff(coarse_centroids(other.get()), clus.centroids), 1e-2);
}

// max_train_points subsamples exactly like faiss's max_points_per_centroid.
TEST(PluginIvf, SubsampleMatchesFaissSubsample) {
  const std::vector<float> x = blobs(kN, kD, 64, 6);
  IVFTrainParams p;
  p.max_train_points = kNlist * 64;
  p.exec.device = Device::CPU;
  auto a = flashkm::index_factory(kD, "IVF32,Flat", faiss::METRIC_L2, p);
  a->train(kN, x.data());
  EXPECT_EQ(
      dynamic_cast<KMeansQuantizerFlat*>(ivf_of(a.get())->quantizer)->last_report.train_points,
      kNlist * 64);

  std::unique_ptr<faiss::Index> f(faiss::index_factory(kD, "IVF32,Flat"));
  ivf_of(f.get())->cp.max_points_per_centroid = 64;
  f->train(kN, x.data());
  EXPECT_LT(test::max_rel_diff(coarse_centroids(a.get()), coarse_centroids(f.get())), 1e-4);
}

TEST(PluginIvf, AddIvfKeepsGivenIdsLikeFaiss) {
  const std::vector<float> x = blobs(4000, kD, 16, 7);
  std::vector<idx_t> ids(4000);
  for (int64_t i = 0; i < 4000; ++i) ids[i] = 1000000 + 7 * i;
  auto a = flashkm::index_factory(kD, "PCA16,IVF16,SQ8", faiss::METRIC_L2);
  train_ivf(a.get(), 4000, x.data());
  std::unique_ptr<faiss::Index> b(faiss::index_factory(kD, "PCA16,IVF16,SQ8"));
  const std::vector<float> c = coarse_centroids(a.get());
  ivf_of(b.get())->quantizer->add(16, c.data());
  b->train(4000, x.data());

  add_ivf(a.get(), 2000, x.data(), ids.data());
  add_ivf(a.get(), 2000, x.data() + 2000 * kD, ids.data() + 2000);
  b->add_with_ids(4000, x.data(), ids.data());
  EXPECT_EQ(a->ntotal, 4000);  // the IndexPreTransform's count, kept in step by add_ivf
  const std::vector<float> q = blobs(50, kD, 16, 8);
  const Search sa = search(a.get(), q, 3), sb = search(b.get(), q, 3);
  EXPECT_EQ(sa.labels, sb.labels);
  for (idx_t l : sa.labels) EXPECT_TRUE(l >= 1000000 && (l - 1000000) % 7 == 0) << l;
}

// build_ivf reuses the k-means' final assignment; the index must be the one train_ivf +
// add_ivf build, list for list, on all points and on a subsample alike.
TEST(PluginIvf, BuildIvfEqualsTrainIvfThenAddIvf) {
  const std::vector<float> x = blobs(6000, kD, 40, 15);
  for (const char* desc : {"IVF32,Flat", "PCA16,IVF32,SQ8", "IVF32,Flat,Refine(Flat)"}) {
    for (int64_t max_points : {int64_t(0), int64_t(2500)}) {
      SCOPED_TRACE(std::string(desc) + " max_train_points=" + std::to_string(max_points));
      IVFTrainParams p;
      p.max_train_points = max_points;
      p.exec.device = Device::CPU;
      auto a = flashkm::index_factory(kD, desc, faiss::METRIC_L2, p);
      auto b = flashkm::index_factory(kD, desc, faiss::METRIC_L2, p);
      IVFTrainReport ra = build_ivf(a.get(), 6000, x.data(), nullptr, p);
      train_ivf(b.get(), 6000, x.data(), p);
      add_ivf(b.get(), 6000, x.data(), nullptr, p.exec);
      EXPECT_EQ(ra.train_points, max_points ? max_points : 6000);
      ASSERT_EQ(a->ntotal, 6000);
      ASSERT_EQ(b->ntotal, 6000);
      faiss::Index* ia = a.get();
      faiss::Index* ib = b.get();
      if (auto* r = dynamic_cast<faiss::IndexRefine*>(ia)) ia = r->base_index;
      if (auto* r = dynamic_cast<faiss::IndexRefine*>(ib)) ib = r->base_index;
      const faiss::InvertedLists* la = ivf_of(ia)->invlists;
      const faiss::InvertedLists* lb = ivf_of(ib)->invlists;
      for (int64_t l = 0; l < kNlist; ++l) {
        ASSERT_EQ(la->list_size(l), lb->list_size(l)) << "list " << l;
        EXPECT_EQ(0, std::memcmp(la->get_ids(l), lb->get_ids(l), la->list_size(l) * sizeof(idx_t)));
        EXPECT_EQ(
            0, std::memcmp(la->get_codes(l), lb->get_codes(l), la->list_size(l) * la->code_size));
      }
    }
  }
}

// A faiss index of the same factory whose quantizer holds a's centroids, trained by faiss (PQ
// codebooks on the same data): everything but the coarse k-means is faiss's own.
std::unique_ptr<faiss::Index> faiss_index_with_centroids(faiss::Index* a, const char* factory,
                                                         int64_t n, const float* x) {
  std::unique_ptr<faiss::Index> b(faiss::index_factory(kD, factory, a->metric_type));
  const std::vector<float> ca = coarse_centroids(a);
  ivf_of(b.get())->quantizer->add(ivf_of(a)->nlist, ca.data());
  b->train(n, x);
  return b;
}

TEST(PluginIvf, IndexFactoryInstallsTrainableQuantizersOnlyForIvf) {
  auto flat = flashkm::index_factory(kD, "Flat", faiss::METRIC_L2);
  EXPECT_EQ(typeid(*flat), typeid(faiss::IndexFlat));
  auto ivf = flashkm::index_factory(kD, "IVF16,Flat", faiss::METRIC_INNER_PRODUCT);
  faiss::IndexIVF* iv = ivf_of(ivf.get());
  ASSERT_NE(dynamic_cast<KMeansQuantizerFlat*>(iv->quantizer), nullptr);
  EXPECT_EQ(iv->quantizer->metric_type, faiss::METRIC_INNER_PRODUCT);
  EXPECT_EQ(iv->quantizer_trains_alone, 1);
  EXPECT_FALSE(ivf->is_trained);
  auto hnsw = flashkm::index_factory(kD, "IVF16_HNSW8,Flat", faiss::METRIC_L2);
  EXPECT_NE(dynamic_cast<KMeansQuantizerHNSW*>(ivf_of(hnsw.get())->quantizer), nullptr);
}

TEST(PluginIvf, RefineWrappedIvfTrainsAndAdds) {
  const std::vector<float> x = blobs(3000, kD, 16, 9);
  auto a = flashkm::index_factory(kD, "IVF16,PQ4np,Refine(Flat)", faiss::METRIC_L2);
  train_ivf(a.get(), 3000, x.data());
  add_ivf(a.get(), 3000, x.data());
  EXPECT_EQ(a->ntotal, 3000);
  std::vector<float> dis(5);
  std::vector<idx_t> lab(5);
  ivf_of(dynamic_cast<faiss::IndexRefine*>(a.get())->base_index)->nprobe = 16;
  a->search(1, x.data() + 123 * kD, 5, dis.data(), lab.data());
  EXPECT_EQ(lab[0], 123);
  EXPECT_EQ(dis[0], 0.0f);
}

// add_ivf writes IndexIVFPQ codes itself (faster encoder, same bytes): with explicit ids and a
// direct map, lists, ids, reconstruct and remove_ids must equal faiss's own add.
TEST(PluginIvf, PqAddWithIdsAndDirectMapEqualsFaiss) {
  const int64_t n = 3000;
  const std::vector<float> x = blobs(n, kD, 16, 14);
  auto a = flashkm::index_factory(kD, "IVF16,PQ8np", faiss::METRIC_L2);
  train_ivf(a.get(), n, x.data());
  auto b = faiss_index_with_centroids(a.get(), "IVF16,PQ8np", n, x.data());
  // Two empty trained copies for the sequential-id case below (no second PQ training).
  std::unique_ptr<faiss::Index> c(faiss::clone_index(b.get())), d2(faiss::clone_index(b.get()));
  std::vector<idx_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = 1000003 * (i % 7) + 5 * i;  // not in order
  for (faiss::Index* index : {a.get(), b.get()})
    ivf_of(index)->set_direct_map_type(faiss::DirectMap::Hashtable);
  add_ivf(a.get(), n / 2, x.data(), ids.data());
  add_ivf(a.get(), n - n / 2, x.data() + n / 2 * kD, ids.data() + n / 2);
  b->add_with_ids(n, x.data(), ids.data());
  ASSERT_EQ(a->ntotal, n);
  const faiss::InvertedLists* la = ivf_of(a.get())->invlists;
  const faiss::InvertedLists* lb = ivf_of(b.get())->invlists;
  for (int64_t l = 0; l < 16; ++l) {
    ASSERT_EQ(la->list_size(l), lb->list_size(l)) << "list " << l;
    const size_t sz = la->list_size(l);
    EXPECT_EQ(0, std::memcmp(la->get_ids(l), lb->get_ids(l), sz * sizeof(idx_t)));
    EXPECT_EQ(0, std::memcmp(la->get_codes(l), lb->get_codes(l), sz * la->code_size));
  }
  std::vector<float> ra(kD), rb(kD);
  for (int64_t i : {int64_t(0), int64_t(1), n / 2, n - 1}) {
    a->reconstruct(ids[i], ra.data());
    b->reconstruct(ids[i], rb.data());
    EXPECT_EQ(ra, rb) << "id " << ids[i];
  }
  faiss::IDSelectorArray sel(3, ids.data() + 10);
  EXPECT_EQ(a->remove_ids(sel), 3u);
  EXPECT_EQ(b->remove_ids(sel), 3u);
  EXPECT_EQ(a->ntotal, n - 3);
  EXPECT_THROW(a->reconstruct(ids[10], ra.data()), faiss::FaissException);
  // Sequential ids (no ids given) continue from ntotal, as faiss numbers them.
  add_ivf(c.get(), 100, x.data());
  add_ivf(c.get(), 100, x.data() + 100 * kD);
  ivf_of(c.get())->make_direct_map(true);
  c->reconstruct(150, ra.data());
  d2->add(200, x.data());
  ivf_of(d2.get())->make_direct_map(true);
  d2->reconstruct(150, rb.data());
  EXPECT_EQ(ra, rb);
}

// Sub-vectors of 16 dimensions and more: faiss encodes them through BLAS distance tables, so
// add_ivf must leave their encoding to faiss (flashkm's encoder reproduces the per-vector loop
// of shorter sub-vectors only). Data far from the origin without residuals makes the two
// roundings pick different codes, so any other encoder would show here. Both sides get the
// same (exact) list assignment.
TEST(PluginIvf, PqAddWithLongSubvectorsEqualsFaiss) {
  const int64_t n = 3000, d = 32;
  std::vector<float> x = blobs(n, d, 40, 16, 1.0);
  for (float& v : x) v += 1000.f;
  auto a = flashkm::index_factory(int(d), "IVF4,PQ2np", faiss::METRIC_L2);
  auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(ivf_of(a.get()));
  ASSERT_NE(ivfpq, nullptr);
  ivfpq->by_residual = false;
  train_ivf(a.get(), n, x.data());
  std::unique_ptr<faiss::Index> b(faiss::clone_index(a.get()));
  add_ivf(a.get(), n, x.data());
  // faiss's own coarse assignment would differ too (float32 at 1000): give it flashkm's.
  KMeansParams kp;
  kp.n_clusters = 4;
  kp.device = Device::CPU;
  KMeans km(d, kp);
  km.set_centroids(coarse_centroids(a.get()));
  std::vector<int32_t> lab(n);
  km.assign(n, x.data(), lab.data());
  const std::vector<idx_t> lists(lab.begin(), lab.end());
  ivf_of(b.get())->add_core(n, x.data(), nullptr, lists.data());
  const faiss::InvertedLists* la = ivf_of(a.get())->invlists;
  const faiss::InvertedLists* lb = ivf_of(b.get())->invlists;
  for (int64_t l = 0; l < 4; ++l) {
    ASSERT_EQ(la->list_size(l), lb->list_size(l)) << "list " << l;
    EXPECT_EQ(0, std::memcmp(la->get_codes(l), lb->get_codes(l), la->list_size(l) * 2))
        << "codes of list " << l;
  }
}

// PQ codebooks: faiss's k-means loop with flashkm's exact assignment (flash_codebooks, the
// default) must be flashkm's own Lloyd on each sub-vector slice from the same init (faiss's
// draw, seed 1234, its 25 iterations). The data sit far from the origin (PQ on raw vectors,
// by_residual off), where faiss's own float32 |x|^2 + |c|^2 - 2 x.c assignment is close to
// arbitrary, so a run that did not use the exact assignment could not match. Centroids are
// compared in absolute terms, with a tolerance for faiss's float32 centroid sums.
TEST(PluginIvf, FlashCodebooksAreFlashkmLloydPerSubspace) {
  const int64_t n = 4000, d = 16, M = 4, dsub = d / M, ksub = 64;
  const float offset = 3000.f;
  std::vector<float> x = blobs(n, d, 64, 15, 1.0);
  for (float& v : x) v += offset;
  double worst[2];
  for (bool flash : {true, false}) {
    auto a = flashkm::index_factory(int(d), "IVF4,PQ4x6np", faiss::METRIC_L2);
    auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(ivf_of(a.get()));
    ASSERT_NE(ivfpq, nullptr);
    ivfpq->by_residual = false;
    IVFTrainParams p;
    p.flash_codebooks = flash;
    train_ivf(a.get(), n, x.data(), p);
    EXPECT_EQ(ivfpq->pq.assign_index, nullptr);
    worst[flash ? 0 : 1] = 0;
    for (int64_t m = 0; m < M; ++m) {
      std::vector<float> slice(n * dsub);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < dsub; ++j) slice[i * dsub + j] = x[i * d + m * dsub + j];
      KMeansParams kp;
      kp.n_clusters = int(ksub);
      kp.max_iter = ivfpq->pq.cp.niter;
      kp.seed = uint64_t(ivfpq->pq.cp.seed);
      kp.device = Device::CPU;
      const KMeansResult r = KMeans(dsub, kp).fit(n, slice.data());
      for (int64_t c = 0; c < ksub; ++c)
        for (int64_t j = 0; j < dsub; ++j) {
          const double diff = std::fabs(double(r.centroids[c * dsub + j]) -
                                        double(ivfpq->pq.get_centroids(m, c)[j]));
          worst[flash ? 0 : 1] = std::max(worst[flash ? 0 : 1], diff);
        }
    }
  }
  // faiss sums centroids in float32: at 3000 that moves them by ~1e-2 and flips a few
  // near-ties over 25 iterations (0.13 measured; 5e-6 without the offset), while faiss's own
  // assignment ends 16 away (measured).
  EXPECT_LT(worst[0], 0.5) << "flash codebooks differ from flashkm's Lloyd";
  EXPECT_GT(worst[1], 2.0) << "faiss's own float32 assignment should not match here";
}

TEST(PluginIvf, CallerMistakesThrowClearErrors) {
  const std::vector<float> x = blobs(1000, kD, 8, 10);
  EXPECT_THROW(flashkm::index_factory(kD, "IVF16,Bogus7", faiss::METRIC_L2), Error);
  EXPECT_THROW(flashkm::index_factory(kD, "IVF16(PQ4),Flat", faiss::METRIC_L2), Error);
  EXPECT_THROW(flashkm::index_factory(0, "IVF16,Flat", faiss::METRIC_L2), Error);
  EXPECT_THROW(flashkm::index_factory(kD, "IVF16,Flat", faiss::METRIC_L1), Error);

  faiss::IndexFlatL2 flat(kD);
  EXPECT_THROW(train_ivf(&flat, 1000, x.data()), Error);
  EXPECT_THROW(add_ivf(&flat, 1000, x.data()), Error);

  auto a = flashkm::index_factory(kD, "IVF64,Flat", faiss::METRIC_L2);
  EXPECT_THROW(train_ivf(a.get(), 63, x.data()), Error);  // n < nlist
  EXPECT_THROW(add_ivf(a.get(), 10, x.data()), Error);    // not trained
  IVFTrainParams wrong_init;
  wrong_init.init = Init::Given;
  wrong_init.init_centroids.assign(64 * (kD - 1), 0.f);  // centroids of the wrong dimension
  EXPECT_THROW(train_ivf(a.get(), 1000, x.data(), wrong_init), Error);

  std::vector<float> bad = x;
  bad[17 * kD + 3] = std::numeric_limits<float>::quiet_NaN();
  try {
    train_ivf(a.get(), 1000, bad.data());
    ADD_FAILURE() << "NaN training data accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 17"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a->train(1000, bad.data()), Error);  // the index_factory route checks as well

  train_ivf(a.get(), 1000, x.data());
  EXPECT_THROW(add_ivf(a.get(), 1000, bad.data()), Error);
  add_ivf(a.get(), 1000, x.data());
  EXPECT_THROW(train_ivf(a.get(), 1000, x.data()), Error);  // already holds vectors
}

TEST(PluginFlashAssignIndex, OneNearestIsExactAndKNearestIsFaiss) {
  const std::vector<float> c = blobs(100, 20, 100, 12, 0.5);
  const std::vector<float> x = blobs(3000, 20, 100, 13, 8.0);
  for (faiss::MetricType m : {faiss::METRIC_L2, faiss::METRIC_INNER_PRODUCT}) {
    FlashAssignIndex fa(20, m);
    fa.add(40, c.data());
    fa.add(60, c.data() + 40 * 20);
    ASSERT_EQ(fa.ntotal, 100);
    std::vector<float> dis(3000);
    std::vector<idx_t> lab(3000);
    fa.search(3000, x.data(), 1, dis.data(), lab.data());
    const auto ref =
        test::knn_reference(x.data(), 3000, c.data(), 100, 20, 1, m == faiss::METRIC_INNER_PRODUCT);
    for (int64_t i = 0; i < 3000; ++i) {
      ASSERT_EQ(lab[i], ref[i]) << "row " << i << " metric " << m;
      double s = 0;
      for (int j = 0; j < 20; ++j) {
        const double a = x[i * 20 + j], b = c[lab[i] * 20 + j];
        s += m == faiss::METRIC_L2 ? (a - b) * (a - b) : a * b;
      }
      ASSERT_NEAR(dis[i], s, 1e-5 * (1 + std::fabs(s))) << "row " << i;
    }

    faiss::IndexFlat flat(20, m);
    flat.add(100, c.data());
    std::vector<float> d1(3000 * 5), d2(3000 * 5);
    std::vector<idx_t> l1(3000 * 5), l2(3000 * 5);
    fa.search(3000, x.data(), 5, d1.data(), l1.data());
    flat.search(3000, x.data(), 5, d2.data(), l2.data());
    EXPECT_EQ(l1, l2);
  }
}

// As Level1Quantizer::clustering_index, the adapter makes faiss's own k-means loop assign with
// flashkm: same centroids as faiss's loop with its own IndexFlat, from the same random init.
TEST(PluginFlashAssignIndex, WorksAsClusteringIndex) {
  const std::vector<float> x = blobs(kN, kD, 64, 14);
  FlashAssignIndex fa(kD, faiss::METRIC_L2);
  std::unique_ptr<faiss::Index> f1(faiss::index_factory(kD, "IVF32,Flat"));
  ivf_of(f1.get())->clustering_index = &fa;
  ivf_of(f1.get())->cp.max_points_per_centroid = 1 << 30;
  f1->train(kN, x.data());
  std::unique_ptr<faiss::Index> f2(faiss::index_factory(kD, "IVF32,Flat"));
  ivf_of(f2.get())->cp.max_points_per_centroid = 1 << 30;
  f2->train(kN, x.data());
  EXPECT_EQ(fa.ntotal, kNlist);  // faiss added the final centroids to it
  EXPECT_LT(test::max_rel_diff(coarse_centroids(f1.get()), coarse_centroids(f2.get())), 1e-5);
}

TEST(PluginFlashAssignIndex, EmptyIndexPadsAndBadArgumentsThrow) {
  FlashAssignIndex fa(4, faiss::METRIC_L2);
  const float q[4] = {1, 2, 3, 4};
  float dis[2];
  idx_t lab[2];
  fa.search(1, q, 2, dis, lab);
  EXPECT_EQ(lab[0], -1);
  EXPECT_EQ(lab[1], -1);
  EXPECT_THROW(fa.search(1, q, 0, dis, lab), Error);
  const float nan4[4] = {0, std::numeric_limits<float>::quiet_NaN(), 0, 0};
  EXPECT_THROW(fa.add(1, nan4), Error);
  EXPECT_THROW(FlashAssignIndex(4, faiss::METRIC_L1), Error);
  fa.add(1, q);
  EXPECT_THROW(fa.reconstruct(1, dis), Error);
}

}  // namespace
}  // namespace flashkm
