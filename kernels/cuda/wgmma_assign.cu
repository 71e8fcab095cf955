// FlashAssign on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a): the products
// and candidate state of the mma.sync pass (mma_assign.cu), with the operands read by the
// tensor cores straight from shared memory instead of through ldmatrix into registers (the
// mma.sync pass was bound by those shared-memory reads: 128 bytes per m16n8k16 in Exact
// mode, the SM's whole shared-memory bandwidth). Exact accumulates hi.hi apart from
// hi.lo + lo.hi (a tighter bound: mma_common.cuh), and on resident rows runs as a cheap
// screening pass plus a collecting pass over the rows it cannot certify (Role below).
// Fast and the screening pass run on resident rows as the ping-pong kernel (a TMA producer
// warpgroup feeding consumer warpgroups that take turns, so the others fold while one
// multiplies: wgmma_pingpong_kernel), the other roles and shapes as wgmma_assign_kernel
// (its warpgroups multiply and fold together: "lockstep"); both give the same values.
//
// This file is compiled for sm_90a only (kernels/cuda/CMakeLists.txt); the engine picks it
// only on compute capability 9.0 (tile_config.cpp), and every other device keeps the
// mma.sync pass.
#include <cudaTypedefs.h>  // CUtensorMap and the type of cuTensorMapEncodeTiled
#include <cuda_fp16.h>
#include <math_constants.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/mma_common.cuh"
#include "kernels/cuda/tile_config.h"
#include "kernels/cuda/topk.cuh"

namespace flashkm {
namespace detail {
namespace cuda {
namespace {

constexpr size_t kSmemOptin = 227 * 1024;  // dynamic shared memory a block may opt into, sm_90

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FLASHKM_WGMMA 1
#endif

#ifdef FLASHKM_WGMMA
// Shared-memory matrix descriptor of a K-major tile whose rows are 128 bytes (64 halves)
// stored with the 128-byte swizzle: 16-byte chunk q of row r lives at chunk q ^ (r % 8), and
// groups of 8 rows are 1024 bytes apart (the stride offset). The leading offset is unused
// for swizzled K-major tiles. Advancing the start address by 32 bytes selects the next 16
// halves of every row (the swizzle is applied to the final address).
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes the compiler treat v as written here: accumulator reads stay after wgmma_wait.
__device__ __forceinline__ void fence_operand(float& v) { asm volatile("" : "+f"(v)::"memory"); }
// cp.async writes through the generic proxy; wgmma reads through the async proxy.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Transaction barriers (mbarrier) in shared memory: the ping-pong kernel's stage protocol.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// The producer's arrival, announcing `bytes` of bulk copies that complete on the barrier.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Returns once the barrier's phase of this parity has completed (a fresh barrier counts its
// phase of parity 1 as completed).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// A tile of a 2-D tensor map (box at coordinates c0 innermost, c1) into shared memory at dst,
// completing `box bytes` of transactions on bar.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}
// Named barriers 1..15 over `count` threads (0 is __syncthreads).
__device__ __forceinline__ void bar_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// D (64 x N, fp32, registers) = A (64 x 16, fp16, shared) * B (N x 16, fp16, shared)^T + D
// when scale_d, else without D. Thread (warp w of the warpgroup, lane l) holds, for each
// 8-column group j, d[4j + 2h + q] = D[16 w + l / 4 + 8 h][8 j + 2 (l % 4) + q].
__device__ __forceinline__ void wgmma_m64n128(float* d, uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_m64n64(float* d, uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(scale_d));
}
#endif  // FLASHKM_WGMMA

template <int BN>
__device__ __forceinline__ void wgmma_tile(float* d, uint64_t da, uint64_t db, int scale_d) {
#ifdef FLASHKM_WGMMA
  if constexpr (BN == 128) {
    wgmma_m64n128(d, da, db, scale_d);
  } else {
    static_assert(BN == 64, "compiled wgmma widths: 64, 128");
    wgmma_m64n64(d, da, db, scale_d);
  }
#endif
}

// The products of one BK-deep slice, issued by one warpgroup as one wgmma group: hi.hi into acc
// and, with kSplit, hi.lo + lo.hi into acc2 (part 0 holds the fp16 high halves, part P - 1 the
// low ones). The first step of a centroid block (kc == 0) overwrites the accumulators instead of
// adding. The accumulators are fenced on both sides so the compiler keeps them in place while
// the group is in flight.
template <int BN, int BK, bool kSplit, int NACC, int NACC2, int P>
__device__ __forceinline__ void slice_products(float (&acc)[NACC], float (&acc2)[NACC2],
                                               const uint64_t (&da)[P], const uint64_t (&db)[P],
                                               int kc) {
#ifdef FLASHKM_WGMMA
#pragma unroll
  for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
  for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < BK / 16; ++kk) {
    const uint64_t step = uint64_t(kk * 32 >> 4);  // 16 halves further along every row
    const int keep = (kc > 0 || kk > 0) ? 1 : 0;   // 0: the block's first step
    wgmma_tile<BN>(acc, da[0] + step, db[0] + step, keep);
    if constexpr (kSplit) {
      wgmma_tile<BN>(acc2, da[0] + step, db[P - 1] + step, keep);
      wgmma_tile<BN>(acc2, da[P - 1] + step, db[0] + step, 1);
    }
  }
  wgmma_commit();
#pragma unroll
  for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
  for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
#endif
}

template <int BN, int WG, bool kThree, bool kResident>
struct WgmmaTraits {
  static constexpr int kRows = 64 * WG;
  static constexpr int kThreads = 128 * WG;
  static constexpr int kParts = kThree ? 2 : 1;
  static constexpr int kRowBytes = kMmaDepth * 2;  // one 128-byte swizzle row per point
  static constexpr int kABytes = kRows * kRowBytes;
  static constexpr int kBBytes = BN * kRowBytes;
  // Resident: the block's rows (all of d) are loaded once and stay in shared memory, and the
  // stages hold centroids only; else each stage holds the rows' k-slice too.
  static constexpr int kStageBytes = kParts * ((kResident ? 0 : kABytes) + kBBytes);
  // Tile t + S - 2 is copied while the tensor cores work on tiles t - 1 and t. One block
  // per SM: with a cap of 128 registers (two blocks) the Fast kernel spills 172 bytes.
  static constexpr int kStages = 3;
  static constexpr int kMinBlocks = 1;
  static size_t smem_bytes(int dpad) {
    const size_t rows = kResident ? size_t(kParts) * kABytes * (dpad / kMmaDepth) : 0;
    return rows + size_t(kStages) * kStageBytes + 1024;  // + 1024: alignment of the base
  }
  static_assert(kMmaDepth == 64, "the 128-byte swizzle holds 64 halves a row");
};

// How a block turns float32 rows into the fp16 hi / lo halves split_rows makes, while it
// stages them into shared memory (resident rows without split arrays): the same `centred`,
// scale and `split`, so the halves are bit-identical; the same bytes read per coordinate (4,
// as hi + lo), and no per-row fp16 copy of the data in device memory.
struct RowSplitter {
  const float* x;
  const double* shift;
  int d, scale_exp;
  bool vec4;       // 16-byte loads: d % 4 == 0 and an aligned base (device rows may be offset)
  bool mul_scale;  // 2^scale_exp is a normal float: one multiplication, rounded once like
                   // ldexpf's result (a tenth of its instructions, on every coordinate)
  float scale;

