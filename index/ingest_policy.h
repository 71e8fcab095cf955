// PRIVATE to index/ (set by tests/index and bench/index): which adds are committed by SST
// ingestion (index/store.h, Ingestion) rather than by a WriteBatch.
//
// A WriteBatch goes through the write-ahead log and the memtables: cheap to start, but every
// entry is a memtable insert (three per vector), and everything is written again by the flush.
// An ingestion writes each column family's entries once, sorted, into an SST file; it has a
// fixed cost (a file and an fsync per column family, a MANIFEST write, sometimes a memtable
// flush) that only large adds amortize. The threshold is measured in bench/index/NOTES.md.
#pragma once

#include <atomic>
#include <cstdint>

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

}  // namespace index
}  // namespace flashkm
