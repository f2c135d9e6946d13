# Issue 5 measurements on the GPU machine (python3 tools/gemm_power/power_probe.py): cuDNN SDPA layouts
# and kernels as megahost calls them, then the fc1 GEMM sustained for 6 s with the clock, power and
# throttle reasons nvidia-smi reports (query only: nothing is changed).
import subprocess, time, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.manual_seed(0)
s, b, n, hn = 2048, 8, 16, 128
dev = 'cuda'
def smi():
    return subprocess.run(['nvidia-smi', '--query-gpu=clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu,clocks_throttle_reasons.active', '--format=csv,noheader'], capture_output=True, text=True).stdout.strip()
print('cudnn', torch.backends.cudnn.version(), '| smi idle:', smi())
# packed Megatron layout [s, b, n, 3, hn]
qkv = torch.randn(s, b, n, 3 * hn, device=dev, dtype=torch.bfloat16, requires_grad=True)
q, k, v = qkv.split(hn, dim=3)
qb, kb, vb = [t.permute(1, 2, 0, 3) for t in (q, k, v)]
from torch.nn.attention import sdpa_kernel, SDPBackend
def attn_probe():
  with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
      out = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True)
      print('out', out.shape, out.stride())
      dout = torch.randn_like(out)
      # direct op
      o, lse, cum_q, cum_k, mq, mk, seed, off, dbg = torch.ops.aten._scaled_dot_product_cudnn_attention(qb, kb, vb, None, True, 0.0, True, False)
      print('cudnn fwd out stride', o.stride(), 'lse', lse.shape, lse.stride())
      dq, dk, dv = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(dout.permute(2,0,1,3).contiguous().permute(1,2,0,3), qb, kb, vb, o, lse, seed, off, None, cum_q, cum_k, mq, mk, 0.0, True)
      print('dq stride', dq.stride(), 'dk', dk.stride(), 'dv', dv.stride(), 'dq-dk ptr diff', dk.data_ptr() - dq.data_ptr())
      for name, g in [('dout [b,n,s,hn] contig', dout), ('dout [s,b,n,hn] phys', dout.permute(2,0,1,3).contiguous().permute(1,2,0,3))]:
          with profile(activities=[ProfilerActivity.CUDA]) as p:
              for _ in range(3):
                  r = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(g, qb, kb, vb, o, lse, seed, off, None, cum_q, cum_k, mq, mk, 0.0, True)
              torch.cuda.synchronize()
          print('== bwd kernels,', name)
          print(p.key_averages().table(sort_by='cuda_time_total', row_limit=8, max_name_column_width=90))
      with profile(activities=[ProfilerActivity.CUDA]) as p:
          for _ in range(3):
              out = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True)
              out.permute(2, 0, 1, 3).reshape(s, b, n * hn).backward(torch.randn(s, b, n * hn, device=dev, dtype=torch.bfloat16))
          torch.cuda.synchronize()
      print('== autograd sdpa fwd+bwd (as megahost calls it)')
      print(p.key_averages().table(sort_by='cuda_time_total', row_limit=12, max_name_column_width=90))
try:
    attn_probe()
except Exception as e:
    print("attn probe failed", type(e).__name__, str(e)[:400])
# sustained GEMM: fc1 shape, 6 s, report TF/s per second and clocks
a = torch.randn(16384, 2048, device=dev, dtype=torch.bfloat16); w = torch.randn(8192, 2048, device=dev, dtype=torch.bfloat16)
fl = 2 * 16384 * 2048 * 8192
for sec in range(6):
    torch.cuda.synchronize(); t0 = time.time(); it = 0
    while time.time() - t0 < 1.0:
        for _ in range(20): torch.mm(a, w.t())
        torch.cuda.synchronize(); it += 20
    dt = time.time() - t0
    print(f'sustained fc1 gemm second {sec}: {fl * it / dt / 1e12:.0f} TF/s | {smi()}')