  __device__ RowSplitter(const AssignArgs& a, const SplitRows& xs) {
    x = a.x;
    shift = a.shift;
    d = a.d;
    scale_exp = xs.scale_exp;
    vec4 = d % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
    mul_scale = scale_exp >= -126 && scale_exp <= 127;
    scale = __int_as_float((mul_scale ? scale_exp + 127 : 127) << 23);
  }

  // Coordinates c0..c0 + 7 (c0 = kc * 64 + q * 8) of rows row[r] (-1: none, zeros) for the
  // k-slices kc0 and kc0 + 1, scaled and split: hi to dst + (kc - kc0) * kSlice + r * RS *
  // 128 bytes, lo (kLo) ksteps slices further; zeros past d. All loads are issued before the
  // first conversion, so they are in flight together.
  template <int NR, int RS, int kSlice, bool kLo>
  __device__ __forceinline__ void stage(unsigned char* dst, const int64_t (&row)[NR], int kc0,
                                        int q, int ksteps) const {
    constexpr int KS = 2;
    float f[KS][NR][8];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        const int c0 = (kc0 + ks) * kMmaDepth + q * 8;
        const float* src = x + (row[r] >= 0 ? row[r] : 0) * d + c0;
        if (vec4) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool in = row[r] >= 0 && c0 + 4 * h < d;
            const float4 v = in ? __ldg(reinterpret_cast<const float4*>(src) + h)
                                : make_float4(0.f, 0.f, 0.f, 0.f);
            f[ks][r][4 * h] = v.x;
            f[ks][r][4 * h + 1] = v.y;
            f[ks][r][4 * h + 2] = v.z;
            f[ks][r][4 * h + 3] = v.w;
          }
        } else {
#pragma unroll
          for (int j = 0; j < 8; ++j)
            f[ks][r][j] = row[r] >= 0 && c0 + j < d ? __ldg(src + j) : 0.f;
        }
      }
    }
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      if (kc0 + ks >= ksteps) break;
      const int c0 = (kc0 + ks) * kMmaDepth + q * 8;
      double sh[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) sh[j] = c0 + j < d ? shift[c0 + j] : 0.0;
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        __align__(16) __half hi[8], lo[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float v = 0.f;
          if (row[r] >= 0 && c0 + j < d) {
            const float u = centred(f[ks][r][j], sh[j]);
            v = mul_scale ? __fmul_rn(u, scale) : ldexpf(u, scale_exp);
          }
          split(v, &hi[j], &lo[j]);
        }
        unsigned char* out = dst + ks * kSlice + r * RS * 128;
        *reinterpret_cast<uint4*>(out) = *reinterpret_cast<const uint4*>(hi);
        if constexpr (kLo)
          *reinterpret_cast<uint4*>(out + ksteps * kSlice) = *reinterpret_cast<const uint4*>(lo);
      }
    }
  }
};

// One level of fold_block's tree over groups: lo[i] = min(lo[i], lo[i + W]) for i < W and,
// kTwo, hi[i] the second smallest of the two groups' values; then the next level.
template <int W, bool kTwo, int N, int NH>
__device__ __forceinline__ void tree_min(float (&lo)[N], float (&hi)[NH]) {
  if constexpr (W >= 1) {
#pragma unroll
    for (int i = 0; i < W; ++i) {
      if constexpr (kTwo) hi[i] = fminf(fmaxf(lo[i], lo[i + W]), fminf(hi[i], hi[i + W]));
      lo[i] = fminf(lo[i], lo[i + W]);
    }
    tree_min<W / 2, kTwo>(lo, hi);
  }
}

