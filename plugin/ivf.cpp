// Training and filling faiss IVF indexes with flashkm: index_factory, train_ivf, add_ivf.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/utils/random.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <memory>
#include <typeinfo>

#include "plugin/internal.h"
#include "plugin/pq_encoder.h"

namespace flashkm {
namespace plugin {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

IVFParts find_ivf(faiss::Index* index) {
  IVFParts parts;
  if (index == nullptr) return parts;
  if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index)) {
    parts.refine = refine;
    index = refine->base_index;
  }
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) {
    parts.pretransform = pt;
    index = pt->index;
  }
  parts.ivf = dynamic_cast<faiss::IndexIVF*>(index);
  return parts;
}

IVFParts require_ivf(faiss::Index* index, const char* caller) {
  FLASHKM_THROW_IF_NOT(index != nullptr, "%s: index is null", caller);
  IVFParts parts = find_ivf(index);
  FLASHKM_THROW_IF_NOT(parts.ivf != nullptr,
                       "%s: index of type %s is not an IVF index (expected [IndexRefine of] "
                       "[IndexPreTransform of] an IndexIVF)",
                       caller, typeid(*index).name());
  return parts;
}

Metric to_metric(faiss::MetricType metric) {
  switch (metric) {
    case faiss::METRIC_L2:
      return Metric::L2;
    case faiss::METRIC_INNER_PRODUCT:
      return Metric::InnerProduct;
    default:
      FLASHKM_THROW(
          "faiss metric %d: flashkm supports METRIC_L2 (%d) and "
          "METRIC_INNER_PRODUCT (%d)",
          int(metric), int(faiss::METRIC_L2), int(faiss::METRIC_INNER_PRODUCT));
  }
}

void check_finite(const char* caller, int64_t n, int64_t d, const float* x) {
  FLASHKM_THROW_IF_NOT(n >= 0 && (n == 0 || x != nullptr), "%s: n = %lld with null data", caller,
                       static_cast<long long>(n));
  int64_t bad = INT64_MAX;
#pragma omp parallel for reduction(min : bad)
  for (int64_t i = 0; i < n * d; ++i)
    if (!std::isfinite(x[i])) bad = std::min(bad, i);
  FLASHKM_THROW_IF_NOT(bad == INT64_MAX,
                       "%s: x holds a non-finite value (%g) at row %lld, column %lld", caller,
                       bad == INT64_MAX ? 0.0 : double(x[bad]), static_cast<long long>(bad / d),
                       static_cast<long long>(bad % d));
}

KMeansParams kmeans_params(int64_t k, Metric metric, const ExecOptions& exec) {
  KMeansParams p;
  p.n_clusters = static_cast<int>(k);
  p.metric = metric;
  p.device = exec.device;
  p.precision = exec.precision;
  p.threads = exec.threads;
  p.verbose = exec.verbose;
  return p;
}

std::vector<float> train_coarse(int64_t d, int64_t nlist, faiss::MetricType metric, int64_t n,
                                const float* x, const IVFTrainParams& params,
                                IVFTrainReport* report, std::vector<int32_t>* labels) {
  FLASHKM_THROW_IF_NOT(params.niter >= 0, "niter = %d: expected >= 0", params.niter);
  FLASHKM_THROW_IF_NOT(params.max_train_points >= 0,
                       "max_train_points = %lld: expected >= 0 (0 = all points)",
                       static_cast<long long>(params.max_train_points));
  FLASHKM_THROW_IF_NOT(n >= nlist,
                       "%lld training points for nlist = %lld: expected at least nlist points",
                       static_cast<long long>(n), static_cast<long long>(nlist));
  const double t0 = now_seconds();

  // Subsample exactly as faiss's Clustering does (first m entries of rand_perm(n, seed)).
  std::vector<float> sample;
  if (params.max_train_points > 0 && n > params.max_train_points) {
    FLASHKM_THROW_IF_NOT(
        params.max_train_points >= nlist, "max_train_points = %lld is below nlist = %lld",
        static_cast<long long>(params.max_train_points), static_cast<long long>(nlist));
    FLASHKM_THROW_IF_NOT(n <= INT_MAX, "subsampling draws from at most %d points, got n = %lld",
                         INT_MAX, static_cast<long long>(n));
    std::vector<int> perm(n);
    faiss::rand_perm(perm.data(), n, static_cast<int64_t>(params.seed));
    const int64_t m = params.max_train_points;
    sample.resize(m * d);
#pragma omp parallel for
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(&sample[i * d], x + int64_t(perm[i]) * d, sizeof(float) * d);
    n = m;
    x = sample.data();
  }

  KMeansParams kp = kmeans_params(nlist, to_metric(metric), params.exec);
  kp.max_iter = params.niter;
  kp.init = params.init;
  kp.init_centroids = params.init_centroids;
  kp.seed = params.seed;
  KMeans km(d, kp);
  KMeansResult r = km.fit(n, x);

  report->train_points = n;
  report->nlist = nlist;
  report->d_ivf = d;
  report->kmeans_seconds = now_seconds() - t0;
  report->inertia = r.inertia;
  report->iterations = r.iterations;
  report->device = r.device;
  if (labels != nullptr) {
    labels->clear();
    if (sample.empty()) *labels = std::move(r.labels);
  }
  return std::move(r.centroids);
}

