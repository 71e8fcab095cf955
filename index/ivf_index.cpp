#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>
#include <faiss/clone_index.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <numeric>
#include <random>
#include <regex>
#include <shared_mutex>
#include <typeinfo>
#include <unordered_set>

#include "flashkm/index.h"
#include "index/add_profile.h"
#include "index/ingest_policy.h"
#include "index/keys.h"
#include "index/list_cache.h"
#include "index/rocksdb_invlists.h"
#include "index/store.h"
#include "index/trainer.h"
#include "manifest.pb.h"
#include "plugin/pq_encoder.h"

namespace flashkm {

using index::CFPtr;
using index::GenerationCFs;
using index::ListCache;
using index::RocksDBInvertedLists;
using index::Store;
namespace proto = index::proto;

namespace {

using Clock = std::chrono::steady_clock;

// An add's WriteBatch buffer is kept for the next add up to this size (about 400k vectors of
// 128 floats); larger ones are freed after their commit.
constexpr size_t kKeepBatchBytes = size_t(256) << 20;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

faiss::MetricType faiss_metric(Metric m) {
  return m == Metric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
}

// faiss reports errors as FaissException; callers of IvfIndex only see flashkm::Error.
template <typename F>
auto faiss_call(const std::string& dir, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    FLASHKM_THROW("%s: faiss failed to %s: %s", dir.c_str(), what, e.what());
  }
}

void check_status(const rocksdb::Status& s, const std::string& dir, const char* what) {
  FLASHKM_THROW_IF_NOT(s.ok(), "%s: %s failed: %s", dir.c_str(), what, s.ToString().c_str());
}

void check_finite(int64_t n, int64_t d, const float* x, const char* what) {
  FLASHKM_THROW_IF_NOT(n >= 0, "%s: n = %lld, expected n >= 0", what, (long long)n);
  FLASHKM_THROW_IF_NOT(n == 0 || x != nullptr, "%s: null vectors for n = %lld", what, (long long)n);
  for (int64_t i = 0; i < n * d; ++i) {
    FLASHKM_THROW_IF_NOT(std::isfinite(x[i]),
                         "%s: vector %lld holds a NaN or Inf at dimension %lld", what,
                         (long long)(i / d), (long long)(i % d));
  }
}

std::string be64_value(uint64_t v) {
  std::string s;
  index::put_be64(&s, v);
  return s;
}

std::string be32_value(uint32_t v) {
  std::string s;
  index::put_be32(&s, v);
  return s;
}

rocksdb::Slice bytes_of(const void* p, size_t n) {
  return rocksdb::Slice(static_cast<const char*>(p), n);
}

// nlist of a factory string "[<pre-transforms>,]IVF<nlist>,<codes>", or -1 when it is not one.
int64_t factory_nlist(const std::string& factory) {
  std::smatch m;
  static const std::regex re("^(?:[^,]+,)*?IVF([0-9]+)(,.*)$");
  if (!std::regex_match(factory, m, re)) return -1;
  return std::stoll(m[1].str());
}

std::string factory_with_nlist(const std::string& factory, int64_t nlist) {
  static const std::regex re("(^|,)IVF[0-9]+,");
  return std::regex_replace(factory, re, "$1IVF" + std::to_string(nlist) + ",",
                            std::regex_constants::format_first_only);
}

// Pre-transforms (OPQ, PCA, ...) in the order faiss applies them; owned.
using Chain = std::vector<std::unique_ptr<faiss::VectorTransform>>;

// Input dimension of an index made of chain and ivf.
int64_t input_d(const Chain& chain, const faiss::IndexIVF& ivf) {
  return chain.empty() ? ivf.d : chain.front()->d_in;
}

// x (n rows) through the chain, as faiss's IndexPreTransform::apply_chain; x itself when the
// chain is empty, else a pointer into *buf.
const float* apply_chain(const Chain& chain, int64_t n, const float* x, std::vector<float>* buf) {
  const float* cur = x;
  std::vector<float> next;
  for (const auto& t : chain) {
    next.resize(size_t(n) * size_t(t->d_out));
    t->apply_noalloc(n, cur, next.data());
    buf->swap(next);
    cur = buf->data();
  }
  return cur;
}

// Splits a faiss index into its pre-transform chain and the IndexIVF under it (null when it is
// not [IndexPreTransform of] an IndexIVF); takes ownership of idx.
std::unique_ptr<faiss::IndexIVF> split_index(std::unique_ptr<faiss::Index> idx, Chain* chain) {
  chain->clear();
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(idx.get())) {
    FLASHKM_ASSERT(pt->own_fields);
    for (faiss::VectorTransform* t : pt->chain) chain->emplace_back(t);
    pt->chain.clear();
    faiss::Index* inner = pt->index;
    pt->index = nullptr;
    idx.reset(inner);  // deletes pt, which owns nothing any more
  }
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(idx.get());
  if (ivf == nullptr) return nullptr;
  idx.release();
  return std::unique_ptr<faiss::IndexIVF>(ivf);
}

Chain clone_chain(const std::string& dir, const Chain& chain) {
  Chain out;
  for (const auto& t : chain) {
    faiss::VectorIOWriter w;
    faiss::VectorIOReader r;
    faiss_call(dir, "copy a pre-transform", [&] {
      faiss::write_VectorTransform(t.get(), &w);
      r.data.swap(w.data);
      out.emplace_back(faiss::read_VectorTransform(&r));
      return 0;
    });
  }
  return out;
}

// The index_factory name of a trained pre-transform that an import can reverse ("PCAR32",
// "RR128"), or "" for any other: import needs the raw vectors back, and only a linear map with
// orthonormal rows (a rotation, or a projection onto some of its axes) has a reverse in faiss.
// Whitening (PCAW) has none, although faiss's read_index marks it orthonormal, so the rows are
// checked here. faiss writes an OPQ matrix as a plain LinearTransform; such maps are named RR
// (same shapes): the name only tells recluster() the IVF's input dimension, the stored matrix
// is the file's.
std::string transform_factory(const faiss::VectorTransform& t) {
  auto* lt = dynamic_cast<const faiss::LinearTransform*>(&t);
  if (lt == nullptr || !t.is_trained || t.d_out > t.d_in) return "";
  const size_t din = size_t(t.d_in), dout = size_t(t.d_out);
  for (size_t i = 0; i < dout; ++i) {
    for (size_t j = 0; j <= i; ++j) {
      double dot = 0;
      for (size_t k = 0; k < din; ++k) dot += double(lt->A[i * din + k]) * lt->A[j * din + k];
      if (std::fabs(dot - (i == j ? 1.0 : 0.0)) > 1e-4) return "";
    }
  }
  const std::string d_out = std::to_string(t.d_out);
  if (auto* opq = dynamic_cast<const faiss::OPQMatrix*>(&t)) {
    return "OPQ" + std::to_string(opq->M) + "_" + d_out;
  }
  if (auto* pca = dynamic_cast<const faiss::PCAMatrix*>(&t)) {
    return std::string("PCA") + (pca->random_rotation ? "R" : "") + d_out;
  }
  return "RR" + d_out;
}

// ivf behind its chain as one faiss index (borrowing both; own_fields stays false).
std::unique_ptr<faiss::IndexPreTransform> borrowed_pretransform(const Chain& chain,
                                                                faiss::IndexIVF* ivf) {
  auto pt = std::make_unique<faiss::IndexPreTransform>(ivf);
  pt->own_fields = false;
  for (const auto& t : chain) pt->chain.push_back(t.get());
  pt->d = int(input_d(chain, *ivf));
  return pt;
}

// The IndexIVF of a factory string; its pre-transforms (untrained) go to *chain, which must be
// given when the string has any.
std::unique_ptr<faiss::IndexIVF> ivf_from_factory(const std::string& dir, int64_t d,
                                                  const std::string& factory, Metric metric,
                                                  Chain* chain = nullptr) {
  FLASHKM_THROW_IF_NOT(factory_nlist(factory) > 0,
                       "%s: factory string \"%s\" is not an IVF index, expected "
                       "\"[<pre-transforms>,]IVF<nlist>,<codes>\"",
                       dir.c_str(), factory.c_str());
  std::unique_ptr<faiss::Index> idx(faiss_call(dir, "build the index from its factory string", [&] {
    return faiss::index_factory(int(d), factory.c_str(), faiss_metric(metric));
  }));
  Chain local;
  std::unique_ptr<faiss::IndexIVF> owned = split_index(std::move(idx), chain ? chain : &local);
  faiss::IndexIVF* ivf = owned.get();
  FLASHKM_THROW_IF_NOT(ivf != nullptr,
                       "%s: factory string \"%s\" does not give an IndexIVF (optionally behind "
                       "pre-transforms such as OPQ or PCA)",
                       dir.c_str(), factory.c_str());
  FLASHKM_THROW_IF_NOT(
      ivf->code_size > 0 && ivf->code_size != faiss::InvertedLists::INVALID_CODE_SIZE,
      "%s: factory string \"%s\" has variable-size codes, expected fixed-size "
      "codes (Flat, PQ, SQ)",
      dir.c_str(), factory.c_str());
  FLASHKM_THROW_IF_NOT(dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) != nullptr,
                       "%s: factory string \"%s\" has a non-flat coarse quantizer, expected "
                       "\"IVF<nlist>,<codes>\"",
                       dir.c_str(), factory.c_str());
  return owned;
}

