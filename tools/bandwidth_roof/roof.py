"""The H200's practical DRAM bandwidth, for judging megahost's memory-bound kernels against it.

    python3 tools/bandwidth_roof/roof.py [--gib 1] [--reps 50]

Times three streaming patterns with PyTorch's own kernels over tensors far larger than the 50 MB L2
(bf16, GPU events, after warm-up): a copy (1 read + 1 write), a three-operand add (2 reads + 1
write, the shape of a residual add) and a sum (1 read). Prints TB/s counting each byte once. Why:
a kernel's ms/iteration means little alone; against what a plain stream reaches on the same GPU it
says how much is left in it.
"""
import argparse

import torch


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps / 1e3  # seconds per call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    n = int(a.gib * (1 << 30)) // 2
    x = torch.randn(n, device="cuda").to(torch.bfloat16)  # [n]
    y, z = torch.empty_like(x), torch.randn_like(x)
    out = torch.empty((), device="cuda", dtype=torch.float32)
    print(f"{torch.cuda.get_device_name()}: {n * 2 / 2**30:.2f} GiB per tensor, {a.reps} reps")
    for name, fn, tensors in [
        ("copy   y = x       (1 read, 1 write)", lambda: y.copy_(x), 2),
        ("add    y = x + z   (2 reads, 1 write)", lambda: torch.add(x, z, out=y), 3),
        ("sum    s = sum(x)  (1 read)", lambda: out.copy_(torch.sum(x, dtype=torch.float32)), 1),
    ]:
        s = timed(fn, a.reps)
        print(f"  {name}: {tensors * n * 2 / s / 1e12:.2f} TB/s ({s * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
