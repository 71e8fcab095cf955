#include "index/rocksdb_invlists.h"

#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "flashkm/error.h"
#include "index/keys.h"

namespace flashkm {
namespace index {

namespace {

void throw_if_error(const rocksdb::Status& s, const char* what, size_t list_no) {
  FLASHKM_THROW_IF_NOT(s.ok(), "RocksDB %s of inverted list %zu failed: %s", what, list_no,
                       s.ToString().c_str());
}

std::string be64_value(uint64_t v) {
  std::string s;
  put_be64(&s, v);
  return s;
}

}  // namespace

RocksDBInvertedLists::RocksDBInvertedLists(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* lists_cf,
                                           rocksdb::ColumnFamilyHandle* meta_cf,
                                           uint64_t generation, size_t nlist, size_t code_size,
                                           std::shared_ptr<ListCache> cache,
                                           rocksdb::WriteOptions write_options)
    : faiss::InvertedLists(nlist, code_size),
      db_(db),
      lists_cf_(lists_cf),
      meta_cf_(meta_cf),
      generation_(generation),
      cache_(std::move(cache)),
      write_options_(write_options) {
  FLASHKM_THROW_IF_NOT(db && lists_cf && meta_cf, "RocksDBInvertedLists needs an open database");
  FLASHKM_THROW_IF_NOT(code_size > 0 && code_size != INVALID_CODE_SIZE,
                       "RocksDBInvertedLists: code_size %zu, expected a fixed positive size",
                       code_size);
}

RocksDBInvertedLists::~RocksDBInvertedLists() = default;

void RocksDBInvertedLists::bind(const rocksdb::Snapshot* snapshot,
                                std::shared_ptr<const std::vector<uint64_t>> versions) {
  FLASHKM_ASSERT(!versions || versions->size() == nlist);
  snapshot_ = snapshot;
  versions_ = std::move(versions);
  pins_.reset(versions_ && cache_ && cache_->capacity() > 0 ? new Pin[nlist] : nullptr);
}

void RocksDBInvertedLists::unbind() {
  pins_.reset();
  snapshot_ = nullptr;
  versions_.reset();
}

void RocksDBInvertedLists::check_list_no(size_t list_no) const {
  FLASHKM_THROW_IF_NOT(list_no < nlist, "inverted list %zu out of range, nlist = %zu", list_no,
                       nlist);
}

rocksdb::Status RocksDBInvertedLists::read_size(size_t list_no, const rocksdb::Snapshot* snapshot,
                                                uint64_t* size) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db_->Get(ro, meta_cf_, list_size_key(generation_, uint32_t(list_no)), &value);
  if (s.IsNotFound()) {
    *size = 0;
    return rocksdb::Status::OK();
  }
  if (!s.ok()) return s;
  if (value.size() != 8) return rocksdb::Status::Corruption("size record is not 8 bytes");
  *size = get_be64(value.data());
  return s;
}

rocksdb::Status RocksDBInvertedLists::materialize(size_t list_no, const rocksdb::Snapshot* snapshot,
                                                  MaterializedList* out) const {
  uint64_t expected = 0;
  rocksdb::Status s = read_size(list_no, snapshot, &expected);
  if (!s.ok()) return s;
  out->ids.clear();
  out->codes.clear();
  // The size record is only a hint for allocation until the scan confirms it.
  if (expected < (uint64_t(1) << 24)) {
    out->ids.reserve(expected);
    out->codes.reserve(expected * code_size);
  }

  std::string begin = list_prefix(uint32_t(list_no));
  std::string end = list_prefix(uint32_t(list_no + 1));
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  // list_no + 1 wraps to 0 for the last possible u32 list; nlist is far below that.
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, lists_cf_));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key(), v = it->value();
    uint32_t l;
    uint64_t id;
    if (!parse_list_key(k.data(), k.size(), &l, &id) || l != list_no) {
      return rocksdb::Status::Corruption("malformed key in inverted list");
    }
    if (v.size() != code_size) {
      return rocksdb::Status::Corruption("code of id " + std::to_string(id) + " has " +
                                         std::to_string(v.size()) + " bytes, expected " +
                                         std::to_string(code_size));
    }
    out->ids.push_back(int64_t(id));
    out->codes.insert(out->codes.end(), v.data(), v.data() + v.size());
  }
  s = it->status();
  if (!s.ok()) return s;
  if (out->ids.size() != expected) {
    return rocksdb::Status::Corruption("list holds " + std::to_string(out->ids.size()) +
                                       " entries but its size record says " +
                                       std::to_string(expected));
  }
  return s;
}