// The stored faiss parameters of a generation: the IndexIVF, or an IndexPreTransform over it
// when there is a chain.
std::string serialize_index(const Chain& chain, faiss::IndexIVF* ivf) {
  faiss::VectorIOWriter w;
  if (chain.empty()) {
    faiss::write_index(ivf, &w);
  } else {
    faiss::write_index(borrowed_pretransform(chain, ivf).get(), &w);
  }
  return std::string(w.data.begin(), w.data.end());
}

std::vector<float> quantizer_centroids(const faiss::IndexIVF& ivf) {
  std::vector<float> c(ivf.nlist * ivf.d);
  ivf.quantizer->reconstruct_n(0, int64_t(ivf.nlist), c.data());
  return c;
}

std::unique_ptr<KMeans> make_assigner(const faiss::IndexIVF& ivf) {
  KMeansParams p;
  p.n_clusters = int(ivf.nlist);
  p.metric = ivf.metric_type == faiss::METRIC_L2 ? Metric::L2 : Metric::InnerProduct;
  p.device = Device::CPU;  // adds are small and frequent: no device start-up per call
  p.init = Init::Given;
  p.init_centroids = quantizer_centroids(ivf);
  return std::make_unique<KMeans>(ivf.d, p);
}

// A search-ready copy of the template with the inverted lists swapped for a RocksDB reader.
struct Searcher {
  std::unique_ptr<faiss::IndexIVF> index;
  RocksDBInvertedLists* lists = nullptr;  // owned by index
};

}  // namespace

// One generation: its column families, the faiss parameters (template index with empty
// lists), the list cache, and per-list versions (bumped on every write touching a list).
struct Generation {
  uint64_t g = 0;
  GenerationCFs cfs;
  Chain chain;  // pre-transforms applied to vectors and queries before templ (often empty)
  std::unique_ptr<faiss::IndexIVF> templ;
  int64_t d() const { return input_d(chain, *templ); }
  // Assigns added vectors to lists with flashkm's exact assignment (ties: lowest list), the
  // same rule the k-means that made the centroids used.
  std::unique_ptr<KMeans> assigner;
  mutable std::mutex assign_mu;  // KMeans is not safe for concurrent calls; adds may overlap
  std::unique_ptr<plugin::PQEncoder> pq_encoder;  // null: faiss's encode_vectors
  std::shared_ptr<ListCache> cache;
  std::shared_ptr<const std::vector<uint64_t>> versions;  // guarded by Impl::state_mu
  std::mutex pool_mu;
  std::vector<std::unique_ptr<Searcher>> pool;
};

// What one search (or export) reads: a snapshot and the state that matches it.
struct ReadView {
  std::shared_ptr<const rocksdb::Snapshot> snapshot;  // null for a read-only index
  std::shared_ptr<Generation> gen;
  std::shared_ptr<const std::vector<uint64_t>> versions;
  int64_t ntotal = 0;
};

struct IvfIndex::Impl {
  std::string dir;
  IvfIndexOptions options;
  std::unique_ptr<Store> store;
  Metric metric = Metric::L2;

  std::mutex write_mu;  // one writer at a time
  // The batch of add/upsert, guarded by write_mu. Reused so that its buffer (tens of MB per
  // 100k vectors) is not faulted in afresh on every call; see kKeepBatchBytes.
  rocksdb::WriteBatch add_batch;
  // Exclusive only for moments (to record the state before a commit's write, and to switch to
  // the state after it); shared to read it.
  mutable std::shared_mutex state_mu;
  proto::Manifest manifest;         // guarded by state_mu
  std::shared_ptr<Generation> gen;  // guarded by state_mu; null while untrained
  std::vector<int64_t> sizes;       // guarded by state_mu; list sizes of gen
  // While a commit's write runs: the state before it, with a snapshot taken before it, which
  // searches read meanwhile (guarded by state_mu; null between commits).
  std::shared_ptr<const ReadView> committing;

  void progress(const std::string& stage, int64_t done, int64_t total) const {
    if (options.progress) options.progress(stage, done, total);
  }

  void require_writable(const char* what) const {
    FLASHKM_THROW_IF_NOT(store != nullptr, "%s: %s on a closed index", dir.c_str(), what);
    FLASHKM_THROW_IF_NOT(!store->read_only(), "%s: %s on an index opened read-only", dir.c_str(),
                         what);
  }

  void require_open(const char* what) const {
    FLASHKM_THROW_IF_NOT(store != nullptr, "%s: %s on a closed index", dir.c_str(), what);
  }

  // The current state and a snapshot that matches it. Between commits that is a fresh
  // snapshot (a commit cannot start while state_mu is held shared; the writes of a
  // re-clustering before its switch touch nothing a view reads). During a commit it is the
  // state before it: a search never waits for a write, and sees its batch entirely or not.
  std::shared_ptr<const ReadView> read_view() const {
    std::shared_lock<std::shared_mutex> lock(state_mu);
    if (committing) return committing;
    return view_locked(store->snapshot());
  }

  std::shared_ptr<const ReadView> view_locked(std::shared_ptr<const rocksdb::Snapshot> snap) const {
    auto v = std::make_shared<ReadView>();
    v->snapshot = std::move(snap);
    v->gen = gen;
    v->versions = gen ? gen->versions : nullptr;
    v->ntotal = manifest.ntotal();
    return v;
  }

  // Runs write (a DB::Write or an ingestion; returns its Status), then apply (switches the
  // in-memory state to what it wrote) under state_mu. Searches meanwhile read the state before
  // the write, with a snapshot taken before it (read_view). Caller holds write_mu, so no other
  // write lands in between.
  template <typename WriteFn, typename ApplyFn>
  void commit_then(WriteFn&& write, ApplyFn&& apply, const char* what) {
    std::shared_ptr<const rocksdb::Snapshot> before = store->snapshot();
    {
      std::unique_lock<std::shared_mutex> lock(state_mu);
      committing = view_locked(std::move(before));
    }
    rocksdb::Status s;
    try {
      s = write();
    } catch (...) {
      std::unique_lock<std::shared_mutex> lock(state_mu);
      committing.reset();
      throw;
    }
    std::unique_lock<std::shared_mutex> lock(state_mu);
    committing.reset();
    check_status(s, dir, what);
    apply();
  }

  std::shared_ptr<Generation> load_generation(const proto::Manifest& m) {
    auto g = std::make_shared<Generation>();
    g->g = m.generation();
    check_status(store->generation(g->g, &g->cfs), dir, "opening the current generation");
    std::string blob;
    check_status(
        store->db()->Get(rocksdb::ReadOptions(), store->meta(), index::faiss_blob_key(g->g), &blob),
        dir, "reading the stored faiss parameters");
    faiss::VectorIOReader r;
    r.data.assign(blob.begin(), blob.end());
    std::unique_ptr<faiss::Index> idx(
        faiss_call(dir, "read the stored faiss parameters", [&] { return faiss::read_index(&r); }));
    g->templ = split_index(std::move(idx), &g->chain);
    faiss::IndexIVF* ivf = g->templ.get();
    FLASHKM_THROW_IF_NOT(ivf != nullptr,
                         "%s: stored faiss parameters are not an IndexIVF (or IndexPreTransform "
                         "over one)",
                         dir.c_str());
    for (size_t i = 0; i < g->chain.size(); ++i) {
      const faiss::VectorTransform& t = *g->chain[i];
      const int64_t next_d = i + 1 < g->chain.size() ? g->chain[i + 1]->d_in : ivf->d;
      FLASHKM_THROW_IF_NOT(t.is_trained && t.d_out == next_d,
                           "%s: stored pre-transform %zu is untrained or outputs %d dimensions "
                           "where %lld are expected",
                           dir.c_str(), i, t.d_out, (long long)next_d);
    }
    FLASHKM_THROW_IF_NOT(
        g->d() == m.d() && int64_t(ivf->nlist) == m.nlist() &&
            int64_t(ivf->code_size) == m.code_size() && ivf->metric_type == faiss_metric(metric),
        "%s: manifest (d = %lld, nlist = %lld, code size = %lld, metric %s) does not match the "
        "stored faiss index (d = %d, nlist = %zu, code size = %zu, metric %d)",
        dir.c_str(), (long long)m.d(), (long long)m.nlist(), (long long)m.code_size(),
        m.metric().c_str(), int(g->d()), ivf->nlist, ivf->code_size, int(ivf->metric_type));
    FLASHKM_THROW_IF_NOT(ivf->is_trained, "%s: stored faiss parameters are untrained", dir.c_str());
    g->assigner = make_assigner(*ivf);
    g->pq_encoder = plugin::PQEncoder::make(*ivf);
    g->cache = std::make_shared<ListCache>(options.list_cache_bytes);
    g->versions = std::make_shared<std::vector<uint64_t>>(ivf->nlist, 0);
    return g;
  }

