// IvfIndex end to end: search through RocksDB lists equals an in-memory faiss index built from
// the same parameters and vectors; add/upsert/remove; open checks; recluster; export/import;
// readers during writes.
#include <faiss/AutoTune.h>
#include <faiss/IVFlib.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <gtest/gtest.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "flashkm/index.h"
#include "index/add_profile.h"
#include "index/keys.h"
#include "index/store.h"
#include "manifest.pb.h"
#include "tests/index/index_test_util.h"

namespace flashkm {
namespace {

using testing::TempDir;

constexpr int kD = 16;

IvfTrainParams quick_train() {
  IvfTrainParams p;
  p.kmeans.max_iter = 6;
  p.kmeans.device = Device::CPU;
  return p;
}

// The trained parameters (quantizer, codebooks) of idx, read back through a stock faiss file.
std::unique_ptr<faiss::IndexIVF> exported(const IvfIndex& idx, const std::string& path) {
  idx.export_faiss(path);
  return std::unique_ptr<faiss::IndexIVF>(
      dynamic_cast<faiss::IndexIVF*>(faiss::read_index(path.c_str())));
}

// Asserts that idx answers every query exactly like ref (labels and distances).
void expect_same_as(const IvfIndex& idx, const faiss::IndexIVF& ref, const std::vector<float>& xq,
                    int k, int nprobe) {
  int64_t nq = int64_t(xq.size()) / ref.d;
  std::vector<float> da(nq * k), db(nq * k);
  std::vector<int64_t> la(nq * k), lb(nq * k);
  idx.search(nq, xq.data(), k, nprobe, da.data(), la.data());
  faiss::SearchParametersIVF p;
  p.nprobe = size_t(nprobe);
  ref.search(nq, xq.data(), k, db.data(), lb.data(), &p);
  for (int64_t i = 0; i < nq * k; ++i) {
    ASSERT_EQ(la[i], lb[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
    ASSERT_EQ(da[i], db[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
  }
}

// Oracle: an in-memory index with idx's trained parameters holding exactly `vectors`.
std::unique_ptr<faiss::IndexIVF> oracle(const IvfIndex& idx, const TempDir& tmp,
                                        const std::map<int64_t, std::vector<float>>& vectors) {
  auto params = exported(idx, tmp.file("params.faiss"));
  std::vector<float> x;
  std::vector<int64_t> ids;
  for (const auto& kv : vectors) {
    ids.push_back(kv.first);
    x.insert(x.end(), kv.second.begin(), kv.second.end());
  }
  return testing::in_memory_reference(*params, int64_t(ids.size()), x.data(), ids.data());
}

class IvfIndexParity : public ::testing::TestWithParam<const char*> {};

TEST_P(IvfIndexParity, SearchEqualsInMemoryBeforeAndAfterReopen) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int64_t n = 3000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 30, 21);
  std::vector<float> xq = testing::skewed_blobs(40, kD, 30, 22);
  std::map<int64_t, std::vector<float>> vectors;
  for (int64_t i = 0; i < n; ++i) vectors[i].assign(&x[i * kD], &x[(i + 1) * kD]);
  {
    auto idx = IvfIndex::create(dir, kD, GetParam());
    idx->train(n, x.data(), quick_train());
    EXPECT_EQ(idx->add(n / 2, x.data()), 0);
    EXPECT_EQ(idx->add(n - n / 2, x.data() + (n / 2) * kD), n / 2);
    EXPECT_EQ(idx->ntotal(), n);
    auto ref = oracle(*idx, tmp, vectors);
    for (int nprobe : {1, 5, 32}) expect_same_as(*idx, *ref, xq, 10, nprobe);
    IvfIndexInfo info = idx->info();
    EXPECT_EQ(info.generation, 1u);
    EXPECT_EQ(info.nlist, 32);
    int64_t sum = 0;
    for (size_t l = 0; l < info.list_sizes.size(); ++l) {
      sum += info.list_sizes[l];
      EXPECT_EQ(info.list_sizes[l], int64_t(ref->invlists->list_size(l))) << "list " << l;
    }
    EXPECT_EQ(sum, n);
    EXPECT_GT(info.imbalance, 1.2);  // skewed data
  }
  for (bool read_only : {false, true}) {
    IvfIndexOptions o;
    o.read_only = read_only;
    o.list_cache_bytes = read_only ? 0 : o.list_cache_bytes;  // also run the uncached path
    auto idx = IvfIndex::open(dir, o);
    EXPECT_EQ(idx->ntotal(), n);
    auto ref = oracle(*idx, tmp, vectors);
    for (int nprobe : {1, 7}) expect_same_as(*idx, *ref, xq, 10, nprobe);
    std::vector<float> v(kD);
    ASSERT_TRUE(idx->get_vector(1234, v.data()));
    EXPECT_EQ(v, vectors[1234]);
    EXPECT_FALSE(idx->get_vector(n + 5, v.data()));
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, IvfIndexParity,
                         ::testing::Values("IVF32,Flat", "IVF32,PQ4x4np", "IVF32,PQ4np",
                                           "IVF32,SQ8"));

TEST(IvfIndex, InnerProductMetric) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int64_t n = 2000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 20, 25);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 20, 26);
  std::map<int64_t, std::vector<float>> vectors;
  for (int64_t i = 0; i < n; ++i) vectors[i].assign(&x[i * kD], &x[(i + 1) * kD]);
  auto idx = IvfIndex::create(dir, kD, "IVF16,Flat", Metric::InnerProduct);
  idx->train(n, x.data(), quick_train());
  idx->add(n, x.data());
  EXPECT_EQ(idx->info().metric, Metric::InnerProduct);
  auto ref = oracle(*idx, tmp, vectors);
  EXPECT_EQ(ref->metric_type, faiss::METRIC_INNER_PRODUCT);
  for (int nprobe : {1, 16}) expect_same_as(*idx, *ref, xq, 10, nprobe);
  idx.reset();
  auto again = IvfIndex::open(dir);
  EXPECT_EQ(again->info().metric, Metric::InnerProduct);
  expect_same_as(*again, *ref, xq, 10, 4);
}

TEST(IvfIndex, AddUpsertRemove) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(2000, kD, 20, 31);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 20, 32);
  auto idx = IvfIndex::create(dir, kD, "IVF16,Flat");
  idx->train(2000, x.data(), quick_train());
  std::map<int64_t, std::vector<float>> vectors;
  std::vector<int64_t> ids(1000);
  for (int i = 0; i < 1000; ++i) {
    ids[i] = 10 * i + 5;
    vectors[ids[i]].assign(&x[i * kD], &x[(i + 1) * kD]);
  }
  idx->add(1000, x.data(), ids.data());
  // A duplicate id (present, or twice in one call) rejects the whole call.
  std::vector<int64_t> dup = {1, 15};
  EXPECT_THROW(idx->add(2, x.data() + 1000 * kD, dup.data()), Error);
  std::vector<int64_t> twice = {2, 2};
  EXPECT_THROW(idx->add(2, x.data() + 1000 * kD, twice.data()), Error);
  std::vector<int64_t> neg = {-3};
  EXPECT_THROW(idx->add(1, x.data(), neg.data()), Error);
  EXPECT_EQ(idx->ntotal(), 1000);
  // Without ids: continue after the largest id.
  EXPECT_EQ(idx->add(10, x.data() + 1000 * kD), 9996);
  for (int i = 0; i < 10; ++i) vectors[9996 + i].assign(&x[(1000 + i) * kD], &x[(1001 + i) * kD]);
  // Upsert: 100 existing ids get vectors from elsewhere in the data (other lists), 5 are new.
  std::vector<int64_t> up;
  for (int i = 0; i < 100; ++i) up.push_back(10 * (i * 7 % 1000) + 5);
  for (int i = 0; i < 5; ++i) up.push_back(50000 + i);
  const float* src = x.data() + 1500 * kD;
  idx->upsert(int64_t(up.size()), src, up.data());
  for (size_t i = 0; i < up.size(); ++i) vectors[up[i]].assign(src + i * kD, src + (i + 1) * kD);
  EXPECT_EQ(idx->ntotal(), int64_t(vectors.size()));
  // Remove: some present ids, some absent (ignored), one repeated.
  std::vector<int64_t> rm = {5, 15, 15, 777777, 50001};
  for (int i = 0; i < 200; ++i) rm.push_back(10 * (3 * i) + 5);
  int64_t expected_removed = 0;
  for (int64_t id : std::set<int64_t>(rm.begin(), rm.end())) expected_removed += vectors.erase(id);
  EXPECT_EQ(idx->remove(int64_t(rm.size()), rm.data()), expected_removed);
  EXPECT_EQ(idx->ntotal(), int64_t(vectors.size()));
  auto ref = oracle(*idx, tmp, vectors);
  for (int nprobe : {1, 4, 16}) expect_same_as(*idx, *ref, xq, 20, nprobe);
  idx.reset();
  auto again = IvfIndex::open(dir);
  EXPECT_EQ(again->ntotal(), int64_t(vectors.size()));
  expect_same_as(*again, *ref, xq, 20, 16);
  std::vector<float> v(kD);
  EXPECT_FALSE(again->get_vector(15, v.data()));
  for (int64_t id : up) {
    if (!vectors.count(id)) continue;
    ASSERT_TRUE(again->get_vector(id, v.data())) << "id " << id;
    EXPECT_EQ(v, vectors[id]) << "id " << id;
  }
}