ListPtr RocksDBInvertedLists::acquire(size_t list_no) const {
  check_list_no(list_no);
  uint64_t version = versions_ ? (*versions_)[list_no] : 0;
  if (versions_ && cache_) {
    if (ListPtr hit = cache_->find(list_no, version)) return hit;
  }
  auto list = std::make_shared<MaterializedList>();
  throw_if_error(materialize(list_no, snapshot_, list.get()), "scan", list_no);
  if (versions_ && cache_) cache_->insert(list_no, version, list);
  return list;
}

const MaterializedList* RocksDBInvertedLists::pinned(size_t list_no) const {
  check_list_no(list_no);
  Pin& pin = pins_[list_no];
  std::call_once(pin.once, [&] { pin.list = acquire(list_no); });
  return pin.list.get();
}

const void* RocksDBInvertedLists::lend(ListPtr list, const void* ptr) const {
  if (ptr == nullptr) return nullptr;  // empty list: nothing to keep alive
  std::lock_guard<std::mutex> lock(loans_mu_);
  Loan& loan = loans_[ptr];
  if (loan.count++ == 0) loan.list = std::move(list);
  return ptr;
}

void RocksDBInvertedLists::give_back(const void* ptr) const {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(loans_mu_);
  auto it = loans_.find(ptr);
  FLASHKM_ASSERT(it != loans_.end());
  if (--it->second.count == 0) loans_.erase(it);
}

size_t RocksDBInvertedLists::list_size(size_t list_no) const {
  if (pins_) return pinned(list_no)->ids.size();
  check_list_no(list_no);
  if (versions_ && cache_) {
    if (ListPtr hit = cache_->find(list_no, (*versions_)[list_no])) return hit->ids.size();
  }
  uint64_t size = 0;
  throw_if_error(read_size(list_no, snapshot_, &size), "size read", list_no);
  return size_t(size);
}

const uint8_t* RocksDBInvertedLists::get_codes(size_t list_no) const {
  if (pins_) {
    const MaterializedList* l = pinned(list_no);
    return l->codes.empty() ? nullptr : l->codes.data();
  }
  ListPtr list = acquire(list_no);
  const uint8_t* p = list->codes.empty() ? nullptr : list->codes.data();
  return static_cast<const uint8_t*>(lend(std::move(list), p));
}

const faiss::InvertedLists::idx_t* RocksDBInvertedLists::get_ids(size_t list_no) const {
  if (pins_) {
    const MaterializedList* l = pinned(list_no);
    return l->ids.empty() ? nullptr : l->ids.data();
  }
  ListPtr list = acquire(list_no);
  const idx_t* p = list->ids.empty() ? nullptr : list->ids.data();
  return static_cast<const idx_t*>(lend(std::move(list), p));
}

void RocksDBInvertedLists::release_codes(size_t, const uint8_t* codes) const {
  if (!pins_) give_back(codes);
}

void RocksDBInvertedLists::release_ids(size_t, const idx_t* ids) const {
  if (!pins_) give_back(ids);
}

faiss::InvertedLists::idx_t RocksDBInvertedLists::get_single_id(size_t list_no,
                                                                size_t offset) const {
  if (pins_) {
    const MaterializedList* l = pinned(list_no);
    FLASHKM_THROW_IF_NOT(offset < l->ids.size(), "offset %zu past the end of list %zu (size %zu)",
                         offset, list_no, l->ids.size());
    return l->ids[offset];
  }
  ListPtr list = acquire(list_no);
  FLASHKM_THROW_IF_NOT(offset < list->ids.size(), "offset %zu past the end of list %zu (size %zu)",
                       offset, list_no, list->ids.size());
  return list->ids[offset];
}

const uint8_t* RocksDBInvertedLists::get_single_code(size_t list_no, size_t offset) const {
  if (pins_) {  // the pinned list outlives every use until unbind()
    const MaterializedList* l = pinned(list_no);
    FLASHKM_THROW_IF_NOT(offset < l->ids.size(), "offset %zu past the end of list %zu (size %zu)",
                         offset, list_no, l->ids.size());
    return l->codes.data() + offset * code_size;
  }
  ListPtr list = acquire(list_no);
  FLASHKM_THROW_IF_NOT(offset < list->ids.size(), "offset %zu past the end of list %zu (size %zu)",
                       offset, list_no, list->ids.size());
  std::unique_ptr<uint8_t[]> copy(new uint8_t[code_size]);
  std::memcpy(copy.get(), list->codes.data() + offset * code_size, code_size);
  const uint8_t* p = copy.get();
  std::lock_guard<std::mutex> lock(loans_mu_);
  Loan& loan = loans_[p];
  loan.single_code = std::move(copy);
  loan.count = 1;
  return p;
}

void RocksDBInvertedLists::prefetch_lists(const idx_t* list_nos, int n) const {
  if (!pins_) return;
  for (int i = 0; i < n; ++i) {
    if (list_nos[i] >= 0 && size_t(list_nos[i]) < nlist) pinned(size_t(list_nos[i]));
  }
}

