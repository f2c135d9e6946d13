# Where the reference's iteration spends its GPU time, in the groups `megahost bench --profile`
# prints: run on the GPU machine beside megahost's profile to compare them kernel by kernel.
#   python3 tools/reference_profile/reference_profile.py PATH/gpt_baseline.py gpt1.3b compile
#   python3 tools/reference_profile/reference_profile.py tools/llama_baseline/llama_baseline.py llama1.3b compile
# Builds the model exactly as gpt_baseline.py does (its classes and shapes, read from the file),
# runs 5 warm-up steps, then profiles 3 with torch.profiler and prints per iteration: the kernel
# groups, the top kernels by time, the products by shape, and the GPU idle between kernels.
import collections, sys, torch

ITERS = 3


def load_baseline(path):
    ns = {"__name__": "gpt_baseline"}
    saved, sys.argv = sys.argv, [path]  # no configs: the file only defines its classes
    try:
        exec(compile(open(path).read(), path, "exec"), ns)
    finally:
        sys.argv = saved
    return ns


def group_of(name):
    n = name.lower()
    if any(k in n for k in ("nvjet", "gemm", "xmma", "cutlass", "sm90_", "cublas")) and "flash" not in n:
        return "matrix products"
    if any(k in n for k in ("fmha", "flash", "cudnn", "attention", "sdpa")):
        return "attention"
    if "adam" in n or "multi_tensor" in n:
        return "optimizer"
    if n.startswith("triton"):
        return "triton (fused elementwise / norms / loss)"
    return "other"


def main():
    path, cfg, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    ns = load_baseline(path)
    V, T, h, nh, L, B = ns["cfgs"][cfg]
    torch.manual_seed(0)
    m = ns["GPT"](V, T, h, nh, L, **ns.get("variants", {}).get(cfg, {})).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    f = torch.compile(m) if mode == "compile" else m
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = f(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
        for _ in range(ITERS):
            step()
        torch.cuda.synchronize()

    # GPU-side user annotations ("## Call CompiledFxGraph ... ##", "Optimizer.step#...") span
    # many kernels: not kernels themselves.
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and not getattr(e, "is_user_annotation", False)
               and not e.name.startswith("## ") and "#" not in e.name.split("(")[0]]
    by_name = collections.defaultdict(lambda: [0.0, 0])
    by_group = collections.defaultdict(float)
    spans = []
    for e in kernels:
        us = e.time_range.end - e.time_range.start
        by_name[e.name][0] += us
        by_name[e.name][1] += 1
        by_group[group_of(e.name)] += us
        spans.append((e.time_range.start, e.time_range.end))
    spans.sort()
    idle, end = 0.0, None
    for s, e in spans:
        if end is not None and s > end:
            idle += s - end
        end = e if end is None else max(end, e)
    total = sum(by_group.values())
    print(f"reference {cfg}:{mode}: {total / ITERS / 1000:.1f} ms/iter of kernels, idle {idle / ITERS / 1000:.2f} ms/iter")
    for g, us in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"  {g:45s} {us / ITERS / 1000:8.2f} ms/iter")
    print("top kernels (ms/iter, launches/iter):")
    for name, (us, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:45]:
        print(f"  {us / ITERS / 1000:8.3f} {n / ITERS:6.1f}  {name[:150]}")
    print("products by op and input shapes (device ms/iter, calls/iter):")
    rows = []
    for a in prof.key_averages(group_by_input_shape=True):
        if a.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::_addmm_activation", "aten::baddbmm"):
            rows.append((a.device_time_total, a.count, a.key, a.input_shapes))
    for us, n, key, shapes in sorted(rows, key=lambda r: -r[0])[:30]:
        print(f"  {us / ITERS / 1000:8.3f} {n / ITERS:6.1f}  {key} {shapes}")


if __name__ == "__main__":
    main()