// Folds one complete centroid block (columns nb0 .. nb0 + BN - 1) into a thread's two rows:
// value = alpha * dot + beta, dot = acc (+ acc2, rounded once, kSplit), in ascending column
// order. Thread (lane l) holds columns nb0 + 8 j + 2 (l % 4) + {0, 1} of rows g and g + 8
// (acc[4 j + 2 h + q]). Padding columns have beta = +inf, so their values never enter a
// row's state. The accumulators are only read (values go to temporaries): rewriting them
// would make the loop carry them in other registers, and ptxas would then wait for every
// in-flight wgmma at the loop's back edge.
// Fast's TopK<1> and Screen's Top2 take a row's BN / 4 values of the block as a whole
// instead of one insert after another: their minimum (and Screen's second smallest) by a
// tree, and, only when the block holds a new best, the first column holding it by a search;
// Screen's values at or above the best only lower the others' minimum. Fewer compare-select
// instructions and no chain through every value: the fold of a ping-pong warpgroup, alone on
// its schedulers, is what the tensor cores wait for (ncu run 40; run 41: Fast -11 % at 10M
// x128 K4096). Same states as the serial fold (the smallest pair, and the smallest value of
// every other index), bit for bit. TopK<kTop> (Exact, Collect) inserts value by value, its
// skip test's minimum taken in two chains (j even, odd).
template <int BN, bool kSplit, class RowTop, int NACC2>
__device__ __forceinline__ void fold_block(RowTop (&top)[2], const float (&acc)[BN / 2],
                                           const float (&acc2)[NACC2], const float* beta_all,
                                           int nb0, int t, float alpha) {
  auto dot = [&](int i) {
    if constexpr (kSplit) {
      return __fadd_rn(acc[i], acc2[i]);
    } else {
      return acc[i];
    }
  };
  const int nb = nb0 + 2 * t;
  const float2* beta = reinterpret_cast<const float2*>(beta_all + nb);  // L1-resident
  constexpr bool kTop1 = std::is_same_v<RowTop, TopK<1>>, kTop2 = std::is_same_v<RowTop, Top2>;
  if constexpr (kTop1 || kTop2) {
    constexpr int NV = BN / 4;  // value i of a row: column nb + 8 (i / 2) + i % 2
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[NV];
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const float2 b = beta[j * 4];
        v[2 * j] = __fmaf_rn(alpha, dot(4 * j + 2 * h), b.x);
        v[2 * j + 1] = __fmaf_rn(alpha, dot(4 * j + 2 * h + 1), b.y);
      }
      // lo[i]: the smallest of values 2 i, 2 i + 1 and then of ever larger groups; hi[i]
      // (Top2): the second smallest of the same group (duplicates count twice).
      float lo[NV / 2], hi[kTop2 ? NV / 2 : 1];
#pragma unroll
      for (int i = 0; i < NV / 2; ++i) {
        lo[i] = fminf(v[2 * i], v[2 * i + 1]);
        if constexpr (kTop2) hi[i] = fmaxf(v[2 * i], v[2 * i + 1]);
      }
      tree_min<NV / 4, kTop2>(lo, hi);
      const float m = lo[0];
      bool better;
      if constexpr (kTop1) {
        better = m < top[h].v[0];
      } else {
        better = m < top[h].v0;
      }
      if (better) {  // the block holds a new best: its first column
        int c = 0;
#pragma unroll
        for (int i = NV - 1; i >= 0; --i) c = v[i] == m ? nb + 8 * (i / 2) + i % 2 : c;
        if constexpr (kTop1) {
          top[h].v[0] = m;
          top[h].i[0] = c;
        } else {
          top[h].v1 = fminf(top[h].v0, hi[0]);  // the old best joins the others
          top[h].v0 = m;
          top[h].i0 = c;
        }
      } else if constexpr (kTop2) {
        top[h].v1 = fminf(top[h].v1, m);  // every value of the block belongs to the others
      }
    }
    return;
  }
  float m[2][2] = {{CUDART_INF_F, CUDART_INF_F}, {CUDART_INF_F, CUDART_INF_F}};
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const float2 b = beta[j * 4];
#pragma unroll
    for (int h = 0; h < 2; ++h)
      m[h][j % 2] = fminf(m[h][j % 2], fminf(__fmaf_rn(alpha, dot(4 * j + 2 * h), b.x),
                                             __fmaf_rn(alpha, dot(4 * j + 2 * h + 1), b.y)));
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    // Most blocks hold nothing below the row's last kept value: folding them (higher
    // indices, so equal values lose) would change nothing, and is skipped.
    if (fminf(m[h][0], m[h][1]) < top[h].last()) {
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const float2 b = beta[j * 4];
        top[h].insert_ascending(__fmaf_rn(alpha, dot(4 * j + 2 * h), b.x), nb + j * 8);
        top[h].insert_ascending(__fmaf_rn(alpha, dot(4 * j + 2 * h + 1), b.y), nb + j * 8 + 1);
      }
    }
  }
}

// A block of WG warpgroups owns 64 WG points (a row tile; Collect's blocks loop over tiles)
// and walks the flattened (centroid block of BN, k step of 64) tiles through a 3-stage
// cp.async pipeline; warpgroup w multiplies its 64 rows by the BN centroids with m64nBNk16
// wgmma, k ascending in steps of 16, each step adding hi.hi to one accumulator and hi.lo,
// lo.hi (in that order) to a second (Exact). A thread holds 2 rows x BN / 4 columns of the
// block, folded in ascending column order into its rows' state, which is then merged across
// the 4 lanes of a row.
//
// What one launch of the kernel does with its rows.
enum class Role {
  Fast,     // one product, the best candidate only
  Exact,    // three products, kTop candidates, certification and fix-up routing
  Screen,   // three products, Top2 only: certified rows get their label, others are listed
  Collect,  // Exact on the rows Screen listed (a.recheck_list)
};

// The end of a row tile in both kernels: each row's state merged over the 4 lanes that hold
// it, then lane t == 0 certifies (kThree with a.certify) and routes the thread's two rows:
// row_of(h, row) sets row h (0, 1) and says whether it is one of the tile's rows.
template <bool kThree, class RowTop, class RowOf>
__device__ __forceinline__ void merge_and_route(const AssignArgs& a, const SplitRows& xs, int ec,
                                                int t, RowTop (&top)[2], RowOf&& row_of) {
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int off = 1; off < 4; off *= 2) top[h].merge_lane(off);
  if (t != 0) return;
  const bool certify = kThree && a.certify;
  const double C = certify ? *a.c.max_norm : 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    int64_t row;
    if (!row_of(h, row)) continue;
    const double X = certify ? a.xnorm[row] : 0;
    const double e =
        certify ? mma_bound(a.inner_product, kThree, a.d, xs.dpad, X, C, xs.scale_exp, ec) : 0;
    route_row(a, row, top[h], e, X, C);
  }
}

