# PyTorch eager / torch.compile training throughput of a Llama-style decoder (RMSNorm, rotary
# positions, grouped-query attention, SwiGLU MLP, no biases, untied output layer): the
# reference that examples/gpt/bench_llama1.3b.toml is measured against. Same step, warm-up, timing
# and printout as ../shared/bench/gpt_baseline.py (bf16 autocast over float32 parameters, fused
# AdamW, 5 warm-up steps, 20 timed back to back); FLOPs as Megatron's num_floating_point_operations
# (the count `megahost bench` prints for the same shape).
#   python3 tools/llama_baseline/llama_baseline.py llama1.3b:eager llama1.3b:compile
# tools/reference_profile/reference_profile.py reads its classes too (GPT, cfgs).
import sys, time, torch, torch.nn as nn, torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = True


def rotate(x, cos, sin):  # x [B, n, T, hn]; Megatron's default rotate-half layout
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(nn.Module):
    def __init__(s, h, nh, ng, ffn, qk_norm=False):
        super().__init__()
        s.nh, s.ng, s.hn = nh, ng, h // nh
        s.norm1 = nn.RMSNorm(h, eps=1e-5)
        # Qwen3 / Megatron's --qk-layernorm: q and k normed per head before the rotation
        s.q_norm = nn.RMSNorm(s.hn, eps=1e-5) if qk_norm else nn.Identity()
        s.k_norm = nn.RMSNorm(s.hn, eps=1e-5) if qk_norm else nn.Identity()
        s.qkv = nn.Linear(h, (nh + 2 * ng) * s.hn, bias=False)
        s.proj = nn.Linear(h, h, bias=False)
        s.norm2 = nn.RMSNorm(h, eps=1e-5)
        s.fc1 = nn.Linear(h, 2 * ffn, bias=False)  # gate and up, as Megatron's fused linear_fc1
        s.fc2 = nn.Linear(ffn, h, bias=False)

    def forward(s, x, cos, sin):
        B, T, C = x.shape
        q, k, v = s.qkv(s.norm1(x)).split([s.nh * s.hn, s.ng * s.hn, s.ng * s.hn], dim=2)
        q = rotate(s.q_norm(q.view(B, T, s.nh, s.hn)).transpose(1, 2), cos, sin)
        k = rotate(s.k_norm(k.view(B, T, s.ng, s.hn)).transpose(1, 2), cos, sin)
        v = v.view(B, T, s.ng, s.hn).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + s.proj(y.transpose(1, 2).reshape(B, T, C))
        gate, up = s.fc1(s.norm2(x)).chunk(2, dim=-1)
        return x + s.fc2(F.silu(gate) * up)


class GPT(nn.Module):  # the name reference_profile.py builds
    def __init__(s, V, T, h, nh, L, ng=4, ffn=5632, base=10000.0, qk_norm=False):
        super().__init__()
        s.wte = nn.Embedding(V, h)
        s.blocks = nn.ModuleList([Block(h, nh, ng, ffn, qk_norm) for _ in range(L)])
        s.norm = nn.RMSNorm(h, eps=1e-5)
        s.head = nn.Linear(h, V, bias=False)
        hn = h // nh
        inv = 1.0 / base ** (torch.arange(0, hn, 2, dtype=torch.float32) / hn)
        ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)  # [T, hn]
        s.register_buffer("cos", ang.cos(), persistent=False)
        s.register_buffer("sin", ang.sin(), persistent=False)

    def forward(s, idx, tgt):
        x = s.wte(idx)
        for b in s.blocks:
            x = b(x, s.cos, s.sin)
        logits = s.head(s.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))


def megatron_flops(B, T, h, nh, L, V, ng, ffn):
    return 12 * B * T * L * h * h * ((1 + ng / nh + T / h) + (ffn / h) * 1.5 + V / (2 * L * h))


def run(name, V, T, h, nh, L, B, compile_, iters=20, ng=4, ffn=5632, **variant):
    torch.manual_seed(0)
    m = GPT(V, T, h, nh, L, ng, ffn, **variant).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    f = torch.compile(m) if compile_ else m
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = f(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    dt = (time.time() - t0) / iters
    flops = megatron_flops(B, T, h, nh, L, V, ng, ffn)
    n = sum(p.numel() for p in m.parameters())
    print(f"{name:28s} params={n/1e6:8.1f}M B={B} T={T} step={dt*1000:8.1f}ms tok/s/gpu={B*T/dt:10.0f} "
          f"TFLOP/s={flops/dt/1e12:6.1f} MFU(989)={flops/dt/989e12*100:5.1f}% "
          f"mem={torch.cuda.max_memory_allocated()/2**30:.1f}GiB", flush=True)
    del m, opt, f
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


# (V, T, h, heads, layers, micro batch); 4 key/value groups, SwiGLU width 5632. llama1.3b-v128k:
# Llama-3's vocabulary (128,256), the output layer's share of the work 2.5 x GPT-2's.
# llama1.3b-qknorm: with Qwen3's per-head q / k norms (bench_llama1.3b.toml + model.qk_layernorm=true).
cfgs = {"llama1.3b": (50304, 2048, 2048, 16, 24, 8), "llama1.3b-v128k": (128256, 2048, 2048, 16, 24, 8),
        "llama1.3b-qknorm": (50304, 2048, 2048, 16, 24, 8)}
variants = {"llama1.3b-qknorm": dict(qk_norm=True)}  # GPT()'s extra arguments per config
if __name__ == "__main__":
    for c in sys.argv[1:]:
        name, mode = c.split(":")
        try:
            run(c, *cfgs[name], compile_=(mode == "compile"), **variants.get(name, {}))
        except Exception as e:
            print(c, "FAILED", type(e).__name__, str(e)[:300], flush=True)
