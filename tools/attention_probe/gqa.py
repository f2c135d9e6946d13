# Grouped-query attention on the GPU machine: megahost repeats k / v to every query head
# (repeat_interleave) before libtorch's scaled_dot_product_attention; PyTorch >= 2.5 can take
# the groups directly (enable_gqa). Which backends accept that, and is it faster, forward and
# backward? Llama-style shape: b 4, 32 query heads, 8 groups, head 128, seq 2048, bf16, causal.
#   python3 tools/attention_probe/gqa.py
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from timing import timed

B, S, NP, NG, HN = 4, 2048, 32, 8, 128
dev = "cuda"
torch.manual_seed(0)
q0 = torch.randn(B, NP, S, HN, device=dev, dtype=torch.bfloat16)
k0 = torch.randn(B, NG, S, HN, device=dev, dtype=torch.bfloat16)
v0 = torch.randn(B, NG, S, HN, device=dev, dtype=torch.bfloat16)
do = torch.randn(B, NP, S, HN, device=dev, dtype=torch.bfloat16)


def repeated(q, k, v):
    r = NP // NG
    return F.scaled_dot_product_attention(q, k.repeat_interleave(r, 1), v.repeat_interleave(r, 1), is_causal=True)


def native(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


ref = None
for backend in [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]:
    for name, fn in [("repeat_interleave", repeated), ("enable_gqa", native)]:
        q, k, v = [t.clone().requires_grad_() for t in (q0, k0, v0)]
        try:
            with sdpa_kernel([backend]):
                out = fn(q, k, v)
                grads = torch.autograd.grad(out, (q, k, v), do)
                f = timed(lambda: fn(q, k, v))
                fb = timed(lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), do))
        except RuntimeError as e:
            print(f"{backend.name:20s} {name:18s} not available: {str(e).splitlines()[0][:100]}")
            continue
        if ref is None:
            ref = (out.float(), [g.float() for g in grads])
        err = max([(out.float() - ref[0]).abs().max().item()] + [(g.float() - r).abs().max().item() for g, r in zip(grads, ref[1])])
        print(f"{backend.name:20s} {name:18s} forward {f:.3f} ms, forward+backward {fb:.3f} ms, max |diff| vs first {err:.3g}")