TEST(IvfIndex, CallerMistakesAreErrors) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(500, kD, 5, 41);
  EXPECT_THROW(IvfIndex::create(dir, kD, "Flat"), Error);
  EXPECT_THROW(IvfIndex::create(dir, kD, "IVF8_HNSW4,Flat"), Error);
  EXPECT_THROW(IvfIndex::create(dir, kD, "PCA8,Flat"), Error);             // no IVF
  EXPECT_THROW(IvfIndex::create(dir, kD, "PCA8,IVF8_HNSW4,Flat"), Error);  // non-flat quantizer
  EXPECT_THROW(IvfIndex::create(dir, 0, "IVF8,Flat"), Error);
  EXPECT_THROW(IvfIndex::open(tmp.file("nothing-here")), Error);
  EXPECT_FALSE(IvfIndex::exists(dir));
  auto idx = IvfIndex::create(dir, kD, "IVF8,Flat");
  EXPECT_TRUE(IvfIndex::exists(dir));
  EXPECT_THROW(IvfIndex::create(dir, kD, "IVF8,Flat"), Error);  // exists already
  EXPECT_THROW(idx->add(10, x.data()), Error);                  // not trained
  std::vector<float> d(10);
  std::vector<int64_t> l(10);
  EXPECT_THROW(idx->search(1, x.data(), 10, 1, d.data(), l.data()), Error);
  std::vector<float> bad(x.begin(), x.end());
  bad[17] = std::nanf("");
  EXPECT_THROW(idx->train(500, bad.data(), quick_train()), Error);
  EXPECT_THROW(idx->train(4, x.data(), quick_train()), Error);  // fewer points than lists
  EXPECT_EQ(idx->info().generation, 0u);
  idx->train(500, x.data(), quick_train());
  EXPECT_THROW(idx->train(500, x.data(), quick_train()), Error);
  EXPECT_THROW(idx->add(1, bad.data() + 16), Error);
  EXPECT_THROW(idx->search(1, x.data(), 0, 1, d.data(), l.data()), Error);
  EXPECT_THROW(idx->recluster(100000), Error);  // more lists than vectors
  EXPECT_EQ(idx->ntotal(), 0);
}

TEST(IvfIndex, OneWriterManyReaders) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(300, kD, 5, 51);
  auto idx = IvfIndex::create(dir, kD, "IVF8,Flat");
  idx->train(300, x.data(), quick_train());
  idx->add(300, x.data());
  try {
    IvfIndex::open(dir);
    FAIL() << "a second writer must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already open for writing"), std::string::npos)
        << e.what();
  }
  IvfIndexOptions ro;
  ro.read_only = true;
  auto reader = IvfIndex::open(dir, ro);
  EXPECT_EQ(reader->ntotal(), 300);
  EXPECT_THROW(reader->add(1, x.data()), Error);
  EXPECT_THROW(reader->recluster(0), Error);
  idx->add(10, x.data());  // the reader keeps the state it opened
  EXPECT_EQ(reader->ntotal(), 300);
  idx->close();
  auto writer = IvfIndex::open(dir);  // free again once closed
  EXPECT_EQ(writer->ntotal(), 310);
}

// Rewrites the manifest of dir through raw RocksDB (the index must be closed).
void edit_manifest(const std::string& dir, const std::function<void(std::string*)>& edit) {
  std::unique_ptr<index::Store> store;
  ASSERT_TRUE(index::Store::open(dir, {}, &store).ok());
  std::string value;
  ASSERT_TRUE(store->db()->Get({}, store->meta(), index::kManifestKey, &value).ok());
  edit(&value);
  rocksdb::WriteBatch b;
  ASSERT_TRUE(b.Put(store->meta(), index::kManifestKey, value).ok());
  ASSERT_TRUE(store->write(&b).ok());
}

std::string raw_manifest(const std::string& dir) {
  std::unique_ptr<index::Store> store;
  index::StoreOptions o;
  o.read_only = true;
  EXPECT_TRUE(index::Store::open(dir, o, &store).ok());
  std::string value;
  EXPECT_TRUE(store->db()->Get({}, store->meta(), index::kManifestKey, &value).ok());
  return value;
}

