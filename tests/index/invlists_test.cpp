// RocksDBInvertedLists against faiss's in-memory ArrayInvertedLists, with plain faiss training
// (no flashkm involved): search results must be identical, distances and labels.
#include <faiss/IndexIVF.h>
#include <faiss/index_factory.h>
#include <gtest/gtest.h>
#include <rocksdb/write_batch.h>

#include "flashkm/error.h"
#include "index/keys.h"
#include "index/rocksdb_invlists.h"
#include "index/store.h"
#include "tests/index/index_test_util.h"

namespace flashkm {
namespace index {
namespace {

using testing::TempDir;

struct Fixture {
  TempDir tmp;
  std::unique_ptr<Store> store;
  GenerationCFs cfs;
  std::unique_ptr<faiss::IndexIVF> ref;  // in-memory lists
  std::vector<float> xq;

  Fixture(const char* factory, int64_t n, int d, uint64_t seed) {
    StoreOptions so;
    so.create = true;
    rocksdb::Status s = Store::open(tmp.file("db"), so, &store);
    EXPECT_TRUE(s.ok()) << s.ToString();
    s = store->create_generation(1, &cfs);
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::vector<float> x = testing::skewed_blobs(n, d, 40, seed);
    ref.reset(dynamic_cast<faiss::IndexIVF*>(faiss::index_factory(d, factory)));
    ref->train(n, x.data());
    std::vector<int64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = 3 * i + 1;  // sparse ids, ascending
    ref->add_with_ids(n, x.data(), ids.data());
    xq = testing::skewed_blobs(50, d, 40, seed + 1);
  }

  std::unique_ptr<RocksDBInvertedLists> make_lists(std::shared_ptr<ListCache> cache = nullptr) {
    return std::make_unique<RocksDBInvertedLists>(store->db(), cfs.lists.get(), store->meta(), 1,
                                                  ref->nlist, ref->code_size, cache);
  }

  // Copies every list of ref into RocksDB through the faiss writing interface.
  void copy_lists(RocksDBInvertedLists* il) {
    for (size_t l = 0; l < ref->nlist; ++l) {
      size_t ls = ref->invlists->list_size(l);
      if (ls == 0) continue;
      il->add_entries(l, ls, ref->invlists->get_ids(l), ref->invlists->get_codes(l));
    }
  }

