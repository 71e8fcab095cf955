#include "index/store.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>

#include "index/keys.h"

namespace flashkm {
namespace index {

namespace {

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

bool is_lock_error(const rocksdb::Status& s) {
  // RocksDB reports a held LOCK file as an IOError whose message names the lock; the same
  // process holding it is reported as "lock hold by current process".
  if (!s.IsIOError()) return false;
  std::string m = s.ToString();
  return m.find("lock") != std::string::npos || m.find("LOCK") != std::string::npos;
}

CFPtr Store::wrap(rocksdb::ColumnFamilyHandle* h) {
  std::shared_ptr<rocksdb::DB> db = db_;
  return CFPtr(h, [db](rocksdb::ColumnFamilyHandle* p) { db->DestroyColumnFamilyHandle(p); });
}

rocksdb::Status Store::open(const std::string& dir, const StoreOptions& o,
                            std::unique_ptr<Store>* out) {
  std::unique_ptr<Store> st(new Store());
  st->dir_ = dir;
  st->read_only_ = o.read_only;
  st->write_options_.sync = o.sync;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(o.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  rocksdb::ColumnFamilyOptions cfo;
  cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Codes and float vectors do not compress; skipping it keeps scans and adds cheap.
  cfo.compression = rocksdb::kNoCompression;
  // Large adds are single batches of hundreds of MB; bigger and more memtables let them land
  // without write stalls while earlier ones flush.
  cfo.write_buffer_size = size_t(256) << 20;
  cfo.max_write_buffer_number = 4;
  st->cf_options_ = cfo;

  rocksdb::DBOptions dbo;
  dbo.max_background_jobs = 2;
  bool exists = file_exists(dir + "/CURRENT");
  if (o.create) {
    if (exists) return rocksdb::Status::InvalidArgument("an index already exists in " + dir);
    dbo.create_if_missing = true;
    dbo.create_missing_column_families = true;
    dbo.error_if_exists = true;
  } else if (!exists) {
    return rocksdb::Status::NotFound("no index in " + dir);
  }

  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, kMetaCF, kVectorsCF};
  if (exists) {
    std::vector<std::string> on_disk;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(dbo, dir, &on_disk);
    if (!s.ok()) return s;
    for (const std::string& n : {std::string(kMetaCF), std::string(kVectorsCF)}) {
      if (std::find(on_disk.begin(), on_disk.end(), n) == on_disk.end()) {
        return rocksdb::Status::Corruption(dir + " is not a flashkm index (no column family " + n +
                                           ")");
      }
    }
    for (const std::string& n : on_disk) {
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& n : names) descs.emplace_back(n, cfo);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = o.read_only ? rocksdb::DB::OpenForReadOnly(dbo, dir, descs, &handles, &raw)
                                  : rocksdb::DB::Open(dbo, dir, descs, &handles, &raw);
  if (!s.ok()) return s;
  // The default handle belongs to the DB; every other one is destroyed before the DB closes,
  // which the shared_ptr captured by each handle's deleter guarantees.
  st->db_.reset(raw);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == rocksdb::kDefaultColumnFamilyName) {
      // Open returns a separate handle for the default family; we never use that family.
      rocksdb::Status ds = raw->DestroyColumnFamilyHandle(handles[i]);
      if (!ds.ok()) return ds;
    } else if (names[i] == kMetaCF) {
      st->meta_ = st->wrap(handles[i]);
    } else if (names[i] == kVectorsCF) {
      st->vectors_ = st->wrap(handles[i]);
    } else {
      st->cfs_[names[i]] = st->wrap(handles[i]);
    }
  }
  *out = std::move(st);
  return rocksdb::Status::OK();
}

Store::~Store() {
  cfs_.clear();
  meta_.reset();
  vectors_.reset();
}

rocksdb::Status Store::read_manifest(const rocksdb::Snapshot* snapshot, proto::Manifest* m) const {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db_->Get(ro, meta_.get(), kManifestKey, &value);
  if (!s.ok()) return s;
  if (!m->ParseFromString(value)) {
    return rocksdb::Status::Corruption("manifest record does not parse as a Manifest protobuf");
  }
  return s;
}

rocksdb::Status Store::generation(uint64_t g, GenerationCFs* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out->generation = g;
  auto find = [&](const std::string& name, CFPtr* p) {
    auto it = cfs_.find(name);
    if (it == cfs_.end()) return false;
    *p = it->second;
    return true;
  };
  if (!find(lists_cf_name(g), &out->lists) || !find(centroids_cf_name(g), &out->centroids) ||
      !find(idmap_cf_name(g), &out->idmap)) {
    return rocksdb::Status::NotFound("column families of generation " + std::to_string(g) +
                                     " are missing");
  }
  return rocksdb::Status::OK();
}

rocksdb::Status Store::drop_cf_locked(const std::string& name) {
  auto it = cfs_.find(name);
  if (it == cfs_.end()) return rocksdb::Status::OK();
  rocksdb::Status s = db_->DropColumnFamily(it->second.get());
  if (!s.ok()) return s;
  cfs_.erase(it);  // readers still holding the handle keep the data alive until they finish
  return s;
}

rocksdb::Status Store::create_generation(uint64_t g, GenerationCFs* out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : {lists_cf_name(g), centroids_cf_name(g), idmap_cf_name(g)}) {
      rocksdb::Status s = drop_cf_locked(name);
      if (!s.ok()) return s;
      rocksdb::ColumnFamilyHandle* h = nullptr;
      s = db_->CreateColumnFamily(cf_options_, name, &h);
      if (!s.ok()) return s;
      cfs_[name] = wrap(h);
    }
  }
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.DeleteRange(meta_.get(), size_range_begin(g), size_range_end(g));
  if (s.ok()) s = batch.Delete(meta_.get(), faiss_blob_key(g));
  if (s.ok()) s = write(&batch);
  if (!s.ok()) return s;
  return generation(g, out);
}

rocksdb::Status Store::flush() {
  std::vector<CFPtr> keep;  // handles stay valid while flushing
  std::vector<rocksdb::ColumnFamilyHandle*> handles = {meta_.get(), vectors_.get()};
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& kv : cfs_) {
      keep.push_back(kv.second);
      handles.push_back(kv.second.get());
    }
  }
  return db_->Flush(rocksdb::FlushOptions(), handles);
}

std::vector<uint64_t> Store::generations() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> gens;
  for (const auto& kv : cfs_) {
    uint64_t g;
    if (parse_generation_cf(kv.first, &g) && std::find(gens.begin(), gens.end(), g) == gens.end()) {
      gens.push_back(g);
    }
  }
  std::sort(gens.begin(), gens.end());
  return gens;
}

rocksdb::Status Store::drop_generations_except(uint64_t keep) {
  std::vector<uint64_t> gens = generations();
  for (uint64_t g : gens) {
    if (g == keep) continue;
    rocksdb::WriteBatch batch;
    rocksdb::Status s = batch.DeleteRange(meta_.get(), size_range_begin(g), size_range_end(g));
    if (s.ok()) s = batch.Delete(meta_.get(), faiss_blob_key(g));
    if (s.ok()) s = write(&batch);
    if (!s.ok()) return s;
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : {lists_cf_name(g), centroids_cf_name(g), idmap_cf_name(g)}) {
      s = drop_cf_locked(name);
      if (!s.ok()) return s;
    }
  }
  return rocksdb::Status::OK();
}

}  // namespace index
}  // namespace flashkm