void expect_open_error(const std::string& dir, const std::string& needle, IvfIndexOptions o = {}) {
  std::string before = raw_manifest(dir);
  try {
    IvfIndex::open(dir, o);
    ADD_FAILURE() << "expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_EQ(raw_manifest(dir), before) << "a refused open must not write";
}

TEST(IvfIndex, OpenRefusesMismatchedOrCorruptManifests) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(400, kD, 5, 61);
  {
    auto idx = IvfIndex::create(dir, kD, "IVF8,PQ4x4np");
    idx->train(400, x.data(), quick_train());
    idx->add(400, x.data());
  }
  IvfIndexOptions wrong_d;
  wrong_d.expected_d = kD + 1;
  expect_open_error(dir, "expected d = 17", wrong_d);

  auto with = [&](const std::function<void(index::proto::Manifest*)>& f) {
    return [f](std::string* v) {
      index::proto::Manifest m;
      ASSERT_TRUE(m.ParseFromString(*v));
      f(&m);
      *v = m.SerializeAsString();
    };
  };
  std::string good = raw_manifest(dir);
  edit_manifest(dir, with([](index::proto::Manifest* m) { m->set_format_version(99); }));
  expect_open_error(dir, "format version 99");
  edit_manifest(dir, [&](std::string* v) { *v = good; });
  edit_manifest(dir, with([](index::proto::Manifest* m) { m->set_d(kD * 2); }));
  expect_open_error(dir, "does not match the stored faiss index");
  edit_manifest(dir, [&](std::string* v) { *v = good; });
  edit_manifest(dir, with([](index::proto::Manifest* m) {
                  m->set_nlist(9);
                  m->set_factory("IVF9,PQ4x4np");
                }));
  expect_open_error(dir, "nlist = 9");
  edit_manifest(dir, [&](std::string* v) { *v = good; });
  edit_manifest(dir, with([](index::proto::Manifest* m) { m->set_code_size(3); }));
  expect_open_error(dir, "code size = 3");
  edit_manifest(dir, [&](std::string* v) { *v = good; });
  edit_manifest(dir, with([](index::proto::Manifest* m) { m->set_ntotal(401); }));
  expect_open_error(dir, "list sizes add up to 400");
  edit_manifest(dir, [](std::string* v) { *v = "\xff\xff garbage"; });
  expect_open_error(dir, "does not parse");
  edit_manifest(dir, [&](std::string* v) { *v = good; });
  EXPECT_EQ(IvfIndex::open(dir)->ntotal(), 400);
}

// Every id of an exported index, over all lists (duplicates kept).
std::vector<int64_t> ids_in_lists(const IvfIndex& idx, const std::string& path) {
  auto f = exported(idx, path);
  std::vector<int64_t> ids;
  for (size_t l = 0; l < f->nlist; ++l) {
    size_t ls = f->invlists->list_size(l);
    const auto* p = f->invlists->get_ids(l);
    ids.insert(ids.end(), p, p + ls);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(IvfIndex, ReclusterKeepsEveryVectorOnce) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int64_t n = 2500;
  std::vector<float> x = testing::skewed_blobs(n, kD, 25, 71);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 25, 72);
  std::map<int64_t, std::vector<float>> vectors;
  for (int64_t i = 0; i < n; ++i) vectors[i].assign(&x[i * kD], &x[(i + 1) * kD]);
  auto idx = IvfIndex::create(dir, kD, "IVF16,PQ4x4np");
  idx->train(n / 5, x.data(), quick_train());  // trained on a fifth: re-clustering helps
  idx->add(n, x.data());
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(ids_in_lists(*idx, tmp.file("a.faiss")), all);

  idx->recluster(0, quick_train());  // same nlist: warm start from the current centroids
  IvfIndexInfo info = idx->info();
  EXPECT_EQ(info.generation, 2u);
  EXPECT_EQ(info.train_init, "given");
  EXPECT_EQ(info.n_train, n);
  EXPECT_EQ(info.max_iter, 6);
  EXPECT_EQ(info.seed, 1234u);
  EXPECT_EQ(ids_in_lists(*idx, tmp.file("b.faiss")), all);
  auto ref = oracle(*idx, tmp, vectors);
  expect_same_as(*idx, *ref, xq, 10, 4);

  idx->recluster(24, quick_train());  // new nlist: cold start
  info = idx->info();
  EXPECT_EQ(info.generation, 3u);
  EXPECT_EQ(info.nlist, 24);
  EXPECT_EQ(info.factory, "IVF24,PQ4x4np");
  EXPECT_EQ(info.train_init, "random");
  EXPECT_EQ(ids_in_lists(*idx, tmp.file("c.faiss")), all);
  ref = oracle(*idx, tmp, vectors);
  for (int nprobe : {1, 24}) expect_same_as(*idx, *ref, xq, 10, nprobe);
  // Writes keep working on the new generation, and it is what a reopen finds.
  idx->add(1, x.data());
  vectors[n].assign(x.data(), x.data() + kD);
  idx.reset();
  auto again = IvfIndex::open(dir);
  EXPECT_EQ(again->info().generation, 3u);
  EXPECT_EQ(again->ntotal(), n + 1);
  ref = oracle(*again, tmp, vectors);
  expect_same_as(*again, *ref, xq, 10, 24);
  again.reset();
  std::unique_ptr<index::Store> store;
  ASSERT_TRUE(index::Store::open(dir, {}, &store).ok());
  EXPECT_EQ(store->generations(), std::vector<uint64_t>{3});  // old generations are gone
}

// True when the staging folder of SST ingestions (index/keys.h) exists and holds nothing.
bool staging_is_empty(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir) / index::kIngestDir;
  return std::filesystem::is_directory(p) && std::filesystem::is_empty(p);
}

// Large adds and upserts are committed by SST ingestion (index/ingest_policy.h), small ones and
// removes by WriteBatches. Interleaved, they give exactly the in-memory faiss index of the final
// vectors (an ingested upsert that moves an id to another list deletes its old entry with a
// tombstone: no id is left in two lists), before and after reopen, with the list sizes and the
// raw vectors to match; no staging file outlives a call.
class IvfIndexIngest : public ::testing::TestWithParam<const char*> {};