namespace {

// Replaces whatever the quantizer holds with the centroids, the way faiss's
// quantizer_trains_alone == 2 path does, so that IndexIVF::train sees it full and skips k-means.
void install_centroids(faiss::IndexIVF* ivf, const std::vector<float>& centroids) {
  faiss::Index* q = ivf->quantizer;
  const auto nlist = static_cast<faiss::Index::idx_t>(ivf->nlist);
  q->reset();
  if (!q->is_trained) q->train(nlist, centroids.data());
  q->add(nlist, centroids.data());
  FLASHKM_ASSERT(q->ntotal == nlist);
}

// Applies the pre-transform chain; returns x itself when there is none.
const float* apply_chain(const IVFParts& parts, int64_t n, const float* x,
                         std::unique_ptr<const float[]>* owned) {
  if (parts.pretransform == nullptr || parts.pretransform->chain.empty()) return x;
  const float* xt = parts.pretransform->apply_chain(n, x);
  owned->reset(xt);
  return xt;
}

}  // namespace
}  // namespace plugin

using plugin::IVFParts;

std::unique_ptr<faiss::Index> index_factory(int d, const char* description,
                                            faiss::MetricType metric,
                                            const IVFTrainParams& options) {
  FLASHKM_THROW_IF_NOT(description != nullptr, "index_factory: description is null");
  FLASHKM_THROW_IF_NOT(d >= 1, "index_factory: d = %d: expected d >= 1", d);
  plugin::to_metric(metric);
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::index_factory(d, description, metric));
  } catch (const faiss::FaissException& e) {
    FLASHKM_THROW("index_factory: faiss cannot build \"%s\" for d = %d: %s", description, d,
                  e.what());
  }
  IVFParts parts = plugin::find_ivf(index.get());
  faiss::IndexIVF* ivf = parts.ivf;
  if (ivf == nullptr) return index;

  faiss::Index* q = ivf->quantizer;
  faiss::Index* replacement = nullptr;
  if (auto* hnsw = dynamic_cast<faiss::IndexHNSWFlat*>(q)) {
    auto* nq = new KMeansQuantizerHNSW(static_cast<int>(q->d), hnsw->hnsw.nb_neighbors(1),
                                       q->metric_type, ivf->nlist, options);
    nq->hnsw.efConstruction = hnsw->hnsw.efConstruction;
    nq->hnsw.efSearch = hnsw->hnsw.efSearch;
    replacement = nq;
  } else if (dynamic_cast<faiss::IndexFlat*>(q) != nullptr) {
    replacement = new KMeansQuantizerFlat(q->d, q->metric_type, ivf->nlist, options);
  } else {
    FLASHKM_THROW(
        "index_factory: \"%s\" has a coarse quantizer of type %s; flashkm trains flat "
        "and HNSW quantizers (IVFn, IVFn_HNSWm)",
        description, typeid(*q).name());
  }
  if (ivf->own_fields) delete q;
  ivf->quantizer = replacement;
  ivf->own_fields = true;
  ivf->quantizer_trains_alone = 1;  // IndexIVF::train hands the training set to our train()
  return index;
}

