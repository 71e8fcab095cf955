// PRIVATE to tests/index/: shared helpers (temporary directories, data, oracles).
#pragma once

#include <faiss/IndexIVF.h>
#include <faiss/clone_index.h>
#include <faiss/invlists/InvertedLists.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "index/ingest_policy.h"
#include "tests/temp_dir.h"

namespace flashkm {
namespace testing {

/// Clustered data: n points around `centers` Gaussian centers; cluster sizes are skewed
/// (center c gets weight 1 / (c + 1)) so inverted lists have very different lengths.
inline std::vector<float> skewed_blobs(int64_t n, int64_t d, int centers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_real_distribution<float> u(-10.f, 10.f);
  std::vector<float> c(size_t(centers) * d);
  for (float& v : c) v = u(rng);
  std::vector<double> w(centers);
  for (int i = 0; i < centers; ++i) w[i] = 1.0 / (i + 1);
  std::discrete_distribution<int> pick(w.begin(), w.end());
  std::vector<float> x(size_t(n) * d);
  for (int64_t i = 0; i < n; ++i) {
    int k = pick(rng);
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = c[k * d + j] + g(rng);
  }
  return x;
}

/// Nearest list of each of n vectors by brute force in float64 (ties: lowest list): the exact
/// assignment flashkm promises, computed independently.
inline std::vector<faiss::Index::idx_t> exact_assign(const faiss::IndexIVF& ivf, int64_t n,
                                                     const float* x) {
  std::vector<float> c(ivf.nlist * ivf.d);
  ivf.quantizer->reconstruct_n(0, int64_t(ivf.nlist), c.data());
  std::vector<faiss::Index::idx_t> out(n);
  const bool l2 = ivf.metric_type == faiss::METRIC_L2;
  for (int64_t i = 0; i < n; ++i) {
    double best = 0;
    for (size_t l = 0; l < ivf.nlist; ++l) {
      double acc = 0;
      for (int j = 0; j < ivf.d; ++j) {
        double xi = x[i * ivf.d + j], cj = c[l * ivf.d + j];
        acc += l2 ? (xi - cj) * (xi - cj) : -xi * cj;
      }
      if (l == 0 || acc < best) {
        best = acc;
        out[i] = faiss::Index::idx_t(l);
      }
    }
  }
  return out;
}

/// An in-memory copy of a trained IVF template (same quantizer and code parameters) whose
/// lists are ArrayInvertedLists, filled with (x, ids) in ascending id order (the order RocksDB
/// keeps each list in), each vector in its exactly nearest list.
inline std::unique_ptr<faiss::IndexIVF> in_memory_reference(const faiss::IndexIVF& templ, int64_t n,
                                                            const float* x, const int64_t* ids) {
  std::unique_ptr<faiss::IndexIVF> ref(dynamic_cast<faiss::IndexIVF*>(faiss::clone_index(&templ)));
  ref->replace_invlists(new faiss::ArrayInvertedLists(ref->nlist, ref->code_size), true);
  ref->ntotal = 0;
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  std::vector<float> xs(size_t(n) * ref->d);
  std::vector<int64_t> is(n);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(x + order[i] * ref->d, x + (order[i] + 1) * ref->d, xs.begin() + i * ref->d);
    is[i] = ids[order[i]];
  }
  std::vector<faiss::Index::idx_t> assign = exact_assign(*ref, n, xs.data());
  ref->add_core(n, xs.data(), is.data(), assign.data());
  return ref;
}

/// Sets the size from which adds are committed by SST ingestion (index/ingest_policy.h) for the
/// lifetime of the guard.
class IngestMinVectors {
 public:
  explicit IngestMinVectors(int64_t n) : old_(index::ingest_min_vectors()) {
    index::set_ingest_min_vectors(n);
  }
  ~IngestMinVectors() { index::set_ingest_min_vectors(old_); }
  IngestMinVectors(const IngestMinVectors&) = delete;
  IngestMinVectors& operator=(const IngestMinVectors&) = delete;

 private:
  int64_t old_;
};

/// Sets the level-0 file count from which adds fall back to a WriteBatch
/// (index/ingest_policy.h) for the lifetime of the guard.
class Level0CrowdedFiles {
 public:
  explicit Level0CrowdedFiles(int64_t n) : old_(index::level0_crowded_files()) {
    index::set_level0_crowded_files(n);
  }
  ~Level0CrowdedFiles() { index::set_level0_crowded_files(old_); }
  Level0CrowdedFiles(const Level0CrowdedFiles&) = delete;
  Level0CrowdedFiles& operator=(const Level0CrowdedFiles&) = delete;

 private:
  int64_t old_;
};

/// Sets the size from which adds are ingested even into a crowded level 0
/// (index/ingest_policy.h) for the lifetime of the guard.
class AlwaysIngestBytes {
 public:
  explicit AlwaysIngestBytes(int64_t n) : old_(index::always_ingest_bytes()) {
    index::set_always_ingest_bytes(n);
  }
  ~AlwaysIngestBytes() { index::set_always_ingest_bytes(old_); }
  AlwaysIngestBytes(const AlwaysIngestBytes&) = delete;
  AlwaysIngestBytes& operator=(const AlwaysIngestBytes&) = delete;

 private:
  int64_t old_;
};

/// Installs an add hook (index/ingest_policy.h) for the lifetime of the guard.
class AddHook {
 public:
  explicit AddHook(std::function<void(index::AddPoint)> fn) { index::set_add_hook(std::move(fn)); }
  ~AddHook() { index::set_add_hook(nullptr); }
  AddHook(const AddHook&) = delete;
  AddHook& operator=(const AddHook&) = delete;
};

}  // namespace testing
}  // namespace flashkm