  std::vector<int64_t> load_sizes(const Generation& g) {
    std::vector<int64_t> s(g.templ->nlist, 0);
    rocksdb::ReadOptions ro;
    std::string end = index::size_range_end(g.g);
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(store->db()->NewIterator(ro, store->meta()));
    for (it->Seek(index::size_range_begin(g.g)); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key(), v = it->value();
      FLASHKM_THROW_IF_NOT(k.size() == 12 && v.size() == 8, "%s: malformed list size record",
                           dir.c_str());
      uint32_t l = index::get_be32(k.data() + 8);
      FLASHKM_THROW_IF_NOT(l < s.size(), "%s: size record of list %u, nlist = %zu", dir.c_str(), l,
                           s.size());
      s[l] = int64_t(index::get_be64(v.data()));
    }
    check_status(it->status(), dir, "reading list sizes");
    return s;
  }

  std::unique_ptr<Searcher> take_searcher(Generation& g) const {
    {
      std::lock_guard<std::mutex> lock(g.pool_mu);
      if (!g.pool.empty()) {
        std::unique_ptr<Searcher> s = std::move(g.pool.back());
        g.pool.pop_back();
        return s;
      }
    }
    auto s = std::make_unique<Searcher>();
    std::unique_ptr<faiss::Index> copy(faiss_call(
        dir, "copy the index for a searcher", [&] { return faiss::clone_index(g.templ.get()); }));
    s->index.reset(dynamic_cast<faiss::IndexIVF*>(copy.release()));
    FLASHKM_ASSERT(s->index != nullptr);
    s->lists =
        new RocksDBInvertedLists(store->db(), g.cfs.lists.get(), store->meta(), g.g, g.templ->nlist,
                                 g.templ->code_size, g.cache, store->write_options());
    s->index->replace_invlists(s->lists, true);
    return s;
  }

  void return_searcher(Generation& g, std::unique_ptr<Searcher> s) const {
    s->lists->unbind();
    std::lock_guard<std::mutex> lock(g.pool_mu);
    g.pool.push_back(std::move(s));
  }

  // Commits a write (write_fn: a DB::Write or an ingestion) and then the new manifest / sizes /
  // versions (commit_then).
  template <typename WriteFn>
  void commit(WriteFn&& write_fn, const proto::Manifest& m, std::vector<int64_t> new_sizes,
              const std::vector<uint32_t>& touched) {
    commit_then(
        write_fn,
        [&] {
          manifest = m;
          sizes = std::move(new_sizes);
          if (gen && !touched.empty()) {
            auto v = std::make_shared<std::vector<uint64_t>>(*gen->versions);
            for (uint32_t l : touched) (*v)[l] = m.write_count();
            gen->versions = std::move(v);
          }
        },
        "writing the batch");
  }

  void put_manifest(rocksdb::WriteBatch* batch, const proto::Manifest& m) {
    check_status(batch->Put(store->meta(), index::kManifestKey, m.SerializeAsString()), dir,
                 "building the batch");
  }

  // Assigns and encodes n vectors with the generation's template (writer only).
  void encode(const Generation& g, int64_t n, const float* x,
              std::vector<faiss::Index::idx_t>* lists, std::vector<uint8_t>* codes,
              index::AddProfile* prof = nullptr) const {
    auto t0 = Clock::now();
    std::vector<float> transformed;
    x = faiss_call(dir, "apply the pre-transforms",
                   [&] { return apply_chain(g.chain, n, x, &transformed); });
    lists->resize(n);
    codes->resize(size_t(n) * g.templ->code_size);
    std::vector<int32_t> labels(n);
    {
      std::lock_guard<std::mutex> lock(g.assign_mu);
      g.assigner->assign(n, x, labels.data());
    }
    std::copy(labels.begin(), labels.end(), lists->begin());
    if (prof) prof->assign_s += seconds_since(t0);
    t0 = Clock::now();
    if (g.pq_encoder) {
      g.pq_encoder->encode(n, x, lists->data(), codes->data());
    } else {
      faiss_call(dir, "encode vectors", [&] {
        g.templ->encode_vectors(n, x, lists->data(), codes->data());
        return 0;
      });
    }
    if (prof) prof->encode_s += seconds_since(t0);
  }

  // Looks up the current list of each id (-1 when absent), as of the latest state.
  std::vector<int64_t> lookup_lists(const Generation& g, int64_t n, const int64_t* ids) const {
    std::vector<std::string> keys(n);
    std::vector<rocksdb::Slice> slices(n);
    for (int64_t i = 0; i < n; ++i) {
      keys[i] = index::id_key(uint64_t(ids[i]));
      slices[i] = keys[i];
    }
    std::vector<rocksdb::PinnableSlice> values(n);
    std::vector<rocksdb::Status> statuses(n);
    store->db()->MultiGet(rocksdb::ReadOptions(), g.cfs.idmap.get(), size_t(n), slices.data(),
                          values.data(), statuses.data());
    std::vector<int64_t> out(n, -1);
    for (int64_t i = 0; i < n; ++i) {
      if (statuses[i].IsNotFound()) continue;
      check_status(statuses[i], dir, "reading the id map");
      FLASHKM_THROW_IF_NOT(values[i].size() == 4, "%s: id map record of id %lld is malformed",
                           dir.c_str(), (long long)ids[i]);
      out[i] = index::get_be32(values[i].data());
    }
    return out;
  }

  void check_ids(int64_t n, const int64_t* ids, const char* what) const {
    std::unordered_set<int64_t> seen;
    seen.reserve(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      FLASHKM_THROW_IF_NOT(ids[i] >= 0,
                           "%s: %s: id %lld at position %lld is negative, expected "
                           "ids >= 0",
                           dir.c_str(), what, (long long)ids[i], (long long)i);
      FLASHKM_THROW_IF_NOT(seen.insert(ids[i]).second, "%s: %s: id %lld appears twice in one call",
                           dir.c_str(), what, (long long)ids[i]);
    }
  }

  // The current generation, which adds encode for (null while untrained).
  std::shared_ptr<Generation> current_generation() const {
    std::shared_lock<std::shared_mutex> lock(state_mu);
    return gen;
  }