TEST_P(IvfIndexIngest, IngestedAndBatchedWritesEqualInMemory) {
  testing::IngestMinVectors ingest_from(500);
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(5000, kD, 24, 101);
  std::vector<float> xq = testing::skewed_blobs(40, kD, 24, 102);
  auto idx = IvfIndex::create(dir, kD, GetParam());
  idx->train(5000, x.data(), quick_train());
  std::map<int64_t, std::vector<float>> vectors;
  auto keep = [&](int64_t n, const float* src, const int64_t* ids, int64_t first) {
    for (int64_t i = 0; i < n; ++i) {
      vectors[ids ? ids[i] : first + i].assign(src + i * kD, src + (i + 1) * kD);
    }
  };
  index::reset_add_profile();
  int64_t first = idx->add(1000, x.data());  // ingested
  keep(1000, x.data(), nullptr, first);
  EXPECT_TRUE(staging_is_empty(dir));
  first = idx->add(100, &x[1000 * kD]);  // batch
  keep(100, &x[1000 * kD], nullptr, first);
  // Ingested with ids given in descending order.
  std::vector<int64_t> ids(600);
  for (int64_t i = 0; i < 600; ++i) ids[i] = 90000 - 7 * i;
  idx->add(600, &x[1100 * kD], ids.data());
  keep(600, &x[1100 * kD], ids.data(), 0);
  // A duplicate rejects the whole (large) call and writes nothing.
  std::vector<int64_t> dup(600);
  for (int64_t i = 0; i < 600; ++i) dup[i] = 200000 + i;
  dup[599] = 90000;
  EXPECT_THROW(idx->add(600, &x[1700 * kD], dup.data()), Error);
  EXPECT_TRUE(staging_is_empty(dir));
  // Ingested upsert: 300 present ids get vectors from elsewhere (mostly other lists), 400 new.
  std::vector<int64_t> up;
  for (int64_t i = 0; i < 300; ++i) up.push_back(i % 2 ? 3 * i : 90000 - 7 * i);
  for (int64_t i = 0; i < 400; ++i) up.push_back(100000 + i);
  idx->upsert(700, &x[2300 * kD], up.data());
  keep(700, &x[2300 * kD], up.data(), 0);
  // Batched remove (present, absent) and upsert.
  std::vector<int64_t> rm = {0, 1, 2, 90000, 100399, 555555};
  for (int64_t i = 0; i < 150; ++i) rm.push_back(100000 + 2 * i);
  int64_t expected_removed = 0;
  for (int64_t id : std::set<int64_t>(rm.begin(), rm.end())) expected_removed += vectors.erase(id);
  EXPECT_EQ(idx->remove(int64_t(rm.size()), rm.data()), expected_removed);
  std::vector<int64_t> up2 = {5, 6, 100001, 300000};
  idx->upsert(4, &x[3000 * kD], up2.data());
  keep(4, &x[3000 * kD], up2.data(), 0);
  first = idx->add(1500, &x[3100 * kD]);  // ingested, ids after the largest
  EXPECT_EQ(first, 300001);
  keep(1500, &x[3100 * kD], nullptr, first);
  index::AddProfile prof = index::add_profile();
  EXPECT_EQ(prof.calls, 6);
  EXPECT_EQ(prof.ingested, 4) << "the SST path did not run";
  EXPECT_TRUE(staging_is_empty(dir));

  auto check = [&](const IvfIndex& i) {
    EXPECT_EQ(i.ntotal(), int64_t(vectors.size()));
    std::vector<int64_t> expect_ids;
    for (const auto& kv : vectors) expect_ids.push_back(kv.first);
    EXPECT_EQ(ids_in_lists(i, tmp.file("ids.faiss")), expect_ids);
    auto ref = oracle(i, tmp, vectors);
    IvfIndexInfo info = i.info();
    for (size_t l = 0; l < info.list_sizes.size(); ++l) {
      EXPECT_EQ(info.list_sizes[l], int64_t(ref->invlists->list_size(l))) << "list " << l;
    }
    for (int nprobe : {1, 5, 24}) expect_same_as(i, *ref, xq, 10, nprobe);
    std::vector<float> v(kD);
    for (const auto& kv : vectors) {
      ASSERT_TRUE(i.get_vector(kv.first, v.data())) << "id " << kv.first;
      ASSERT_EQ(v, kv.second) << "id " << kv.first;
    }
    for (int64_t id : {int64_t(0), int64_t(90000), int64_t(200000)}) {
      EXPECT_FALSE(i.get_vector(id, v.data())) << "id " << id;
    }
  };
  check(*idx);
  idx.reset();
  check(*IvfIndex::open(dir));
  IvfIndexOptions ro;
  ro.read_only = true;
  check(*IvfIndex::open(dir, ro));
  EXPECT_TRUE(staging_is_empty(dir));
}

INSTANTIATE_TEST_SUITE_P(Codes, IvfIndexIngest,
                         ::testing::Values("IVF24,Flat", "IVF24,PQ4np", "IVF24,SQ8"));

// While level 0 of a column family is crowded (index/ingest_policy.h lowers the threshold to
// one file here: the first ingestion leaves two in meta's level 0, its flushed memtable and
// the ingested file), large adds are committed by a WriteBatch and still give exactly the
// in-memory index; with RocksDB's own trigger back, they are ingested again.
TEST(IvfIndex, AddsFallBackToABatchWhileLevel0IsCrowded) {
  testing::IngestMinVectors ingest_from(200);
  testing::Level0CrowdedFiles crowded_from(1);
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(4000, kD, 24, 111);
  std::vector<float> xq = testing::skewed_blobs(40, kD, 24, 112);
  auto idx = IvfIndex::create(dir, kD, "IVF24,PQ4np");
  idx->train(4000, x.data(), quick_train());
  std::map<int64_t, std::vector<float>> vectors;
  index::reset_add_profile();
  const int calls = 6;
  for (int64_t b = 0; b < calls; ++b) {
    const float* src = &x[b * 300 * kD];
    const int64_t first = idx->add(300, src);
    for (int64_t i = 0; i < 300; ++i) vectors[first + i].assign(src + i * kD, src + (i + 1) * kD);
    EXPECT_TRUE(staging_is_empty(dir)) << "call " << b;
  }
  index::AddProfile prof = index::add_profile();
  EXPECT_EQ(prof.calls, calls);
  EXPECT_GE(prof.ingested, 1) << "the first add, on an empty level 0, is ingested";
  EXPECT_LT(prof.ingested, calls) << "level 0 is crowded, yet every add was ingested";
  auto check = [&](const IvfIndex& i) {
    EXPECT_EQ(i.ntotal(), int64_t(vectors.size()));
    auto ref = oracle(i, tmp, vectors);
    for (int nprobe : {1, 5, 24}) expect_same_as(i, *ref, xq, 10, nprobe);
    std::vector<float> v(kD);
    for (const auto& kv : vectors) {
      ASSERT_TRUE(i.get_vector(kv.first, v.data())) << "id " << kv.first;
      ASSERT_EQ(v, kv.second) << "id " << kv.first;
    }
  };
  check(*idx);
  {
    // A large add is ingested even into the crowded level 0 (one more file there rather than
    // a batch and a memtable of its whole size); a small one still is not.
    const int64_t row_bytes = sizeof(float) * kD + 4;  // raw vector and PQ4 code
    testing::AlwaysIngestBytes from(1000 * row_bytes);
    const int64_t ingested = index::add_profile().ingested;
    for (int64_t len : {int64_t(1000), int64_t(300)}) {
      const float* src = &x[2100 * kD + (len == 300 ? 1000 * kD : 0)];
      const int64_t first = idx->add(len, src);
      for (int64_t i = 0; i < len; ++i) vectors[first + i].assign(src + i * kD, src + (i + 1) * kD);
    }
    EXPECT_EQ(index::add_profile().ingested, ingested + 1);
    check(*idx);
  }
  prof = index::add_profile();
  index::set_level0_crowded_files(0);  // RocksDB's slowdown trigger (20 files)
  const float* src = &x[calls * 300 * kD];
  const int64_t first = idx->add(300, src);
  for (int64_t i = 0; i < 300; ++i) vectors[first + i].assign(src + i * kD, src + (i + 1) * kD);
  EXPECT_EQ(index::add_profile().ingested, prof.ingested + 1);
  check(*idx);
  idx.reset();
  check(*IvfIndex::open(dir));
}