namespace plugin {
namespace {

// train_ivf's work. When labels and xt_out are non-null, also hands back the k-means' final
// assignment (empty if it ran on a subsample) and the pre-transformed x (null when x is used
// as it is), for build_ivf to add without a second assignment pass.
IVFTrainReport train_ivf_impl(faiss::Index* index, int64_t n, const float* x,
                              const IVFTrainParams& params, std::vector<int32_t>* labels,
                              std::unique_ptr<const float[]>* xt_out) {
  IVFParts parts = require_ivf(index, "train_ivf");
  faiss::IndexIVF* ivf = parts.ivf;
  FLASHKM_THROW_IF_NOT(index->ntotal == 0 && ivf->ntotal == 0,
                       "train_ivf: the index already holds %lld vectors; train before adding",
                       static_cast<long long>(std::max(index->ntotal, ivf->ntotal)));
  check_finite("train_ivf", n, index->d, x);

  IVFTrainReport report;
  double t0 = now_seconds();
  std::unique_ptr<const float[]> owned;
  const float* xt = x;
  if (parts.pretransform != nullptr) {
    // As IndexPreTransform::train: each untrained transform learns from its own input.
    for (faiss::VectorTransform* vt : parts.pretransform->chain) {
      if (!vt->is_trained) vt->train(n, xt);
      const float* next = vt->apply(n, xt);
      owned.reset(next);
      xt = next;
    }
  }
  report.transform_seconds = now_seconds() - t0;

  std::vector<float> centroids =
      train_coarse(ivf->d, static_cast<int64_t>(ivf->nlist), ivf->quantizer->metric_type, n, xt,
                   params, &report, labels);
  install_centroids(ivf, centroids);

  t0 = now_seconds();
  {
    // faiss's codebook k-means assigns with flashkm; the pointer is not owned by faiss and
    // must not outlive this scope (write_index never stores it).
    faiss::ProductQuantizer* pq = nullptr;
    std::unique_ptr<FlashAssignIndex> pq_assign;
    if (auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(ivf)) pq = &ivfpq->pq;
    if (params.flash_codebooks && pq != nullptr && pq->assign_index == nullptr) {
      pq_assign = std::make_unique<FlashAssignIndex>(pq->dsub, faiss::METRIC_L2, params.exec);
      pq->assign_index = pq_assign.get();
    }
    struct Restore {
      faiss::ProductQuantizer* pq;
      bool active;
      ~Restore() {
        if (active) pq->assign_index = nullptr;
      }
    } restore{pq, pq_assign != nullptr};
    ivf->train(n, xt);  // quantizer full: faiss trains only the residual codebooks
  }
  report.residual_seconds = now_seconds() - t0;
  if (parts.pretransform != nullptr) parts.pretransform->is_trained = true;
  if (parts.refine != nullptr) {
    if (!parts.refine->refine_index->is_trained) parts.refine->refine_index->train(n, x);
    parts.refine->is_trained = true;
  }
  if (xt_out != nullptr) *xt_out = std::move(owned);
  return report;
}

// Adds n vectors x whose IVF-space rows xt (x itself without pre-transforms) are assigned to
// the lists in labels.
void add_assigned(const IVFParts& parts, int64_t n, const float* x, const float* xt,
                  const std::vector<int32_t>& labels, const faiss::Index::idx_t* ids) {
  std::vector<faiss::Index::idx_t> list_nos(labels.begin(), labels.end());
  faiss::IndexIVF* ivf = parts.ivf;
  // IndexIVFPQ's own encoder is a scalar loop for sub-vectors under 16 dimensions; ours gives
  // the same bytes faster. Entries then go in as IndexIVFPQ::add_core_o puts them: in input
  // order, id = ids[i] or ntotal + i, each recorded in the direct map.
  std::unique_ptr<PQEncoder> encoder;
  if (typeid(*ivf) == typeid(faiss::IndexIVFPQ)) encoder = PQEncoder::make(*ivf);
  if (encoder == nullptr) {
    ivf->add_core(n, xt, ids, list_nos.data());
  } else {
    ivf->direct_map.check_can_add(ids);
    const int64_t block = int64_t(1) << 20;
    std::vector<uint8_t> codes(size_t(std::min(n, block)) * encoder->code_size());
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int64_t m = std::min(block, n - i0);
      encoder->encode(m, xt + i0 * ivf->d, list_nos.data() + i0, codes.data());
      for (int64_t i = 0; i < m; ++i) {
        const faiss::Index::idx_t id = ids ? ids[i0 + i] : ivf->ntotal + i0 + i;
        const faiss::Index::idx_t list = list_nos[i0 + i];
        const size_t offset =
            ivf->invlists->add_entry(list, id, codes.data() + i * encoder->code_size());
        ivf->direct_map.add_single_id(id, list, offset);
      }
    }
    ivf->ntotal += n;
  }
  // add_core bypasses the wrappers, so their counts are ours to keep in step.
  if (parts.pretransform != nullptr) parts.pretransform->ntotal = parts.ivf->ntotal;
  if (parts.refine != nullptr) {
    parts.refine->refine_index->add(n, x);
    parts.refine->ntotal = parts.refine->refine_index->ntotal;
  }
}

}  // namespace
}  // namespace plugin

