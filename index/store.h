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
#include <rocksdb/sst_file_writer.h>

#include <atomic>
#include <initializer_list>
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

class Store;

/// The files of one atomic ingestion (Store::ingest): one SST file per column family, each
/// filled in strictly increasing key order (column families may interleave). The interface is
/// WriteBatch's Put / Delete, so the same code can fill either. Files live in the index's
/// staging folder (keys.h) until ingested; whatever is not ingested is deleted by the
/// destructor, or, after a crash, by the next read-write open.
///
/// Thread safety: once every column family's file is started (start()), Put / Delete / finish
/// of different column families may run on different threads; nothing else may overlap.
class Ingestion {
 public:
  ~Ingestion();
  Ingestion(const Ingestion&) = delete;
  Ingestion& operator=(const Ingestion&) = delete;

  rocksdb::Status Put(rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& key,
                      const rocksdb::Slice& value);
  /// A tombstone: hides the key's older value once ingested.
  rocksdb::Status Delete(rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& key);
  /// Opens cf's file (Put and Delete open it on first use).
  rocksdb::Status start(rocksdb::ColumnFamilyHandle* cf);
  /// Completes cf's file, or every file when cf is null, and fsyncs it (Store::ingest
  /// finishes what is not finished yet).
  rocksdb::Status finish(rocksdb::ColumnFamilyHandle* cf = nullptr);

 private:
  friend class Store;
  struct File {
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    std::string path;
    std::unique_ptr<rocksdb::SstFileWriter> writer;  // null once finished
  };
  Ingestion(const Store* store, uint64_t seq, bool unversioned)
      : store_(store), seq_(seq), unversioned_(unversioned) {}
  rocksdb::Status file_of(rocksdb::ColumnFamilyHandle* cf, rocksdb::SstFileWriter** writer);

  const Store* store_;
  uint64_t seq_;
  bool unversioned_;
  std::vector<File> files_;
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

  /// True when one of cfs holds as many level-0 files as its write-slowdown trigger (or as
  /// index::level0_crowded_files() when that is set: tests). A file that overlaps the others
  /// (every lists file does: it covers all lists) lands in level 0, and ingestion, unlike a
  /// write, is never slowed for it: past the trigger, adds go through write() and let
  /// compaction catch up, or level 0 grows until RocksDB stops all writes.
  bool level0_crowded(std::initializer_list<rocksdb::ColumnFamilyHandle*> cfs) const;

  /// A snapshot of the latest state, released when the last copy goes (the DB stays open at
  /// least that long). Null for a read-only store, whose state never changes.
  std::shared_ptr<const rocksdb::Snapshot> snapshot() const;

  /// A new, empty set of SST files for ingest(). Writer only. With unversioned, the files'
  /// keys may show in snapshots taken before their ingestion (RocksDB's snapshot_consistency
  /// off): for column families that no reader reads through a snapshot (raw vectors, id map).
  /// A file that overlaps nothing then lands in the bottom level with sequence number 0; with
  /// a snapshot held during its ingestion it would get a sequence number, which RocksDB 7.8
  /// removes by rewriting the file (a "BottommostFiles" compaction) once the snapshot is
  /// released: for the raw vectors, about 50 MB per 100k vectors (bench/index/NOTES.md).
  std::unique_ptr<Ingestion> new_ingestion(bool unversioned = false) const;
  /// Commits the files of ingestions (finished or not; each column family in at most one of
  /// them) with one DB::IngestExternalFiles: every column family's file or none lands, also
  /// across a crash (RocksDB records the ingestion as one
  /// atomic group in its MANIFEST); the files are moved (hard-linked) into the DB. Once it
  /// returns OK the data is durable, power loss included (RocksDB fsyncs the files, the
  /// directory and its MANIFEST). Readers holding a snapshot taken before do not see the data:
  /// each file gets a sequence number above every existing snapshot (snapshot_consistency).
  /// Writes made earlier through write() stay ordered before it: their WAL is synced first,
  /// and memtables overlapping a file are flushed by RocksDB. The ingestions are then empty.
  rocksdb::Status ingest(std::initializer_list<Ingestion*> ingestions) const;
  /// The staging folder of ingestions (dir/kIngestDir).
  std::string staging_dir() const;

 private:
  Store() = default;
  CFPtr wrap(rocksdb::ColumnFamilyHandle* h);
  rocksdb::Status drop_cf_locked(const std::string& name);
  /// Empties the staging folder (creating it if needed): files of ingestions a crash
  /// interrupted. RocksDB deletes any of them it had linked into the DB but not recorded.
  rocksdb::Status reset_staging();

  std::string dir_;
  bool read_only_ = false;
  rocksdb::WriteOptions write_options_;
  rocksdb::ColumnFamilyOptions cf_options_;        // meta, centroids.<g>, idmap.<g>
  rocksdb::ColumnFamilyOptions lists_cf_options_;  // lists.<g>
  std::shared_ptr<rocksdb::DB> db_;
  CFPtr meta_, vectors_;
  mutable std::mutex mu_;
  std::map<std::string, CFPtr> cfs_;             // per-generation column families by name
  mutable std::atomic<uint64_t> ingestions_{0};  // names staging files
};

/// True when s is RocksDB's "directory already locked" error (another writer holds it).
bool is_lock_error(const rocksdb::Status& s);

}  // namespace index
}  // namespace flashkm
