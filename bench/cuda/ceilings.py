"""The two device ceilings of bench/NOTES-cuda.md: copy bandwidth (read + write bytes) and
dense matrix-product rates (fp32, tf32, fp16) through torch, medians of 10 timed runs."""
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
