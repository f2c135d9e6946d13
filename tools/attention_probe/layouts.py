# cuDNN attention (libtorch's scaled_dot_product_attention, causal, bf16) forward and backward for
# the GPT-1.3B shape (b 8, 16 heads of 128, seq 2048), with q / k / v in different memory layouts:
# does the layout megahost hands cuDNN (views of linear_qkv's [s, b, np, 3 * hn] output) cost
# time against contiguous tensors? Run on the GPU machine: python3 tools/attention_probe/layouts.py
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from timing import timed

S, B, NP, HN = 2048, 8, 16, 128
H = NP * HN
dev = "cuda"
torch.manual_seed(0)


def megahost():  # linear_qkv's output [s, b, np, 3, hn], split per head: views [b, np, s, hn]
    qkv = torch.randn(S, B, NP, 3 * HN, device=dev, dtype=torch.bfloat16)
    q, k, v = qkv.split(HN, dim=-1)
    return [t.permute(1, 2, 0, 3) for t in (q, k, v)]


def batch_first():  # the reference script: [b, s, 3h] split into q / k / v, then heads
    qkv = torch.randn(B, S, 3 * H, device=dev, dtype=torch.bfloat16)
    return [t.view(B, S, NP, HN).transpose(1, 2) for t in qkv.split(H, dim=-1)]


def seq_first_separate():  # each of q / k / v its own [s, b, np, hn]
    return [torch.randn(S, B, NP, HN, device=dev, dtype=torch.bfloat16).permute(1, 2, 0, 3) for _ in range(3)]


def contiguous():  # each [b, np, s, hn] contiguous
    return [torch.randn(B, NP, S, HN, device=dev, dtype=torch.bfloat16) for _ in range(3)]


fwd_flop = 4 * B * NP * S * S * HN / 2  # causal: half the scores
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for name, make in [("megahost [s,b,np,3,hn] views", megahost), ("reference [b,s,3h] views", batch_first),
                       ("separate [s,b,np,hn]", seq_first_separate), ("contiguous [b,np,s,hn]", contiguous)]:
        q, k, v = [t.detach().requires_grad_() for t in make()]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        # dO in the output's own layout (what the next product's input gradient gives)
        do = torch.randn_like(out)
        f = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        fb = timed(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v), do))
        print(f"{name:30s} out strides {tuple(out.stride())}: forward {f:.3f} ms ({fwd_flop / f / 1e9:.0f} TFLOP/s), "
              f"forward+backward {fb:.3f} ms, backward ~{fb - f:.3f} ms ({2.5 * fwd_flop / (fb - f) / 1e9:.0f} TFLOP/s); "
              f"x24 layers: {24 * fb:.1f} ms")
