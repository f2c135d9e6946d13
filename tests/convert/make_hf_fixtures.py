#!/usr/bin/env python3
"""Writes the tiny Hugging Face checkpoints of tests/data/hf/ and their reference logits.

There is no `transformers` here, so each folder is written by hand as `save_pretrained` would:
config.json + model.safetensors (a minimal safetensors writer below). The reference logits come
from the hand-written forward passes below (float64 math on the float32 weights), independent
of megahost. Needs Debian's python3-torch; CI does not run this: the outputs are committed.

    python3 tests/convert/make_hf_fixtures.py [OUT_DIR]   (default tests/data/hf)

Folders: gpt2, llama, mistral, llama31 (Llama 3.1's rope_scaling), qwen2 (q/k/v biases), qwen3
(q/k norms, head_dim 32), llama_linear (linear rope scaling). Per model folder: config.json,
model.safetensors, reference.json (tokens, logits shape) and reference_logits.f32 (float32,
little-endian, row-major [seq, vocab]).
"""
import json
import math
import os
import struct
import sys

import torch

VOCAB, HIDDEN, LAYERS, HEADS = 128, 64, 2, 4
TOKENS = [1, 7, 42, 99, 3, 127, 64, 0, 15, 88, 23, 5, 110, 31, 2, 77]

DTYPE_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor). Header: 8-byte LE length, JSON, then the raw bytes."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        data = t.detach().contiguous().cpu().numpy().tobytes() if t.dtype != torch.bfloat16 else \
            t.detach().contiguous().view(torch.int16).cpu().numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # the data starts 8-byte aligned, as safetensors pads
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def save_folder(out, config, tensors, logits):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits_shape": list(logits.shape), "logits_file": "reference_logits.f32",
                   "computed_by": "tests/convert/make_hf_fixtures.py (float64 forward of the float32 weights)"},
                  f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "reference_logits.f32"), "wb") as f:
        f.write(logits.to(torch.float32).contiguous().numpy().astype("<f4").tobytes())


def causal_attention(q, k, v):
    """q [n, s, d], k/v [n, s, d] -> [s, n * d]."""
    s, d = q.shape[1], q.shape[2]
    scores = q @ k.transpose(1, 2) / math.sqrt(d)
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), 1)
    scores = scores.masked_fill(mask, float("-inf"))
    out = torch.softmax(scores, -1) @ v  # [n, s, d]
    return out.transpose(0, 1).reshape(s, -1)


# ---------------------------------------------------------------- GPT-2

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gpt2(gen, out):
    n_inner, n_pos, eps = 128, 32, 1e-5
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB, "n_embd": HIDDEN,
              "n_layer": LAYERS, "n_head": HEADS, "n_inner": n_inner, "n_positions": n_pos, "n_ctx": n_pos,
              "activation_function": "gelu_new", "layer_norm_epsilon": eps, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
              "attn_pdrop": 0.1, "initializer_range": 0.02, "scale_attn_weights": True, "tie_word_embeddings": True,
              "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32"}
    r = lambda *shape, std=0.2: torch.randn(*shape, generator=gen) * std  # noqa: E731
    t = [("transformer.wte.weight", r(VOCAB, HIDDEN)), ("transformer.wpe.weight", r(n_pos, HIDDEN))]
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        t += [(p + "ln_1.weight", 1 + r(HIDDEN, std=0.1)), (p + "ln_1.bias", r(HIDDEN, std=0.1)),
              (p + "attn.c_attn.weight", r(HIDDEN, 3 * HIDDEN)), (p + "attn.c_attn.bias", r(3 * HIDDEN)),
              (p + "attn.c_proj.weight", r(HIDDEN, HIDDEN)), (p + "attn.c_proj.bias", r(HIDDEN)),
              (p + "ln_2.weight", 1 + r(HIDDEN, std=0.1)), (p + "ln_2.bias", r(HIDDEN, std=0.1)),
              (p + "mlp.c_fc.weight", r(HIDDEN, n_inner)), (p + "mlp.c_fc.bias", r(n_inner)),
              (p + "mlp.c_proj.weight", r(n_inner, HIDDEN)), (p + "mlp.c_proj.bias", r(HIDDEN))]
    t += [("transformer.ln_f.weight", 1 + r(HIDDEN, std=0.1)), ("transformer.ln_f.bias", r(HIDDEN, std=0.1))]
    w = {k: v.double() for k, v in t}

    # HF's GPT2LMHeadModel forward, written out: Conv1D is x @ W + b with W [in, out].
    tok = torch.tensor(TOKENS)
    s, hd = len(TOKENS), HIDDEN // HEADS
    x = w["transformer.wte.weight"][tok] + w["transformer.wpe.weight"][torch.arange(s)]
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # [s, 3h]: q | k | v
        q, k, v = (qkv[:, j * HIDDEN:(j + 1) * HIDDEN].view(s, HEADS, hd).transpose(0, 1) for j in range(3))
        x = x + causal_attention(q, k, v) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    save_folder(out, config, t, x @ w["transformer.wte.weight"].T)  # tied lm_head