  // add (replace = false) and upsert (replace = true).
  //
  // Assignment and codes depend only on the generation, so they are computed before taking
  // the writer lock: when several threads add, one call encodes while another commits (the
  // commit, mostly one thread's work, would otherwise leave the other cores idle). Each call
  // still returns only once its own batch is durable. A re-clustering that lands in between
  // is noticed under the lock and the vectors are encoded again for the new generation.
  int64_t write_vectors(int64_t n, const float* x, const int64_t* ids_in, bool replace) {
    const char* what = replace ? "upsert" : "add";
    auto t_call = Clock::now();
    index::AddProfile prof;
    require_writable(what);
    std::shared_ptr<Generation> encoded_for = current_generation();
    FLASHKM_THROW_IF_NOT(encoded_for != nullptr, "%s: %s before train(): the index is not trained",
                         dir.c_str(), what);
    const int64_t d = encoded_for->d();
    check_finite(n, d, x, what);
    if (ids_in) check_ids(n, ids_in, what);
    std::vector<faiss::Index::idx_t> lists;
    std::vector<uint8_t> codes;
    if (n > 0) encode(*encoded_for, n, x, &lists, &codes, &prof);
    index::run_add_hook(index::AddPoint::kEncoded);

    std::lock_guard<std::mutex> wlock(write_mu);
    if (n == 0) return manifest.next_id();
    FLASHKM_THROW_IF_NOT(gen != nullptr, "%s: %s: the index was closed", dir.c_str(), what);
    if (gen != encoded_for) encode(*gen, n, x, &lists, &codes, &prof);
    Generation& g = *gen;
    auto t_build = Clock::now();
    proto::Manifest m = manifest;

    // ids[i] is vector i's id; by_id lists the vectors in id order (every column family's
    // entries are produced in key order: an SST file requires it, and RocksDB inserts a
    // WriteBatch into its memtables in batch order, where sorted inserts reuse the skiplist's
    // search path, several times faster than the same entries in random order).
    std::vector<int64_t> ids(n), by_id(n);
    std::iota(by_id.begin(), by_id.end(), 0);
    if (ids_in) {
      std::copy(ids_in, ids_in + n, ids.begin());
      if (!std::is_sorted(ids.begin(), ids.end())) {
        std::sort(by_id.begin(), by_id.end(),
                  [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
      }
    } else {
      std::iota(ids.begin(), ids.end(), m.next_id());
    }
    std::vector<int64_t> old_lists(n, -1);
    if (ids_in) {
      old_lists = lookup_lists(g, n, ids.data());
      if (!replace) {
        for (int64_t i = 0; i < n; ++i) {
          FLASHKM_THROW_IF_NOT(old_lists[i] < 0,
                               "%s: add: id %lld is already in the index (use "
                               "upsert to replace it)",
                               dir.c_str(), (long long)ids[i]);
        }
      }
    }
    const size_t cs = g.templ->code_size;
    const size_t nlist = sizes.size();
    // lists: (list, id) order. Entry i >= 0 puts vector i's code; ~i deletes the old entry of
    // ids[i], for an upsert that moves it to another list (in the same list the put replaces
    // it). A counting sort by list of the entries in id order.
    auto moved = [&](int64_t i) { return old_lists[i] >= 0 && old_lists[i] != lists[i]; };
    std::vector<int64_t> new_sizes = sizes;
    std::vector<int64_t> start(nlist + 1, 0);
    int64_t added = 0, entries = n;
    for (int64_t i = 0; i < n; ++i) {
      ++start[size_t(lists[i]) + 1];
      ++new_sizes[size_t(lists[i])];
      if (old_lists[i] < 0) {
        ++added;
      } else {
        --new_sizes[size_t(old_lists[i])];
      }
      if (moved(i)) {
        ++start[size_t(old_lists[i]) + 1];
        ++entries;
      }
    }
    std::vector<uint32_t> touched;
    for (size_t l = 0; l < nlist; ++l) {
      if (start[l + 1] > 0) touched.push_back(uint32_t(l));
      start[l + 1] += start[l];
    }
    std::vector<int64_t> by_list(static_cast<size_t>(entries));
    for (int64_t i : by_id) {
      if (moved(i)) by_list[size_t(start[size_t(old_lists[i])]++)] = ~i;
      by_list[size_t(start[size_t(lists[i])]++)] = i;
    }
    m.set_ntotal(m.ntotal() + added);
    int64_t max_id = ids[size_t(by_id.back())];
    m.set_next_id(std::max(m.next_id(), max_id + 1));
    m.set_write_count(m.write_count() + 1);

    auto cf_lists = g.cfs.lists.get(), cf_idmap = g.cfs.idmap.get(), cf_vec = store->vectors();
    auto fill_vectors = [&](auto* sink) {
      for (int64_t i : by_id) {
        check_status(sink->Put(cf_vec, index::id_key(uint64_t(ids[i])),
                               bytes_of(x + i * d, sizeof(float) * d)),
                     dir, "building the batch");
      }
    };
    auto fill_lists = [&](auto* sink) {
      for (int64_t e : by_list) {
        if (e < 0) {
          const int64_t i = ~e;
          check_status(
              sink->Delete(cf_lists, index::list_key(uint32_t(old_lists[i]), uint64_t(ids[i]))),
              dir, "building the batch");
        } else {
          check_status(sink->Put(cf_lists, index::list_key(uint32_t(lists[e]), uint64_t(ids[e])),
                                 bytes_of(&codes[e * cs], cs)),
                       dir, "building the batch");
        }
      }
    };
    auto fill_idmap = [&](auto* sink) {
      for (int64_t i : by_id) {
        check_status(
            sink->Put(cf_idmap, index::id_key(uint64_t(ids[i])), be32_value(uint32_t(lists[i]))),
            dir, "building the batch");
      }
    };
    auto fill_meta = [&](auto* sink) {
      // "manifest" sorts before the "size" records.
      check_status(sink->Put(store->meta(), index::kManifestKey, m.SerializeAsString()), dir,
                   "building the batch");
      for (uint32_t l : touched) {
        check_status(sink->Put(store->meta(), index::list_size_key(g.g, l),
                               be64_value(uint64_t(new_sizes[l]))),
                     dir, "building the batch");
      }
    };
    const int64_t entry_bytes = n * int64_t(sizeof(float) * size_t(d) + cs);
    if (n >= index::ingest_min_vectors() &&
        (entry_bytes >= index::always_ingest_bytes() ||
         !store->level0_crowded({cf_lists, cf_vec, cf_idmap, store->meta()}))) {
      // The raw vectors, most of the bytes, are written and synced on a second thread (a
      // single caller leaves the other core idle here). If the rest throws, the future's
      // destructor waits for that thread before vec_file goes away.
      std::unique_ptr<index::Ingestion> vec_file = store->new_ingestion(/*unversioned=*/true);
      check_status(vec_file->start(cf_vec), dir, "creating the SST files");
      std::future<void> vec_done = std::async(std::launch::async, [&] {
        fill_vectors(vec_file.get());
        check_status(vec_file->finish(), dir, "writing the SST files");
      });
      // Lists and meta (what searches read through snapshots) here, the id map on a third
      // thread.
      std::unique_ptr<index::Ingestion> list_file = store->new_ingestion();
      std::unique_ptr<index::Ingestion> id_file = store->new_ingestion(/*unversioned=*/true);
      check_status(list_file->start(cf_lists), dir, "creating the SST files");
      check_status(list_file->start(store->meta()), dir, "creating the SST files");
      std::future<void> ids_done = std::async(std::launch::async, [&] {
        fill_idmap(id_file.get());
        check_status(id_file->finish(), dir, "writing the SST files");
      });
      fill_lists(list_file.get());
      fill_meta(list_file.get());
      prof.build_s = seconds_since(t_build);
      auto t_finish = Clock::now();
      check_status(list_file->finish(), dir, "writing the SST files");
      ids_done.get();
      vec_done.get();
      prof.finish_s = seconds_since(t_finish);
      auto t_write = Clock::now();
      commit(
          [&] {
            index::run_add_hook(index::AddPoint::kBeforeIngest);
            rocksdb::Status s = store->ingest({vec_file.get(), list_file.get(), id_file.get()});
            if (s.ok()) index::run_add_hook(index::AddPoint::kAfterIngest);
            return s;
          },
          m, std::move(new_sizes), touched);
      prof.write_s = seconds_since(t_write);
      prof.ingested = 1;
    } else {
      rocksdb::WriteBatch& batch = add_batch;
      batch.Clear();  // keeps the buffer
      fill_lists(&batch);
      fill_idmap(&batch);
      fill_meta(&batch);
      fill_vectors(&batch);
      prof.build_s = seconds_since(t_build);
      auto t_write = Clock::now();
      commit([&] { return store->write(&batch); }, m, std::move(new_sizes), touched);
      prof.write_s = seconds_since(t_write);
      if (batch.GetDataSize() > kKeepBatchBytes) batch = rocksdb::WriteBatch();
    }
    prof.calls = 1;
    prof.vectors = n;
    prof.total_s = seconds_since(t_call);
    index::record_add(prof);
    return n ? ids[0] : m.next_id();
  }

  int64_t remove(int64_t n, const int64_t* ids) {
    require_writable("remove");
    std::lock_guard<std::mutex> wlock(write_mu);
    FLASHKM_THROW_IF_NOT(n >= 0 && (n == 0 || ids), "%s: remove: n = %lld, expected n >= 0 ids",
                         dir.c_str(), (long long)n);
    if (!gen || n == 0) return 0;
    Generation& g = *gen;
    std::vector<int64_t> unique(ids, ids + n);
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    std::vector<int64_t> old_lists = lookup_lists(g, int64_t(unique.size()), unique.data());
    proto::Manifest m = manifest;
    rocksdb::WriteBatch batch;
    std::vector<int64_t> new_sizes = sizes;
    std::vector<uint32_t> touched;
    int64_t removed = 0;
    for (size_t i = 0; i < unique.size(); ++i) {
      if (old_lists[i] < 0) continue;
      uint64_t id = uint64_t(unique[i]);
      uint32_t l = uint32_t(old_lists[i]);
      std::string idk = index::id_key(id);
      check_status(batch.Delete(g.cfs.lists.get(), index::list_key(l, id)), dir,
                   "building the batch");
      check_status(batch.Delete(store->vectors(), idk), dir, "building the batch");
      check_status(batch.Delete(g.cfs.idmap.get(), idk), dir, "building the batch");
      --new_sizes[l];
      touched.push_back(l);
      ++removed;
    }
    if (removed == 0) return 0;
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint32_t l : touched) {
      check_status(batch.Put(store->meta(), index::list_size_key(g.g, l),
                             be64_value(uint64_t(new_sizes[l]))),
                   dir, "building the batch");
    }
    m.set_ntotal(m.ntotal() - removed);
    m.set_write_count(m.write_count() + 1);
    put_manifest(&batch, m);
    commit([&] { return store->write(&batch); }, m, std::move(new_sizes), touched);
    return removed;
  }

  // Builds generation manifest.generation() + 1 from templ (trained) over every stored vector
  // and switches to it. Caller holds write_mu. Old generations are dropped after the switch.
  // With source (import), the lists are copied from it code for code instead of re-encoding
  // the stored vectors, so the persisted index answers exactly like the imported file.
  void build_and_flip(Chain chain, std::unique_ptr<faiss::IndexIVF> templ,
                      const std::string& factory, const index::QuantizerTraining& t,
                      Clock::time_point t0, const faiss::InvertedLists* source = nullptr) {
    const uint64_t g_new = manifest.generation() + 1;
    FLASHKM_THROW_IF_NOT(g_new <= UINT32_MAX, "%s: generation counter exhausted", dir.c_str());
    const int64_t d = manifest.d();
    GenerationCFs cfs;
    check_status(store->create_generation(g_new, &cfs), dir, "creating the new generation");

    // Template and centroids first; none of it is visible before the manifest flip.
    {
      rocksdb::WriteBatch b;
      check_status(
          b.Put(store->meta(), index::faiss_blob_key(g_new), serialize_index(chain, templ.get())),
          dir, "building the batch");
      std::vector<float> c = quantizer_centroids(*templ);
      const size_t dq = size_t(templ->d);  // after the pre-transforms
      for (size_t l = 0; l < templ->nlist; ++l) {
        check_status(b.Put(cfs.centroids.get(), index::centroid_key(uint32_t(l)),
                           bytes_of(&c[l * dq], sizeof(float) * dq)),
                     dir, "building the batch");
      }
      check_status(store->write(&b), dir, "writing the new centroids");
    }

    // Stream the stored vectors (writers are blocked, so the latest state is stable) through
    // the new quantizer in chunks; each chunk is one batch into the new generation.
    std::vector<int64_t> new_sizes(templ->nlist, 0);
    const int64_t chunk = 65536;
    const int64_t total = manifest.ntotal();
    int64_t done = 0;
    std::vector<int64_t> ids;
    std::vector<float> x;
    Generation tmp;
    tmp.chain = std::move(chain);
    tmp.templ = std::move(templ);
    tmp.assigner = make_assigner(*tmp.templ);
    tmp.pq_encoder = plugin::PQEncoder::make(*tmp.templ);
    auto flush = [&] {
      int64_t n = int64_t(ids.size());
      if (n == 0) return;
      std::vector<faiss::Index::idx_t> lists;
      std::vector<uint8_t> codes;
      encode(tmp, n, x.data(), &lists, &codes);
      const size_t cs = tmp.templ->code_size;
      rocksdb::WriteBatch b;
      std::vector<int64_t> by_list(n);  // sorted puts: see write_vectors
      std::iota(by_list.begin(), by_list.end(), 0);
      std::stable_sort(by_list.begin(), by_list.end(),
                       [&](int64_t a, int64_t c) { return lists[a] < lists[c]; });
      for (int64_t i : by_list) {
        uint32_t l = uint32_t(lists[i]);
        check_status(b.Put(cfs.lists.get(), index::list_key(l, uint64_t(ids[i])),
                           bytes_of(&codes[i * cs], cs)),
                     dir, "building the batch");
        ++new_sizes[l];
      }
      for (int64_t i = 0; i < n; ++i) {
        check_status(
            b.Put(cfs.idmap.get(), index::id_key(uint64_t(ids[i])), be32_value(uint32_t(lists[i]))),
            dir, "building the batch");
      }
      check_status(store->write(&b), dir, "writing the new lists");
      done += n;
      progress("rebuild lists", done, total);
      ids.clear();
      x.clear();
    };
    if (source) {
      const size_t cs = tmp.templ->code_size;
      for (size_t l = 0; l < source->nlist; ++l) {
        size_t ls = source->list_size(l);
        if (ls == 0) continue;
        faiss::InvertedLists::ScopedIds lids(source, l);
        faiss::InvertedLists::ScopedCodes lcodes(source, l);
        rocksdb::WriteBatch b;
        for (size_t o = 0; o < ls; ++o) {
          uint64_t id = uint64_t(lids[o]);
          check_status(b.Put(cfs.lists.get(), index::list_key(uint32_t(l), id),
                             bytes_of(lcodes.get() + o * cs, cs)),
                       dir, "building the batch");
          check_status(b.Put(cfs.idmap.get(), index::id_key(id), be32_value(uint32_t(l))), dir,
                       "building the batch");
        }
        check_status(store->write(&b), dir, "writing the new lists");
        new_sizes[l] = int64_t(ls);
        done += int64_t(ls);
        progress("copy lists", done, total);
      }
    } else {
      std::unique_ptr<rocksdb::Iterator> it(
          store->db()->NewIterator(rocksdb::ReadOptions(), store->vectors()));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        rocksdb::Slice k = it->key(), v = it->value();
        FLASHKM_THROW_IF_NOT(k.size() == 8 && v.size() == sizeof(float) * size_t(d),
                             "%s: malformed vector record", dir.c_str());
        ids.push_back(int64_t(index::get_be64(k.data())));
        size_t off = x.size();
        x.resize(off + size_t(d));
        std::memcpy(&x[off], v.data(), v.size());
        if (int64_t(ids.size()) == chunk) flush();
      }
      check_status(it->status(), dir, "reading the stored vectors");
      flush();
    }
    FLASHKM_THROW_IF_NOT(done == total, "%s: %lld stored vectors, manifest says %lld", dir.c_str(),
                         (long long)done, (long long)total);

    // The flip: sizes and manifest in one batch.
    proto::Manifest m = manifest;
    rocksdb::WriteBatch b;
    for (size_t l = 0; l < new_sizes.size(); ++l) {
      if (new_sizes[l] == 0) continue;
      check_status(b.Put(store->meta(), index::list_size_key(g_new, uint32_t(l)),
                         be64_value(uint64_t(new_sizes[l]))),
                   dir, "building the batch");
    }
    m.set_generation(g_new);
    m.set_nlist(int64_t(tmp.templ->nlist));
    m.set_factory(factory);
    m.set_write_count(m.write_count() + 1);
    proto::TrainingStats* ts = m.mutable_training();
    ts->set_n_train(t.n_train);
    ts->set_max_iter(t.max_iter);
    ts->set_seed(t.seed);
    ts->set_iterations(t.iterations);
    ts->set_inertia(t.inertia);
    ts->set_device(t.device);
    ts->set_init(t.init);
    ts->set_seconds(t.seconds);
    ts->set_total_seconds(seconds_since(t0));
    put_manifest(&b, m);

    auto g = std::make_shared<Generation>();
    g->g = g_new;
    g->cfs = cfs;
    g->chain = std::move(tmp.chain);
    g->templ = std::move(tmp.templ);
    g->assigner = std::move(tmp.assigner);
    g->pq_encoder = std::move(tmp.pq_encoder);
    g->cache = std::make_shared<ListCache>(options.list_cache_bytes);
    g->versions = std::make_shared<std::vector<uint64_t>>(g->templ->nlist, 0);
    commit_then([&] { return store->write(&b); },
                [&] {
                  manifest = m;
                  gen = g;
                  sizes = std::move(new_sizes);
                },
                "switching to the new generation");
    check_status(store->drop_generations_except(g_new), dir, "deleting the old generation");
  }