  // An index sharing ref's parameters that reads lists from il (not owned).
  std::unique_ptr<faiss::IndexIVF> over(RocksDBInvertedLists* il) {
    std::unique_ptr<faiss::IndexIVF> idx(
        dynamic_cast<faiss::IndexIVF*>(faiss::clone_index(ref.get())));
    idx->replace_invlists(il, false);
    return idx;
  }
};

void expect_same_search(const faiss::IndexIVF& a, const faiss::IndexIVF& b,
                        const std::vector<float>& xq, int k, int nprobe) {
  int64_t nq = int64_t(xq.size()) / a.d;
  std::vector<float> da(nq * k), db(nq * k);
  std::vector<int64_t> la(nq * k), lb(nq * k);
  faiss::SearchParametersIVF p;
  p.nprobe = nprobe;
  a.search(nq, xq.data(), k, da.data(), la.data(), &p);
  b.search(nq, xq.data(), k, db.data(), lb.data(), &p);
  for (int64_t i = 0; i < nq * k; ++i) {
    ASSERT_EQ(la[i], lb[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
    ASSERT_EQ(da[i], db[i]) << "query " << i / k << " rank " << i % k << " nprobe " << nprobe;
  }
}

class InvListsParity : public ::testing::TestWithParam<const char*> {};

TEST_P(InvListsParity, SearchIdenticalToArrayInvertedLists) {
  Fixture f(GetParam(), 3000, 16, 7);
  auto il = f.make_lists();
  f.copy_lists(il.get());
  // Skewed data: list sizes must differ a lot, and match the in-memory ones exactly.
  size_t mn = SIZE_MAX, mx = 0;
  for (size_t l = 0; l < f.ref->nlist; ++l) {
    size_t ls = f.ref->invlists->list_size(l);
    ASSERT_EQ(il->list_size(l), ls) << "list " << l;
    mn = std::min(mn, ls);
    mx = std::max(mx, ls);
  }
  EXPECT_GT(mx, 4 * std::max<size_t>(mn, 1));
  auto idx = f.over(il.get());
  for (int nprobe : {1, 4, 32}) expect_same_search(*f.ref, *idx, f.xq, 10, nprobe);

  // Bound to a snapshot with a cache: same results, cold and warm.
  auto cache = std::make_shared<ListCache>(size_t(64) << 20);
  auto cached = f.make_lists(cache);
  auto versions = std::make_shared<std::vector<uint64_t>>(f.ref->nlist, 0);
  const rocksdb::Snapshot* snap = f.store->db()->GetSnapshot();
  cached->bind(snap, versions);
  auto idx2 = f.over(cached.get());
  expect_same_search(*f.ref, *idx2, f.xq, 10, 8);
  EXPECT_GT(cache->entries(), 0u);
  expect_same_search(*f.ref, *idx2, f.xq, 10, 8);
  cached->unbind();
  f.store->db()->ReleaseSnapshot(snap);
}

INSTANTIATE_TEST_SUITE_P(Codes, InvListsParity,
                         ::testing::Values("IVF32,Flat", "IVF32,PQ4x4np", "IVF32,SQ8"));

// Every ingested lists file covers all lists, so it lands in level 0; ingestion is never
// slowed for that, so the index must see the crowding and write instead (Store::level0_crowded).
TEST(Store, Level0CrowdedFromTheSlowdownTrigger) {
  TempDir tmp;
  StoreOptions so;
  so.create = true;
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::open(tmp.file("db"), so, &store).ok());
  GenerationCFs cfs;
  ASSERT_TRUE(store->create_generation(1, &cfs).ok());
  rocksdb::ColumnFamilyHandle* lists = cfs.lists.get();
  // No compaction may empty level 0 while the files pile up.
  ASSERT_TRUE(store->db()->SetOptions(lists, {{"disable_auto_compactions", "true"}}).ok());
  const int trigger = store->db()->GetOptions(lists).level0_slowdown_writes_trigger;
  ASSERT_GT(trigger, 1);
  auto level0 = [&] {
    std::string files;
    EXPECT_TRUE(store->db()->GetProperty(lists, "rocksdb.num-files-at-level0", &files));
    return std::stoi(files);
  };
  // Overlapping files fill the empty levels from the bottom first, then stack in level 0.
  for (int i = 0; level0() < trigger; ++i) {
    ASSERT_LT(i, trigger + 10) << "level 0 never filled";
    EXPECT_FALSE(store->level0_crowded({lists, store->meta()})) << level0() << " files";
    std::unique_ptr<Ingestion> ing = store->new_ingestion();
    ASSERT_TRUE(ing->start(lists).ok());
    ASSERT_TRUE(ing->Put(lists, list_key(0, uint64_t(i)), "a").ok());
    ASSERT_TRUE(ing->Put(lists, list_key(9, uint64_t(i)), "b").ok());
    const rocksdb::Status s = store->ingest({ing.get()});
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE(store->level0_crowded({lists, store->meta()}));
  EXPECT_TRUE(store->level0_crowded({store->meta(), lists}));
}

TEST(InvLists, MaterializedListsMatchInMemory) {
  Fixture f("IVF16,PQ4x4np", 1000, 8, 11);
  auto il = f.make_lists();
  f.copy_lists(il.get());
  for (size_t l = 0; l < f.ref->nlist; ++l) {
    size_t ls = f.ref->invlists->list_size(l);
    const auto* ids = il->get_ids(l);
    const uint8_t* codes = il->get_codes(l);
    for (size_t o = 0; o < ls; ++o) {
      ASSERT_EQ(ids[o], f.ref->invlists->get_ids(l)[o]);
      if (o >= 3) continue;  // the single-entry accessors rescan the list: spot-check them
      ASSERT_EQ(il->get_single_id(l, o), ids[o]);
      const uint8_t* one = il->get_single_code(l, o);
      ASSERT_EQ(0,
                std::memcmp(one, f.ref->invlists->get_codes(l) + o * il->code_size, il->code_size));
      il->release_codes(l, one);
    }
    ASSERT_EQ(0, ls ? std::memcmp(codes, f.ref->invlists->get_codes(l), ls * il->code_size) : 0);
    il->release_codes(l, codes);
    il->release_ids(l, ids);
  }
  EXPECT_THROW(il->list_size(f.ref->nlist), Error);
  EXPECT_THROW(il->get_single_id(0, 1u << 30), Error);
}

TEST(InvLists, SnapshotIsolatesReadersFromLaterWrites) {
  Fixture f("IVF8,Flat", 400, 4, 3);
  auto il = f.make_lists();
  f.copy_lists(il.get());
  size_t before = il->list_size(2);
  const rocksdb::Snapshot* snap = f.store->db()->GetSnapshot();
  auto reader = f.make_lists(std::make_shared<ListCache>(1 << 20));
  reader->bind(snap, std::make_shared<std::vector<uint64_t>>(f.ref->nlist, 0));
  std::vector<uint8_t> code(il->code_size, 7);
  faiss::InvertedLists::idx_t new_id = 1000000;
  EXPECT_EQ(il->add_entries(2, 1, &new_id, code.data()), before);
  EXPECT_EQ(il->list_size(2), before + 1);  // latest state
  EXPECT_EQ(reader->list_size(2), before);  // snapshot
  const auto* ids = reader->get_ids(2);
  for (size_t o = 0; o < before; ++o) EXPECT_NE(ids[o], new_id);
  EXPECT_EQ(reader->get_single_id(2, before - 1), ids[before - 1]);
  const uint8_t* last = reader->get_single_code(2, before - 1);
  EXPECT_EQ(0,
            std::memcmp(last, reader->get_codes(2) + (before - 1) * il->code_size, il->code_size));
  reader->release_codes(2, last);
  reader->release_ids(2, ids);
  reader->unbind();
  f.store->db()->ReleaseSnapshot(snap);
  // The new id sorts last; adding it again is an error and changes nothing.
  EXPECT_EQ(il->get_single_id(2, before), new_id);
  EXPECT_THROW(il->add_entries(2, 1, &new_id, code.data()), Error);
  EXPECT_EQ(il->list_size(2), before + 1);
}

TEST(InvLists, UpdateResizeReset) {
  Fixture f("IVF8,Flat", 400, 4, 5);
  auto il = f.make_lists();
  f.copy_lists(il.get());
  size_t n = il->list_size(1);
  ASSERT_GE(n, 3u);
  std::vector<uint8_t> code(il->code_size, 9);
  faiss::InvertedLists::idx_t id = 999999;
  il->update_entries(1, 0, 1, &id, code.data());  // replaces the smallest id
  EXPECT_EQ(il->list_size(1), n);
  EXPECT_EQ(il->get_single_id(1, n - 1), id);
  il->resize(1, 2);
  EXPECT_EQ(il->list_size(1), 2u);
  MaterializedList m;
  ASSERT_TRUE(il->materialize(1, nullptr, &m).ok());
  EXPECT_EQ(m.ids.size(), 2u);
  EXPECT_THROW(il->resize(1, 5), Error);
  il->reset();
  EXPECT_EQ(il->compute_ntotal(), 0u);
}

TEST(InvLists, CorruptEntriesAreReportedNotAsserted) {
  Fixture f("IVF8,Flat", 400, 4, 9);
  auto il = f.make_lists();
  f.copy_lists(il.get());
  // A code of the wrong size, and a size record that disagrees with the entries.
  rocksdb::WriteBatch b;
  ASSERT_TRUE(b.Put(f.cfs.lists.get(), list_key(3, 123456789), "xy").ok());
  ASSERT_TRUE(f.store->write(&b).ok());
  try {
    il->get_codes(3);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected " + std::to_string(il->code_size)),
              std::string::npos)
        << e.what();
  }
  rocksdb::WriteBatch b2;
  ASSERT_TRUE(b2.Delete(f.cfs.lists.get(), list_key(3, 123456789)).ok());
  ASSERT_TRUE(b2.Put(f.store->meta(), list_size_key(1, 3), std::string(8, '\x7f')).ok());
  ASSERT_TRUE(f.store->write(&b2).ok());
  EXPECT_THROW(il->get_ids(3), Error);
}

}  // namespace
}  // namespace index
}  // namespace flashkm