template <int BN, int WG, bool kResident, Role kRole>
__global__ void __launch_bounds__(WG * 128,
                                  (WgmmaTraits<BN, WG, kRole != Role::Fast, kResident>::kMinBlocks))
    wgmma_assign_kernel(const AssignArgs a, const SplitRows xs, const SplitCentroids cs) {
#ifdef FLASHKM_WGMMA
  constexpr bool kThree = kRole != Role::Fast, kSplit = kThree;
  constexpr bool kList = kRole == Role::Collect;
  using Traits = WgmmaTraits<BN, WG, kThree, kResident>;
  constexpr int BM = Traits::kRows, NTH = Traits::kThreads, P = Traits::kParts;
  constexpr int S = Traits::kStages, BK = kMmaDepth, NACC = BN / 2;
  using RowTop = std::conditional_t<kRole == Role::Screen, Top2, TopK<kThree ? kTop : 1>>;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t pad = ((raw + 1023u) & ~1023u) - raw;  // swizzle atoms are 1024-aligned
  unsigned char* smem = smem_raw + pad;  // resident rows (P x ksteps slices), then stages
  const uint32_t rbase = raw + pad;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wg = warp / 4, wq = warp % 4, g = lane / 4, t = lane % 4;
  const int k = a.c.k, dpad = xs.dpad;
  const int64_t nrows = kList ? *a.recheck_count : a.rows;
  const int ksteps = dpad / BK, ntiles = (k + BN - 1) / BN, total = ntiles * ksteps;
  const int rows_bytes = kResident ? P * ksteps * Traits::kABytes : 0;
  const uint32_t sbase = rbase + rows_bytes;
  const int ec = *cs.scale_exp;
  const float alpha = ldexpf(a.inner_product ? -1.f : -2.f, -(xs.scale_exp + ec));
  // Rows stored as fp16 alone (KMeansParams::device_rows) have no lo array: zeros.
  const bool lo_rows = xs.lo != nullptr;
  const __half* xsrc[2] = {static_cast<const __half*>(xs.hi),
                           static_cast<const __half*>(lo_rows ? xs.lo : xs.hi)};
  const __half* csrc[2] = {static_cast<const __half*>(cs.hi), static_cast<const __half*>(cs.lo)};

  // Thread tid copies 16-byte chunk tid % 8 of rows tid / 8, tid / 8 + NTH / 8, ...: a
  // multiple of 8 apart, so its chunks share one swizzled position.
  constexpr int RS = NTH / 8;
  const int q = tid % 8, r0 = tid / 8;
  const int swz = (q ^ (r0 & 7)) << 4;
  // Row i of the launch's sequence (-1 past its end): the listed rows, or all rows.
  auto row_at = [&](int64_t i) -> int64_t {
    if (i >= nrows) return -1;
    return kList ? int64_t(a.recheck_list[i]) : i;
  };
  int64_t m0 = 0;  // first row (of the sequence) of the block's current tile
  // Resident rows without split arrays (xs.hi null) are split here, from the float32 rows.
  const bool split_here = kResident && xs.hi == nullptr;
  const RowSplitter splitter(a, xs);
  auto issue_rows = [&](unsigned char* sa, int p, int k0) {
    const __half* src = xsrc[p];
    const bool part = p == 0 || lo_rows;
#pragma unroll
    for (int r = 0; r < BM; r += RS) {
      const int64_t row = row_at(m0 + r0 + r);
      cp_async16(sa + r * Traits::kRowBytes, src + (row >= 0 ? row : 0) * dpad + k0,
                 row >= 0 && part);
    }
  };
  auto issue = [&](int tile) {
    if (tile < total) {
      unsigned char* st =
          smem + rows_bytes + (tile % S) * Traits::kStageBytes + r0 * Traits::kRowBytes + swz;
      const int n0 = (tile / ksteps) * BN, k0 = (tile % ksteps) * BK + q * 8;
#pragma unroll
      for (int p = 0; p < P; ++p) {
        const int a_bytes = kResident ? 0 : Traits::kABytes;
        unsigned char* sb = st + P * a_bytes + p * Traits::kBBytes;
        if constexpr (!kResident) issue_rows(st + p * Traits::kABytes, p, k0);
#pragma unroll
        for (int c = 0; c < BN; c += RS)
          cp_async16(sb + c * Traits::kRowBytes, csrc[p] + int64_t(n0 + r0 + c) * dpad + k0, true);
      }
    }
    cp_async_commit();
  };

  // Row tiles of the sequence, a grid-stride apart (Collect runs one block per SM over a
  // count known only on the device; the other roles launch one block per tile).
  for (int64_t mt = blockIdx.x; mt * BM < nrows; mt += gridDim.x) {
    m0 = mt * BM;
    __syncthreads();  // the previous tile's shared memory is no longer read
    RowTop top[2];
    top[0].clear();
    top[1].clear();
    // acc: hi.hi (or all three products when not kSplit); acc2: hi.lo + lo.hi when kSplit.
    constexpr int NACC2 = kSplit ? NACC : 1;
    float acc[NACC], acc2[NACC2];
#pragma unroll
    for (int i = 0; i < NACC; ++i) acc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < NACC2; ++i) acc2[i] = 0.f;

    if constexpr (kResident) {
      if (!split_here) {
        for (int p = 0; p < P; ++p)
          for (int kc = 0; kc < ksteps; ++kc)
            issue_rows(smem + (p * ksteps + kc) * Traits::kABytes + r0 * Traits::kRowBytes + swz, p,
                       kc * BK + q * 8);
      }
    }
    constexpr int D = S - 2;  // prefetch distance in tiles
#pragma unroll
    for (int t0 = 0; t0 < D; ++t0) issue(t0);  // tile 0 shares its group with the rows
    if constexpr (kResident) {
      // After the first centroid tiles are requested, so their copies overlap these loads.
      // Plain stores: the first tile's fence.proxy.async and barrier publish them to wgmma.
      if (split_here) {
        constexpr int NR = BM / RS;
        int64_t rows[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) rows[r] = row_at(m0 + r0 + r * RS);
        for (int kc = 0; kc < ksteps; kc += 2)
          splitter.stage<NR, RS, Traits::kABytes, P == 2>(
              smem + kc * Traits::kABytes + r0 * Traits::kRowBytes + swz, rows, kc, q, ksteps);
      }
    }
    // Two loops, so that wgmma are in flight only across the inner loop's back edge: with the
    // fold inside one flat loop, ptxas waits for every wgmma at the back edge (C7517).
    for (int nt = 0, tile = 0; nt < ntiles; ++nt) {
      for (int kc = 0; kc < ksteps; ++kc, ++tile) {
        cp_async_wait<D - 1>();  // this thread's copies of `tile` have landed
        fence_proxy_async();
        wgmma_wait<1>();  // tile - 2's products are done with the stage tile + D reuses
        __syncthreads();
        issue(tile + D);
        const uint32_t st = sbase + (tile % S) * Traits::kStageBytes;
        uint64_t da[P], db[P];
#pragma unroll
        for (int p = 0; p < P; ++p) {
          if constexpr (kResident) {
            da[p] = smem_desc(rbase + (p * ksteps + kc) * Traits::kABytes +
                              wg * 64 * Traits::kRowBytes);
            db[p] = smem_desc(st + p * Traits::kBBytes);
          } else {
            da[p] = smem_desc(st + p * Traits::kABytes + wg * 64 * Traits::kRowBytes);
            db[p] = smem_desc(st + P * Traits::kABytes + p * Traits::kBBytes);
          }
        }
        slice_products<BN, BK, kSplit>(acc, acc2, da, db, kc);
      }
      {  // centroid block nt is complete: fold it
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
        for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
        fold_block<BN, kSplit>(top, acc, acc2, a.c.beta, nt * BN, t, alpha);
      }
    }
    cp_async_wait<0>();

    merge_and_route<kThree>(a, xs, ec, t, top, [&](int h, int64_t& row) {
      row = row_at(m0 + wg * 64 + wq * 16 + g + 8 * h);
      return row >= 0;
    });
  }
