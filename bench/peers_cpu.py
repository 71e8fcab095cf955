#!/usr/bin/env python3
"""scikit-learn's Lloyd on the data and initial centroids written by
`bench_kmeans_cpu --dump DIR`; prints the same one-line summary and JSON as the C++ bench.

Peer only: scikit-learn is never a dependency of flashkm (bench/requirements-peers.txt)."""
import argparse
import json
import resource
import time

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x = np.load(f"{a.dir}/x.npy", mmap_mode=None)
    init = np.load(f"{a.dir}/init.npy")
    n, d = x.shape
    k = init.shape[0]
    with threadpool_limits(limits=a.threads):
        # tol=0 and max_iter fixed: the same number of Lloyd steps as the others.
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=a.iters, tol=0,
                    algorithm="lloyd", random_state=0, copy_x=False)
        t0 = time.perf_counter()
        km.fit(x)
        t = (time.perf_counter() - t0) / max(1, km.n_iter_)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mb = x.nbytes / 2**20
    extra = peak - start_rss - data_mb
    gflops = 2.0 * n * k * d / t / 1e9
    print(f"sklearn  n={n} d={d} k={k} threads={a.threads}  {t:.3f} s/iter  {gflops:.1f} GFLOP/s  "
          f"inertia {km.inertia_:.6g}  peak RSS {peak:.0f} MB (data {data_mb:.0f} MB, extra over "
          f"data {extra:.0f} MB) iters={km.n_iter_}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(impl="sklearn", n=n, d=d, k=k, threads=a.threads,
                           seconds_per_iter=t, gflops=gflops, inertia=float(km.inertia_),
                           peak_rss_mb=peak, data_mb=data_mb, extra_mb=extra), f)
            f.write("\n")


if __name__ == "__main__":
    main()
