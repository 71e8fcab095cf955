# Could the Exact GPU pass certify with ONE fp16 tensor-core product instead of three? A numpy
# estimate of the rows a first pass leaves uncertified, on bench_kmeans_cuda's kind of data (256
# centres with std 4, unit noise, centred; centroids after two Lloyd updates from rows j*N/K),
# with the dominant terms of kernels/cuda/mma_common.cuh's bound (a row is certified when its
# second-best distance minus that centroid's error exceeds the best plus its error):
#   split3      today's Exact: hi.hi + (hi.lo + lo.hi), fp32 accumulation, global centring
#   one         one fp16 product, global centring (error ~2u |x||c|, u = 2^-11)
#   one_anchor  one product on x - a and c - a, a = the row's nearest centroid (rows that share a
#               label share a, so tiles cut at label boundaries get it exactly)
#   one_tile128 the same with one anchor per 128 rows sorted by label (the tile's commonest label)
# Run 2026-11-27 on the dev VM (numpy 1.26):
#   N 1M   d 128 K 1024:  split3 0.53 %  one 91.7 %  one_anchor 1.06 %  one_tile128  4.13 %
#   N 1M   d 128 K 4096:  split3 0.57 %  one 94.3 %  one_anchor 1.57 %  one_tile128 13.5 %
#   N 300k d 768 K 1024:  split3 2.28 %  one 85.9 %  one_anchor 0.63 %  one_tile128  9.96 %
# (measured on the H100 with the full bound, split3 leaves 0.675 / 1.24 / 7.64 %: the simplified
# bound here is tighter, so read the columns as ratios.) With anchors, one product plus a
# three-product re-run of ~1-2 % of rows is ~1.05 products of tensor work against 3.
# Tried on the device (bench/NOTES-cuda.md runs 44-45, branch anchor-wip): exact, but slower than
# the three-product Screen, since each 128-row tile shifted all K centroids again (as many L2
# bytes as the products it saved) and the real bound sent 2.2-2.4x more rows to Collect.
# Usage: python3 bench/sim_anchor.py N d K
import numpy as np, sys
N, d, K = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
cent = 4 * rng.standard_normal((256, d)).astype(np.float32)
x = cent[rng.integers(0, 256, N)] + rng.standard_normal((N, d)).astype(np.float32)
x -= x.mean(0)
c = x[(np.arange(K) * N) // K].copy()
def assign(c):
    cn = (c * c).sum(1); lab = np.empty(N, np.int64)
    for s in range(0, N, 50000):
        D = cn[None] - 2 * x[s:s+50000] @ c.T; lab[s:s+50000] = D.argmin(1)
    return lab
for it in range(2):  # two Lloyd updates from the spread rows
    lab = assign(c)
    cnt = np.bincount(lab, minlength=K); s = np.zeros((K, d)); np.add.at(s, lab, x)
    nz = cnt > 0; c[nz] = (s[nz] / cnt[nz, None]).astype(np.float32)
u, g, u32 = 2.0**-11, 2.0**-22, 2.0**-24
steps = d / 16
cn = (c.astype(np.float64)**2).sum(1); Cn = np.sqrt(cn)
CC = np.sqrt(np.maximum(cn[:, None] + cn[None] - 2 * c.astype(np.float64) @ c.T.astype(np.float64), 0))  # |c_j - c_a|
res = {"split3": 0, "one": 0, "one_anchor": 0, "one_tile128": 0}
lab = assign(c)
order = np.argsort(lab, kind="stable"); x = x[order]; lab = lab[order]
tile_anchor = np.empty(N, np.int64)
for t in range(0, N, 128):
    tl = lab[t:t+128]; tile_anchor[t:t+128] = np.bincount(tl).argmax()
for s in range(0, N, 20000):
    xs = x[s:s+20000].astype(np.float64); X = np.sqrt((xs**2).sum(1))
    D = cn[None] - 2 * xs @ c.T.astype(np.float64) + (X**2)[:, None]
    b = D.argmin(1); r = np.arange(len(xs))
    # per-centroid error of the distance (2 x dot error + norm rounding)
    E3 = 2 * ((steps + 3) * g * X[:, None] * Cn[None]) + 2.01 * u32 * (X[:, None] + Cn[None])**2
    E1 = 2 * ((2 * u + u * u + steps * g) * X[:, None] * Cn[None]) + 2.01 * u32 * (X[:, None] + Cn[None])**2
    Xa = np.sqrt(np.maximum(D[r, b], 0))          # |x - a|, a = the row's nearest centroid
    Ca = CC[b]                                      # |c_j - a|
    E1a = 2 * ((2 * u + u * u + steps * g) * Xa[:, None] * Ca) + 2.01 * u32 * (Xa[:, None] + Ca)**2
    ta = tile_anchor[s:s+20000]
    Xt = np.sqrt(np.maximum((xs**2).sum(1) + cn[ta] - 2 * (xs * c[ta]).sum(1), 0))
    Ct = CC[ta]
    E1t = 2 * ((2 * u + u * u + steps * g) * Xt[:, None] * Ct) + 2.01 * u32 * (Xt[:, None] + Ct)**2
    for name, E in (("split3", E3), ("one", E1), ("one_anchor", E1a), ("one_tile128", E1t)):
        lhs = D - E; lhs[r, b] = np.inf
        ok = lhs.min(1) > D[r, b] + E[r, b]
        res[name] += int((~ok).sum())
print(f"N {N} d {d} K {K}: uncertified rows", {k: f"{100*v/N:.2f} %" for k, v in res.items()})