# ---------------------------------------------------------------- Llama / Mistral

def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def llama3_scaled(inv_freq, c):
    """Llama 3.1's rope_scaling ("llama3"): long wavelengths slowed by the factor, short ones kept,
    the band between blended."""
    low_wavelen = c["original_max_position_embeddings"] / c["low_freq_factor"]
    high_wavelen = c["original_max_position_embeddings"] / c["high_freq_factor"]
    out = []
    for f in inv_freq.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / c["factor"])
        else:
            a = (c["original_max_position_embeddings"] / wavelen - c["low_freq_factor"]) / (
                c["high_freq_factor"] - c["low_freq_factor"])
            out.append((1 - a) * f / c["factor"] + a * f)
    return torch.tensor(out, dtype=torch.float64)


def llama_like(gen, out, arch, model_type, extra, qkv_bias=False, qk_norm=False, head_dim=None):
    kv_heads, ffn, n_pos, eps, theta = 2, 96, 64, 1e-6, 500000.0
    config = {"architectures": [arch], "model_type": model_type, "vocab_size": VOCAB, "hidden_size": HIDDEN,
              "intermediate_size": ffn, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
              "num_key_value_heads": kv_heads, "max_position_embeddings": n_pos, "rms_norm_eps": eps,
              "rope_theta": theta, "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False,
              "attention_dropout": 0.0, "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2,
              "torch_dtype": "float32", **extra}
    if qkv_bias:  # Qwen2: biases on q / k / v, implied by the architecture (no attention_bias key)
        del config["attention_bias"]
    theta, tied = config["rope_theta"], config["tie_word_embeddings"]
    if head_dim is not None:  # Qwen3: heads x head_dim need not be the hidden size
        config["head_dim"] = head_dim
    hd = head_dim or HIDDEN // HEADS
    r = lambda *shape, std=0.2: torch.randn(*shape, generator=gen) * std  # noqa: E731
    t = [("model.embed_tokens.weight", r(VOCAB, HIDDEN, std=1.0))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t += [(p + "input_layernorm.weight", 1 + r(HIDDEN, std=0.1)),
              (p + "self_attn.q_proj.weight", r(HEADS * hd, HIDDEN)),
              (p + "self_attn.k_proj.weight", r(kv_heads * hd, HIDDEN)),
              (p + "self_attn.v_proj.weight", r(kv_heads * hd, HIDDEN))]
        if qkv_bias:
            t += [(p + "self_attn.q_proj.bias", r(HEADS * hd)), (p + "self_attn.k_proj.bias", r(kv_heads * hd)),
                  (p + "self_attn.v_proj.bias", r(kv_heads * hd))]
        if qk_norm:
            t += [(p + "self_attn.q_norm.weight", 1 + r(hd, std=0.1)),
                  (p + "self_attn.k_norm.weight", 1 + r(hd, std=0.1))]
        t += [
              (p + "self_attn.o_proj.weight", r(HIDDEN, HEADS * hd)),
              (p + "post_attention_layernorm.weight", 1 + r(HIDDEN, std=0.1)),
              (p + "mlp.gate_proj.weight", r(ffn, HIDDEN)), (p + "mlp.up_proj.weight", r(ffn, HIDDEN)),
              (p + "mlp.down_proj.weight", r(HIDDEN, ffn))]
    t += [("model.norm.weight", 1 + r(HIDDEN, std=0.1))]
    if not tied:  # a tied model's save_pretrained stores no lm_head
        t += [("lm_head.weight", r(VOCAB, HIDDEN))]
    w = {k: v.double() for k, v in t}
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]

    # HF's LlamaForCausalLM forward, written out (nn.Linear: x @ W^T).
    tok = torch.tensor(TOKENS)
    s = len(TOKENS)
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    if extra.get("rope_scaling", {}).get("rope_type") == "llama3":
        inv_freq = llama3_scaled(inv_freq, extra["rope_scaling"])
    if extra.get("rope_scaling", {}).get("rope_type") == "linear":  # positions / factor
        inv_freq = inv_freq / extra["rope_scaling"]["factor"]
    freqs = torch.outer(torch.arange(s, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], -1)  # [s, hd]
    cos, sin = emb.cos(), emb.sin()
    x = w["model.embed_tokens.weight"][tok]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
        if qkv_bias:
            q, k, v = q + w[p + "self_attn.q_proj.bias"], k + w[p + "self_attn.k_proj.bias"], v + w[
                p + "self_attn.v_proj.bias"]
        q, k = q.view(s, HEADS, hd), k.view(s, kv_heads, hd)
        if qk_norm:  # Qwen3: RMSNorm over each head's dims, before the rotation
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(0, 1), k.transpose(0, 1)
        v = v.view(s, kv_heads, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = HEADS // kv_heads  # repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
        k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        x = x + causal_attention(q, k, v) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    save_folder(out, config, t, x @ head.T)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "hf")
    gpt2(torch.Generator().manual_seed(1), os.path.join(out, "gpt2"))
    llama_like(torch.Generator().manual_seed(2), os.path.join(out, "llama"), "LlamaForCausalLM", "llama", {})
    # Mistral: the same tensors; a sliding window no shorter than the context is plain causal attention.
    llama_like(torch.Generator().manual_seed(3), os.path.join(out, "mistral"), "MistralForCausalLM", "mistral",
               {"sliding_window": 64})
    # Llama 3.1: the same shape with its rope_scaling.
    llama_like(torch.Generator().manual_seed(4), os.path.join(out, "llama31"), "LlamaForCausalLM", "llama",
               {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
    # Qwen2: Llama with q / k / v biases (Megatron's --add-qkv-bias), rope_theta 1e6, tied embeddings.
    llama_like(torch.Generator().manual_seed(6), os.path.join(out, "qwen2"), "Qwen2ForCausalLM", "qwen2",
               {"rope_theta": 1000000.0, "tie_word_embeddings": True, "use_sliding_window": False,
                "sliding_window": 64, "max_window_layers": 2}, qkv_bias=True)
    # Qwen3: q / k norms (Megatron's --qk-layernorm), head_dim 32 (4 heads x 32 = 128 != hidden 64).
    llama_like(torch.Generator().manual_seed(7), os.path.join(out, "qwen3"), "Qwen3ForCausalLM", "qwen3",
               {"rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": None,
                "max_window_layers": 2}, qk_norm=True, head_dim=32)
    # Linear position interpolation (a context stretched 4 x).
    llama_like(torch.Generator().manual_seed(5), os.path.join(out, "llama_linear"), "LlamaForCausalLM", "llama",
               {"rope_scaling": {"rope_type": "linear", "factor": 4.0}})


if __name__ == "__main__":
    main()