#endif  // FLASHKM_WGMMA
}

// The ping-pong schedule of the resident roles without a list (Fast, Screen), on 64 NC-row
// tiles: per block one producer warpgroup and NC consumer warpgroups, the grid persistent
// over the row tiles. In wgmma_assign_kernel both warpgroups issue their products, wait, then
// fold, so the tensor cores idle while the block folds (ncu, run 29: Screen at 63-73 % of the
// fp16 rate, Fast at 37-48 %). Here:
//  * the producer (one thread) copies each (centroid block, k-slice) tile, hi (and lo), with
//    the bulk tensor copy engine (TMA; 128-byte swizzle, the layout smem_desc describes) into
//    a ring of `stages` stages; full[s] completes when a stage's bytes have landed, empty[s]
//    when the 4 NC consumer warps are done with it;
//  * consumer warpgroup c owns rows 64 c .. 64 c + 63 of the tile, resident in shared memory
//    (staged by itself, so one warpgroup stages while another multiplies); they take turns
//    issuing the products of one centroid block, 0, 1, .., NC - 1, 0, ... (named barrier
//    1 + c: "warpgroup c issues next"), so the others fold while the tensor cores work on
//    one's products. Fast runs three (run 42: its fold outlasts a warpgroup's products about
//    3x, so with two the tensor cores waited: 10M x128 K4096 kernel 24.8 -> 20.9 ms), Screen
//    two (its fold is shorter against three products, and it needs 232 registers).
// Each accumulator sees the same wgmma sequence as in wgmma_assign_kernel (k ascending; hi.hi,
// then hi.lo and lo.hi), and the fold and the routing are the same functions, so values,
// bounds, labels and fix-up lists are bit-identical.
// Chosen on an H100 (bench/NOTES-cuda.md): 8 stages keep 4 centroid blocks of Fast at d = 128
// in flight (Screen fits 5 stages beside its rows; run 38); Fast with three consumer
// warpgroups against two: 27.3 vs 31.1-32.1 ms an iteration at 10M x128 K4096 (run 42).
constexpr int kMaxStages = 8;
constexpr int kFastConsumers = 3, kScreenConsumers = 2;
// Layout of the ping-pong kernel: NC consumer warpgroups of 64 rows (resident, P parts) and
// the producer's; stages of P parts of BN centroids x 64 halves. setmaxnreg moves registers
// from the producer to the consumers: NC = 2: 128 x 40 + 256 x 232 = 64512, what 384 threads
// of 168 (the cap of __launch_bounds__(384, 1)) hold; NC = 3: 128 x 24 + 384 x 160 = 64512,
// within the 512 x 128 = 65536 that 512 threads start with (registers come in steps of 8).
template <int BN, int NC, bool kThree>
struct PingPongTraits {
  static_assert(NC == 2 || NC == 3, "two or three consumer warpgroups");
  static constexpr int kThreads = 128 * (NC + 1);
  static constexpr int kProducerRegs = NC == 2 ? 40 : 24;
  static constexpr int kConsumerRegs = NC == 2 ? 232 : 160;
  static constexpr int kRows = 64 * NC;
  static constexpr int kParts = kThree ? 2 : 1;
  static constexpr int kRowBytes = kMmaDepth * 2;  // one 128-byte swizzle row per point
  static constexpr int kABytes = kRows * kRowBytes;
  static constexpr int kBBytes = BN * kRowBytes;
};

