// Persisted (RocksDB lists) vs in-memory (faiss ArrayInvertedLists) IVF search, same trained
// parameters and codes, warm caches. Prints a table and writes JSON.
//
//   bench_index [--n 1000000] [--d 128] [--nq 1000] [--nlist 1024] [--codes Flat,PQ16np]
//               [--iters 10] [--dir /tmp/flashkm-bench-index] [--json bench_index.json]
//               [--batch 100000] [--add-threads 2] [--train-points 0] [--search 1]
//               [--trained-cache DIR] [--ingest-min N]
//
// Adds: n vectors in add() calls of --batch vectors (each one atomic, durable WriteBatch),
// issued by --add-threads threads taking batches in turn; with 2 threads one call's encoding
// overlaps another's commit. add vectors/s = n / wall time of all adds. Calls of at least
// --ingest-min vectors (default: index/ingest_policy.h) are committed by SST ingestion, smaller
// ones by a WriteBatch. The stage split (index/add_profile.h) is the mean per call: assign
// (exact coarse assignment), encode (PQ codes), build (WriteBatch, or the SST files' entries),
// finish (completing and fsyncing the SST files), write (DB::Write: log + memtables, or
// DB::IngestExternalFiles), other (checks, waiting for the writer lock); with several threads
// the stages of different calls overlap, so they add up to more than the wall time per batch.
// --search 0 measures adds only; --trained-cache DIR keeps the trained, empty index in
// DIR-<codes> and reuses it on the next run.
//
// Data: flashkm::make_blobs (4 * nlist Gaussian blobs, spread 4), queries from the same
// distribution; ground truth by brute force (faiss::knn_L2sqr). Recall@10 = |top10 & true
// top10| / 10. QPS = nq / wall time of one batched search call, best of 5 to 25 (until 3 s of
// searching) after a warm-up, the RocksDB-backed and the in-memory index searched alternately.
#include <faiss/IndexIVF.h>
#include <faiss/clone_index.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flashkm/index.h"
#include "flashkm/io.h"
#include "index/add_profile.h"
#include "index/ingest_policy.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Args {
  int64_t n = 1000000, d = 128, nq = 1000, nlist = 1024;
  // PQ16np is PQ16 without faiss's polysemous training, which only permutes code words for
  // Hamming filtering (unused by these searches) and costs minutes on a small machine.
  std::vector<std::string> codes = {"Flat", "PQ16np"};
  int iters = 10;
  int64_t batch = 100000;    // vectors per add() call (one atomic WriteBatch each)
  int64_t train_points = 0;  // 0: train on all n points
  int add_threads = 2;
  int64_t ingest_min = flashkm::index::kDefaultIngestMinVectors;
  bool search = true;
  std::string trained_cache;  // reuse trained, empty indexes kept here (<cache>-<codes>)
  std::string dir = "/tmp/flashkm-bench-index";
  std::string json = "bench_index.json";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--n")
      a.n = std::atoll(v.c_str());
    else if (k == "--d")
      a.d = std::atoll(v.c_str());
    else if (k == "--nq")
      a.nq = std::atoll(v.c_str());
    else if (k == "--nlist")
      a.nlist = std::atoll(v.c_str());
    else if (k == "--batch")
      a.batch = std::atoll(v.c_str());
    else if (k == "--add-threads")
      a.add_threads = std::max(1, std::atoi(v.c_str()));
    else if (k == "--ingest-min")
      a.ingest_min = std::atoll(v.c_str());
    else if (k == "--train-points")
      a.train_points = std::atoll(v.c_str());
    else if (k == "--search")
      a.search = std::atoi(v.c_str()) != 0;
    else if (k == "--trained-cache")
      a.trained_cache = v;
    else if (k == "--iters")
      a.iters = std::atoi(v.c_str());
    else if (k == "--dir")
      a.dir = v;
    else if (k == "--json")
      a.json = v;
    else if (k == "--codes") {
      a.codes.clear();
      std::stringstream ss(v);
      std::string c;
      while (std::getline(ss, c, ',')) a.codes.push_back(c);
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double recall(const std::vector<int64_t>& labels, const std::vector<int64_t>& gt, int64_t nq,
              int k) {
  int64_t hits = 0;
  for (int64_t q = 0; q < nq; ++q) {
    std::set<int64_t> truth(&gt[q * k], &gt[q * k] + k);
    for (int j = 0; j < k; ++j) hits += truth.count(labels[q * k + j]);
  }
  return double(hits) / double(nq * k);
}

std::vector<int64_t> positions(const std::vector<int64_t>& labels,
                               const std::vector<int64_t>& pos_of_id) {
  std::vector<int64_t> p(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) p[i] = labels[i] < 0 ? -1 : pos_of_id[labels[i]];
  return p;
}

struct Row {
  std::string factory, lists;
  int nprobe;
  double qps, recall;
};

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  const int k = 10;
  flashkm::index::set_ingest_min_vectors(a.ingest_min);
  std::printf(
      "bench_index: n=%lld d=%lld nq=%lld nlist=%lld threads=%d, adds of %lld vectors from %d "
      "thread(s), ingested from %lld vectors per call\n",
      (long long)a.n, (long long)a.d, (long long)a.nq, (long long)a.nlist, omp_get_max_threads(),
      (long long)a.batch, a.add_threads, (long long)a.ingest_min);
  std::vector<float> all(size_t(a.n + a.nq) * a.d);
  flashkm::make_blobs(a.n + a.nq, a.d, 4 * a.nlist, 1234, 4.0, all.data());
  const float* xb = all.data();
  const float* xq = all.data() + a.n * a.d;
  auto t = Clock::now();
  std::vector<float> gt_d(a.nq * k);
  std::vector<int64_t> gt(a.nq * k);
  faiss::float_maxheap_array_t heaps = {size_t(a.nq), size_t(k), gt.data(), gt_d.data()};
  if (a.search) faiss::knn_L2sqr(xq, xb, size_t(a.d), size_t(a.nq), size_t(a.n), &heaps);
  std::printf("ground truth: %.1f s\n", since(t));

  std::vector<Row> rows;
  std::string json = "{\"n\":" + std::to_string(a.n) + ",\"d\":" + std::to_string(a.d) +
                     ",\"nq\":" + std::to_string(a.nq) +
                     ",\"threads\":" + std::to_string(omp_get_max_threads()) + ",\"runs\":[";
  for (size_t ci = 0; ci < a.codes.size(); ++ci) {
    std::string factory = "IVF" + std::to_string(a.nlist) + "," + a.codes[ci];
    std::string dir = a.dir + "-" + a.codes[ci];
    std::filesystem::remove_all(dir);
    flashkm::IvfTrainParams tp;
    tp.kmeans.max_iter = a.iters;
    tp.max_train_points = a.train_points;

    t = Clock::now();
    std::unique_ptr<flashkm::IvfIndex> idx;
    std::string cached = a.trained_cache.empty() ? "" : a.trained_cache + "-" + a.codes[ci];
    if (!cached.empty() && std::filesystem::exists(cached)) {
      std::filesystem::copy(cached, dir, std::filesystem::copy_options::recursive);
      idx = flashkm::IvfIndex::open(dir);
      std::printf("\n%s: trained index copied from %s\n", factory.c_str(), cached.c_str());
    } else {
      idx = flashkm::IvfIndex::create(dir, a.d, factory);
      idx->train(a.n, xb, tp);
      if (!cached.empty()) {
        idx.reset();
        std::filesystem::copy(dir, cached, std::filesystem::copy_options::recursive);
        idx = flashkm::IvfIndex::open(dir);
      }
    }
    double train_s = since(t);
    flashkm::IvfIndexInfo info = idx->info();

    flashkm::index::reset_add_profile();
    t = Clock::now();
    // Ids are handed out in commit order, which threads may swap: map them back to positions.
    std::vector<int64_t> pos_of_id(size_t(a.n), -1);
    {
      std::atomic<int64_t> next{0};
      std::vector<std::thread> adders;
      for (int th = 0; th < a.add_threads; ++th) {
        adders.emplace_back([&] {
          for (int64_t b; (b = next.fetch_add(a.batch)) < a.n;) {
            const int64_t len = std::min(a.batch, a.n - b);
            const int64_t first = idx->add(len, xb + b * a.d);
            for (int64_t j = 0; j < len; ++j) pos_of_id[size_t(first + j)] = b + j;
          }
        });
      }
      for (std::thread& th : adders) th.join();
    }
    double add_s = since(t);
    flashkm::index::AddProfile ap = flashkm::index::add_profile();

    // The in-memory twin: same quantizer, codes and id-ordered lists, via a stock faiss file.
    // Skipped with --search 0 (add throughput only).
    std::string file = dir + ".faiss";
    double export_s = 0, mem_add_s = 0;
    std::unique_ptr<faiss::IndexIVF> mem;
    if (a.search) {
      t = Clock::now();
      idx->export_faiss(file);
      export_s = since(t);
      mem.reset(dynamic_cast<faiss::IndexIVF*>(faiss::read_index(file.c_str())));
      std::filesystem::remove(file);
      // In-memory add throughput for reference: faiss's own add into an emptied copy.
      std::unique_ptr<faiss::IndexIVF> twin(
          dynamic_cast<faiss::IndexIVF*>(faiss::clone_index(mem.get())));
      twin->reset();
      auto t0 = Clock::now();
      twin->add(a.n, xb);
      mem_add_s = since(t0);
    }

    std::printf(
        "\n%s: train %.1f s (%d iterations, k-means %.1f s), add %.1f s (%.0f vectors/s "
        "to RocksDB; in-memory faiss add %.0f vectors/s), export %.1f s\n",
        factory.c_str(), train_s, info.iterations, info.train_seconds, add_s, double(a.n) / add_s,
        mem_add_s > 0 ? double(a.n) / mem_add_s : 0.0, export_s);
    // Stages of IvfIndex::add, per call of a.batch vectors (index/add_profile.h).
    const double per = ap.calls ? 1.0 / double(ap.calls) : 0;
    std::printf(
        "  add stages, mean per call of %lld vectors (%lld of %lld calls ingested): assign %.3f "
        "s, encode %.3f s, build %.3f s, finish %.3f s, write %.3f s, other (checks, lock wait) "
        "%.3f s, total %.3f s\n",
        (long long)a.batch, (long long)ap.ingested, (long long)ap.calls, ap.assign_s * per,
        ap.encode_s * per, ap.build_s * per, ap.finish_s * per, ap.write_s * per,
        (ap.total_s - ap.assign_s - ap.encode_s - ap.build_s - ap.finish_s - ap.write_s) * per,
        ap.total_s * per);
    json +=
        std::string(ci ? "," : "") + "{\"factory\":\"" + factory +
        "\",\"train_s\":" + std::to_string(train_s) + ",\"add_s\":" + std::to_string(add_s) +
        ",\"add_per_s\":" + std::to_string(double(a.n) / add_s) +
        ",\"memory_add_per_s\":" + std::to_string(mem_add_s > 0 ? double(a.n) / mem_add_s : 0.0) +
        ",\"add_batch\":" + std::to_string(a.batch) +
        ",\"add_threads\":" + std::to_string(a.add_threads) +
        ",\"ingest_min\":" + std::to_string(a.ingest_min) +
        ",\"add_calls\":" + std::to_string(ap.calls) +
        ",\"ingested_calls\":" + std::to_string(ap.ingested) +
        ",\"add_stage_s\":{\"assign\":" + std::to_string(ap.assign_s) +
        ",\"encode\":" + std::to_string(ap.encode_s) + ",\"build\":" + std::to_string(ap.build_s) +
        ",\"finish\":" + std::to_string(ap.finish_s) + ",\"write\":" + std::to_string(ap.write_s) +
        ",\"total\":" + std::to_string(ap.total_s) + "},\"search\":[";
    bool first = true;
    for (int nprobe : a.search ? std::vector<int>{8, 32} : std::vector<int>{}) {
      std::vector<float> dist[2] = {std::vector<float>(a.nq * k), std::vector<float>(a.nq * k)};
      std::vector<int64_t> labels[2] = {std::vector<int64_t>(a.nq * k),
                                        std::vector<int64_t>(a.nq * k)};
      auto run = [&](int which) {
        if (which == 0) {
          idx->search(a.nq, xq, k, nprobe, dist[0].data(), labels[0].data());
        } else {
          faiss::SearchParametersIVF p;
          p.nprobe = size_t(nprobe);
          mem->search(a.nq, xq, k, dist[1].data(), labels[1].data(), &p);
        }
      };
      // Warm-up (fills the list cache / page cache), then the two alternate, so that the VM's
      // drifting speed affects both alike; best of 5 each, or of more (up to 25) until 3 s have
      // been spent searching: a 0.15 s search's best of 5 still moved by 30 % between runs.
      double best[2] = {1e30, 1e30}, spent = 0;
      for (int which = 0; which < 2; ++which) run(which);
      for (int rep = 0; rep < 25 && (rep < 5 || spent < 3.0); ++rep) {
        for (int which = 0; which < 2; ++which) {
          auto t0 = Clock::now();
          run(which);
          const double s = since(t0);
          best[which] = std::min(best[which], s);
          spent += s;
        }
      }
      for (int which = 0; which < 2; ++which) {
        Row r{factory, which == 0 ? "rocksdb" : "memory", nprobe, double(a.nq) / best[which],
              recall(positions(labels[which], pos_of_id), gt, a.nq, k)};
        rows.push_back(r);
        json += std::string(first ? "" : ",") + "{\"lists\":\"" + r.lists +
                "\",\"nprobe\":" + std::to_string(nprobe) + ",\"qps\":" + std::to_string(r.qps) +
                ",\"recall10\":" + std::to_string(r.recall) + "}";
        first = false;
      }
    }
    json += "]}";
    idx.reset();
    std::filesystem::remove_all(dir);
  }
  json += "]}";

  std::printf("\n| index | lists | nprobe | QPS | recall@10 | RocksDB / memory QPS |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < rows.size(); i += 2) {
    for (size_t j = i; j < i + 2; ++j) {
      std::printf(
          "| %s | %s | %d | %.0f | %.4f | %s |\n", rows[j].factory.c_str(), rows[j].lists.c_str(),
          rows[j].nprobe, rows[j].qps, rows[j].recall,
          j == i ? (std::to_string(rows[i].qps / rows[i + 1].qps).substr(0, 4) + "x").c_str() : "");
    }
  }
  FILE* f = std::fopen(a.json.c_str(), "w");
  if (f) {
    std::fprintf(f, "%s\n", json.c_str());
    std::fclose(f);
  }
  return 0;
}
