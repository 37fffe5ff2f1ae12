#!/usr/bin/env python3
"""Writes an mmm model directory (config.json + model.safetensors, fp32, text path only) as an
f32 GGUF that llama.cpp runs, through llama.cpp's own gguf-py (--gguf-py: its directory in a
llama.cpp source tree).

  teacher (attention layers only) -> architecture "llama"
  student (mamba2 layers, with or without attention) -> architecture "nemotron_h"

The mapping, and where llama.cpp's model computes something other than mmm's, is in README.md
beside this script. The teacher's mapping is exact; --check-layout only prints the mapping."""
import argparse
import json
import os
import re
import struct
import sys

import numpy as np

PAD_D = 2  # the stand-in attention block's head dimension (llama.cpp's graph refuses 1)


def read_safetensors(path):
    """{name: float32 array} from one safetensors file (F32 only: `mmm bench --save` writes fp32)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}; write the model with fp32 weights")
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(info["shape"])
    return out


def load_model(model_dir):
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        sys.exit(f"{model_dir}: no .safetensors file")
    t = {}
    for f in files:
        t.update(read_safetensors(os.path.join(model_dir, f)))
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    return t, cfg


def layer_prefixes(t):
    """Layer name prefixes in execution order: the embedding module's E layers, then the LLM's L."""
    emb = sorted({int(m.group(1)) for n in t for m in [re.match(r"embedding_model\.encoder\.(\d+)\.", n)] if m})
    llm = sorted({int(m.group(1)) for n in t for m in [re.match(r"language_model\.model\.layers\.(\d+)\.", n)] if m})
    return [f"embedding_model.encoder.{i}" for i in emb] + [f"language_model.model.layers.{i}" for i in llm]


def hparam(cfg, key, default):
    llm = cfg.get("llm_config", cfg)
    return llm.get(key, cfg.get(key, default))


def split_wqkv(wqkv, H, Hkv, D):
    """mmm's fused wqkv, rows grouped per kv head ([its rep query heads | k | v] per group), as
    Wq (H·D, C), Wk (Hkv·D, C), Wv (Hkv·D, C) with heads in order (query head h in group h // rep)."""
    rep = H // Hkv
    g = wqkv.reshape(Hkv, (rep + 2) * D, -1)
    C = wqkv.shape[1]
    return (g[:, :rep * D].reshape(H * D, C), g[:, rep * D:(rep + 1) * D].reshape(Hkv * D, C),
            g[:, (rep + 1) * D:].reshape(Hkv * D, C))


def rope_interleave(w, n_heads, D):
    """mmm rotates halves (pairs i, i + D/2); llama.cpp's llama rotates neighbours (2i, 2i + 1):
    reorder each head's rows so the same pairs meet (q and k alike, so q·k is unchanged)."""
    C = w.shape[1]
    return w.reshape(n_heads, 2, D // 2, C).swapaxes(1, 2).reshape(n_heads * D, C)


def add_vocab(w, gguf, V):
    """A stand-in SentencePiece vocabulary of V entries (the models have none): control tokens,
    the 256 byte tokens llama.cpp's SPM loader looks up, then placeholders. No BOS is added, so
    llama-bench feeds random ids."""
    toks = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    if V >= 3 + 256:
        toks += [f"<0x{i:02X}>".encode() for i in range(256)]
        types += [gguf.TokenType.BYTE] * 256
    while len(toks) < V:
        toks.append(f"\u2581t{len(toks)}".encode())
        types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks[:V])
    w.add_token_scores([0.0] * V)
    w.add_token_types(types[:V])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)


def common(t, cfg):
    emb = t["embedding_model.llm_text_embeddings.weight"]
    head = t["language_model.output.weight"]
    if emb.shape[0] != head.shape[0] or "embedding_model.special_text_embeddings.weight" in t:
        sys.exit("only a text vocabulary read wholly from llm_text_embeddings maps to one token_embd "
                 f"(llm_text_embeddings has {emb.shape[0]} rows, the LM head {head.shape[0]})")
    return emb, head, t["language_model.model.norm.weight"]