template <int BN, Role kRole, int NC>
__global__ void __launch_bounds__(PingPongTraits<BN, NC, kRole == Role::Screen>::kThreads, 1)
    wgmma_pingpong_kernel(const AssignArgs a, const SplitRows xs, const SplitCentroids cs,
                          const __grid_constant__ CUtensorMap cmap_hi,
                          const __grid_constant__ CUtensorMap cmap_lo, int stages) {
#ifdef FLASHKM_WGMMA
  static_assert(kRole == Role::Fast || kRole == Role::Screen, "resident roles without a list");
  constexpr bool kThree = kRole == Role::Screen, kSplit = kThree;
  using Traits = PingPongTraits<BN, NC, kThree>;
  constexpr int P = Traits::kParts, BK = kMmaDepth, NACC = BN / 2, NACC2 = kSplit ? NACC : 1;
  constexpr int kStageBytes = P * Traits::kBBytes;
  using RowTop = std::conditional_t<kThree, Top2, TopK<1>>;
  __shared__ __align__(8) uint64_t bars[2 * kMaxStages];  // full[s], then empty[s]
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t pad = ((raw + 1023u) & ~1023u) - raw;  // swizzle atoms are 1024-aligned
  unsigned char* smem = smem_raw + pad;  // resident rows (P x ksteps slices), then stages
  const uint32_t rbase = raw + pad;
  const uint32_t full0 = static_cast<uint32_t>(__cvta_generic_to_shared(bars));
  const uint32_t empty0 = full0 + 8 * kMaxStages;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int ksteps = xs.dpad / BK, ntiles = (a.c.k + BN - 1) / BN;
  const int64_t row_tiles = (a.rows + Traits::kRows - 1) / Traits::kRows;
  const uint32_t sbase = rbase + P * ksteps * Traits::kABytes;

  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, 4 * NC);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp < 4) {  // the producer warpgroup: its first thread issues every copy
    setmaxnreg_dec<Traits::kProducerRegs>();
    if (threadIdx.x == 0) {
      int s = 0;
      uint32_t phase = 0;  // parity of the stages' current round
      for (int64_t mt = blockIdx.x; mt < row_tiles; mt += gridDim.x) {
        for (int nt = 0; nt < ntiles; ++nt) {
          for (int kc = 0; kc < ksteps; ++kc) {
            mbar_wait(empty0 + 8 * s, phase ^ 1);
            const uint32_t full = full0 + 8 * s, st = sbase + s * kStageBytes;
            mbar_arrive_expect_tx(full, kStageBytes);
            tma_load_2d(st, &cmap_hi, kc * BK, nt * BN, full);
            if constexpr (P == 2)
              tma_load_2d(st + Traits::kBBytes, &cmap_lo, kc * BK, nt * BN, full);
            if (++s == stages) {
              s = 0;
              phase ^= 1;
            }
          }
        }
      }
    }
    return;
  }
  setmaxnreg_inc<Traits::kConsumerRegs>();
  const int c = warp / 4 - 1;  // consumer warpgroup 0 .. NC - 1
  const int ct = threadIdx.x - 128 * (c + 1), wq = warp % 4, g = lane / 4, t = lane % 4;
  const int ec = *cs.scale_exp;
  const float alpha = ldexpf(a.inner_product ? -1.f : -2.f, -(xs.scale_exp + ec));
  // Thread ct stages 16-byte chunk ct % 8 of its warpgroup's rows ct / 8 + 16 r: a multiple
  // of 8 apart, so its chunks share one swizzled position.
  constexpr int RS = 16, NR = 64 / RS;
  const int q = ct % 8, r0 = ct / 8;
  unsigned char* my_rows = smem + (c * 64 + r0) * Traits::kRowBytes + ((q ^ (r0 & 7)) << 4);
  const RowSplitter splitter(a, xs);
  const bool lo_rows = xs.lo != nullptr;  // fp16 rows alone: zeros (KMeansParams::device_rows)
  const __half* xsrc[2] = {static_cast<const __half*>(xs.hi),
                           static_cast<const __half*>(lo_rows ? xs.lo : xs.hi)};
  int s = 0, rs = 0;                    // the stage to read next, the stage to release next
  uint32_t phase = 0;                   // parity of stage s's current round
  if (c == NC - 1) bar_arrive(1, 256);  // warpgroup 0 issues first
  for (int64_t mt = blockIdx.x; mt < row_tiles; mt += gridDim.x) {
    const int64_t m0 = mt * Traits::kRows + c * 64;
    bar_sync(1 + NC + c, 128);  // the warpgroup's products over its previous rows are done
    int64_t rows[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int64_t row = m0 + r0 + r * RS;
      rows[r] = row < a.rows ? row : -1;
    }
    if (xs.hi == nullptr) {
      for (int kc = 0; kc < ksteps; kc += 2)
        splitter.stage<NR, RS, Traits::kABytes, P == 2>(my_rows + kc * Traits::kABytes, rows, kc, q,
                                                        ksteps);
    } else {
      for (int p = 0; p < P; ++p)
        for (int kc = 0; kc < ksteps; ++kc)
#pragma unroll
          for (int r = 0; r < NR; ++r)
            cp_async16(my_rows + (p * ksteps + kc) * Traits::kABytes + r * RS * Traits::kRowBytes,
                       xsrc[p] + (rows[r] >= 0 ? rows[r] : 0) * xs.dpad + kc * BK + q * 8,
                       rows[r] >= 0 && (p == 0 || lo_rows));
      cp_async_commit();
      cp_async_wait<0>();
    }
    fence_proxy_async();  // written through the generic proxy, read by wgmma (async proxy)
    bar_sync(1 + NC + c, 128);
    if (xs.hi == nullptr) {
      // The warpgroup's rows of its next tile, into L2: staged from device memory, their
      // loads would keep both warpgroups from multiplying for a DRAM latency or two.
      const int64_t next = m0 + int64_t(gridDim.x) * Traits::kRows + ct / 2;
      if (next < a.rows) {
        const char* p = reinterpret_cast<const char*>(a.x + next * a.d);
        for (int off = (ct % 2) * 128; off < 4 * a.d; off += 256) prefetch_l2(p + off);
      }
    }

    RowTop top[2];
    top[0].clear();
    top[1].clear();
    float acc[NACC], acc2[NACC2];
#pragma unroll
    for (int i = 0; i < NACC; ++i) acc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < NACC2; ++i) acc2[i] = 0.f;
    for (int nt = 0; nt < ntiles; ++nt) {
      bar_sync(1 + c, 256);  // the previous warpgroup has issued its products of this block
      for (int kc = 0; kc < ksteps; ++kc) {
        mbar_wait(full0 + 8 * s, phase);
        const uint32_t st = sbase + s * kStageBytes;
        uint64_t da[P], db[P];
#pragma unroll
        for (int p = 0; p < P; ++p) {
          da[p] =
              smem_desc(rbase + (p * ksteps + kc) * Traits::kABytes + c * 64 * Traits::kRowBytes);
          db[p] = smem_desc(st + p * Traits::kBBytes);
        }
        slice_products<BN, BK, kSplit>(acc, acc2, da, db, kc);
        if (++s == stages) {
          s = 0;
          phase ^= 1;
        }
      }
      bar_arrive(1 + (c + 1) % NC, 256);  // the next warpgroup's turn
      wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
      for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
      for (int kc = 0; kc < ksteps; ++kc) {
        if (lane == 0) mbar_arrive(empty0 + 8 * rs);
        if (++rs == stages) rs = 0;
      }
      fold_block<BN, kSplit>(top, acc, acc2, a.c.beta, nt * BN, t, alpha);
    }

    merge_and_route<kThree>(a, xs, ec, t, top, [&](int h, int64_t& row) {
      row = m0 + wq * 16 + g + 8 * h;
      return row < a.rows;
    });
  }
  if (c == 0) bar_sync(1, 256);  // takes the last "warpgroup 0 issues next"
