#include "index/list_cache.h"

namespace flashkm {
namespace index {

ListPtr ListCache::find(size_t list_no, uint64_t version) {
  if (capacity_ == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(list_no);
  if (it == map_.end() || it->second.version != version) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.list;
}

void ListCache::insert(size_t list_no, uint64_t version, ListPtr list) {
  if (capacity_ == 0 || list->bytes() > capacity_) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(list_no);
  if (it != map_.end()) {
    if (it->second.version > version) return;  // a reader of an older snapshot came late
    bytes_ -= it->second.list->bytes();
    it->second.version = version;
    it->second.list = std::move(list);
    bytes_ += it->second.list->bytes();
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  } else {
    lru_.push_front(list_no);
    bytes_ += list->bytes();
    map_.emplace(list_no, Entry{version, std::move(list), lru_.begin()});
  }
  evict_locked();
}

void ListCache::evict_locked() {
  while (bytes_ > capacity_ && !lru_.empty()) {
    auto it = map_.find(lru_.back());
    bytes_ -= it->second.list->bytes();
    map_.erase(it);
    lru_.pop_back();
  }
}

size_t ListCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ListCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

}  // namespace index
}  // namespace flashkm