// A search runs to completion while an ingestion's commit is held, and answers from the state
// before that add: nothing of the held batch. Held before the ingestion (its files complete, the
// writer lock taken) and after it (the batch already in RocksDB, the index's state not yet moved:
// a search that took a fresh snapshot there would see it), with an earlier add (held = 1000
// vectors after 1000) and as the first add after train(), whose lists file overlaps nothing
// (without a sequence number it would be visible to the search's earlier snapshot, with list
// sizes that say 0).
TEST(IvfIndex, SearchesProceedWhileAnIngestionIsHeld) {
  testing::IngestMinVectors ingest_from(500);
  std::vector<float> x = testing::skewed_blobs(3000, kD, 24, 121);
  std::vector<float> xq = testing::skewed_blobs(40, kD, 24, 122);
  for (index::AddPoint point : {index::AddPoint::kBeforeIngest, index::AddPoint::kAfterIngest}) {
    for (int64_t earlier : {int64_t(1000), int64_t(0)}) {
      SCOPED_TRACE("held at " + std::to_string(int(point)) + ", earlier adds " +
                   std::to_string(earlier));
      TempDir tmp;
      std::string dir = tmp.file("idx");
      auto idx = IvfIndex::create(dir, kD, "IVF24,SQ8");
      idx->train(3000, x.data(), quick_train());
      std::map<int64_t, std::vector<float>> vectors;
      if (earlier > 0) {
        const int64_t first = idx->add(earlier, x.data());
        for (int64_t i = 0; i < earlier; ++i) {
          vectors[first + i].assign(&x[i * kD], &x[(i + 1) * kD]);
        }
      }
      auto before = oracle(*idx, tmp, vectors);

      std::promise<void> reached, release;
      std::shared_future<void> released = release.get_future().share();
      std::atomic<bool> held{false};
      testing::AddHook hook([&](index::AddPoint p) {
        if (p != point || held.exchange(true)) return;
        reached.set_value();
        released.wait_for(std::chrono::seconds(120));  // never forever, whatever the test does
      });
      std::future<int64_t> adder =
          std::async(std::launch::async, [&] { return idx->add(1000, &x[1000 * kD]); });
      reached.get_future().wait();
      const int64_t nq = int64_t(xq.size()) / kD;
      const int k = 10;
      std::vector<float> dist(nq * k);
      std::vector<int64_t> labels(nq * k);
      std::future<void> search = std::async(std::launch::async, [&] {
        idx->search(nq, xq.data(), k, 24, dist.data(), labels.data());
      });
      // A deadlock detector, not a timing: a search that waits for the commit never finishes.
      const bool finished = search.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
      EXPECT_TRUE(finished) << "the search waited for the held ingestion";
      if (finished) EXPECT_EQ(idx->ntotal(), earlier) << "the held add is not visible yet";
      release.set_value();
      EXPECT_NO_THROW(search.get());
      const int64_t first = adder.get();
      std::vector<float> dref(nq * k);
      std::vector<int64_t> lref(nq * k);
      faiss::SearchParametersIVF p;
      p.nprobe = 24;
      before->search(nq, xq.data(), k, dref.data(), lref.data(), &p);
      EXPECT_EQ(labels, lref) << "the search saw part or all of the held batch";
      EXPECT_EQ(dist, dref);
      for (int64_t i = 0; i < 1000; ++i) {
        vectors[first + i].assign(&x[(1000 + i) * kD], &x[(1001 + i) * kD]);
      }
      EXPECT_EQ(idx->ntotal(), earlier + 1000);
      expect_same_as(*idx, *oracle(*idx, tmp, vectors), xq, k, 24);
    }
  }
}

// Ids are handed out under the writer lock, in commit order: an add that commits while a
// large one is between its encoding and its commit takes the ids that followed the largest
// one when the large add started, and the large add's raw vectors, lists and id map all go
// under the ids it really gets.
TEST(IvfIndex, AnAddCommittedWhileAnotherEncodesMovesItsIds) {
  testing::IngestMinVectors ingest_from(500);
  TempDir tmp;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(3000, kD, 24, 131);
  std::vector<float> xq = testing::skewed_blobs(40, kD, 24, 132);
  auto idx = IvfIndex::create(dir, kD, "IVF24,Flat");
  idx->train(3000, x.data(), quick_train());
  index::reset_add_profile();
  bool inner_done = false;
  int64_t inner_first = -1;
  int64_t outer_first = -1;
  {
    testing::AddHook hook([&](index::AddPoint p) {
      if (p != index::AddPoint::kEncoded || inner_done) return;
      inner_done = true;  // the outer add has encoded; this one commits before it locks
      inner_first = idx->add(50, &x[2000 * kD]);
    });
    outer_first = idx->add(1000, x.data());
  }
  EXPECT_EQ(inner_first, 0);
  EXPECT_EQ(outer_first, 50);
  index::AddProfile prof = index::add_profile();
  EXPECT_EQ(prof.calls, 2);
  EXPECT_EQ(prof.ingested, 1);
  EXPECT_TRUE(staging_is_empty(dir));
  std::map<int64_t, std::vector<float>> vectors;
  for (int64_t i = 0; i < 50; ++i) vectors[i].assign(&x[(2000 + i) * kD], &x[(2001 + i) * kD]);
  for (int64_t i = 0; i < 1000; ++i) vectors[50 + i].assign(&x[i * kD], &x[(i + 1) * kD]);
  EXPECT_EQ(idx->ntotal(), 1050);
  std::vector<float> v(kD);
  for (const auto& kv : vectors) {
    ASSERT_TRUE(idx->get_vector(kv.first, v.data())) << "id " << kv.first;
    ASSERT_EQ(v, kv.second) << "id " << kv.first;
  }
  expect_same_as(*idx, *oracle(*idx, tmp, vectors), xq, 10, 24);
}

TEST(IvfIndex, ExportImportRoundTrip) {
  TempDir tmp;
  const int64_t n = 1500;
  std::vector<float> x = testing::skewed_blobs(n, kD, 10, 81);
  std::vector<float> xq = testing::skewed_blobs(25, kD, 10, 82);
  for (const char* factory : {"IVF12,Flat", "IVF12,SQ8"}) {
    std::string dir = tmp.file(std::string("src-") + factory);
    auto idx = IvfIndex::create(dir, kD, factory);
    idx->train(n, x.data(), quick_train());
    std::vector<int64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 7 * i + 3;
    idx->add(n, x.data(), ids.data());
    std::string file = tmp.file(std::string(factory) + ".faiss");
    auto f = exported(*idx, file);
    EXPECT_EQ(f->ntotal, n);
    for (int nprobe : {1, 12}) expect_same_as(*idx, *f, xq, 10, nprobe);
    auto imp = IvfIndex::import_faiss(file, tmp.file(std::string("dst-") + factory));
    EXPECT_EQ(imp->ntotal(), n);
    EXPECT_EQ(imp->info().factory, factory);
    EXPECT_EQ(imp->info().vectors_reconstructed, std::string(factory) != "IVF12,Flat");
    for (int nprobe : {1, 12}) expect_same_as(*imp, *f, xq, 10, nprobe);
    std::vector<float> v(kD);
    ASSERT_TRUE(imp->get_vector(7 * 5 + 3, v.data()));
    if (std::string(factory) == "IVF12,Flat") {
      EXPECT_EQ(0, std::memcmp(v.data(), &x[5 * kD], sizeof(float) * kD));
    }
    EXPECT_EQ(imp->add(1, x.data()), 7 * (n - 1) + 3 + 1);
  }
  EXPECT_THROW(IvfIndex::import_faiss(tmp.file("missing.faiss"), tmp.file("x")), Error);
}

