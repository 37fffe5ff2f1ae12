"""PyTorch baseline for `mmm bench --sessions`: N sequences decoding together (batched decode).

The same random-weight models as baseline.py (HoVLE-2.6B dims, bf16), one step for a batch of N
sequences that all hold `context` tokens: the projections as one bf16 GEMM per layer for the batch,
attention with F.scaled_dot_product_attention over per-sequence bf16 KV caches (GQA), and the
Mamba-2 recurrent step with mamba_ssm's Triton `selective_state_update` (the kernel upstream's
Mamba2.step calls) when a checkout of state-spaces/mamba is given with --mamba-ssm (k and v
repeated to the 16 heads, as upstream mmMamba does), else the plain-tensor step of baseline.py.
Each step is captured in a CUDA graph and replayed: median ms of 30 replays. As many sequences
are admitted as the GPU's free memory holds (the teacher's KV caches stop it early).

usage: python3 baseline_serve.py --sessions 1,8,64 --contexts 8,32 [--mamba-ssm DIR] [--json FILE]
"""
import argparse
import importlib.util
import json
import os
import sys
import types

import torch
import torch.nn.functional as F

from baseline import (BF, DC, DEV, DZ, EPS, F32, FFN, GIB, HD, HEADS, HID, KVH, LAYERS, QKV, VOCAB, Model,
                      graph_ms, rope, rope_tables, uniform)

SSU = None  # mamba_ssm's selective_state_update, when loaded


def load_selective_state_update(root):
    """Imports mamba_ssm/ops/triton/selective_state_update.py from a checkout without running the
    package's __init__ (which needs its compiled CUDA extensions)."""
    for name in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(root, *name.split("."))]
        sys.modules[name] = pkg
    name = "mamba_ssm.ops.triton.selective_state_update"
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, *name.split(".")) + ".py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.selective_state_update


class Batch(Model):  # baseline.py's step over n rows; its own caches, states and mixers
    def __init__(self, attn, n, tmax, pos):
        self.n = n
        self.emb = uniform(VOCAB, HID, lo=-1, hi=1)
        self.lm_head = uniform(VOCAB, HID)
        self.fnorm = uniform(HID, lo=0.9, hi=1.1)
        self.ids = torch.arange(n, device=DEV) * 37 % VOCAB
        self.pos = torch.tensor([pos], device=DEV)
        self.tk = pos + 1
        self.cos, self.sin = rope_tables(pos)
        self.layers = []
        for l in range(LAYERS):
            L = dict(attn=attn[l], n1=uniform(HID, lo=0.9, hi=1.1), n2=uniform(HID, lo=0.9, hi=1.1),
                     w1=uniform(FFN, HID), w3=uniform(FFN, HID), w2=uniform(HID, FFN), wo=uniform(HID, HEADS * HD))
            if attn[l]:
                L.update(wqkv=uniform(QKV, HID), kc=uniform(n, KVH, tmax, HD, lo=-1, hi=1),
                         vc=uniform(n, KVH, tmax, HD, lo=-1, hi=1))
            else:
                L.update(wz=uniform(DZ, HID), conv_w=uniform(DC, 2, lo=-0.5, hi=0.5, dtype=F32),
                         conv_b=uniform(DC, lo=-0.1, hi=0.1, dtype=F32),
                         dt_bias=uniform(HEADS, lo=-4, hi=-2, dtype=F32),
                         A=uniform(HEADS, lo=-3, hi=-1, dtype=F32), gnorm=uniform(HD, lo=0.9, hi=1.1, dtype=F32),
                         ssm=uniform(n, HEADS, HD, HD, lo=-1, hi=1, dtype=F32),
                         D0=torch.zeros(HEADS, 1, device=DEV, dtype=F32).expand(-1, HD),
                         conv_state=uniform(n, DC, lo=-1, hi=1, dtype=F32))
            self.layers.append(L)

    def attention(self, L, h):
        G = HEADS // KVH
        qkv = (h @ L["wqkv"].T).view(self.n, KVH, G + 2, HD)
        q = rope(qkv[:, :, :G].reshape(self.n, HEADS, 1, HD), self.cos, self.sin)
        k = rope(qkv[:, :, G].reshape(self.n, KVH, 1, HD), self.cos, self.sin)
        L["kc"].index_copy_(2, self.pos, k)
        L["vc"].index_copy_(2, self.pos, qkv[:, :, G + 1].reshape(self.n, KVH, 1, HD))
        o = F.scaled_dot_product_attention(q, L["kc"][:, :, : self.tk], L["vc"][:, :, : self.tk], enable_gqa=True)
        return o.reshape(self.n, HEADS * HD) @ L["wo"].T

    def mamba(self, L, h):
        z = (h @ L["wz"].T).float()
        new = z[:, :DC]
        conv = F.silu(L["conv_w"][:, 0] * L["conv_state"] + L["conv_w"][:, 1] * new + L["conv_b"])
        L["conv_state"].copy_(new)
        rep = HEADS // KVH
        xs = conv[:, : KVH * HD].view(self.n, KVH, HD).repeat_interleave(rep, 1)
        bs = conv[:, KVH * HD: 2 * KVH * HD].view(self.n, KVH, HD).repeat_interleave(rep, 1)
        cs = conv[:, 2 * KVH * HD:].view(self.n, HEADS, HD)
        dt_raw = z[:, DC + HEADS * HD:]
        if SSU is not None:  # the head's dt, A and dt_bias tied across its dims (stride 0), as Mamba2.step;
            # D = 0 (mmMamba has no skip term; the kernel's launcher needs one)
            y = SSU(L["ssm"], xs, dt_raw[:, :, None].expand(-1, -1, HD),
                    L["A"][:, None, None].expand(-1, HD, HD), bs, cs, D=L["D0"],
                    dt_bias=L["dt_bias"][:, None].expand(-1, HD), dt_softplus=True)
        else:
            dt = F.softplus(dt_raw + L["dt_bias"])
            S = L["ssm"]
            S.mul_(torch.exp(dt * L["A"])[:, :, None, None]).add_((dt[:, :, None] * xs)[..., None] * bs[:, :, None, :])
            y = torch.einsum("bhpn,bhn->bhp", S, cs)
        g = z[:, DC: DC + HEADS * HD].view(self.n, HEADS, HD)
        y = F.rms_norm(y, (HD,), L["gnorm"], EPS) * F.silu(g)
        return y.reshape(self.n, HEADS * HD).to(BF) @ L["wo"].T


