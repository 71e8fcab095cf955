// PRIVATE to index/: a byte-bounded LRU cache of materialized inverted lists.
//
// An entry is valid only for the list version it was read at: IvfIndex bumps a list's version
// in the same critical section as the RocksDB write that changes it, and every read view
// carries the versions that match its snapshot, so a view never uses an entry from another
// state of the list. Entries are shared_ptrs: evicting one never frees a list a reader holds.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace flashkm {
namespace index {

/// One inverted list as stored: entries sorted by id.
struct MaterializedList {
  std::vector<int64_t> ids;    ///< n ids
  std::vector<uint8_t> codes;  ///< n x code_size bytes
  size_t bytes() const { return ids.size() * sizeof(int64_t) + codes.size() + sizeof(*this); }
};

using ListPtr = std::shared_ptr<const MaterializedList>;

class ListCache {
 public:
  /// capacity_bytes = 0 disables caching (find always misses, insert drops).
  explicit ListCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}

  /// The cached list_no at exactly this version, or nullptr.
  ListPtr find(size_t list_no, uint64_t version);
  /// Caches list at version unless a newer version is already cached; evicts least recently
  /// used entries to stay within the capacity (a list larger than the capacity is not kept).
  void insert(size_t list_no, uint64_t version, ListPtr list);

  size_t capacity() const { return capacity_; }
  size_t bytes() const;
  size_t entries() const;

 private:
  struct Entry {
    uint64_t version;
    ListPtr list;
    std::list<size_t>::iterator lru;  // position in lru_ (front = most recent)
  };
  void evict_locked();

  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<size_t, Entry> map_;
  std::list<size_t> lru_;
  size_t bytes_ = 0;
};

}  // namespace index
}  // namespace flashkm
