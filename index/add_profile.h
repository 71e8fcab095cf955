// PRIVATE to index/ (read by bench/index/bench_index): where the wall time of IvfIndex::add and
// upsert goes, summed over every call in this process since the last reset. Timing only; no
// result depends on it.
#pragma once

#include <cstdint>

namespace flashkm {
namespace index {

struct AddProfile {
  int64_t calls = 0;
  int64_t vectors = 0;
  double assign_s = 0;   ///< exact coarse assignment (flashkm KMeans::assign)
  double encode_s = 0;   ///< codes (PQEncoder or faiss encode_vectors), not overlapped with build
  int64_t ingested = 0;  ///< calls committed by SST ingestion (index/ingest_policy.h)
  double build_s = 0;    ///< WriteBatch serialisation, or the SST files' entries (sort included)
  double finish_s = 0;   ///< ingested calls: completing and fsyncing the SST files
  double write_s = 0;    ///< DB::Write (log + memtable inserts) or DB::IngestExternalFiles
  double total_s = 0;    ///< whole calls, checks and lookups included
};

AddProfile add_profile();
void reset_add_profile();
void record_add(const AddProfile& one);

}  // namespace index
}  // namespace flashkm
