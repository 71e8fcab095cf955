// PRIVATE to index/ (FAISS-facing, so FAISS naming): faiss::InvertedLists over RocksDB.
//
// Layout: column family lists.<g> maps be32 list_no | be64 id -> code, and meta holds one
// "size" record per list (see index/keys.h), written in the same WriteBatch as the entries, so
// list_size() and the materialized list always agree for a given snapshot.
//
// faiss 1.7.3 has no iterator API: get_codes()/get_ids() materialize the whole list, sorted by
// id, into a buffer that release_codes()/release_ids() free. Two read modes:
//  - unbound (default): every call reads the latest state and materializes afresh; callers
//    must not write concurrently with a search (faiss's own rule for add_entries vs readers).
//  - bound (bind()): reads go to one RocksDB snapshot and may use a shared ListCache whose
//    entries are trusted only at the list versions given with the snapshot. IvfIndex binds one
//    instance per in-flight search, which is what makes searches during writes consistent.
//    With a cache, each list is looked up once per binding and pinned until unbind(), so the
//    per-query calls of a search take no lock; release_* are then no-ops. prefetch_lists()
//    materializes the probed lists ahead of the scan.
//
// Writing functions apply each call as one WriteBatch (entries + size record). They exist for
// stock faiss code paths (merge_from, copy); IvfIndex builds its own batches (adding vectors,
// id map and manifest atomically) and bumps the list versions itself.
//
// Errors: a RocksDB error or a corrupt record throws flashkm::Error naming the list (faiss's
// interface has no Status); faiss propagates exceptions out of its OpenMP loops. Nothing
// asserts on storage results.
//
// Thread safety: concurrent reads are safe, bound or not; bind()/unbind() must not run
// concurrently with reads of the same instance.
#pragma once

#include <faiss/invlists/InvertedLists.h>
#include <rocksdb/db.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "index/list_cache.h"

namespace flashkm {
namespace index {

struct RocksDBInvertedLists : faiss::InvertedLists {
  /// db, lists_cf and meta_cf must outlive this object. cache may be null (no caching).
  RocksDBInvertedLists(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* lists_cf,
                       rocksdb::ColumnFamilyHandle* meta_cf, uint64_t generation, size_t nlist,
                       size_t code_size, std::shared_ptr<ListCache> cache = nullptr,
                       rocksdb::WriteOptions write_options = rocksdb::WriteOptions());
  ~RocksDBInvertedLists() override;

  /// Reads go to snapshot (nullptr: latest state); cached lists are used when their version
  /// equals versions[list_no] (versions: nlist entries; null disables the cache).
  void bind(const rocksdb::Snapshot* snapshot,
            std::shared_ptr<const std::vector<uint64_t>> versions);
  void unbind();

  size_t list_size(size_t list_no) const override;
  const uint8_t* get_codes(size_t list_no) const override;
  const idx_t* get_ids(size_t list_no) const override;
  void release_codes(size_t list_no, const uint8_t* codes) const override;
  void release_ids(size_t list_no, const idx_t* ids) const override;
  idx_t get_single_id(size_t list_no, size_t offset) const override;
  /// A copy of one code, freed by release_codes.
  const uint8_t* get_single_code(size_t list_no, size_t offset) const override;
  void prefetch_lists(const idx_t* list_nos, int nlist) const override;

  /// Appends entries; ids must not already be in the list (the order is by id, so "offset"
  /// is the position the first new id takes). Returns the old list size.
  size_t add_entries(size_t list_no, size_t n_entry, const idx_t* ids,
                     const uint8_t* code) override;
  /// Replaces the entries at [offset, offset + n_entry) of the id-sorted list by (ids, code).
  void update_entries(size_t list_no, size_t offset, size_t n_entry, const idx_t* ids,
                      const uint8_t* code) override;
  /// Shrinks a list to its first new_size entries (growing is not meaningful without ids).
  void resize(size_t list_no, size_t new_size) override;
  void reset() override;

  /// Reads list_no as of snapshot (nullptr: latest) into out; the Status of the scan.
  rocksdb::Status materialize(size_t list_no, const rocksdb::Snapshot* snapshot,
                              MaterializedList* out) const;
  /// Stored size record of list_no as of snapshot.
  rocksdb::Status read_size(size_t list_no, const rocksdb::Snapshot* snapshot,
                            uint64_t* size) const;

  uint64_t generation() const { return generation_; }

 private:
  ListPtr acquire(size_t list_no) const;
  const MaterializedList* pinned(size_t list_no) const;
  const void* lend(ListPtr list, const void* ptr) const;
  void give_back(const void* ptr) const;
  void check_list_no(size_t list_no) const;

  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* lists_cf_;
  rocksdb::ColumnFamilyHandle* meta_cf_;
  uint64_t generation_;
  std::shared_ptr<ListCache> cache_;
  rocksdb::WriteOptions write_options_;

  const rocksdb::Snapshot* snapshot_ = nullptr;
  std::shared_ptr<const std::vector<uint64_t>> versions_;
  // Bound with a cache: one slot per list, filled at most once per binding.
  struct Pin {
    std::once_flag once;
    ListPtr list;
  };
  std::unique_ptr<Pin[]> pins_;

  // Buffers handed out by get_codes/get_ids/get_single_code, keyed by the returned pointer,
  // with how many times each is currently lent.
  struct Loan {
    ListPtr list;
    std::unique_ptr<uint8_t[]> single_code;
    int count = 0;
  };
  mutable std::mutex loans_mu_;
  mutable std::map<const void*, Loan> loans_;
};

}  // namespace index
}  // namespace flashkm