  // Trains the untrained pre-transforms of chain (each on the output of the ones before it,
  // as faiss's IndexPreTransform::train does), then templ on the transformed points, then
  // builds and switches to the new generation.
  void train_into(Chain chain, std::unique_ptr<faiss::IndexIVF> templ, int64_t n, const float* x,
                  const IvfTrainParams& params, const std::vector<float>* warm,
                  const std::string& factory) {
    auto t0 = Clock::now();
    KMeansParams kp = params.kmeans;
    kp.n_clusters = int(templ->nlist);
    kp.metric = metric;
    if (warm) {
      kp.init = Init::Given;
      kp.init_centroids = *warm;
    }
    // Deterministic subsample when asked for.
    std::vector<float> sample;
    const float* train_x = x;
    int64_t n_train = n;
    if (params.max_train_points > 0 && n > params.max_train_points) {
      n_train = std::max<int64_t>(params.max_train_points, int64_t(templ->nlist));
      std::vector<int64_t> perm(n);
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(kp.seed);
      for (int64_t i = 0; i < n_train; ++i) {
        std::uniform_int_distribution<int64_t> pick(i, n - 1);
        std::swap(perm[i], perm[pick(rng)]);
      }
      std::sort(perm.begin(), perm.begin() + n_train);
      const int64_t d = manifest.d();
      sample.resize(size_t(n_train * d));
      for (int64_t i = 0; i < n_train; ++i) {
        std::memcpy(&sample[i * d], x + perm[i] * d, sizeof(float) * d);
      }
      train_x = sample.data();
    }
    std::vector<float> transformed;
    for (auto& tr : chain) {
      if (!tr->is_trained) {
        progress("pre-transform", 0, 1);
        faiss_call(dir, "train a pre-transform", [&] {
          tr->train(n_train, train_x);
          return 0;
        });
        progress("pre-transform", 1, 1);
      }
      std::vector<float> next(size_t(n_train) * size_t(tr->d_out));
      tr->apply_noalloc(n_train, train_x, next.data());
      transformed.swap(next);
      train_x = transformed.data();
    }
    progress("k-means", 0, 1);
    index::QuantizerTraining t = index::train_ivf(templ.get(), n_train, train_x, kp);
    progress("k-means", 1, 1);
    build_and_flip(std::move(chain), std::move(templ), factory, t, t0);
  }

