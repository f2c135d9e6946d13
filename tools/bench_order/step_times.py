# The reference's own model and training step (.gpu-deps/bench/gpt_baseline.py, executed up to its
# command-line loop) with every step timed between CUDA events: the per-step pattern that the
# reference's single mean hides, to set beside megahost's per-iteration log times.
#   python3 tools/bench_order/step_times.py .gpu-deps/bench/gpt_baseline.py gpt1.3b compile [steps]
import sys, torch
src = open(sys.argv[1]).read()
ns = {"__name__": "gpt_baseline"}
exec(src[: src.index("for c in sys.argv[1:]")], ns)  # the classes and cfgs, not the runs
name, mode = sys.argv[2], sys.argv[3]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 25
V, T, h, nh, L, B = ns["cfgs"][name]
torch.manual_seed(0)
m = ns["GPT"](V, T, h, nh, L).cuda()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
f = torch.compile(m) if mode == "compile" else m
x = torch.randint(0, V, (B, T), device="cuda"); y = torch.randint(0, V, (B, T), device="cuda")
def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = f(x, y)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
events[0].record()
for i in range(steps):
    step(); events[i + 1].record()
torch.cuda.synchronize()
ms = [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
timed = ms[5:]
print(f"{name}:{mode} per-step ms: " + " ".join(f"{i + 1}:{t:.1f}" for i, t in enumerate(ms)))
print(f"{name}:{mode} steps 6-{steps}: mean {sum(timed) / len(timed):.2f} median {sorted(timed)[len(timed) // 2]:.2f} "
      f"min {min(timed):.2f} max {max(timed):.2f}")