size_t RocksDBInvertedLists::add_entries(size_t list_no, size_t n_entry, const idx_t* ids,
                                         const uint8_t* code) {
  check_list_no(list_no);
  uint64_t old_size = 0;
  throw_if_error(read_size(list_no, nullptr, &old_size), "size read", list_no);
  rocksdb::WriteBatch batch;
  std::set<idx_t> seen;
  for (size_t i = 0; i < n_entry; ++i) {
    FLASHKM_THROW_IF_NOT(ids[i] >= 0, "id %lld is negative, expected ids >= 0", (long long)ids[i]);
    FLASHKM_THROW_IF_NOT(seen.insert(ids[i]).second, "id %lld appears twice in one add",
                         (long long)ids[i]);
    std::string key = list_key(uint32_t(list_no), uint64_t(ids[i]));
    std::string existing;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), lists_cf_, key, &existing);
    FLASHKM_THROW_IF_NOT(s.IsNotFound(), "id %lld is already in inverted list %zu",
                         (long long)ids[i], list_no);
    throw_if_error(
        batch.Put(lists_cf_, key,
                  rocksdb::Slice(reinterpret_cast<const char*>(code + i * code_size), code_size)),
        "batch put", list_no);
  }
  throw_if_error(batch.Put(meta_cf_, list_size_key(generation_, uint32_t(list_no)),
                           be64_value(old_size + n_entry)),
                 "batch put", list_no);
  throw_if_error(db_->Write(write_options_, &batch), "write", list_no);
  return size_t(old_size);
}

void RocksDBInvertedLists::update_entries(size_t list_no, size_t offset, size_t n_entry,
                                          const idx_t* ids, const uint8_t* code) {
  check_list_no(list_no);
  MaterializedList old;
  throw_if_error(materialize(list_no, nullptr, &old), "scan", list_no);
  FLASHKM_THROW_IF_NOT(offset + n_entry <= old.ids.size(),
                       "update of entries [%zu, %zu) past the end of list %zu (size %zu)", offset,
                       offset + n_entry, list_no, old.ids.size());
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < n_entry; ++i) {
    throw_if_error(batch.Delete(lists_cf_, list_key(uint32_t(list_no), old.ids[offset + i])),
                   "batch delete", list_no);
  }
  for (size_t i = 0; i < n_entry; ++i) {
    FLASHKM_THROW_IF_NOT(ids[i] >= 0, "id %lld is negative, expected ids >= 0", (long long)ids[i]);
    throw_if_error(
        batch.Put(lists_cf_, list_key(uint32_t(list_no), uint64_t(ids[i])),
                  rocksdb::Slice(reinterpret_cast<const char*>(code + i * code_size), code_size)),
        "batch put", list_no);
  }
  // Replacing ids by ids already elsewhere in the list would merge entries: keep sizes honest.
  std::set<idx_t> remaining(old.ids.begin(), old.ids.end());
  for (size_t i = 0; i < n_entry; ++i) remaining.erase(old.ids[offset + i]);
  for (size_t i = 0; i < n_entry; ++i) remaining.insert(ids[i]);
  throw_if_error(batch.Put(meta_cf_, list_size_key(generation_, uint32_t(list_no)),
                           be64_value(remaining.size())),
                 "batch put", list_no);
  throw_if_error(db_->Write(write_options_, &batch), "write", list_no);
}

void RocksDBInvertedLists::resize(size_t list_no, size_t new_size) {
  check_list_no(list_no);
  MaterializedList old;
  throw_if_error(materialize(list_no, nullptr, &old), "scan", list_no);
  FLASHKM_THROW_IF_NOT(new_size <= old.ids.size(),
                       "resize of list %zu to %zu entries: it holds %zu, and entries cannot be "
                       "added without ids",
                       list_no, new_size, old.ids.size());
  rocksdb::WriteBatch batch;
  for (size_t i = new_size; i < old.ids.size(); ++i) {
    throw_if_error(batch.Delete(lists_cf_, list_key(uint32_t(list_no), old.ids[i])), "batch delete",
                   list_no);
  }
  throw_if_error(
      batch.Put(meta_cf_, list_size_key(generation_, uint32_t(list_no)), be64_value(new_size)),
      "batch put", list_no);
  throw_if_error(db_->Write(write_options_, &batch), "write", list_no);
}

void RocksDBInvertedLists::reset() {
  rocksdb::WriteBatch batch;
  throw_if_error(batch.DeleteRange(lists_cf_, list_prefix(0), list_prefix(uint32_t(nlist))),
                 "batch delete", 0);
  throw_if_error(
      batch.DeleteRange(meta_cf_, size_range_begin(generation_), size_range_end(generation_)),
      "batch delete", 0);
  throw_if_error(db_->Write(write_options_, &batch), "write", 0);
}

}  // namespace index
}  // namespace flashkm
