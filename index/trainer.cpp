#include "index/trainer.h"

namespace flashkm {
namespace index {

QuantizerTraining train_ivf(faiss::IndexIVF* ivf, int64_t n, const float* x,
                            const KMeansParams& params) {
  FLASHKM_THROW_IF_NOT(params.n_clusters == int(ivf->nlist),
                       "k-means n_clusters %d does not match the index's nlist %zu",
                       params.n_clusters, ivf->nlist);
  FLASHKM_THROW_IF_NOT(n >= int64_t(ivf->nlist), "%lld training points for nlist = %zu, expected "
                       "at least one point per list", (long long)n, ivf->nlist);
  FLASHKM_THROW_IF_NOT(ivf->quantizer->ntotal == 0, "the index's quantizer is already trained");
  KMeans km(ivf->d, params);
  KMeansResult r = km.fit(n, x);
  ivf->quantizer->add(int64_t(ivf->nlist), r.centroids.data());
  ivf->quantizer->is_trained = true;
  ivf->train_residual(n, x);
  ivf->is_trained = true;

  QuantizerTraining t;
  t.n_train = n;
  t.iterations = int(r.iterations.size());
  t.inertia = r.inertia;
  t.seconds = r.seconds;  // the k-means alone; codebook training is faiss's business
  t.device = to_string(r.device);
  t.init = to_string(params.init);
  return t;
}

}  // namespace index
}  // namespace flashkm