#endif                           // FLASHKM_WGMMA
}

template <int BN, int WG, bool kResident, Role kRole>
void launch_wgmma(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs,
                  int64_t blocks, cudaStream_t stream) {
  using Traits = WgmmaTraits<BN, WG, kRole != Role::Fast, kResident>;
  auto kernel = wgmma_assign_kernel<BN, WG, kResident, kRole>;
  const size_t smem = Traits::smem_bytes(xs.dpad);
  FLASHKM_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<unsigned(blocks), Traits::kThreads, smem, stream>>>(a, xs, cs);
  FLASHKM_CUDA_CHECK_LAUNCH(wgmma_assign_kernel);
}

// The driver's cuTensorMapEncodeTiled, through the runtime (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    FLASHKM_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                        cudaEnableDefault, &found));
    FLASHKM_THROW_IF_NOT(found == cudaDriverEntryPointSuccess && f != nullptr,
                         "the CUDA driver has no cuTensorMapEncodeTiled (query result %d)",
                         int(found));
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// Tensor map of a kpad x dpad fp16 centroid array (SplitCentroids) read in boxes of `rows`
// centroids x 64 halves, stored with the 128-byte swizzle (smem_desc's layout).
CUtensorMap centroid_map(const void* base, int kpad, int dpad, int rows) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(dpad), cuuint64_t(kpad)};
  const cuuint64_t strides[1] = {cuuint64_t(dpad) * sizeof(__half)};
  const cuuint32_t box[2] = {cuuint32_t(kMmaDepth), cuuint32_t(rows)};
  const cuuint32_t unit[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(base), dims, strides, box, unit,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  FLASHKM_THROW_IF_NOT(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (%d) for %d x %d halves",
                       int(r), kpad, dpad);
  return map;
}

// Stages of the ping-pong kernel at this dpad: as many as fit beside the resident rows (up
// to kMaxStages), or 0 when fewer than two centroid blocks (2 ksteps) fit, which would let
// the producer refill a block's stages only after both warpgroups are done with it.
template <int BN, bool kThree, int NC>
int pingpong_stages(int dpad) {
  using Traits = PingPongTraits<BN, NC, kThree>;
  const int ksteps = dpad / kMmaDepth;
  const size_t rows = size_t(Traits::kParts) * Traits::kABytes * ksteps;
  const size_t stage = size_t(Traits::kParts) * Traits::kBBytes;
  const size_t room = kSmemOptin - 1024 - sizeof(uint64_t) * 2 * kMaxStages;
  if (rows >= room) return 0;
  const int stages = int(std::min<size_t>(kMaxStages, (room - rows) / stage));
  return stages >= 2 * ksteps ? stages : 0;
}

template <int BN, Role kRole, int NC>
void launch_pingpong(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs, int stages,
                     int sm_count, cudaStream_t stream) {
  using Traits = PingPongTraits<BN, NC, kRole == Role::Screen>;
  auto kernel = wgmma_pingpong_kernel<BN, kRole, NC>;
  const size_t smem = size_t(Traits::kParts) * Traits::kABytes * (xs.dpad / kMmaDepth) +
                      size_t(stages) * Traits::kParts * Traits::kBBytes + 1024;
  const CUtensorMap hi = centroid_map(cs.hi, a.c.kpad, xs.dpad, BN);
  const CUtensorMap lo = kRole == Role::Fast ? hi : centroid_map(cs.lo, a.c.kpad, xs.dpad, BN);
  const int64_t tiles = (a.rows + Traits::kRows - 1) / Traits::kRows;
  FLASHKM_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<unsigned(std::min<int64_t>(tiles, sm_count)), Traits::kThreads, smem, stream>>>(
      a, xs, cs, hi, lo, stages);
  FLASHKM_CUDA_CHECK_LAUNCH(wgmma_pingpong_kernel);
}

// Rows stay resident when they fit beside three stages in the 227 KB a block may hold (the
// sm_90 limit; at 128 rows: d <= 256 in Exact, d <= 704 in Fast), else they are streamed
// with the centroids. Chosen by bench_kmeans_cuda on an H200 (bench/NOTES-cuda.md, runs 16
// and 20): resident 3.21 ms vs streamed 3.35 ms per Exact assign at 1M x 128, K 1024; four
// stages (two tiles of prefetch) gained nothing over three; Exact with hi.hi and hi.lo +
// lo.hi in two accumulators certifies 2.2x (128-d) to 2.8x (768-d) more rows than with one.
// Exact on resident rows screens first (Top2: a cheap fold, the fold being most of the
// instructions at small d) and collects candidates only for the rows it cannot certify.
template <int S, bool kThree>
bool rows_resident(int dpad) {
  constexpr MmaTiles t = kMmaShapes[S];
  return WgmmaTraits<t.centroids, t.rows / 64, kThree, true>::smem_bytes(dpad) <= kSmemOptin;
}

