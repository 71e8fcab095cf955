#include "index/trainer.h"

#include "flashkm/faiss.h"

namespace flashkm {
namespace index {

QuantizerTraining train_ivf(faiss::IndexIVF* ivf, int64_t n, const float* x,
                            const KMeansParams& params) {
  FLASHKM_THROW_IF_NOT(params.n_clusters == int(ivf->nlist),
                       "k-means n_clusters %d does not match the index's nlist %zu",
                       params.n_clusters, ivf->nlist);
  FLASHKM_THROW_IF_NOT(n >= int64_t(ivf->nlist),
                       "%lld training points for nlist = %zu, expected "
                       "at least one point per list",
                       (long long)n, ivf->nlist);
  IVFTrainParams p;
  p.niter = params.max_iter;
  p.max_train_points = 0;  // the caller has already sampled
  p.init = params.init;
  p.init_centroids = params.init_centroids;
  p.seed = params.seed;
  p.exec.device = params.device;
  p.exec.precision = params.precision;
  p.exec.threads = params.threads;
  p.exec.verbose = params.verbose;
  IVFTrainReport r = flashkm::train_ivf(ivf, n, x, p);

  QuantizerTraining t;
  t.n_train = r.train_points;
  t.max_iter = params.max_iter;
  t.seed = params.seed;
  t.iterations = int(r.iterations.size());
  t.inertia = r.inertia;
  t.seconds = r.kmeans_seconds;
  t.device = to_string(r.device);
  t.init = to_string(params.init);
  return t;
}

}  // namespace index
}  // namespace flashkm
