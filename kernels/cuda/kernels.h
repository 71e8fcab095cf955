// PRIVATE to kernels/cuda: launchers of the CUDA backend's kernels (assign_kernels.cu,
// mma_assign.cu, update_kernels.cu). All work is enqueued on the given stream; every launch
// is checked.
//
// The float64 parts mirror the CPU backend operation for operation (kernels/cpu/
// cpu_engine.cpp): centring shift, fix-up formula, per-row distances, inertia blocks and
// cluster sums are bit-identical. The FFMA first pass also repeats the CPU's fast values and
// certification decisions (same fix-up counts); the tensor-core pass has its own values and
// bound, so only its fix-up count differs.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "flashkm/kmeans.h"
#include "kernels/exact_sum.h"

namespace flashkm {
namespace detail {
namespace cuda {

/// Rows of one fixed reduction block of the finalize pass (exact distances, inertia,
/// changed labels): the same as the CPU backend's kAssignBlock, so per-block inertia sums
/// match it bit for bit. Streaming chunks are multiples of it.
constexpr int64_t kReduceBlock = 1024;

/// Centroid padding: a multiple of every compiled AssignTiles::centroids.
constexpr int kCentroidPad = 128;

/// Candidates a row keeps in the assignment passes (see topk.cuh).
constexpr int kTop = 4;

/// Centroids as one assignment pass reads them (all device pointers).
struct DeviceCentroids {
  int k = 0, d = 0, kpad = 0;
  const float* shifted_t = nullptr;  ///< d x kpad: float(c - shift), zero padding columns
  const float* beta = nullptr;       ///< kpad: L2 float(|c - shift|^2), IP 0
  const float* raw_t = nullptr;      ///< d x k: the centroids as given, transposed (fix-up)
  const float* raw = nullptr;        ///< k x d: the centroids as given (finalize)
  const double* max_norm = nullptr;  ///< scalar: max_j |c_j - shift| in float64
};

/// From raw (k x d, device) fills the other DeviceCentroids arrays. shift: d doubles (zeros
/// for inner product). norm_sq: k doubles of scratch.
void prepare_centroids(const float* raw, const double* shift, int k, int d, int kpad, Metric metric,
                       float* shifted_t, float* beta, float* raw_t, double* norm_sq,
                       double* max_norm, cudaStream_t stream);

/// norms[i] = |float(x_i - shift)| in float64, for rows of a row-major rows x d block.
void row_norms(const float* x, int64_t rows, int d, const double* shift, double* norms,
               cudaStream_t stream);

struct AssignArgs {
  const float* x = nullptr;  ///< rows x d, raw
  int64_t rows = 0;
  int d = 0;
  const double* shift = nullptr;  ///< d
  const double* xnorm = nullptr;  ///< rows, from row_norms
  DeviceCentroids c;
  bool inner_product = false;
  bool certify = true;       ///< false: Precision::Fast, no fix-up list
  int* cand = nullptr;       ///< rows: fast argmin (fixed up later where uncertified)
  int* fix_list = nullptr;   ///< rows: uncertified rows to recompute over all k
  int* fix_count = nullptr;  ///< scalar, incremented (integer atomics only)
  int* win_list = nullptr;   ///< rows: uncertified rows whose window is in cand_top
  int* win_count = nullptr;  ///< scalar, incremented (integer atomics only)
  int* cand_top = nullptr;   ///< rows x kTop: a win_list row's candidates (-1: none)
  /// wgmma Exact on resident rows: the screening pass keeps only (best, index, second) per
  /// row and lists here the rows it cannot certify (recheck_count: device scalar, reset by
  /// the launcher); a second pass collects those rows' candidates (rows x 1 each).
  int* recheck_list = nullptr;
  int* recheck_count = nullptr;
  /// Rows kept on the device as fp16 alone (KMeansParams::device_rows, SplitRows::lo null):
  /// per row an upper bound on |float(x - shift) - hi| (unscaled), which widens the
  /// certification bound (topk.cuh: StoredRowBounds; xnorm is then |hi|); x is the float32
  /// rows in host memory, mapped, which only the fix-ups read. Null: rows stored exactly.
  const float* row_err = nullptr;
};

/// FlashAssign on fp32 CUDA cores with the shape kAssignShapes[shape]: the CPU's fmaf chain
/// and certification bound; uncertified rows go to a.win_list or a.fix_list (topk.cuh).
void launch_flash_assign(int shape, const AssignArgs& a, cudaStream_t stream);

/// Row data of the tensor-core pass: float(x - shift) * 2^scale_exp split into fp16 hi and
/// lo = fp16(v - hi), rows x dpad each, zero padded (dpad: multiple of kMmaDepth). hi and lo
/// null: the wgmma pass splits the float32 rows (AssignArgs::x) itself while staging them
/// into shared memory (only where wgmma_splits_rows is true).
constexpr int kMmaDepth = 64;
struct SplitRows {
  const void* hi = nullptr;  ///< __half, or null
  const void* lo = nullptr;  ///< __half, or null (with hi: zeros, rows stored as fp16 alone)
  int dpad = 0;
  int scale_exp = 0;
};

/// Centroids of the tensor-core pass: kpad x dpad fp16 hi / lo of float(c - shift) *
/// 2^(*scale_exp) (the exponent is chosen on the device from max |c - shift|).
struct SplitCentroids {
  const void* hi = nullptr;
  const void* lo = nullptr;
  const int* scale_exp = nullptr;  ///< device scalar
};

/// Scale exponent e for data whose largest |float(x - shift)| is max_abs: |v| 2^e < 2^14.
int mma_scale_exp(float max_abs);

/// Fills hi / lo (rows x dpad halves each) from x.
void split_rows(const float* x, int64_t rows, int d, const double* shift, int dpad, int scale_exp,
                void* hi, void* lo, cudaStream_t stream);

/// Rows kept on the device as fp16 alone (KMeansParams::device_rows): hi as split_rows makes
/// it (rows x dpad halves, zero padded), norm[i] = |hi_i| 2^-scale_exp (the norm the
/// certification bound takes for the rows, AssignArgs::xnorm) and row_err[i] >=
/// |float(x_i - shift) - hi_i 2^-scale_exp| (the row's distance from its fp16 copy,
/// unscaled, rounded up).
void fp16_rows(const float* x, int64_t rows, int d, const double* shift, int dpad, int scale_exp,
               void* hi, double* norm, float* row_err, cudaStream_t stream);

/// Fills the centroid split from DeviceCentroids::shifted_t (after prepare_centroids).
/// max_abs: scratch for k floats. scale_exp: device scalar written here.
void split_centroids(const DeviceCentroids& c, int dpad, float* max_abs, int* scale_exp, void* hi,
                     void* lo, cudaStream_t stream);

/// Tensor-core FlashAssign (mma.sync m16n8k16, fp16 in, fp32 accumulate) with the shape
/// kMmaShapes[shape]. Exact precision: three products (hi.hi + hi.lo + lo.hi) and a
/// certification bound for them; rows it cannot certify go to a.win_list or a.fix_list.
/// Fast precision: hi.hi only, no certification.
void launch_mma_assign(int shape, const AssignArgs& a, const SplitRows& xs,
                       const SplitCentroids& cs, cudaStream_t stream);

/// launch_mma_assign on Hopper's warpgroup mma (wgmma, sm_90a code: compute capability 9.0
/// only): the same shapes and outputs, operands read from shared memory by the tensor cores.
/// Fast values are identical to the mma.sync pass's; Exact keeps hi.hi and hi.lo + lo.hi in
/// two accumulators (other values, a tighter bound, fewer fix-ups) and, on rows resident in
/// shared memory, screens then collects (a.recheck_list). sm_count sizes the collecting grid
/// and the persistent ping-pong grid. pingpong: Fast and Screen on resident rows of the
/// 128-row shape use the ping-pong kernel (a TMA producer warpgroup and three (Fast) or two
/// (Screen) consumer warpgroups taking turns, so the others fold while one multiplies) where
/// its stages fit; false keeps the lockstep kernel everywhere. Both give bit-identical outputs.
void launch_wgmma_assign(int shape, const AssignArgs& a, const SplitRows& xs,
                         const SplitCentroids& cs, int sm_count, bool pingpong,
                         cudaStream_t stream);

/// True when launch_wgmma_assign with this shape and precision keeps a block's rows resident
/// in shared memory at this dpad (at 128 rows: Exact d <= 256, Fast d <= 704), and so can
/// take SplitRows without arrays (it splits the float32 rows itself; same halves, bit for bit).
bool wgmma_splits_rows(int shape, bool exact, int dpad);

/// Recomputes the rows of fix_list with the float64 formula over all k centroids, and the
/// rows of win_list over their candidates only.
void launch_fixup(const AssignArgs& a, int sm_count, cudaStream_t stream);

/// From the final candidates, sorted by label (sort_by_label on a.cand): writes labels
/// (rows, chunk-relative), adds the number of labels != previous to *changed, writes the
/// exact distance of each row to its centroid (dist64, and rounded to dist when non-null)
/// and the per-kReduceBlock sums of dist64 in row order. dist64 null (and dist null): the
/// labels and changes only, no row of a.x is read.
void launch_finalize(const AssignArgs& a, const int* sorted_labels, const int* sorted_ids,
                     int* labels, float* dist, double* dist64, double* block_inertia, int* changed,
                     cudaStream_t stream);

/// Centre-centre pruning of an Exact L2 assignment (Elkan's lemma), from the previous one:
/// a row whose previous label is a and a centroid c with |a - c| >= 2 |x - a| cannot beat a.
/// Per label a, R bounds |x - a| over its rows from above (the previous pass's float64
/// distances plus how far a moved), and every centroid that is not provably farther than 2R
/// from a (a float32 lower bound) is a candidate. The rows are then decided over their
/// label's candidates alone: float32 distances with a rigorous relative bound, and the
/// float64 formula of detail::exact_l2 for rows whose two best are within it, so each label
/// is the float64 argmin over all k (ties: lowest index), as without pruning. A row tile
/// with more than max_cands candidates sends its rows to fallback_list instead. The pass
/// also finalizes the rows it settles (labels, distances, changed count: as
/// launch_finalize does); launch_finalize_list finalizes the fallback rows.
struct PruneArgs {
  const float* x = nullptr;  ///< rows x d, raw (resident)
  int64_t rows = 0;
  int d = 0, k = 0;
  const float* c_raw = nullptr;    ///< k x d: the centroids now
  const float* c_raw_t = nullptr;  ///< d x k: the same, transposed
  const float* c_prev = nullptr;   ///< k x d: the centroids of the previous assignment
  /// rows: exact_l2 of each row to its previous label's centroid in c_prev (finalize's)
  const double* dist_prev = nullptr;
  const int* sorted_ids = nullptr;  ///< rows, by previous label (sort_by_label's ids)
  const int* seg_begin = nullptr;   ///< k: label a's rows are sorted_ids[seg_begin[a] ..
  const int* seg_end = nullptr;     ///< .. seg_end[a]) (empty: begin == end)
  int max_cands = 0;                ///< candidates a row tile may evaluate, <= kPruneMaxCands
  /// Row tiles with few rows and many candidates: 1 evaluates them a thread a candidate
  /// where that takes fewer steps, 0 never, 2 always (tests: identical results).
  int small_tiles = 1;
  int* cand = nullptr;    ///< rows: the label of every row pruning settles
  int* labels = nullptr;  ///< rows: previous labels in, new labels out (settled rows)
  float* dist = nullptr;  ///< rows or null: float(dist64) of settled rows
  /// rows: exact_l2 to the new label of settled rows (may be dist_prev: read before written)
  double* dist64 = nullptr;
  int* changed = nullptr;         ///< scalar: settled rows whose label changed are added
  int* fallback_list = nullptr;   ///< rows of labels with too many candidates
  int* fallback_count = nullptr;  ///< scalar, incremented (integer atomics only)
  /// kPruneStats counters, added to: rows settled here, candidates summed over the row
  /// tiles that prune, rows decided in float64, rows that fall back, row tiles that prune;
  /// with groups, centroids measured against kPruneSmallRows labels at a time (summed over
  /// the steps), and the label-centroid pairs the reached groups hold / 16.
  int* stats = nullptr;
  /// Scratch: per label its bound and candidate list, the row tiles.
  double* radius2 = nullptr;    ///< k
  int* list_count = nullptr;    ///< k
  int* lists = nullptr;         ///< k x kPruneMaxCands: candidates
  float* list_lower = nullptr;  ///< k x kPruneMaxCands: a lower bound on |a - c|^2
  int* tiles = nullptr;         ///< prune_max_tiles(rows, k) x 2: (label, first sorted row)
  int* tile_count = nullptr;    ///< 3: tiles of the lean row kernel, all tiles, a counter
  int sm_count = 1;             ///< the device's SMs (the full row kernel's grid)
  /// Candidates through groups of centroids around pivots (0: every pair is measured); the
  /// rest is their scratch: pivots_t d x groups, nearest k, group_* groups (+1), members k.
  int groups = 0;
  float* pivots_t = nullptr;
  unsigned long long* nearest = nullptr;
  unsigned* group_radius = nullptr;
  int *group_count = nullptr, *group_start = nullptr, *group_fill = nullptr;
  int* members = nullptr;
};
/// Pivot g of the grouped candidate search is centroid g * kPivotStride.
constexpr int kPivotStride = 32;
constexpr int kPruneMaxGroups = 4096;
constexpr int kPruneMaxCands = 512;
constexpr int kPruneStats = 7;
/// Rows (labels) the pruning pass's pair_block measures together.
constexpr int kPruneSmallRows = 16;
/// Largest d the pruning pass takes.
constexpr int kPruneMaxDim = 8192;
/// Row tiles of the pruning pass: rows of one label, at most kPruneTileRows a tile.
constexpr int kPruneTileRows = 128;
inline int64_t prune_max_tiles(int64_t rows, int k) {
  return (rows + kPruneTileRows - 1) / kPruneTileRows + k;
}
void launch_prune(const PruneArgs& p, cudaStream_t stream);

/// launch_finalize for the rows list[0 .. *count) only (in any order), from a.cand: their
/// labels, distances and changed count; the inertia blocks are launch_block_inertia's.
void launch_finalize_list(const AssignArgs& a, const int* list, const int* count, int* labels,
                          float* dist, double* dist64, int* changed, int sm_count,
                          cudaStream_t stream);

/// The per-kReduceBlock sums of dist64 in row order (the last step of launch_finalize).
void launch_block_inertia(const double* dist64, int64_t rows, double* block_inertia,
                          cudaStream_t stream);

/// The collecting pass of the wgmma Exact assignment alone, over the rows listed in
/// a.recheck_list (*a.recheck_count on the device, filled by the caller): their candidates,
/// certification and fix-up routing, as for the rows Screen cannot certify. Rows too wide to
/// stay in shared memory come from the split arrays (xs.hi, xs.lo).
void launch_wgmma_collect(int shape, const AssignArgs& a, const SplitRows& xs,
                          const SplitCentroids& cs, int sm_count, cudaStream_t stream);

/// Scratch of the sort-inverse pieces (all chunk- or k-sized device arrays).
struct UpdateScratch {
  int* keys_out = nullptr;   ///< chunk rows
  int* ids_in = nullptr;     ///< chunk rows, 0..rows-1
  int* ids_out = nullptr;    ///< chunk rows
  int* seg_begin = nullptr;  ///< k
  int* seg_end = nullptr;    ///< k
  void* sort_temp = nullptr;
  size_t sort_temp_bytes = 0;
};

/// Temporary bytes CUB needs to sort up to max_rows pairs.
size_t sort_temp_bytes(int64_t max_rows);
void fill_iota(int* ids, int64_t rows, cudaStream_t stream);

/// Stable sort of row ids 0..rows-1 by label into s.keys_out / s.ids_out (CUB radix sort:
/// ids ascending within a label).
void sort_by_label(const int* labels, int64_t rows, int k, const UpdateScratch& s,
                   cudaStream_t stream);

/// Segment bounds of the sorted keys: label a's rows are s.ids_out[s.seg_begin[a] ..
/// s.seg_end[a]) (labels without rows: 0 .. 0).
void segment_bounds(int64_t rows, int k, const UpdateScratch& s, cudaStream_t stream);

/// counts[c] += the number of rows of label c (from segment_bounds).
void segment_counts(int k, const UpdateScratch& s, long long* counts, cudaStream_t stream);

/// Sort-inverse update: adds (subtract: removes) rows to the exact sums (kernels/exact_sum.h;
/// limbs: k x d x fmt.limbs, in the order (cluster, coordinate, limb)). The rows are ids[p]
/// of the sorted positions p < rows, to the sum of label keys[p] (sort_by_label's keys_out
/// and ids_out); other null: every position, else only those whose other[ids[p]] differs
/// from keys[p] (the rows that moved between two labellings). Integer atomics only: the
/// limbs do not depend on the order, so the sums of moved rows, taken out of the old labels
/// (in the old sort) and put into the new ones, give what adding all rows gives.
void accumulate_sorted(const float* x, int64_t rows, int d, const int* keys, const int* ids,
                       const int* other, bool subtract, ExactFormat fmt, unsigned long long* limbs,
                       cudaStream_t stream);

/// The same moves as the two accumulate_sorted calls (rows i with labels[i] != prev[i] leave
/// prev[i] for labels[i]), each moved row read once, with 4 integer atomics a value: for
/// rows read across the bus (mapped host memory), where reads cost more than atomics.
void accumulate_moved(const float* x, int64_t rows, int d, const int* labels, const int* prev,
                      ExactFormat fmt, unsigned long long* limbs, int sm_count,
                      cudaStream_t stream);

/// means[c] = float(exact_to_double(sum of c) / counts[c]) where counts[c] > 0 (the CPU's
/// formula, bit for bit); renormalises every sum in place (same values), which bounds the
/// limbs between updates.
void compute_means(unsigned long long* limbs, const long long* counts, int k, int d,
                   ExactFormat fmt, float* means, cudaStream_t stream);

/// The exact-sum format of count values of device memory (scratch: 2 device ints); waits
/// for the stream.
ExactFormat exact_format_device(const float* x, int64_t count, int* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
