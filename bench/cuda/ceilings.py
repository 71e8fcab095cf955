"""The device ceilings of bench/NOTES-cuda.md: copy bandwidth (read + write bytes), dense
matrix-product rates (fp32, tf32, fp16) through torch, and host-to-device bandwidth from
pinned and from pageable memory (the floor of streaming data that lives in host memory);
medians of 10 timed runs (5 for the host copies)."""
import torch


def median_ms(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


src = torch.randn(1 << 30, device="cuda")  # 4 GiB
dst = torch.empty_like(src)
ms = median_ms(lambda: dst.copy_(src))
print(f"copy: {2 * src.numel() * 4 / (ms * 1e-3) / 1e12:.2f} TB/s")
del src, dst
for name, dt, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                       ("fp16", torch.float16, False)):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(8192, 8192, device="cuda", dtype=dt)
    b = torch.randn(8192, 8192, device="cuda", dtype=dt)
    ms = median_ms(lambda: a @ b)
    print(f"matmul {name}: {2 * 8192 ** 3 / ms / 1e9:.0f} TFLOP/s")

for name, pinned in (("pinned", True), ("pageable", False)):
    host = torch.empty(1 << 30, dtype=torch.float32, pin_memory=pinned)  # 4 GiB
    host.fill_(1.0)  # touch every page: first-touch faults are not the copy
    dev = torch.empty(host.shape, dtype=torch.float32, device="cuda")
    ms = median_ms(lambda: dev.copy_(host, non_blocking=pinned), reps=5)
    gbs = host.numel() * 4 / (ms * 1e-3) / 1e9
    print(f"h2d {name}: {gbs:.1f} GB/s; 100M x 128 float32 (51.2 GB): {51.2 / gbs:.2f} s")
    del host, dev
