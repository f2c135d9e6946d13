# Can AdamW's memory-bound update hide under the next forward's products?
# Emulates GPT-1.3B (24 layers, h 2048, s 2048, b 8, bf16) forward on one stream and a
# 30-byte-per-parameter AdamW (fp32 master/grad/m/v, bf16 copy) in 25 chunks on another,
# chunk i gating layer i (the order the forward needs its parameters).
# On the GPU machine: python3 tools/overlap_probe/overlap_probe.py (prints median / min / max ms of
# forward alone, AdamW alone, both in sequence, and overlapped with the side stream at low / high
# priority; results in docs/performance.md, sixth session).
import torch, torch.nn.functional as F, time, sys
torch.manual_seed(0)
dev = 'cuda'; L, h, s, b, nh = 24, 2048, 2048, 8, 16
bf = torch.bfloat16
x0 = torch.randn(s * b, h, device=dev, dtype=bf)
W = [dict(qkv=torch.randn(3*h, h, device=dev, dtype=bf) * 0.02, proj=torch.randn(h, h, device=dev, dtype=bf) * 0.02,
          fc1=torch.randn(4*h, h, device=dev, dtype=bf) * 0.02, fc2=torch.randn(h, 4*h, device=dev, dtype=bf) * 0.02)
     for _ in range(L)]
def layer(x, w):
    y = F.layer_norm(x, (h,))
    qkv = F.linear(y, w['qkv']).view(s, b, 3, nh, h // nh)
    q, k, v = [qkv[:, :, i].permute(1, 2, 0, 3) for i in range(3)]
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).permute(2, 0, 1, 3).reshape(s * b, h)
    x = x + F.linear(a, w['proj'])
    return x + F.linear(F.gelu(F.linear(F.layer_norm(x, (h,)), w['fc1']), approximate='tanh'), w['fc2'])
# optimizer state: chunk 0 = embeddings (103M + 4M), chunks 1..24 = one layer (50.4M) each
sizes = [50304 * h + s * h] + [12 * h * h + 13 * h] * L
P = [torch.randn(n, device=dev) for n in sizes]; G = [torch.randn(n, device=dev) * 1e-3 for n in sizes]
M = [torch.zeros(n, device=dev) for n in sizes]; V = [torch.zeros(n, device=dev) for n in sizes]
B16 = [torch.empty(n, device=dev, dtype=bf) for n in sizes]
step_t = [torch.tensor(1.0, device=dev) for _ in sizes]
def adamw(i):
    torch._fused_adamw_([P[i]], [G[i]], [M[i]], [V[i]], [], [step_t[i]], lr=1e-4, beta1=0.9, beta2=0.95,
                        weight_decay=0.1, eps=1e-8, amsgrad=False, maximize=False)
    B16[i].copy_(P[i])
main = torch.cuda.Stream(priority=-5) ; side_lo = torch.cuda.Stream(priority=0); side_hi = torch.cuda.Stream(priority=-5)
print('priority range', torch.cuda.Stream.priority_range(), flush=True)
def forward(gate=None):
    x = x0
    for i in range(L):
        if gate is not None: torch.cuda.current_stream().wait_event(gate[i + 1])
        x = layer(x, W[i])
    return x
def run(mode):
    torch.cuda.synchronize()
    t0 = torch.cuda.Event(enable_timing=True); t1 = torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(main):
        t0.record()
        if mode == 'fwd': forward()
        elif mode == 'opt':
            for i in range(len(sizes)): adamw(i)
        elif mode == 'seq':
            for i in range(len(sizes)): adamw(i)
            forward()
        else:
            side = side_lo if mode == 'overlap-lo' else side_hi
            side.wait_stream(main); ev = []
            with torch.cuda.stream(side):
                for i in range(len(sizes)):
                    adamw(i); e = torch.cuda.Event(); e.record(); ev.append(e)
            forward(ev)
            main.wait_stream(side)
        t1.record()
    torch.cuda.synchronize()
    return t0.elapsed_time(t1)
modes = ['fwd', 'opt', 'seq', 'overlap-lo', 'overlap-hi']
for m in modes: run(m)          # warm-up / autotune
t_end = time.time() + 10
while time.time() < t_end: run('seq')   # reach the power cap's steady state
res = {m: [] for m in modes}
for rep in range(6):
    for m in (modes if rep % 2 == 0 else modes[::-1]):
        res[m].append(run(m))
for m in modes:
    r = sorted(res[m]); print(f'{m:12s} median {r[len(r)//2]:7.2f} ms  min {r[0]:7.2f}  max {r[-1]:7.2f}', flush=True)
