#include "index/store.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/metadata.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "index/ingest_policy.h"
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
  // Raw vectors (512 bytes at d = 128): 16 KB blocks instead of 4 KB cut the CPU of writing
  // them (an SST file of 100k vectors: 105 -> 78 ms, bench/index/NOTES.md); reads are whole
  // scans (recluster) or rare single vectors.
  rocksdb::ColumnFamilyOptions vectors_cfo = cfo;
  rocksdb::BlockBasedTableOptions vectors_table = table;
  vectors_table.block_size = size_t(16) << 10;
  vectors_cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(vectors_table));
  // IvfIndex only scans lists, list by list, so a filter is pure cost (the one point lookup,
  // RocksDBInvertedLists::add_entries used on its own, pays a block read for it); a list is
  // tens of KB, read in 16 KB blocks (100k entries: 33 -> 27 ms).
  rocksdb::ColumnFamilyOptions lists_cfo = cfo;
  rocksdb::BlockBasedTableOptions lists_table = table;
  lists_table.block_size = size_t(16) << 10;
  lists_table.filter_policy.reset();
  lists_cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(lists_table));
  st->cf_options_ = cfo;
  st->lists_cf_options_ = lists_cfo;

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
  for (const std::string& n : names) {
    uint64_t g = 0;
    const bool lists = parse_generation_cf(n, &g) && n == lists_cf_name(g);
    descs.emplace_back(n, n == kVectorsCF ? vectors_cfo : lists ? lists_cfo : cfo);
  }
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
  if (!o.read_only) {
    // Only with the directory lock held: the staging files of a live writer are not ours.
    s = st->reset_staging();
    if (!s.ok()) return s;
  }
  *out = std::move(st);
  return rocksdb::Status::OK();
}

std::string Store::staging_dir() const { return dir_ + "/" + kIngestDir; }

rocksdb::Status Store::reset_staging() {
  std::error_code ec;
  std::filesystem::remove_all(staging_dir(), ec);
  if (!ec) std::filesystem::create_directory(staging_dir(), ec);
  if (ec) return rocksdb::Status::IOError("resetting " + staging_dir(), ec.message());
  return rocksdb::Status::OK();
}

std::unique_ptr<Ingestion> Store::new_ingestion(bool unversioned) const {
  return std::unique_ptr<Ingestion>(new Ingestion(this, ingestions_.fetch_add(1), unversioned));
}

Ingestion::~Ingestion() {
  for (File& f : files_) {
    f.writer.reset();
    std::error_code ec;  // best effort: the next read-write open empties the folder anyway
    std::filesystem::remove(f.path, ec);
  }
}

rocksdb::Status Ingestion::file_of(rocksdb::ColumnFamilyHandle* cf,
                                   rocksdb::SstFileWriter** writer) {
  for (File& f : files_) {
    if (f.cf != cf) continue;
    if (!f.writer) return rocksdb::Status::InvalidArgument("ingestion: file already finished");
    *writer = f.writer.get();
    return rocksdb::Status::OK();
  }
  File f;
  f.cf = cf;
  f.path = store_->staging_dir() + "/" + std::to_string(seq_) + "-" + cf->GetName() + ".sst";
  // The column family's own options (comparator, table format, filters), so the file is what
  // a flush of that family would write. Pages stay cached: adds are often read back soon.
  // Writeback starts every MiB (sync_file_range) instead of all at once in the final fsync.
  rocksdb::EnvOptions env;
  env.bytes_per_sync = size_t(1) << 20;
  f.writer = std::make_unique<rocksdb::SstFileWriter>(env, store_->db()->GetOptions(cf), cf,
                                                      /*invalidate_page_cache=*/false);
  *writer = f.writer.get();
  files_.push_back(std::move(f));
  return files_.back().writer->Open(files_.back().path);
}

rocksdb::Status Ingestion::Put(rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& key,
                               const rocksdb::Slice& value) {
  rocksdb::SstFileWriter* w = nullptr;
  rocksdb::Status s = file_of(cf, &w);
  return s.ok() ? w->Put(key, value) : s;
}

rocksdb::Status Ingestion::Delete(rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& key) {
  rocksdb::SstFileWriter* w = nullptr;
  rocksdb::Status s = file_of(cf, &w);
  return s.ok() ? w->Delete(key) : s;
}

rocksdb::Status Ingestion::start(rocksdb::ColumnFamilyHandle* cf) {
  rocksdb::SstFileWriter* w = nullptr;
  return file_of(cf, &w);
}

rocksdb::Status Ingestion::finish(rocksdb::ColumnFamilyHandle* cf) {
  for (File& f : files_) {
    // Only cf's own entry is read: other threads may be finishing theirs.
    if ((cf != nullptr && f.cf != cf) || !f.writer) continue;
    rocksdb::Status s = f.writer->Finish();  // fsyncs the file
    if (!s.ok()) return s;
    f.writer.reset();
  }
  return rocksdb::Status::OK();
}

bool Store::level0_crowded(std::initializer_list<rocksdb::ColumnFamilyHandle*> cfs) const {
  for (rocksdb::ColumnFamilyHandle* cf : cfs) {
    rocksdb::ColumnFamilyMetaData meta;
    db_->GetColumnFamilyMetaData(cf, &meta);
    const size_t files = meta.levels.empty() ? 0 : meta.levels[0].files.size();
    const int64_t set = level0_crowded_files();
    const int64_t trigger = set > 0 ? set : db_->GetOptions(cf).level0_slowdown_writes_trigger;
    if (files >= size_t(std::max<int64_t>(1, trigger))) return true;
  }
  return false;
}

std::shared_ptr<const rocksdb::Snapshot> Store::snapshot() const {
  if (read_only_) return nullptr;
  std::shared_ptr<rocksdb::DB> db = db_;
  return std::shared_ptr<const rocksdb::Snapshot>(
      db->GetSnapshot(), [db](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
}

rocksdb::Status Store::ingest(std::initializer_list<Ingestion*> ingestions) const {
  size_t files = 0;
  for (Ingestion* ing : ingestions) {
    rocksdb::Status s = ing->finish();
    if (!s.ok()) return s;
    files += ing->files_.size();
  }
  if (files == 0) return rocksdb::Status::OK();
  rocksdb::Status s;
  if (!write_options_.sync) {
    // Writes before this one may still sit unsynced in the WAL while the ingested files are
    // fsynced; syncing it first keeps what survives a power loss a prefix of the writes.
    s = db_->SyncWAL();
    if (!s.ok()) return s;
  }
  std::vector<rocksdb::IngestExternalFileArg> args;
  for (Ingestion* ing : ingestions) {
    for (const Ingestion::File& f : ing->files_) {
      rocksdb::IngestExternalFileArg a;
      a.column_family = f.cf;
      a.external_files = {f.path};
      a.options.move_files = true;
      // The sequence number lives in the MANIFEST only; the file is not rewritten in place.
      a.options.write_global_seqno = false;
      a.options.snapshot_consistency = !ing->unversioned_;
      a.options.allow_global_seqno = true;
      a.options.allow_blocking_flush = true;
      args.push_back(std::move(a));
    }
  }
  s = db_->IngestExternalFiles(args);
  if (s.ok()) {
    // Moved into the DB (RocksDB removed the staging links).
    for (Ingestion* ing : ingestions) ing->files_.clear();
  }
  return s;
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
      s = db_->CreateColumnFamily(name == lists_cf_name(g) ? lists_cf_options_ : cf_options_, name,
                                  &h);
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