def admitted(attn, n, tmax):
    """As many of n sequences as the free memory holds beside the weights and 4 GiB of headroom."""
    kv = 2 * sum(attn) * KVH * tmax * HD * 2
    if kv == 0:
        return n
    free, _ = torch.cuda.mem_get_info()
    weights = (VOCAB * HID * 2 + LAYERS * (3 * FFN * HID + HEADS * HD * HID + max(QKV, DZ) * HID)) * 2
    return max(1, min(n, int((free - weights - 4 * GIB) // kv)))


def run(sessions, contexts):
    rows = []
    for name in ("teacher", "hybrid", "linear"):
        attn = [name == "teacher" or (name == "hybrid" and l % 4 == 0) for l in range(LAYERS)]
        for ck in contexts:
            ctx = ck * 1024
            alone = None
            for n_want in sessions:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                n = admitted(attn, n_want, ctx + 1)
                m = Batch(attn, n, ctx + 1, ctx)
                ms, out = graph_ms(m.step, reps=30)
                assert torch.isfinite(out.float()).all(), f"{name}: non-finite logits"
                tps = n / (ms * 1e-3)
                alone = tps if n == 1 else alone
                row = dict(kind="sessions", model=name, context=ctx, sessions=n_want, admitted=n, step_ms=ms,
                           tokens_per_s=tps, peak_alloc_gib=torch.cuda.max_memory_allocated() / GIB,
                           ssm="mamba_ssm selective_state_update" if SSU else "torch")
                print(f"| {name} | {ck}K | {n_want} | {n} | {ms:.3f} | {tps:.0f} | "
                      f"{tps / alone if alone else float('nan'):.1f}x | {row['peak_alloc_gib']:.2f} |", flush=True)
                rows.append(row)
                del out, m
    return rows


def main():
    global SSU
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,8,64")
    ap.add_argument("--contexts", default="8,32", help="in K tokens")
    ap.add_argument("--mamba-ssm", help="a checkout of state-spaces/mamba (its Triton selective_state_update)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.mamba_ssm:
        SSU = load_selective_state_update(args.mamba_ssm)
    print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, SSM step: "
          f"{'mamba_ssm selective_state_update (Triton)' if SSU else 'plain torch'}")
    print("| model | context | sessions | admitted | step ms | tokens/s | vs 1 | peak GiB |\n|---|---|---|---|---|---|---|---|")
    rows = run([int(s) for s in args.sessions.split(",")], [int(c) for c in args.contexts.split(",")])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