def write_teacher(t, cfg, prefixes, out, gguf):
    emb, head, norm = common(t, cfg)
    V, C = head.shape
    H = hparam(cfg, "num_attention_heads", None)
    Hkv = hparam(cfg, "num_key_value_heads", H)
    D = C // H
    F = t[prefixes[0] + ".feed_forward.w1.weight"].shape[0]
    if hparam(cfg, "rope_scaling", None):
        sys.exit("rope_scaling is not mapped")
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("mmm bench teacher")
    w.add_context_length(1 << 20)
    w.add_embedding_length(C)
    w.add_block_count(len(prefixes))
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(Hkv)
    w.add_rope_dimension_count(D)
    w.add_rope_freq_base(float(hparam(cfg, "rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(hparam(cfg, "rms_norm_eps", 1e-6)))
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_vocab(w, gguf, V)
    w.add_tensor("token_embd.weight", emb)
    for b, p in enumerate(prefixes):
        if p + ".attention.wqkv.weight" not in t:
            sys.exit(f"{p} has no attention: a student goes to nemotron_h")
        q, k, v = split_wqkv(t[p + ".attention.wqkv.weight"], H, Hkv, D)
        w.add_tensor(f"blk.{b}.attn_norm.weight", t[p + ".attention_norm.weight"])
        w.add_tensor(f"blk.{b}.attn_q.weight", rope_interleave(q, H, D))
        w.add_tensor(f"blk.{b}.attn_k.weight", rope_interleave(k, Hkv, D))
        w.add_tensor(f"blk.{b}.attn_v.weight", np.ascontiguousarray(v))
        w.add_tensor(f"blk.{b}.attn_output.weight", t[p + ".attention.wo.weight"])
        w.add_tensor(f"blk.{b}.ffn_norm.weight", t[p + ".ffn_norm.weight"])
        w.add_tensor(f"blk.{b}.ffn_gate.weight", t[p + ".feed_forward.w1.weight"])
        w.add_tensor(f"blk.{b}.ffn_up.weight", t[p + ".feed_forward.w3.weight"])
        w.add_tensor(f"blk.{b}.ffn_down.weight", t[p + ".feed_forward.w2.weight"])
    w.add_tensor("output_norm.weight", norm)
    w.add_tensor("output.weight", head)
    return w


def write_student(t, cfg, prefixes, out, gguf):
    """nemotron_h: a block is one of Mamba-2, attention or MLP, each `x += f(RMSNorm(x))`, so an
    mmm layer (mixer, then SwiGLU MLP) becomes two blocks, 2l and 2l + 1. A model with no
    attention (the linear student) gets one more block in front, an attention block of one head
    of dimension PAD_D whose output projection is zero: it adds nothing to x, and it gives llama.cpp's
    hybrid memory the attention layer it needs (with none, llama_decode aborts on a KV cache
    without a buffer)."""
    emb, head, norm = common(t, cfg)
    V, C = head.shape
    H = hparam(cfg, "num_attention_heads", None)
    Hkv = hparam(cfg, "num_key_value_heads", H)
    D = C // H
    rep = H // Hkv
    F = t[prefixes[0] + ".feed_forward.w1.weight"].shape[0]
    F2 = 3 * F // 2  # relu² MLP (up, down) as wide in bytes and FLOPs as the SwiGLU (gate, up, down)
    attn = [p + ".attention.wqkv.weight" in t for p in prefixes]
    pad = 0 if any(attn) else 1  # the stand-in attention block, block 0
    n_blocks = pad + 2 * len(prefixes)
    mixer = lambda b: (b - pad) % 2 == 0
    w = gguf.GGUFWriter(out, "nemotron_h")
    w.add_name("mmm bench student")
    w.add_context_length(1 << 20)
    w.add_embedding_length(C)
    w.add_block_count(n_blocks)
    w.add_feed_forward_length([0 if b < pad or mixer(b) else F2 for b in range(n_blocks)])
    w.add_head_count([1] * pad + [H] * (n_blocks - pad))
    w.add_head_count_kv([1 if b < pad else Hkv if mixer(b) and attn[(b - pad) // 2] else 0 for b in range(n_blocks)])
    w.add_key_length(PAD_D if pad else D)
    w.add_value_length(PAD_D if pad else D)
    eps = float(hparam(cfg, "rms_norm_eps", 1e-6))
    w.add_layer_norm_eps(eps)
    w.add_layer_norm_rms_eps(eps)
    # Mamba-2 with one group per head: x and B are repeated from mmm's kv groups, C is per head
    w.add_ssm_conv_kernel(t[next(p for p, a in zip(prefixes, attn) if not a) + ".attention.conv1d.weight"].shape[2])
    w.add_ssm_inner_size(H * D)
    w.add_ssm_state_size(D)
    w.add_ssm_time_step_rank(H)
    w.add_ssm_group_count(H)
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_vocab(w, gguf, V)
    w.add_tensor("token_embd.weight", emb)
    head_group = np.arange(H) // rep
    if pad:
        w.add_tensor("blk.0.attn_norm.weight", np.ones(C, np.float32))
        for name in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"blk.0.{name}.weight", np.zeros((PAD_D, C), np.float32))
        w.add_tensor("blk.0.attn_output.weight", np.zeros((C, PAD_D), np.float32))
    for l, p in enumerate(prefixes):
        b = pad + 2 * l
        w.add_tensor(f"blk.{b}.attn_norm.weight", t[p + ".attention_norm.weight"])
        if attn[l]:
            q, k, v = split_wqkv(t[p + ".attention.wqkv.weight"], H, Hkv, D)
            w.add_tensor(f"blk.{b}.attn_q.weight", np.ascontiguousarray(q))
            w.add_tensor(f"blk.{b}.attn_k.weight", np.ascontiguousarray(k))
            w.add_tensor(f"blk.{b}.attn_v.weight", np.ascontiguousarray(v))
            w.add_tensor(f"blk.{b}.attn_output.weight", t[p + ".attention.wo.weight"])
        else:
            W = t[p + ".attention.wvkqgdt.weight"]  # rows [v (Hkv·D) | k (Hkv·D) | q (H·D) | g (H·D) | dt (H)]
            G = Hkv * D
            v, k, q, g, dt = W[:G], W[G:2 * G], W[2 * G:2 * G + H * D], W[2 * G + H * D:2 * G + 2 * H * D], W[-H:]
            per_head = lambda m: m.reshape(Hkv, D, -1)[head_group].reshape(H * D, *m.shape[1:])
            # in_proj rows [z | x | B | C | dt]; the conv runs over [x | B | C] = mmm's [v | k | q]
            w.add_tensor(f"blk.{b}.ssm_in.weight", np.concatenate([g, per_head(v), per_head(k), q, dt]))
            cw = t[p + ".attention.conv1d.weight"][:, 0, :]  # (Dc, K), tap K−1 the current token in both
            cb = t[p + ".attention.conv1d.bias"]
            w.add_tensor(f"blk.{b}.ssm_conv1d.weight", np.concatenate([per_head(cw[:G]), per_head(cw[G:2 * G]), cw[2 * G:]]))
            w.add_tensor(f"blk.{b}.ssm_conv1d.bias", np.concatenate([per_head(cb[:G]), per_head(cb[G:2 * G]), cb[2 * G:]]))
            w.add_tensor(f"blk.{b}.ssm_dt.bias", t[p + ".attention.dt_bias"])
            w.add_tensor(f"blk.{b}.ssm_a", (-np.exp(t[p + ".attention.A_log_bias"].astype(np.float64))).astype(np.float32).reshape(H, 1))
            w.add_tensor(f"blk.{b}.ssm_d", np.zeros((H, 1), np.float32))  # mmMamba has no D skip
            w.add_tensor(f"blk.{b}.ssm_norm.weight", np.tile(t[p + ".attention.g_norm_swish_gate.weight"], (H, 1)))
            w.add_tensor(f"blk.{b}.ssm_out.weight", t[p + ".attention.o_proj.weight"])
        w1, w2, w3 = (t[p + f".feed_forward.w{i}.weight"] for i in (1, 2, 3))
        w.add_tensor(f"blk.{b + 1}.attn_norm.weight", t[p + ".ffn_norm.weight"])
        w.add_tensor(f"blk.{b + 1}.ffn_up.weight", np.concatenate([w1, w3])[:F2])
        w.add_tensor(f"blk.{b + 1}.ffn_down.weight", np.ascontiguousarray(np.concatenate([w2, w2], axis=1)[:, :F2]))
    w.add_tensor("output_norm.weight", norm)
    w.add_tensor("output.weight", head)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py directory")
    a = ap.parse_args()
    sys.path.insert(0, a.gguf_py)
    import gguf

    t, cfg = load_model(a.model_dir)
    prefixes = layer_prefixes(t)
    if not prefixes:
        sys.exit(f"{a.model_dir}: no decoder layers")
    student = any(p + ".attention.wvkqgdt.weight" in t for p in prefixes)
    w = (write_student if student else write_teacher)(t, cfg, prefixes, a.out, gguf)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: {'nemotron_h' if student else 'llama'}, {len(prefixes)} mmm layers")


if __name__ == "__main__":
    main()
