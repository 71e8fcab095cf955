// FlashAssign on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a): the products
// and candidate state of the mma.sync pass (mma_assign.cu), with the operands read by the
// tensor cores straight from shared memory instead of through ldmatrix into registers (the
// mma.sync pass was bound by those shared-memory reads: 128 bytes per m16n8k16 in Exact
// mode, the SM's whole shared-memory bandwidth). Exact accumulates hi.hi apart from
// hi.lo + lo.hi (a tighter bound: mma_common.cuh), and on resident rows runs as a cheap
// screening pass plus a collecting pass over the rows it cannot certify (Role below).
//
// This file is compiled for sm_90a only (kernels/cuda/CMakeLists.txt); the engine picks it
// only on compute capability 9.0 (tile_config.cpp), and every other device keeps the
// mma.sync pass.
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
  const __half* xsrc[2] = {static_cast<const __half*>(xs.hi), static_cast<const __half*>(xs.lo)};
  const __half* csrc[2] = {static_cast<const __half*>(cs.hi), static_cast<const __half*>(cs.lo)};

  // Thread tid copies 16-byte chunk tid % 8 of rows tid / 8, tid / 8 + NTH / 8, ...: a
  // multiple of 8 apart, so its chunks share one swizzled position.
  constexpr int RS = NTH / 8;
  const int q = tid % 8, r0 = tid / 8;
  const int swz = (q ^ (r0 & 7)) << 4;
  // Rows of k-slice k0 into sa (the slice's BM x 64 halves, swizzled).
  // Row i of the launch's sequence (-1 past its end): the listed rows, or all rows.
  auto row_at = [&](int64_t i) -> int64_t {
    if (i >= nrows) return -1;
    return kList ? int64_t(a.recheck_list[i]) : i;
  };
  int64_t m0 = 0;  // first row (of the sequence) of the block's current tile
  // Resident rows without split arrays (xs.hi null) are split here, from the float32 rows,
  // exactly as split_rows does: the same bytes read (4 a coordinate, as hi + lo), and no
  // per-row fp16 copy of the data in device memory.
  const bool split_here = kResident && xs.hi == nullptr;
  // Vector loads need 16-byte aligned rows: d % 4 == 0 and an aligned base (a caller's device
  // pointer may be offset).
  const int d = a.d;
  const bool vec4 = d % 4 == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  // The scale 2^scale_exp as one float multiplication where 2^scale_exp is a normal float:
  // the product is then rounded once, exactly like ldexpf's result (a tenth of its
  // instructions, and this runs on every coordinate of every assignment).
  const bool mul_scale = xs.scale_exp >= -126 && xs.scale_exp <= 127;
  const float scale = __int_as_float((mul_scale ? xs.scale_exp + 127 : 127) << 23);
  // Coordinates c0..c0 + 7 (c0 = kc * 64 + q * 8) of the thread's rows for the k-slices kc0
  // and kc0 + 1 into the hi slices (and the lo slices ksteps slices further), scaled and
  // split; zeros past d and past the rows' end. All loads are issued before the first
  // conversion, so they are in flight together.
  auto split_rows_to_smem = [&](unsigned char* sa, int kc0) {
    constexpr int NR = BM / RS, KS = 2;
    float f[KS][NR][8];
    bool valid[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int64_t row = row_at(m0 + r0 + r * RS);
      valid[r] = row >= 0;
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        const int c0 = (kc0 + ks) * BK + q * 8;
        const float* src = a.x + (row >= 0 ? row : 0) * d + c0;
        if (vec4) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool in = row >= 0 && c0 + 4 * h < d;
            const float4 v = in ? __ldg(reinterpret_cast<const float4*>(src) + h)
                                : make_float4(0.f, 0.f, 0.f, 0.f);
            f[ks][r][4 * h] = v.x;
            f[ks][r][4 * h + 1] = v.y;
            f[ks][r][4 * h + 2] = v.z;
            f[ks][r][4 * h + 3] = v.w;
          }
        } else {
#pragma unroll
          for (int j = 0; j < 8; ++j) f[ks][r][j] = row >= 0 && c0 + j < d ? __ldg(src + j) : 0.f;
        }
      }
    }
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      if (kc0 + ks >= ksteps) break;
      const int c0 = (kc0 + ks) * BK + q * 8;
      double sh[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) sh[j] = c0 + j < d ? a.shift[c0 + j] : 0.0;
#pragma unroll
      for (int r = 0; r < NR; ++r) {
        __align__(16) __half hi[8], lo[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float v = 0.f;
          if (valid[r] && c0 + j < d) {
            const float u = centred(f[ks][r][j], sh[j]);
            v = mul_scale ? __fmul_rn(u, scale) : ldexpf(u, xs.scale_exp);
          }
          split(v, &hi[j], &lo[j]);
        }
        unsigned char* dst = sa + (ks * Traits::kABytes) + r * RS * Traits::kRowBytes;
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(hi);
        if constexpr (P == 2)
          *reinterpret_cast<uint4*>(dst + ksteps * Traits::kABytes) =
              *reinterpret_cast<const uint4*>(lo);
      }
    }
  };
  auto issue_rows = [&](unsigned char* sa, const __half* src, int k0) {
#pragma unroll
    for (int r = 0; r < BM; r += RS) {
      const int64_t row = row_at(m0 + r0 + r);
      cp_async16(sa + r * Traits::kRowBytes, src + (row >= 0 ? row : 0) * dpad + k0, row >= 0);
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
        if constexpr (!kResident) issue_rows(st + p * Traits::kABytes, xsrc[p], k0);
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
            issue_rows(smem + (p * ksteps + kc) * Traits::kABytes + r0 * Traits::kRowBytes + swz,
                       xsrc[p], kc * BK + q * 8);
      }
    }
    constexpr int D = S - 2;  // prefetch distance in tiles
