// PRIVATE to index/: the RocksDB directory of one index (layout in index/keys.h).
//
// Owns the rocksdb::DB and the handles of its column families. Per-generation handles are
// shared_ptrs so a generation dropped by re-clustering stays readable by searches still holding
// it; its files go once the last holder lets go. Storage results are returned as
// rocksdb::Status and never ignored; only IvfIndex turns them into flashkm::Error.
//
// Thread safety: concurrent calls are safe except open/close.
#pragma once

#include <rocksdb/db.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "manifest.pb.h"

namespace flashkm {
namespace index {

using CFPtr = std::shared_ptr<rocksdb::ColumnFamilyHandle>;

/// The column families of one generation.
struct GenerationCFs {
  uint64_t generation = 0;
  CFPtr lists, centroids, idmap;
};

struct StoreOptions {
  bool read_only = false;
  bool create = false;  ///< create a new, empty directory (fails if one exists)
  bool sync = false;    ///< fsync the WAL on every write (survives power loss)
  size_t block_cache_bytes = size_t(256) << 20;
};

class Store {
 public:
  /// Opens (or creates) dir. With read_only the DB is opened with OpenForReadOnly: it never
  /// writes, does not take the directory lock and sees the state as of opening.
  static rocksdb::Status open(const std::string& dir, const StoreOptions& options,
                              std::unique_ptr<Store>* out);
  ~Store();

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_.get(); }
  rocksdb::ColumnFamilyHandle* vectors() const { return vectors_.get(); }
  const rocksdb::WriteOptions& write_options() const { return write_options_; }
  bool read_only() const { return read_only_; }
  const std::string& dir() const { return dir_; }

  /// Reads the manifest as of snapshot (nullptr: latest); NotFound when there is none.
  rocksdb::Status read_manifest(const rocksdb::Snapshot* snapshot, proto::Manifest* m) const;

  /// Handles of generation g's column families; NotFound when any of them is missing.
  rocksdb::Status generation(uint64_t g, GenerationCFs* out) const;
  /// Creates generation g's column families (after dropping leftovers of a crashed attempt).
  rocksdb::Status create_generation(uint64_t g, GenerationCFs* out);
  /// Drops every column family and meta record of generations other than keep. Run after a
  /// re-clustering flip and on open (cleans up after a crash on either side of the flip).
  rocksdb::Status drop_generations_except(uint64_t keep);
  /// Generations that have at least one column family.
  std::vector<uint64_t> generations() const;

  /// Flushes every memtable to SST files, so the next open has no write-ahead log to replay.
  rocksdb::Status flush();

  rocksdb::Status write(rocksdb::WriteBatch* batch) const {
    return db_->Write(write_options_, batch);
  }

 private:
  Store() = default;
  CFPtr wrap(rocksdb::ColumnFamilyHandle* h);
  rocksdb::Status drop_cf_locked(const std::string& name);

  std::string dir_;
  bool read_only_ = false;
  rocksdb::WriteOptions write_options_;
  rocksdb::ColumnFamilyOptions cf_options_;
  std::shared_ptr<rocksdb::DB> db_;
  CFPtr meta_, vectors_;
  mutable std::mutex mu_;
  std::map<std::string, CFPtr> cfs_;  // per-generation column families by name
};

/// True when s is RocksDB's "directory already locked" error (another writer holds it).
bool is_lock_error(const rocksdb::Status& s);

}  // namespace index
}  // namespace flashkm