  // Every stored vector (ids ascending) of the latest state.
  void read_all_vectors(std::vector<int64_t>* ids, std::vector<float>* x) {
    const int64_t d = manifest.d();
    ids->clear();
    x->clear();
    ids->reserve(size_t(manifest.ntotal()));
    x->reserve(size_t(manifest.ntotal() * d));
    std::unique_ptr<rocksdb::Iterator> it(
        store->db()->NewIterator(rocksdb::ReadOptions(), store->vectors()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key(), v = it->value();
      FLASHKM_THROW_IF_NOT(k.size() == 8 && v.size() == sizeof(float) * size_t(d),
                           "%s: malformed vector record", dir.c_str());
      ids->push_back(int64_t(index::get_be64(k.data())));
      const float* f = reinterpret_cast<const float*>(v.data());
      x->insert(x->end(), f, f + d);
    }
    check_status(it->status(), dir, "reading the stored vectors");
  }

  // Validates a manifest read from disk (nothing is written before this passes).
  void validate_manifest(const proto::Manifest& m) {
    FLASHKM_THROW_IF_NOT(m.format_version() == index::kFormatVersion,
                         "%s: index format version %u, this build of flashkm reads version %u "
                         "only",
                         dir.c_str(), m.format_version(), index::kFormatVersion);
    FLASHKM_THROW_IF_NOT(m.d() > 0 && m.nlist() > 0 && m.code_size() > 0 && m.ntotal() >= 0,
                         "%s: corrupt manifest (d = %lld, nlist = %lld, code size = %lld, "
                         "ntotal = %lld)",
                         dir.c_str(), (long long)m.d(), (long long)m.nlist(),
                         (long long)m.code_size(), (long long)m.ntotal());
    FLASHKM_THROW_IF_NOT(m.metric() == "l2" || m.metric() == "ip",
                         "%s: corrupt manifest: metric \"%s\", expected \"l2\" or \"ip\"",
                         dir.c_str(), m.metric().c_str());
    FLASHKM_THROW_IF_NOT(options.expected_d <= 0 || options.expected_d == m.d(),
                         "%s: index has d = %lld, expected d = %lld", dir.c_str(), (long long)m.d(),
                         (long long)options.expected_d);
    FLASHKM_THROW_IF_NOT(factory_nlist(m.factory()) == m.nlist(),
                         "%s: corrupt manifest: factory \"%s\" does not match nlist = %lld",
                         dir.c_str(), m.factory().c_str(), (long long)m.nlist());
  }

  void open_store(const std::string& d, bool create) {
    index::StoreOptions so;
    so.read_only = options.read_only;
    so.create = create;
    so.sync = options.sync;
    so.block_cache_bytes = options.block_cache_bytes;
    rocksdb::Status s = Store::open(d, so, &store);
    if (index::is_lock_error(s)) {
      FLASHKM_THROW(
          "%s: the index is already open for writing (by this or another process); "
          "close that writer or open read-only (%s)",
          d.c_str(), s.ToString().c_str());
    }
    check_status(s, d, create ? "creating the index" : "opening the index");
  }

  // Loads manifest, generation and sizes from an opened store.
  void load() {
    proto::Manifest m;
    rocksdb::Status s = store->read_manifest(nullptr, &m);
    FLASHKM_THROW_IF_NOT(!s.IsNotFound(), "%s: not a flashkm index (no manifest record)",
                         dir.c_str());
    check_status(s, dir, "reading the manifest");
    validate_manifest(m);
    metric = m.metric() == "l2" ? Metric::L2 : Metric::InnerProduct;
    if (m.generation() == 0) {
      std::unique_ptr<faiss::IndexIVF> probe = ivf_from_factory(dir, m.d(), m.factory(), metric);
      FLASHKM_THROW_IF_NOT(
          int64_t(probe->nlist) == m.nlist() && int64_t(probe->code_size) == m.code_size(),
          "%s: manifest (nlist = %lld, code size = %lld) does not match its "
          "factory string \"%s\" (nlist = %zu, code size = %zu)",
          dir.c_str(), (long long)m.nlist(), (long long)m.code_size(), m.factory().c_str(),
          probe->nlist, probe->code_size);
      FLASHKM_THROW_IF_NOT(m.ntotal() == 0,
                           "%s: corrupt manifest: untrained index holds %lld "
                           "vectors",
                           dir.c_str(), (long long)m.ntotal());
    } else {
      gen = load_generation(m);
      sizes = load_sizes(*gen);
      int64_t sum = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
      FLASHKM_THROW_IF_NOT(sum == m.ntotal(),
                           "%s: corrupt index: list sizes add up to %lld, manifest says %lld",
                           dir.c_str(), (long long)sum, (long long)m.ntotal());
    }
    manifest = m;
    if (!store->read_only()) {
      // Leftovers of a re-clustering that crashed before or after its switch.
      check_status(store->drop_generations_except(m.generation()), dir,
                   "deleting stale generations");
    }
  }
};

IvfIndex::IvfIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

IvfIndex::~IvfIndex() {
  if (!impl_) return;
  try {
    close();
  } catch (const std::exception& e) {
    // Destructors cannot throw; the data is safe in the log, only the flush failed.
    std::fprintf(stderr, "flashkm: warning: closing %s: %s\n", impl_->dir.c_str(), e.what());
  }
}

std::unique_ptr<IvfIndex> IvfIndex::create(const std::string& dir, int64_t d,
                                           const std::string& factory, Metric metric,
                                           const IvfIndexOptions& options) {
  FLASHKM_THROW_IF_NOT(d > 0, "%s: d = %lld, expected d >= 1", dir.c_str(), (long long)d);
  FLASHKM_THROW_IF_NOT(!options.read_only, "%s: cannot create an index read-only", dir.c_str());
  FLASHKM_THROW_IF_NOT(options.expected_d <= 0 || options.expected_d == d,
                       "%s: d = %lld but options.expected_d = %lld", dir.c_str(), (long long)d,
                       (long long)options.expected_d);
  std::unique_ptr<faiss::IndexIVF> probe = ivf_from_factory(dir, d, factory, metric);
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  impl->metric = metric;
  impl->open_store(dir, true);
  proto::Manifest m;
  m.set_format_version(index::kFormatVersion);
  m.set_d(d);
  m.set_metric(to_string(metric));
  m.set_nlist(int64_t(probe->nlist));
  m.set_factory(factory);
  m.set_code_size(int64_t(probe->code_size));
  m.set_generation(0);
  m.set_write_count(1);
  rocksdb::WriteBatch b;
  impl->put_manifest(&b, m);
  check_status(impl->store->write(&b), dir, "writing the manifest");
  impl->manifest = m;
  return std::unique_ptr<IvfIndex>(new IvfIndex(std::move(impl)));
}

bool IvfIndex::exists(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "CURRENT", ec);
}

std::unique_ptr<IvfIndex> IvfIndex::open(const std::string& dir, const IvfIndexOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  impl->open_store(dir, false);
  impl->load();
  return std::unique_ptr<IvfIndex>(new IvfIndex(std::move(impl)));
}

void IvfIndex::train(int64_t n, const float* x, const IvfTrainParams& params) {
  impl_->require_writable("train");
  std::lock_guard<std::mutex> wlock(impl_->write_mu);
  const proto::Manifest& m = impl_->manifest;
  FLASHKM_THROW_IF_NOT(m.generation() == 0,
                       "%s: train on an index that is already trained (generation %llu); use "
                       "recluster",
                       impl_->dir.c_str(), (unsigned long long)m.generation());
  check_finite(n, m.d(), x, "train");
  Chain chain;
  std::unique_ptr<faiss::IndexIVF> templ =
      ivf_from_factory(impl_->dir, m.d(), m.factory(), impl_->metric, &chain);
  impl_->train_into(std::move(chain), std::move(templ), n, x, params, nullptr, m.factory());
}

int64_t IvfIndex::add(int64_t n, const float* x, const int64_t* ids) {
  return impl_->write_vectors(n, x, ids, false);
}

void IvfIndex::upsert(int64_t n, const float* x, const int64_t* ids) {
  FLASHKM_THROW_IF_NOT(n == 0 || ids != nullptr, "%s: upsert needs ids", impl_->dir.c_str());
  impl_->write_vectors(n, x, ids, true);
}

int64_t IvfIndex::remove(int64_t n, const int64_t* ids) { return impl_->remove(n, ids); }