IVFTrainReport train_ivf(faiss::Index* index, int64_t n, const float* x,
                         const IVFTrainParams& params) {
  return plugin::train_ivf_impl(index, n, x, params, nullptr, nullptr);
}

IVFTrainReport build_ivf(faiss::Index* index, int64_t n, const float* x,
                         const faiss::Index::idx_t* ids, const IVFTrainParams& params) {
  IVFParts parts = plugin::require_ivf(index, "build_ivf");
  FLASHKM_THROW_IF_NOT(parts.refine == nullptr || ids == nullptr,
                       "build_ivf: IndexRefine does not support explicit ids");
  std::vector<int32_t> labels;
  std::unique_ptr<const float[]> xt;
  IVFTrainReport report = plugin::train_ivf_impl(index, n, x, params, &labels, &xt);
  if (labels.empty()) {  // the k-means saw a subsample: assign everything
    add_ivf(index, n, x, ids, params.exec);
  } else {
    plugin::add_assigned(parts, n, x, xt ? xt.get() : x, labels, ids);
  }
  return report;
}

void add_ivf(faiss::Index* index, int64_t n, const float* x, const faiss::Index::idx_t* ids,
             const ExecOptions& exec) {
  IVFParts parts = plugin::require_ivf(index, "add_ivf");
  faiss::IndexIVF* ivf = parts.ivf;
  FLASHKM_THROW_IF_NOT(index->is_trained && ivf->is_trained,
                       "add_ivf: the index is not trained (call train_ivf or train first)");
  FLASHKM_THROW_IF_NOT(parts.refine == nullptr || ids == nullptr,
                       "add_ivf: IndexRefine does not support explicit ids");
  plugin::check_finite("add_ivf", n, index->d, x);
  if (n == 0) return;

  std::unique_ptr<const float[]> owned;
  const float* xt = plugin::apply_chain(parts, n, x, &owned);

  KMeans km(ivf->d, plugin::kmeans_params(static_cast<int64_t>(ivf->nlist),
                                          plugin::to_metric(ivf->quantizer->metric_type), exec));
  km.set_centroids(coarse_centroids(index));
  std::vector<int32_t> labels(n);
  km.assign(n, xt, labels.data());
  plugin::add_assigned(parts, n, x, xt, labels, ids);
}

bool is_ivf(const faiss::Index* index) {
  return plugin::find_ivf(const_cast<faiss::Index*>(index)).ivf != nullptr;
}

std::vector<float> coarse_centroids(const faiss::Index* index) {
  IVFParts parts = plugin::require_ivf(const_cast<faiss::Index*>(index), "coarse_centroids");
  const faiss::IndexIVF* ivf = parts.ivf;
  const auto nlist = static_cast<faiss::Index::idx_t>(ivf->nlist);
  FLASHKM_THROW_IF_NOT(ivf->quantizer->ntotal == nlist,
                       "coarse_centroids: the quantizer holds %lld vectors, expected nlist = %lld "
                       "(is the index trained?)",
                       static_cast<long long>(ivf->quantizer->ntotal),
                       static_cast<long long>(nlist));
  std::vector<float> c(static_cast<size_t>(nlist) * ivf->d);
  ivf->quantizer->reconstruct_n(0, nlist, c.data());
  return c;
}

}  // namespace flashkm
