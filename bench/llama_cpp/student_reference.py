#!/usr/bin/env python3
"""A float64 reference of an mmm student (text only, a few tokens) under two semantics, to check
both ends of the nemotron_h mapping, which cannot be compared directly (README.md):

  --as mmm        mmm's model (docs/design.md §3): RMSNorm then gate, SwiGLU MLP, RoPE in attention;
                  compared with `mmm forward --dump`
  --as nemotron_h what mmm_to_gguf.py's GGUF means to llama.cpp: gate then RMSNorm, relu² MLP on
                  the mapped matrices, attention without RoPE; compared with logits.c's output

Each must agree with its program to rounding; the gap between the two is the documented
difference of semantics, nothing else."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_logits import mmm_logits  # noqa: E402
from mmm_to_gguf import hparam, layer_prefixes, load_model, split_wqkv  # noqa: E402


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(a):
    return a / (1 + np.exp(-a))


def forward(t, cfg, ids, nemotron):
    f = lambda n: t[n].astype(np.float64)
    prefixes = layer_prefixes(t)
    H = hparam(cfg, "num_attention_heads", None)
    Hkv = hparam(cfg, "num_key_value_heads", H)
    eps = float(np.float32(hparam(cfg, "rms_norm_eps", 1e-6)))
    theta = float(hparam(cfg, "rope_theta", 10000.0))
    x = f("embedding_model.llm_text_embeddings.weight")[ids]
    T, C = x.shape
    D, rep = C // H, H // Hkv
    ang = np.arange(T)[:, None] * theta ** (-np.arange(0, D, 2) / D)[None]
    cos, sin = np.cos(np.concatenate([ang, ang], 1))[:, None], np.sin(np.concatenate([ang, ang], 1))[:, None]
    rope = lambda q: q * cos + np.concatenate([-q[..., D // 2:], q[..., :D // 2]], -1) * sin
    for p in prefixes:
        h = rms(x, f(p + ".attention_norm.weight"), eps)
        if p + ".attention.wqkv.weight" in t:
            q, k, v = (h @ m.astype(np.float64).T for m in split_wqkv(t[p + ".attention.wqkv.weight"], H, Hkv, D))
            q, k, v = q.reshape(T, H, D), k.reshape(T, Hkv, D), v.reshape(T, Hkv, D)
            if not nemotron:
                q, k = rope(q), rope(k)
            y = np.zeros((T, H, D))
            for hh in range(H):
                s = q[:, hh] @ k[:, hh // rep].T / np.sqrt(D)
                s[np.triu_indices(T, 1)] = -np.inf
                s = np.exp(s - s.max(1, keepdims=True))
                y[:, hh] = (s / s.sum(1, keepdims=True)) @ v[:, hh // rep]
            x = x + y.reshape(T, C) @ f(p + ".attention.wo.weight").T
        else:
            G = Hkv * D
            z = h @ f(p + ".attention.wvkqgdt.weight").T  # [v | k | q | g | dt]
            xc, g, dt = z[:, :2 * G + H * D], z[:, 2 * G + H * D:2 * G + 2 * H * D], z[:, -H:]
            cw, cb = f(p + ".attention.conv1d.weight")[:, 0], f(p + ".attention.conv1d.bias")
            K = cw.shape[1]
            padded = np.concatenate([np.zeros((K - 1, xc.shape[1])), xc])
            xc = silu(cb + sum(cw[:, j] * padded[j:j + T] for j in range(K)))
            v, k, q = xc[:, :G].reshape(T, Hkv, D), xc[:, G:2 * G].reshape(T, Hkv, D), xc[:, 2 * G:].reshape(T, H, D)
            dt = np.logaddexp(0, dt + f(p + ".attention.dt_bias"))
            A = -np.exp(f(p + ".attention.A_log_bias"))
            S = np.zeros((H, D, D))
            y = np.zeros((T, H, D))
            for s in range(T):
                for hh in range(H):
                    S[hh] = np.exp(dt[s, hh] * A[hh]) * S[hh] + dt[s, hh] * np.outer(v[s, hh // rep], k[s, hh // rep])
                    y[s, hh] = S[hh] @ q[s, hh]
            gate, w = silu(g).reshape(T, H, D), f(p + ".attention.g_norm_swish_gate.weight")
            y = rms(y * gate, w, eps) if nemotron else rms(y, w, eps) * gate
            x = x + y.reshape(T, C) @ f(p + ".attention.o_proj.weight").T
        h = rms(x, f(p + ".ffn_norm.weight"), eps)
        w1, w2, w3 = (f(p + f".feed_forward.w{i}.weight") for i in (1, 2, 3))
        if nemotron:
            F2 = 3 * w1.shape[0] // 2
            u = np.maximum(h @ np.concatenate([w1, w3])[:F2].T, 0)
            x = x + (u * u) @ np.concatenate([w2, w2], 1)[:, :F2].T
        else:
            x = x + (silu(h @ w1.T) * (h @ w3.T)) @ w2.T
    return rms(x, f("language_model.model.norm.weight"), eps) @ f("language_model.output.weight").T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("ids", help="comma-separated token ids")
    ap.add_argument("--as", dest="sem", choices=("mmm", "nemotron_h"), required=True)
    ap.add_argument("--mmm-dump", help="mmm forward --dump output to compare with (--as mmm)")
    ap.add_argument("--llama", help="logits.c output to compare with (--as nemotron_h)")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest |difference| / largest |logit| accepted")
    a = ap.parse_args()
    t, cfg = load_model(a.model_dir)
    ids = [int(i) for i in a.ids.split(",")]
    ref = forward(t, cfg, ids, a.sem == "nemotron_h")
    got = mmm_logits(a.mmm_dump) if a.sem == "mmm" else np.fromfile(a.llama, "<f4").reshape(ref.shape)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    who = "mmm" if a.sem == "mmm" else "llama.cpp"
    print(f"{os.path.basename(os.path.normpath(a.model_dir))}: {who} against a float64 reference of {a.sem}'s semantics: "
          f"max |difference| {np.abs(got - ref).max():.3g} (relative {rel:.2g})")
    sys.exit(0 if rel <= a.tol else 1)


if __name__ == "__main__":
    main()
