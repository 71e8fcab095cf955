"""Peers of bench_kmeans_cuda on the same data and initial centroids.

Reads the raw float32 files that `bench_kmeans_cuda --dump DIR` writes (NxDxK.x.f32,
NxDxK.init.f32) and times one Lloyd iteration (assign + update) of
  * naive torch: the full N x K distance matrix in fp32 (TF32 off), argmin, index_add_;
  * the paper's Triton code (PyPI flash-kmeans 0.3.1, _euclid_iter): "fp32" (TF32 dots)
    and fp16 inputs;
and counts, for the first assignment, labels that differ from a float64 argmin.
Prints a table and writes JSON. Usage: peers.py DIR NxDxK[,NxDxK...] [--iters I] [--json F]
"""
import json
import sys

import numpy as np
import torch


def timed(fn, iters):
    torch.cuda.synchronize()
    fn()  # warm-up (Triton compiles here)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def exact_labels(x, c):
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    cd = c.double()
    cn = (cd * cd).sum(1)
    step = max(1024, (1 << 31) // (8 * c.shape[0]))  # 2 GB of float64 distances at a time
    for s in range(0, x.shape[0], step):
        xd = x[s:s + step].double()
        out[s:s + step] = (cn[None, :] - 2 * xd @ cd.T).argmin(1)
    return out


def naive_iter(x, c):
    d = (x * x).sum(1, keepdim=True) - 2 * (x @ c.T) + (c * c).sum(1)[None, :]
    lab = d.argmin(1)
    k = c.shape[0]
    sums = torch.zeros_like(c).index_add_(0, lab, x)
    cnt = torch.bincount(lab, minlength=k).to(x.dtype)[:, None]
    return torch.where(cnt > 0, sums / cnt.clamp(min=1), c), lab


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    folder, shapes = sys.argv[1], sys.argv[2].split(",")
    iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 3
    out_path = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else "peers.json"
    try:
        from flash_kmeans.kmeans_triton_impl import _euclid_iter
    except Exception as e:  # the wheel is optional
        print("flash-kmeans unavailable:", e)
        _euclid_iter = None
    rows = []
    for shape in shapes:
        n, d, k = map(int, shape.split("x"))
        x = torch.from_numpy(np.fromfile(f"{folder}/{shape}.x.f32", np.float32).reshape(n, d)).cuda()
        c = torch.from_numpy(np.fromfile(f"{folder}/{shape}.init.f32", np.float32).reshape(k, d)).cuda()
        ref = exact_labels(x, c)
        res = {"n": n, "d": d, "k": k}
        try:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            res["torch_ms"] = timed(lambda: naive_iter(x, c), iters)
            res["torch_extra_gb"] = (torch.cuda.max_memory_allocated() - base) / 1e9
            res["torch_wrong"] = int((naive_iter(x, c)[1] != ref).sum())
        except torch.cuda.OutOfMemoryError:
            res["torch_ms"] = None
        torch.cuda.empty_cache()
        if _euclid_iter is not None:
            for name, dt in (("flash_fp32", torch.float32), ("flash_fp16", torch.float16)):
                xb, cb = x[None].to(dt), c[None].to(dt)
                x_sq = (xb.float() ** 2).sum(-1).to(dt)
                try:
                    res[name + "_ms"] = timed(lambda: _euclid_iter(xb, x_sq, cb), iters)
                    lab = _euclid_iter(xb, x_sq, cb)[2].reshape(-1)
                    res[name + "_wrong"] = int((lab != ref).sum())
                except Exception as e:
                    res[name + "_ms"] = None
                    res[name + "_error"] = str(e)[:200]
                del xb, cb, x_sq
                torch.cuda.empty_cache()
        rows.append(res)
        print(json.dumps(res), flush=True)
        del x, c, ref
        torch.cuda.empty_cache()
    print(f"\n{'shape':>20} | {'torch ms':>9} {'wrong':>7} | {'flash fp32':>10} {'wrong':>7} | "
          f"{'flash fp16':>10} {'wrong':>7}")
    for r in rows:
        f = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
        print(f"{r['n']}x{r['d']}x{r['k']:>7} | {f(r.get('torch_ms')):>9} {f(r.get('torch_wrong')):>7} | "
              f"{f(r.get('flash_fp32_ms')):>10} {f(r.get('flash_fp32_wrong')):>7} | "
              f"{f(r.get('flash_fp16_ms')):>10} {f(r.get('flash_fp16_wrong')):>7}")
    with open(out_path, "w") as fh:
        json.dump({"device": torch.cuda.get_device_name(), "runs": rows}, fh)


if __name__ == "__main__":
    main()