TEST(IvfIndex, ImportOfAStockFaissIndexKeepsItsListsAndCodes) {
  TempDir tmp;
  const int64_t n = 2000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 10, 83);
  std::vector<float> xq = testing::skewed_blobs(25, kD, 10, 84);
  // Trained and filled by faiss alone (its own k-means and assignment), lossy codes.
  std::unique_ptr<faiss::IndexIVF> f(
      dynamic_cast<faiss::IndexIVF*>(faiss::index_factory(kD, "IVF10,PQ4x4np")));
  f->train(n, x.data());
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = n - i;  // descending: lists are re-sorted by id
  f->add_with_ids(n, x.data(), ids.data());
  std::string file = tmp.file("stock.faiss");
  faiss::write_index(f.get(), file.c_str());
  auto imp = IvfIndex::import_faiss(file, tmp.file("imported"));
  EXPECT_TRUE(imp->info().vectors_reconstructed);
  EXPECT_EQ(imp->info().factory, "IVF10,PQ4x4np");
  // Same lists and codes, in id order: compare against faiss with its lists sorted by id.
  auto sorted = exported(*imp, tmp.file("back.faiss"));
  for (size_t l = 0; l < f->nlist; ++l) {
    ASSERT_EQ(sorted->invlists->list_size(l), f->invlists->list_size(l)) << "list " << l;
    std::map<int64_t, std::vector<uint8_t>> a, b;
    for (size_t o = 0; o < f->invlists->list_size(l); ++o) {
      const uint8_t* ca = f->invlists->get_codes(l) + o * f->code_size;
      const uint8_t* cb = sorted->invlists->get_codes(l) + o * f->code_size;
      a[f->invlists->get_ids(l)[o]].assign(ca, ca + f->code_size);
      b[sorted->invlists->get_ids(l)[o]].assign(cb, cb + f->code_size);
    }
    ASSERT_EQ(a, b) << "list " << l;
  }
  for (int nprobe : {1, 10}) expect_same_as(*imp, *sorted, xq, 10, nprobe);

  // A file whose ids repeat is refused, and no directory is left behind.
  std::vector<int64_t> same = {7, 7};
  f->add_with_ids(2, x.data(), same.data());
  faiss::write_index(f.get(), file.c_str());
  EXPECT_THROW(IvfIndex::import_faiss(file, tmp.file("dup")), Error);
  EXPECT_FALSE(IvfIndex::exists(tmp.file("dup")));
}

// The write tests below run twice: every add committed by a WriteBatch, and every add committed
// by SST ingestion (index/ingest_policy.h).
class IvfIndexWrites : public ::testing::TestWithParam<int64_t> {};

std::string commit_path_name(const ::testing::TestParamInfo<int64_t>& p) {
  return p.param == 1 ? "Ingested" : "WriteBatch";
}

// Batches commit in order; a consistent snapshot therefore finds a prefix of them. Each query
// is one batch's marker vector (exact search: Flat, all lists probed).
TEST_P(IvfIndexWrites, SearchesDuringWritesSeeConsistentSnapshots) {
  testing::IngestMinVectors ingest_from(GetParam());
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int batches = 60, per = 50;
  std::vector<float> base = testing::skewed_blobs(batches * per, kD, 8, 91);
  auto idx = IvfIndex::create(dir, kD, "IVF8,Flat");
  idx->train(batches * per, base.data(), quick_train());
  std::atomic<bool> done{false};
  std::atomic<int64_t> searches{0}, failures{0};
  auto reader = [&] {
    std::vector<float> d(batches);
    std::vector<int64_t> l(batches);
    std::vector<float> q(batches * kD);
    for (int b = 0; b < batches; ++b)
      std::copy(&base[b * per * kD], &base[(b * per + 1) * kD], &q[b * kD]);
    while (!done.load()) {
      idx->search(batches, q.data(), 1, 8, d.data(), l.data());
      bool prefix = true, seen_missing = false;
      for (int b = 0; b < batches; ++b) {
        bool found = l[b] == int64_t(b) * per && d[b] == 0.f;
        if (found && seen_missing) prefix = false;
        if (!found) seen_missing = true;
      }
      if (!prefix) ++failures;
      ++searches;
    }
  };
  index::reset_add_profile();
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) readers.emplace_back(reader);
  for (int b = 0; b < batches; ++b) {
    std::vector<int64_t> ids(per);
    std::iota(ids.begin(), ids.end(), int64_t(b) * per);
    idx->add(per, &base[b * per * kD], ids.data());
    if (b % 20 == 19) idx->recluster(0, quick_train());
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(searches.load(), 10);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(idx->ntotal(), batches * per);
  EXPECT_EQ(index::add_profile().ingested, GetParam() == 1 ? batches : 0);
}