void IvfIndex::search(int64_t nq, const float* queries, int k, int nprobe, float* distances,
                      int64_t* labels) const {
  impl_->require_open("search");
  FLASHKM_THROW_IF_NOT(k >= 1, "%s: search: k = %d, expected k >= 1", impl_->dir.c_str(), k);
  FLASHKM_THROW_IF_NOT(nprobe >= 1, "%s: search: nprobe = %d, expected nprobe >= 1",
                       impl_->dir.c_str(), nprobe);
  std::shared_ptr<const ReadView> view = impl_->read_view();
  FLASHKM_THROW_IF_NOT(view->gen != nullptr,
                       "%s: search before train(): the index is not "
                       "trained",
                       impl_->dir.c_str());
  check_finite(nq, view->gen->d(), queries, "search");
  if (nq == 0) return;
  Generation& g = *view->gen;
  std::vector<float> transformed;
  queries = faiss_call(impl_->dir, "apply the pre-transforms to the queries",
                       [&] { return apply_chain(g.chain, nq, queries, &transformed); });
  std::unique_ptr<Searcher> s = impl_->take_searcher(g);
  s->lists->bind(view->snapshot.get(), view->versions);
  s->index->ntotal = view->ntotal;
  faiss::SearchParametersIVF params;
  params.nprobe = size_t(std::min<int64_t>(nprobe, int64_t(g.templ->nlist)));
  try {
    s->index->search(nq, queries, k, distances, labels, &params);
  } catch (const std::exception& e) {
    impl_->return_searcher(g, std::move(s));
    FLASHKM_THROW("%s: search failed: %s", impl_->dir.c_str(), e.what());
  }
  impl_->return_searcher(g, std::move(s));
}

void IvfIndex::recluster(int64_t nlist, const IvfTrainParams& params) {
  impl_->require_writable("recluster");
  std::lock_guard<std::mutex> wlock(impl_->write_mu);
  const proto::Manifest& m = impl_->manifest;
  FLASHKM_THROW_IF_NOT(impl_->gen != nullptr, "%s: recluster of an untrained index; use train",
                       impl_->dir.c_str());
  FLASHKM_THROW_IF_NOT(nlist >= 0, "%s: recluster: nlist = %lld, expected >= 1 (or 0 to keep)",
                       impl_->dir.c_str(), (long long)nlist);
  if (nlist == 0) nlist = m.nlist();
  FLASHKM_THROW_IF_NOT(m.ntotal() >= nlist,
                       "%s: recluster into %lld lists needs at least that many stored vectors, "
                       "the index holds %lld",
                       impl_->dir.c_str(), (long long)nlist, (long long)m.ntotal());
  std::string factory = factory_with_nlist(m.factory(), nlist);
  // The trained pre-transforms are kept: the new quantizer is trained in the same space (and a
  // warm start from the current centroids stays meaningful).
  Chain fresh;
  std::unique_ptr<faiss::IndexIVF> templ =
      ivf_from_factory(impl_->dir, m.d(), factory, impl_->metric, &fresh);
  Chain chain = clone_chain(impl_->dir, impl_->gen->chain);
  std::vector<int64_t> ids;
  std::vector<float> x;
  impl_->progress("read vectors", 0, m.ntotal());
  impl_->read_all_vectors(&ids, &x);
  impl_->progress("read vectors", int64_t(ids.size()), m.ntotal());
  std::vector<float> warm;
  bool use_warm = nlist == m.nlist() && !params.cold_start;
  if (use_warm) warm = quantizer_centroids(*impl_->gen->templ);
  impl_->train_into(std::move(chain), std::move(templ), int64_t(ids.size()), x.data(), params,
                    use_warm ? &warm : nullptr, factory);
}

bool IvfIndex::get_vector(int64_t id, float* out) const {
  impl_->require_open("get_vector");
  if (id < 0) return false;
  std::string v;
  rocksdb::Status s = impl_->store->db()->Get(rocksdb::ReadOptions(), impl_->store->vectors(),
                                              index::id_key(uint64_t(id)), &v);
  if (s.IsNotFound()) return false;
  check_status(s, impl_->dir, "reading a vector");
  FLASHKM_THROW_IF_NOT(int64_t(v.size()) == int64_t(sizeof(float)) * d(),
                       "%s: malformed vector record of id %lld", impl_->dir.c_str(), (long long)id);
  std::memcpy(out, v.data(), v.size());
  return true;
}

void IvfIndex::export_faiss(const std::string& path) const {
  impl_->require_open("export");
  std::shared_ptr<const ReadView> view = impl_->read_view();
  FLASHKM_THROW_IF_NOT(view->gen != nullptr, "%s: export of an untrained index",
                       impl_->dir.c_str());
  Generation& g = *view->gen;
  std::unique_ptr<faiss::Index> copy(
      faiss_call(impl_->dir, "copy the index", [&] { return faiss::clone_index(g.templ.get()); }));
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(copy.get());
  FLASHKM_ASSERT(ivf != nullptr);
  RocksDBInvertedLists reader(impl_->store->db(), g.cfs.lists.get(), impl_->store->meta(), g.g,
                              g.templ->nlist, g.templ->code_size);
  auto* mem = new faiss::ArrayInvertedLists(g.templ->nlist, g.templ->code_size);
  ivf->replace_invlists(mem, true);
  int64_t total = 0;
  for (size_t l = 0; l < g.templ->nlist; ++l) {
    index::MaterializedList list;
    check_status(reader.materialize(l, view->snapshot.get(), &list), impl_->dir, "reading a list");
    if (!list.ids.empty()) mem->add_entries(l, list.ids.size(), list.ids.data(), list.codes.data());
    total += int64_t(list.ids.size());
    impl_->progress("export", int64_t(l + 1), int64_t(g.templ->nlist));
  }
  ivf->ntotal = total;
  faiss_call(impl_->dir, "write the faiss file", [&] {
    if (g.chain.empty()) {
      faiss::write_index(ivf, path.c_str());
    } else {
      std::unique_ptr<faiss::IndexPreTransform> pt = borrowed_pretransform(g.chain, ivf);
      pt->ntotal = total;
      faiss::write_index(pt.get(), path.c_str());
    }
    return 0;
  });
}