#pragma unroll
    for (int t0 = 0; t0 < D; ++t0) issue(t0);  // tile 0 shares its group with the rows
    if constexpr (kResident) {
      // After the first centroid tiles are requested, so their copies overlap these loads.
      // Plain stores: the first tile's fence.proxy.async and barrier publish them to wgmma.
      if (split_here) {
        for (int kc = 0; kc < ksteps; kc += 2)
          split_rows_to_smem(smem + kc * Traits::kABytes + r0 * Traits::kRowBytes + swz, kc);
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
          } else if constexpr (kThree) {
            wgmma_tile<BN>(acc, da[0] + step, db[P - 1] + step, 1);
            wgmma_tile<BN>(acc, da[P - 1] + step, db[0] + step, 1);
          }
        }
        wgmma_commit();
#pragma unroll
        for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
        for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
      }
      {  // centroid block nt is complete: fold it
        wgmma_wait<0>();
#pragma unroll
        for (int i = 0; i < NACC; ++i) fence_operand(acc[i]);
#pragma unroll
        for (int i = 0; i < NACC2; ++i) fence_operand(acc2[i]);
        // The block's dot products: acc, or acc + acc2 rounded once (kSplit).
        auto dot = [&](int i) {
          if constexpr (kSplit) {
            return __fadd_rn(acc[i], acc2[i]);
          } else {
            return acc[i];
          }
        };
        // Padding columns have beta = +inf, so their values never enter a row's state. The
        // accumulators stay as the wgmma left them (values go to temporaries): rewriting them
        // here would make the loop carry them in other registers, and ptxas would then wait
        // for every in-flight wgmma at the loop's back edge.
        const int nb = nt * BN + 2 * t;
        const float2* beta = reinterpret_cast<const float2*>(a.c.beta + nb);  // L1-resident
        float m[2] = {CUDART_INF_F, CUDART_INF_F};
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const float2 b = beta[j * 4];
#pragma unroll
          for (int h = 0; h < 2; ++h)
            m[h] = fminf(m[h], fminf(__fmaf_rn(alpha, dot(4 * j + 2 * h), b.x),
                                     __fmaf_rn(alpha, dot(4 * j + 2 * h + 1), b.y)));
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Most blocks hold nothing below the row's last kept value: folding them (higher
          // indices, so equal values lose) would change nothing, and is skipped.
          if (m[h] < top[h].last()) {
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
              const float2 b = beta[j * 4];
              top[h].insert_ascending(__fmaf_rn(alpha, dot(4 * j + 2 * h), b.x), nb + j * 8);
              top[h].insert_ascending(__fmaf_rn(alpha, dot(4 * j + 2 * h + 1), b.y),
                                      nb + j * 8 + 1);
            }
          }
        }
      }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int off = 1; off < 4; off *= 2) top[h].merge_lane(off);
    if (t == 0) {
      const bool certify = kThree && a.certify;
      const double C = certify ? *a.c.max_norm : 0;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = row_at(m0 + wg * 64 + wq * 16 + g + 8 * h);
        if (row < 0) continue;
        const double X = certify ? a.xnorm[row] : 0;
        const double e =
            certify ? mma_bound(a.inner_product, kSplit, a.d, dpad, X, C, xs.scale_exp, ec) : 0;
        route_row(a, row, top[h], e, X, C);
      }
    }
  }
#endif  // FLASHKM_WGMMA
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
                        int sm_count, cudaStream_t stream) {
  constexpr MmaTiles t = kMmaShapes[S];
  static_assert(t.rows % 64 == 0, "a warpgroup owns 64 rows");
  constexpr int BN = t.centroids, WG = t.rows / 64;
  const int64_t tiles = (a.rows + t.rows - 1) / t.rows;
  const bool resident = rows_resident<S, kThree>(xs.dpad);
  FLASHKM_ASSERT(resident || xs.hi != nullptr);  // streamed row slices come from split arrays
  if (!kThree) {
    if (resident) {
      launch_wgmma<BN, WG, true, Role::Fast>(a, xs, cs, tiles, stream);
    } else {
      launch_wgmma<BN, WG, false, Role::Fast>(a, xs, cs, tiles, stream);
    }
  } else if (resident) {
    FLASHKM_CUDA_CHECK(cudaMemsetAsync(a.recheck_count, 0, sizeof(int), stream));
    launch_wgmma<BN, WG, true, Role::Screen>(a, xs, cs, tiles, stream);
    launch_wgmma<BN, WG, true, Role::Collect>(a, xs, cs, std::min<int64_t>(tiles, sm_count),
                                              stream);
  } else {
    launch_wgmma<BN, WG, false, Role::Exact>(a, xs, cs, tiles, stream);
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
                         const SplitCentroids& cs, int sm_count, cudaStream_t stream) {
  static_assert(kNumMmaShapes == 2, "add the new shape to the switch below");
  if (a.rows == 0) return;
  switch (shape * 2 + (a.certify ? 1 : 0)) {
    case 0:
      launch_wgmma_shape<0, false>(a, xs, cs, sm_count, stream);
      break;
    case 1:
      launch_wgmma_shape<0, true>(a, xs, cs, sm_count, stream);
      break;
    case 2:
      launch_wgmma_shape<1, false>(a, xs, cs, sm_count, stream);
      break;
    case 3:
      launch_wgmma_shape<1, true>(a, xs, cs, sm_count, stream);
      break;
    default:
      FLASHKM_THROW("tensor-core shape %d is not compiled (0..%d)", shape, kNumMmaShapes - 1);
  }
}

}  // namespace cuda
}  // namespace detail
}  // namespace flashkm