// add() from several threads: the calls encode concurrently and commit one at a time, while a
// recluster switches generations under them (a call encoded for the old generation must encode
// again). Every call's vectors land whole under the ids it was handed, and the index answers
// exactly like an in-memory faiss index of the final generation holding the same vectors.
TEST_P(IvfIndexWrites, ConcurrentAddsLandWholeAndMatchInMemory) {
  testing::IngestMinVectors ingest_from(GetParam());
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int threads = 3, calls_per_thread = 12, per = 40;
  const int64_t n = int64_t(threads) * calls_per_thread * per;
  std::vector<float> x = testing::skewed_blobs(n, kD, 12, 93);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 12, 94);
  auto idx = IvfIndex::create(dir, kD, "IVF8,PQ4np");
  idx->train(n, x.data(), quick_train());
  std::map<int64_t, std::vector<float>> vectors;
  std::mutex vectors_mu;
  index::reset_add_profile();
  std::vector<std::thread> adders;
  for (int t = 0; t < threads; ++t) {
    adders.emplace_back([&, t] {
      for (int c = 0; c < calls_per_thread; ++c) {
        const float* xb = &x[size_t((t * calls_per_thread + c) * per) * kD];
        int64_t first = idx->add(per, xb);
        std::lock_guard<std::mutex> lock(vectors_mu);
        for (int i = 0; i < per; ++i) vectors[first + i].assign(xb + i * kD, xb + (i + 1) * kD);
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    // PQ training needs 256 stored vectors; let the adders get going first.
    while (idx->ntotal() < (r + 1) * n / 3) std::this_thread::yield();
    idx->recluster(0, quick_train());
  }
  for (auto& t : adders) t.join();
  ASSERT_EQ(int64_t(vectors.size()), n) << "ids handed out twice";
  EXPECT_EQ(index::add_profile().ingested, GetParam() == 1 ? threads * calls_per_thread : 0);
  EXPECT_EQ(vectors.begin()->first, 0);
  EXPECT_EQ(vectors.rbegin()->first, n - 1);
  EXPECT_EQ(idx->ntotal(), n);
  std::vector<float> v(kD);
  for (const auto& kv : vectors) {
    ASSERT_TRUE(idx->get_vector(kv.first, v.data())) << "id " << kv.first;
    ASSERT_EQ(v, kv.second) << "id " << kv.first;
  }
  auto ref = oracle(*idx, tmp, vectors);
  for (int nprobe : {1, 8}) expect_same_as(*idx, *ref, xq, 10, nprobe);
}

INSTANTIATE_TEST_SUITE_P(CommitPath, IvfIndexWrites,
                         ::testing::Values(index::kDefaultIngestMinVectors, int64_t(1)),
                         commit_path_name);

// Pre-transforms (OPQ, PCA): the trained transform is stored with the generation, applied to
// added vectors and to queries, kept across reopen and recluster. Oracle: faiss's own
// IndexPreTransform over an in-memory IVF holding the same vectors, with the same trained
// transform and IVF parameters (read back from an export).
class IvfIndexPreTransform : public ::testing::TestWithParam<const char*> {};

void expect_same_as_pretransformed(const IvfIndex& idx, const TempDir& tmp,
                                   const std::map<int64_t, std::vector<float>>& vectors,
                                   const std::vector<float>& xq) {
  idx.export_faiss(tmp.file("pt.faiss"));
  std::unique_ptr<faiss::Index> file(faiss::read_index(tmp.file("pt.faiss").c_str()));
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(file.get());
  ASSERT_NE(pt, nullptr) << "export of a pre-transformed index is an IndexPreTransform";
  ASSERT_EQ(pt->d, kD);
  auto* params = dynamic_cast<faiss::IndexIVF*>(pt->index);
  ASSERT_NE(params, nullptr);
  std::vector<float> x;
  std::vector<int64_t> ids;
  for (const auto& kv : vectors) {
    ids.push_back(kv.first);
    x.insert(x.end(), kv.second.begin(), kv.second.end());
  }
  const float* xt = pt->apply_chain(int64_t(ids.size()), x.data());
  std::unique_ptr<faiss::IndexIVF> mem =
      testing::in_memory_reference(*params, int64_t(ids.size()), xt, ids.data());
  if (xt != x.data()) delete[] xt;
  faiss::IndexPreTransform ref(mem.get());  // borrows the chain below, owns nothing
  ref.own_fields = false;
  ref.chain = pt->chain;
  ref.d = kD;
  const int64_t nq = int64_t(xq.size()) / kD;
  const int k = 10;
  for (int nprobe : {1, 6}) {
    mem->nprobe = size_t(nprobe);
    std::vector<float> da(nq * k), db(nq * k);
    std::vector<int64_t> la(nq * k), lb(nq * k);
    idx.search(nq, xq.data(), k, nprobe, da.data(), la.data());
    ref.search(nq, xq.data(), k, db.data(), lb.data());
    for (int64_t i = 0; i < nq * k; ++i) {
      ASSERT_EQ(la[i], lb[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
      ASSERT_EQ(da[i], db[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
    }
  }
  ref.chain.clear();
}

TEST_P(IvfIndexPreTransform, StoredAppliedAndKept) {
  TempDir tmp;
  std::string dir = tmp.file("idx");
  const int64_t n = 3000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 30, 61);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 30, 62);
  std::map<int64_t, std::vector<float>> vectors;
  for (int64_t i = 0; i < n; ++i) vectors[i].assign(&x[i * kD], &x[(i + 1) * kD]);
  std::string factory = GetParam();
  {
    auto idx = IvfIndex::create(dir, kD, factory);
    idx->train(n, x.data(), quick_train());
    EXPECT_EQ(idx->add(n / 2, x.data()), 0);
    EXPECT_EQ(idx->add(n - n / 2, x.data() + (n / 2) * kD), n / 2);
    EXPECT_EQ(idx->info().factory, factory);
    EXPECT_EQ(idx->d(), kD);
    expect_same_as_pretransformed(*idx, tmp, vectors, xq);
  }
  auto idx = IvfIndex::open(dir);
  expect_same_as_pretransformed(*idx, tmp, vectors, xq);
  std::vector<float> v(kD);
  ASSERT_TRUE(idx->get_vector(17, v.data()));
  EXPECT_EQ(v, vectors[17]) << "raw vectors are stored, not transformed ones";
  // The transform survives a recluster unchanged (same bytes), and results still match.
  auto transform_bytes = [&] {
    idx->export_faiss(tmp.file("t.faiss"));
    std::unique_ptr<faiss::Index> f(faiss::read_index(tmp.file("t.faiss").c_str()));
    faiss::VectorIOWriter w;
    for (faiss::VectorTransform* t : dynamic_cast<faiss::IndexPreTransform&>(*f).chain) {
      faiss::write_VectorTransform(t, &w);
    }
    return w.data;
  };
  std::vector<uint8_t> before = transform_bytes();
  idx->recluster(0, quick_train());
  EXPECT_EQ(idx->info().generation, 2u);
  EXPECT_EQ(transform_bytes(), before);
  expect_same_as_pretransformed(*idx, tmp, vectors, xq);
  std::vector<float> more = testing::skewed_blobs(50, kD, 30, 63);
  int64_t first = idx->add(50, more.data());
  for (int64_t i = 0; i < 50; ++i) vectors[first + i].assign(&more[i * kD], &more[(i + 1) * kD]);
  expect_same_as_pretransformed(*idx, tmp, vectors, xq);
}

// A stock faiss file whose IVF sits behind pre-transforms (built, trained and filled by faiss
// alone) imports with its transform stored exactly as train() stores one: the imported index
// answers every query exactly like the file (same transform, quantizer, codes and id-ordered
// lists), also after reopen; its raw vectors are the codes decoded back through the transform;
// it takes adds and reclusters like any other.
TEST_P(IvfIndexPreTransform, ImportOfAStockFaissFile) {
  TempDir tmp;
  const int64_t n = 2500;
  std::vector<float> x = testing::skewed_blobs(n, kD, 30, 65);
  std::vector<float> xq = testing::skewed_blobs(30, kD, 30, 66);
  std::unique_ptr<faiss::Index> f(faiss::index_factory(kD, GetParam()));
  for (faiss::VectorTransform* t : dynamic_cast<faiss::IndexPreTransform&>(*f).chain) {
    if (auto* opq = dynamic_cast<faiss::OPQMatrix*>(t)) opq->niter = 3;  // its quality is moot here
  }
  f->train(n, x.data());
  f->add(n, x.data());  // ids 0..n-1 in insertion order: every list is in id order
  const std::string file = tmp.file("stock.faiss");
  faiss::write_index(f.get(), file.c_str());
  faiss::ivflib::extract_index_ivf(f.get())->make_direct_map(true);  // for f->reconstruct
  const std::string dir = tmp.file("imported");
  auto expect_same_as_file = [&](const IvfIndex& idx) {
    const int64_t nq = int64_t(xq.size()) / kD;
    const int k = 10;
    for (int nprobe : {1, 16}) {
      faiss::ParameterSpace().set_index_parameter(f.get(), "nprobe", nprobe);
      std::vector<float> da(nq * k), db(nq * k);
      std::vector<int64_t> la(nq * k), lb(nq * k);
      idx.search(nq, xq.data(), k, nprobe, da.data(), la.data());
      f->search(nq, xq.data(), k, db.data(), lb.data());
      for (int64_t i = 0; i < nq * k; ++i) {
        ASSERT_EQ(la[i], lb[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
        ASSERT_EQ(da[i], db[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
      }
    }
  };
  {
    auto imp = IvfIndex::import_faiss(file, dir);
    IvfIndexInfo info = imp->info();
    // faiss reads an OPQ matrix back as a plain LinearTransform, which import names RR.
    const std::map<std::string, std::string> factory = {{"OPQ4_8,IVF16,PQ4np", "RR8,IVF16,PQ4x8np"},
                                                        {"PCA8,IVF16,Flat", "PCA8,IVF16,Flat"},
                                                        {"PCAR8,IVF16,SQ8", "PCAR8,IVF16,SQ8"}};
    EXPECT_EQ(info.factory, factory.at(GetParam()));
    EXPECT_EQ(info.d, kD);
    EXPECT_EQ(info.ntotal, n);
    EXPECT_TRUE(info.vectors_reconstructed);
    expect_same_as_file(*imp);
  }
  auto imp = IvfIndex::open(dir);
  expect_same_as_file(*imp);
  // Raw vectors: the file's reconstruction (codes decoded, then the chain reversed), except
  // that a PCA keeping fewer components gives back its mean's part outside them: faiss's
  // reverse (A^T (y - b), the preimage of least norm) drops it, the preimage nearest the mean
  // adds (I - A^T A) mean, computed here in float64 from the file's matrix.
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(f.get());
  std::vector<double> offset(kD, 0.0);
  auto* pca = dynamic_cast<const faiss::PCAMatrix*>(pt->chain.front());
  if (pca != nullptr && pca->d_out < pca->d_in) {
    ASSERT_EQ(pt->chain.size(), 1u);
    for (int k = 0; k < kD; ++k) {
      double back = 0;
      for (int i = 0; i < pca->d_out; ++i) {
        double am = 0;
        for (int j = 0; j < kD; ++j) am += double(pca->A[i * kD + j]) * pca->mean[j];
        back += double(pca->A[i * kD + k]) * am;
      }
      offset[k] = pca->mean[k] - back;
    }
  }
  // Against the original vectors, summed over all of them: the offset is orthogonal to every
  // reconstruction (they lie in the span of A's rows) and the PCA's mean is the data's, so
  // the stored vectors are closer by exactly n |offset|^2.
  double err_stored = 0, err_faiss = 0, offset2 = 0;
  for (double o : offset) offset2 += o * o;
  std::vector<float> v(kD), r(kD);
  for (int64_t id = 0; id < n; ++id) {
    ASSERT_TRUE(imp->get_vector(id, v.data()));
    f->reconstruct(id, r.data());
    for (int j = 0; j < kD; ++j) {
      ASSERT_NEAR(v[j], r[j] + offset[j], 1e-4) << "id " << id << " dim " << j;
      err_stored += std::pow(double(v[j]) - x[id * kD + j], 2);
      err_faiss += std::pow(double(r[j]) - x[id * kD + j], 2);
    }
    // The same point once transformed: what the IVF sees (ranks, re-clustering) is unchanged.
    std::vector<float> tv(pt->chain.back()->d_out), tr(tv.size());
    pt->chain.front()->apply_noalloc(1, v.data(), tv.data());
    pt->chain.front()->apply_noalloc(1, r.data(), tr.data());
    for (size_t j = 0; j < tv.size(); ++j) ASSERT_NEAR(tv[j], tr[j], 1e-3) << "id " << id;
  }
  if (pca != nullptr && pca->d_out < pca->d_in) {
    EXPECT_GT(offset2, 1.0) << "the data's mean lies far outside the kept components";
    EXPECT_NEAR((err_faiss - err_stored) / double(n), offset2, 1e-3 * offset2);
  } else {
    EXPECT_EQ(offset2, 0.0);
  }
  imp->recluster(0, quick_train());
  EXPECT_EQ(imp->info().generation, 2u);
  EXPECT_EQ(imp->ntotal(), n);
  imp->export_faiss(tmp.file("re.faiss"));
  std::unique_ptr<faiss::Index> re(faiss::read_index(tmp.file("re.faiss").c_str()));
  const faiss::IndexIVF* re_ivf = faiss::ivflib::extract_index_ivf(re.get());
  std::vector<int64_t> ids, all(n);
  std::iota(all.begin(), all.end(), 0);
  for (size_t l = 0; l < re_ivf->nlist; ++l) {
    const auto* p = re_ivf->invlists->get_ids(l);
    ids.insert(ids.end(), p, p + re_ivf->invlists->list_size(l));
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, all) << "every vector once after the recluster";
  EXPECT_EQ(imp->add(5, x.data()), n);
}

// Builds factory on n points of x, writes it as a stock faiss file and expects import_faiss
// to refuse it with a message holding `reason`, leaving no index directory behind.
void expect_import_refused(const char* factory, const std::vector<float>& x, int64_t n,
                           const std::string& reason) {
  TempDir tmp;
  std::unique_ptr<faiss::Index> f(faiss::index_factory(kD, factory));
  f->train(n, x.data());
  f->add(n, x.data());
  const std::string file = tmp.file("stock.faiss");
  faiss::write_index(f.get(), file.c_str());
  try {
    IvfIndex::import_faiss(file, tmp.file("dst"));
    ADD_FAILURE() << factory << " must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << factory << ": " << e.what();
  }
  EXPECT_FALSE(IvfIndex::exists(tmp.file("dst"))) << factory;
}

TEST(IvfIndex, ImportRefusesPreTransformsItCannotReverse) {
  const int64_t n = 1000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 10, 67);
  // Whitening: faiss marks the read-back matrix orthonormal and "reverses" it with the wrong map.
  expect_import_refused("PCAW8,IVF8,Flat", x, n, "pre-transform 0");
  expect_import_refused("PCA8,L2norm,IVF8,Flat", x, n, "pre-transform 1");
}

// Subclasses of the supported IVF types carry state of their own: IndexIVFPQR re-ranks with
// refinement codes indexed by id, which adds after an import would read past their end.
TEST(IvfIndex, ImportRefusesSubclassesOfTheSupportedTypes) {
  const int64_t n = 2000;
  std::vector<float> x = testing::skewed_blobs(n, kD, 10, 71);
  for (const char* factory : {"IVF16,PQ4+8", "IVF16,FlatDedup"})
    expect_import_refused(factory, x, n, "unsupported IVF index");
}

INSTANTIATE_TEST_SUITE_P(Factories, IvfIndexPreTransform,
                         ::testing::Values("OPQ4_8,IVF16,PQ4np", "PCA8,IVF16,Flat",
                                           "PCAR8,IVF16,SQ8"));

}  // namespace
}  // namespace flashkm