std::unique_ptr<IvfIndex> IvfIndex::import_faiss(const std::string& faiss_path,
                                                 const std::string& dir,
                                                 const IvfIndexOptions& options) {
  std::unique_ptr<faiss::Index> file(faiss_call(
      faiss_path, "read the file", [&] { return faiss::read_index(faiss_path.c_str()); }));
  Chain chain;
  std::unique_ptr<faiss::IndexIVF> templ = split_index(std::move(file), &chain);
  faiss::IndexIVF* ivf = templ.get();
  FLASHKM_THROW_IF_NOT(ivf != nullptr,
                       "%s: not an IndexIVF (or an IndexPreTransform over one), expected an IVF "
                       "index file",
                       faiss_path.c_str());
  // Exact types: a subclass carries state these codes do not (IndexIVFPQR's refinement codes,
  // indexed by id, would be read past their end for every vector added after the import;
  // IndexIVFFlatDedup's duplicate table), so it is refused, not imported as its base.
  const std::type_info& type = typeid(*ivf);
  std::string codes;
  if (type == typeid(faiss::IndexIVFFlat)) {
    codes = "Flat";
  } else if (auto* pq = type == typeid(faiss::IndexIVFPQ) ? static_cast<faiss::IndexIVFPQ*>(ivf)
                                                          : nullptr) {
    // "np": a recluster() retrains the codebooks without polysemous training, which only
    // reorders code words for Hamming filtering (flashkm's searches do not use it) and costs
    // minutes; faiss files do not record whether the original index had it.
    codes = "PQ" + std::to_string(pq->pq.M) + "x" + std::to_string(pq->pq.nbits) + "np";
  } else if (auto* sq = type == typeid(faiss::IndexIVFScalarQuantizer)
                            ? static_cast<faiss::IndexIVFScalarQuantizer*>(ivf)
                            : nullptr) {
    switch (sq->sq.qtype) {
      case faiss::ScalarQuantizer::QT_8bit:
        codes = "SQ8";
        break;
      case faiss::ScalarQuantizer::QT_4bit:
        codes = "SQ4";
        break;
      case faiss::ScalarQuantizer::QT_6bit:
        codes = "SQ6";
        break;
      case faiss::ScalarQuantizer::QT_fp16:
        codes = "SQfp16";
        break;
      default:
        break;
    }
  }
  FLASHKM_THROW_IF_NOT(!codes.empty(),
                       "%s: unsupported IVF index, expected IndexIVFFlat, IndexIVFPQ or "
                       "IndexIVFScalarQuantizer (8, 6, 4 bits or fp16); subclasses such as "
                       "IndexIVFPQR or IndexIVFFlatDedup are not imported",
                       faiss_path.c_str());
  FLASHKM_THROW_IF_NOT(ivf->is_trained, "%s: the index is not trained", faiss_path.c_str());
  FLASHKM_THROW_IF_NOT(dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) != nullptr,
                       "%s: the coarse quantizer is not flat, expected \"IVF<nlist>,<codes>\"",
                       faiss_path.c_str());
  FLASHKM_THROW_IF_NOT(
      ivf->metric_type == faiss::METRIC_L2 || ivf->metric_type == faiss::METRIC_INNER_PRODUCT,
      "%s: metric %d, expected L2 or inner product", faiss_path.c_str(), int(ivf->metric_type));
  Metric metric = ivf->metric_type == faiss::METRIC_L2 ? Metric::L2 : Metric::InnerProduct;
  // The factory string names the pre-transforms too: recluster() rebuilds the IVF from it
  // (the trained chain itself is stored with the generation and kept).
  std::string factory;
  for (size_t i = 0; i < chain.size(); ++i) {
    std::string t = transform_factory(*chain[i]);
    FLASHKM_THROW_IF_NOT(!t.empty(),
                         "%s: pre-transform %zu cannot be imported, expected a trained linear "
                         "map with orthonormal rows (OPQ, PCA, PCAR, RR): the raw vectors are "
                         "rebuilt through its reverse, which whitening and other transforms "
                         "lack",
                         faiss_path.c_str(), i);
    factory += t + ",";
  }
  factory += "IVF" + std::to_string(ivf->nlist) + "," + codes;
  const int64_t d = input_d(chain, *ivf);

  // Vectors and ids, decoded list by list (in the IVF's space, after the pre-transforms).
  std::vector<int64_t> ids;
  std::vector<float> x;
  const size_t dt = size_t(ivf->d);
  ids.reserve(size_t(ivf->ntotal));
  x.reserve(size_t(ivf->ntotal) * dt);
  std::vector<float> buf(dt);
  for (size_t l = 0; l < ivf->nlist; ++l) {
    size_t ls = ivf->invlists->list_size(l);
    faiss::InvertedLists::ScopedIds lids(ivf->invlists, l);
    for (size_t o = 0; o < ls; ++o) {
      faiss_call(faiss_path, "decode a vector", [&] {
        ivf->reconstruct_from_offset(int64_t(l), int64_t(o), buf.data());
        return 0;
      });
      ids.push_back(lids[o]);
      x.insert(x.end(), buf.begin(), buf.end());
    }
  }
  // Back through the pre-transforms, last first (faiss's IndexPreTransform::reverse_chain):
  // exact up to rounding for a rotation (OPQ, RR); for a PCA that drops components, the
  // preimage nearest the PCA's mean (below).
  for (size_t i = chain.size(); i-- > 0;) {
    const faiss::VectorTransform& t = *chain[i];
    std::vector<float> prev(ids.size() * size_t(t.d_in));
    faiss_call(faiss_path, "reverse a pre-transform", [&] {
      if (!ids.empty()) t.reverse_transform(int64_t(ids.size()), x.data(), prev.data());
      return 0;
    });
    // faiss reverses a PCA that drops components by the preimage of least norm, A^T (y - b),
    // which loses the part of the training mean outside the kept components (so does faiss
    // 1.7.3's IndexPreTransform::reconstruct). The preimage nearest the mean,
    // mean + A^T (y - b - A mean), is that plus (I - A^T A) mean: the same point after the
    // transform (so ranks and re-clustering are unchanged), and the best reconstruction of
    // the raw vector that the PCA allows.
    auto* pca = dynamic_cast<const faiss::PCAMatrix*>(&t);
    if (pca != nullptr && !pca->mean.empty() && t.d_out < t.d_in) {
      const size_t din = size_t(t.d_in), dout = size_t(t.d_out);
      std::vector<double> am(dout, 0.0), off(din);  // A mean, (I - A^T A) mean
      for (size_t o = 0; o < dout; ++o) {
        for (size_t j = 0; j < din; ++j) am[o] += double(pca->A[o * din + j]) * pca->mean[j];
      }
      for (size_t j = 0; j < din; ++j) {
        double back = 0;
        for (size_t o = 0; o < dout; ++o) back += double(pca->A[o * din + j]) * am[o];
        off[j] = double(pca->mean[j]) - back;
      }
      for (size_t r = 0; r < ids.size(); ++r) {
        for (size_t j = 0; j < din; ++j) prev[r * din + j] += float(off[j]);
      }
    }
    x.swap(prev);
  }

  {
    std::unordered_set<int64_t> seen(ids.size() * 2);
    for (int64_t id : ids) {
      FLASHKM_THROW_IF_NOT(id >= 0 && seen.insert(id).second,
                           "%s: id %lld is negative or appears twice, expected distinct ids >= 0",
                           faiss_path.c_str(), (long long)id);
    }
  }
  // The file's lists become the source of the new index's lists; the template keeps empty ones.
  faiss::InvertedLists* source = ivf->invlists;
  std::unique_ptr<faiss::InvertedLists> owner(ivf->own_invlists ? source : nullptr);
  ivf->own_invlists = false;
  ivf->replace_invlists(new faiss::ArrayInvertedLists(ivf->nlist, ivf->code_size), true);
  ivf->ntotal = 0;

  std::unique_ptr<IvfIndex> out = create(dir, d, factory, metric, options);
  try {
    Impl& impl = *out->impl_;
    std::lock_guard<std::mutex> wlock(impl.write_mu);
    // Raw vectors first, one batch per chunk, then the lists code for code; none of it is
    // visible before build_and_flip's switch.
    const int64_t chunk = 65536;
    for (int64_t b0 = 0; b0 < int64_t(ids.size()); b0 += chunk) {
      int64_t b1 = std::min<int64_t>(int64_t(ids.size()), b0 + chunk);
      rocksdb::WriteBatch b;
      for (int64_t i = b0; i < b1; ++i) {
        check_status(b.Put(impl.store->vectors(), index::id_key(uint64_t(ids[i])),
                           bytes_of(&x[i * d], sizeof(float) * d)),
                     dir, "building the batch");
      }
      check_status(impl.store->write(&b), dir, "writing imported vectors");
      impl.progress("import vectors", b1, int64_t(ids.size()));
    }
    proto::Manifest m = impl.manifest;
    m.set_ntotal(int64_t(ids.size()));
    m.set_next_id(ids.empty() ? 0 : *std::max_element(ids.begin(), ids.end()) + 1);
    m.set_vectors_reconstructed(codes != "Flat" || !chain.empty());
    impl.manifest = m;
    index::QuantizerTraining t;
    t.init = "imported";
    impl.build_and_flip(std::move(chain), std::move(templ), factory, t, Clock::now(), source);
  } catch (...) {
    // The directory is ours (create() refuses existing ones): leave nothing half imported.
    out.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    throw;
  }
  return out;
}

IvfIndexInfo IvfIndex::info() const {
  impl_->require_open("info");
  std::shared_lock<std::shared_mutex> lock(impl_->state_mu);
  const proto::Manifest& m = impl_->manifest;
  IvfIndexInfo i;
  i.dir = impl_->dir;
  i.format_version = m.format_version();
  i.d = m.d();
  i.metric = impl_->metric;
  i.factory = m.factory();
  i.nlist = m.nlist();
  i.code_size = m.code_size();
  i.generation = m.generation();
  i.trained = m.generation() > 0;
  i.ntotal = m.ntotal();
  i.next_id = m.next_id();
  i.write_count = m.write_count();
  i.vectors_reconstructed = m.vectors_reconstructed();
  i.list_sizes = impl_->sizes;
  if (i.list_sizes.empty()) i.list_sizes.assign(size_t(m.nlist()), 0);
  double sum = 0, sum2 = 0;
  for (int64_t s : i.list_sizes) {
    sum += double(s);
    sum2 += double(s) * double(s);
  }
  i.imbalance = sum > 0 ? sum2 * double(i.list_sizes.size()) / (sum * sum) : 0;
  i.n_train = m.training().n_train();
  i.max_iter = m.training().max_iter();
  i.seed = m.training().seed();
  i.iterations = m.training().iterations();
  i.inertia = m.training().inertia();
  i.train_seconds = m.training().seconds();
  i.train_device = m.training().device();
  i.train_init = m.training().init();
  return i;
}

int64_t IvfIndex::d() const {
  std::shared_lock<std::shared_mutex> lock(impl_->state_mu);
  return impl_->manifest.d();
}

int64_t IvfIndex::ntotal() const {
  std::shared_lock<std::shared_mutex> lock(impl_->state_mu);
  return impl_->manifest.ntotal();
}

bool IvfIndex::read_only() const { return impl_->options.read_only; }

void IvfIndex::close() {
  std::lock_guard<std::mutex> wlock(impl_->write_mu);
  std::unique_lock<std::shared_mutex> lock(impl_->state_mu);
  if (!impl_->store) return;
  if (!impl_->store->read_only()) {
    // Everything is already durable in the log; flushing only spares the next open a replay.
    check_status(impl_->store->flush(), impl_->dir, "flushing on close");
  }
  impl_->gen.reset();
  impl_->store.reset();
}

}  // namespace flashkm
