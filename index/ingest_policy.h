// PRIVATE to index/ (set by tests/index and bench/index): which adds are committed by SST
// ingestion (index/store.h, Ingestion) rather than by a WriteBatch, and the test hooks of that
// path.
//
// A WriteBatch goes through the write-ahead log and the memtables: cheap to start, but every
// entry is a memtable insert (three per vector), and everything is written again by the flush.
// An ingestion writes each column family's entries once, sorted, into an SST file; it has a
// fixed cost (a file and an fsync per column family, a MANIFEST write, sometimes a memtable
// flush) that only large adds amortize. The threshold is measured in bench/index/NOTES.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>

namespace flashkm {
namespace index {

/// Default: adds and upserts of at least this many vectors are ingested.
constexpr int64_t kDefaultIngestMinVectors = 10000;

inline std::atomic<int64_t>& ingest_min_vectors_setting() {
  static std::atomic<int64_t> v{kDefaultIngestMinVectors};
  return v;
}
/// Process-wide threshold (vectors per call) from which add / upsert use SST ingestion.
inline int64_t ingest_min_vectors() { return ingest_min_vectors_setting().load(); }
inline void set_ingest_min_vectors(int64_t n) { ingest_min_vectors_setting().store(n); }

inline std::atomic<int64_t>& level0_crowded_files_setting() {
  static std::atomic<int64_t> v{0};
  return v;
}
/// Level-0 file count from which Store::level0_crowded() reports a column family as crowded;
/// 0 (default): that family's level0_slowdown_writes_trigger. Tests lower it to reach the
/// fallback to a WriteBatch after a few small adds.
inline int64_t level0_crowded_files() { return level0_crowded_files_setting().load(); }
inline void set_level0_crowded_files(int64_t n) { level0_crowded_files_setting().store(n); }

/// Default: an add / upsert whose entries add up to at least this many bytes (raw vectors and
/// codes) is ingested even while level 0 is crowded (Store::level0_crowded): as a WriteBatch
/// it would be held in memory whole and then inserted into one memtable past its 256 MB limit
/// (write_buffer_size, store.cpp), while one more level-0 file only costs compaction work.
constexpr int64_t kDefaultAlwaysIngestBytes = int64_t(256) << 20;

inline std::atomic<int64_t>& always_ingest_bytes_setting() {
  static std::atomic<int64_t> v{kDefaultAlwaysIngestBytes};
  return v;
}
/// Process-wide size (bytes of vectors and codes per call) from which adds are ingested even
/// into a crowded level 0.
inline int64_t always_ingest_bytes() { return always_ingest_bytes_setting().load(); }
inline void set_always_ingest_bytes(int64_t n) { always_ingest_bytes_setting().store(n); }

/// Points of add / upsert where tests may hold a call to check what proceeds meanwhile.
enum class AddPoint {
  kEncoded,       ///< assigned and encoded, before taking the writer lock
  kBeforeIngest,  ///< an ingestion's files complete, before their commit (writer lock held)
  kAfterIngest,   ///< the ingestion done in RocksDB, before the index's state moves to it
};
struct AddHook {
  std::mutex mu;
  std::function<void(AddPoint)> fn;
};
inline AddHook& add_hook() {
  static AddHook h;
  return h;
}
/// Installs fn (empty: none, the default), called by every add / upsert at each AddPoint on
/// the calling thread.
inline void set_add_hook(std::function<void(AddPoint)> fn) {
  AddHook& h = add_hook();
  std::lock_guard<std::mutex> lock(h.mu);
  h.fn = std::move(fn);
}
inline void run_add_hook(AddPoint point) {
  AddHook& h = add_hook();
  std::function<void(AddPoint)> fn;
  {
    std::lock_guard<std::mutex> lock(h.mu);
    fn = h.fn;
  }
  if (fn) fn(point);
}

}  // namespace index
}  // namespace flashkm