template <int S, bool kThree>
void launch_wgmma_shape(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs,
                        int sm_count, bool pingpong, cudaStream_t stream) {
  constexpr MmaTiles t = kMmaShapes[S];
  static_assert(t.rows % 64 == 0, "a warpgroup owns 64 rows");
  // The last centroid block is read whole (its TMA box zero-filled, its norms read up to the
  // block's end), so the padded centroid count must be whole blocks.
  static_assert(kCentroidPad % t.centroids == 0, "centroids padded to whole blocks");
  constexpr int BN = t.centroids, WG = t.rows / 64;
  const int64_t tiles = (a.rows + t.rows - 1) / t.rows;
  const bool resident = rows_resident<S, kThree>(xs.dpad);
  FLASHKM_ASSERT(resident || xs.hi != nullptr);  // streamed row slices come from split arrays
  int stages = 0;
  if constexpr (WG == 2) {
    if (pingpong && resident)
      stages = pingpong_stages < BN, kThree, kThree ? kScreenConsumers : kFastConsumers > (xs.dpad);
  }
  if (!kThree) {
    if constexpr (WG == 2) {
      if (stages > 0)
        return launch_pingpong<BN, Role::Fast, kFastConsumers>(a, xs, cs, stages, sm_count, stream);
    }
    if (resident) {
      launch_wgmma<BN, WG, true, Role::Fast>(a, xs, cs, tiles, stream);
    } else {
      launch_wgmma<BN, WG, false, Role::Fast>(a, xs, cs, tiles, stream);
    }
  } else if (resident) {
    FLASHKM_CUDA_CHECK(cudaMemsetAsync(a.recheck_count, 0, sizeof(int), stream));
    bool screened = false;
    if constexpr (WG == 2) {
      if (stages > 0) {
        launch_pingpong<BN, Role::Screen, kScreenConsumers>(a, xs, cs, stages, sm_count, stream);
        screened = true;
      }
    }
    if (!screened) launch_wgmma<BN, WG, true, Role::Screen>(a, xs, cs, tiles, stream);
    launch_wgmma<BN, WG, true, Role::Collect>(a, xs, cs, std::min<int64_t>(tiles, sm_count),
                                              stream);
  } else {
    launch_wgmma<BN, WG, false, Role::Exact>(a, xs, cs, tiles, stream);
  }
}

// Collect alone, over rows the caller listed (launch_wgmma_collect): one block per SM at
// most, grid-stride over the device-side count, rows resident where they fit, else streamed
// from the split arrays with the centroids.
template <int S>
void launch_collect_shape(const AssignArgs& a, const SplitRows& xs, const SplitCentroids& cs,
                          int sm_count, cudaStream_t stream) {
  constexpr MmaTiles t = kMmaShapes[S];
  constexpr int BN = t.centroids, WG = t.rows / 64;
  const int64_t blocks = std::min<int64_t>((a.rows + t.rows - 1) / t.rows, sm_count);
  if (rows_resident<S, true>(xs.dpad)) {
    launch_wgmma<BN, WG, true, Role::Collect>(a, xs, cs, blocks, stream);
  } else {
    FLASHKM_ASSERT(xs.hi != nullptr);  // streamed row slices come from split arrays
    launch_wgmma<BN, WG, false, Role::Collect>(a, xs, cs, blocks, stream);
  }
}

}  // namespace

bool wgmma_splits_rows(int shape, bool exact, int dpad) {
  static_assert(kNumMmaShapes == 2, "add the new shape below");
  FLASHKM_THROW_IF_NOT(shape >= 0 && shape < kNumMmaShapes,
                       "tensor-core shape %d is not compiled (0..%d)", shape, kNumMmaShapes - 1);
  if (shape == 0) return exact ? rows_resident<0, true>(dpad) : rows_resident<0, false>(dpad);
  return exact ? rows_resident<1, true>(dpad) : rows_resident<1, false>(dpad);
}

void launch_wgmma_assign(int shape, const AssignArgs& a, const SplitRows& xs,
                         const SplitCentroids& cs, int sm_count, bool pingpong,
                         cudaStream_t stream) {
  static_assert(kNumMmaShapes == 2, "add the new shape to the switch below");
  if (a.rows == 0) return;
  switch (shape * 2 + (a.certify ? 1 : 0)) {
    case 0:
      launch_wgmma_shape<0, false>(a, xs, cs, sm_count, pingpong, stream);
      break;
    case 1:
      launch_wgmma_shape<0, true>(a, xs, cs, sm_count, pingpong, stream);
      break;
    case 2:
      launch_wgmma_shape<1, false>(a, xs, cs, sm_count, pingpong, stream);
      break;
    case 3:
      launch_wgmma_shape<1, true>(a, xs, cs, sm_count, pingpong, stream);
      break;
    default:
      FLASHKM_THROW("tensor-core shape %d is not compiled (0..%d)", shape, kNumMmaShapes - 1);
  }
}

void launch_wgmma_collect(int shape, const AssignArgs& a, const SplitRows& xs,
                          const SplitCentroids& cs, int sm_count, cudaStream_t stream) {
  static_assert(kNumMmaShapes == 2, "add the new shape to the switch below");
  FLASHKM_THROW_IF_NOT(a.certify && a.recheck_list != nullptr && a.recheck_count != nullptr,
                       "the collecting pass needs Exact precision and a recheck list");
  if (a.rows == 0) return;
  switch (shape) {
    case 0:
      launch_collect_shape<0>(a, xs, cs, sm_count, stream);
      break;
    case 1:
      launch_collect_shape<1>(a, xs, cs, sm_count, stream);
      break;
    default:
      FLASHKM_THROW("tensor-core shape %d is not compiled (0..%d)", shape, kNumMmaShapes - 1);
  }
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
