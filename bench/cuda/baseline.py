"""PyTorch baseline for bench_cuda: the same shapes, random bf16 weights, batch 1.

decode   one token of teacher / hybrid / linear as a minimal PyTorch step (F.scaled_dot_product_attention
         over a bf16 KV cache, a plain-tensor Mamba-2 recurrent step), captured in a CUDA graph and
         replayed; median ms of 50 replays, peak allocated memory and device memory in use
prefill  causal F.scaled_dot_product_attention (GQA) TFLOP/s, and a chunked SSD written with einsum
         (the algorithm of mmm's kernels) in TFLOP/s, with the FLOPs counted as bench_cuda counts them

usage: python3 baseline.py [--json FILE] [--quick]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F

HID, LAYERS, HEADS, KVH, HD, FFN, VOCAB = 2048, 32, 16, 8, 128, 8192, 92544
QKV = (HEADS + 2 * KVH) * HD
DC = (2 * KVH + HEADS) * HD
DZ = DC + HEADS * HD + HEADS
EPS = 1e-5
DEV, BF, F32 = "cuda", torch.bfloat16, torch.float32
GIB = 1024.0 ** 3


def median_ms(fn, warm=5, reps=50):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
    ev[0].record()
    for i in range(reps):
        fn()
        ev[i + 1].record()
    torch.cuda.synchronize()
    return statistics.median(ev[i].elapsed_time(ev[i + 1]) for i in range(reps))


def graph_ms(step, reps=50):
    """step() warmed up on a side stream, captured in a CUDA graph, replayed: (median ms, its output)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        out = step()
    ms = median_ms(g.replay, reps=reps)
    del g
    return ms, out


def uniform(*shape, lo=-0.02, hi=0.02, dtype=BF):
    return torch.empty(*shape, device=DEV, dtype=dtype).uniform_(lo, hi)


def rope_tables(pos):
    inv = 1.0 / (1e6 ** (torch.arange(0, HD, 2, device=DEV, dtype=F32) / HD))
    ang = pos * inv
    return torch.cos(ang).to(BF), torch.sin(ang).to(BF)


def rope(x, cos, sin):  # rotate-half, x (..., HD)
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Model:
    def __init__(self, attn, tmax, pos):
        self.emb = uniform(VOCAB, HID, lo=-1, hi=1)
        self.lm_head = uniform(VOCAB, HID)
        self.fnorm = uniform(HID, lo=0.9, hi=1.1)
        self.ids = torch.tensor([4242], device=DEV)
        self.pos = torch.tensor([pos], device=DEV)
        self.tk = pos + 1
        self.cos, self.sin = rope_tables(pos)
        self.layers = []
        for l in range(LAYERS):
            L = dict(attn=attn[l], n1=uniform(HID, lo=0.9, hi=1.1), n2=uniform(HID, lo=0.9, hi=1.1),
                     w1=uniform(FFN, HID), w3=uniform(FFN, HID), w2=uniform(HID, FFN),
                     wo=uniform(HID, HEADS * HD))
            if attn[l]:
                L.update(wqkv=uniform(QKV, HID), kc=uniform(1, KVH, tmax, HD, lo=-1, hi=1),
                         vc=uniform(1, KVH, tmax, HD, lo=-1, hi=1))
            else:
                L.update(wz=uniform(DZ, HID), conv_w=uniform(DC, 2, lo=-0.5, hi=0.5, dtype=F32),
                         conv_b=uniform(DC, lo=-0.1, hi=0.1, dtype=F32),
                         dt_bias=uniform(HEADS, lo=-4, hi=-2, dtype=F32),
                         A=uniform(HEADS, lo=-3, hi=-1, dtype=F32), gnorm=uniform(HD, lo=0.9, hi=1.1, dtype=F32),
                         ssm=uniform(HEADS, HD, HD, lo=-1, hi=1, dtype=F32),
                         conv_state=uniform(DC, lo=-1, hi=1, dtype=F32))
            self.layers.append(L)

    def attention(self, L, h):
        G = HEADS // KVH
        qkv = (h @ L["wqkv"].T).view(KVH, G + 2, HD)
        q = rope(qkv[:, :G].reshape(1, HEADS, 1, HD), self.cos, self.sin)
        k = rope(qkv[:, G].reshape(1, KVH, 1, HD), self.cos, self.sin)
        L["kc"].index_copy_(2, self.pos, k)
        L["vc"].index_copy_(2, self.pos, qkv[:, G + 1].reshape(1, KVH, 1, HD))
        o = F.scaled_dot_product_attention(q, L["kc"][:, :, : self.tk], L["vc"][:, :, : self.tk],
                                           enable_gqa=True)
        return o.reshape(1, HEADS * HD) @ L["wo"].T

    def mamba(self, L, h):
        z = (h @ L["wz"].T).float()[0]
        new = z[:DC]
        conv = F.silu(L["conv_w"][:, 0] * L["conv_state"] + L["conv_w"][:, 1] * new + L["conv_b"])
        L["conv_state"].copy_(new)
        rep = HEADS // KVH
        xs = conv[: KVH * HD].view(KVH, HD).repeat_interleave(rep, 0)
        bs = conv[KVH * HD: 2 * KVH * HD].view(KVH, HD).repeat_interleave(rep, 0)
        cs = conv[2 * KVH * HD:].view(HEADS, HD)
        dt = F.softplus(z[DC + HEADS * HD:] + L["dt_bias"])
        S = L["ssm"]
        S.mul_(torch.exp(dt * L["A"])[:, None, None]).add_((dt[:, None] * xs)[:, :, None] * bs[:, None, :])
        y = torch.einsum("hpn,hn->hp", S, cs)
        g = z[DC: DC + HEADS * HD].view(HEADS, HD)
        y = F.rms_norm(y, (HD,), L["gnorm"], EPS) * F.silu(g)
        return y.reshape(1, HEADS * HD).to(BF) @ L["wo"].T

    def step(self):
        x = self.emb[self.ids]
        for L in self.layers:
            h = F.rms_norm(x, (HID,), L["n1"], EPS)
            x = x + (self.attention(L, h) if L["attn"] else self.mamba(L, h))
            h = F.rms_norm(x, (HID,), L["n2"], EPS)
            x = x + (F.silu(h @ L["w1"].T) * (h @ L["w3"].T)) @ L["w2"].T
        return F.rms_norm(x, (HID,), self.fnorm, EPS) @ self.lm_head.T


def decode_rows(quick, contexts=None):
    rows = []
    ctxs = contexts or ([1, 8] if quick else [1, 8, 32, 64, 103])
    for name in ("teacher", "hybrid", "linear"):
        for ck in ctxs:
            ctx = ck * 1024
            attn = [name == "teacher" or (name == "hybrid" and l % 4 == 0) for l in range(LAYERS)]
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            m = Model(attn, ctx + 1, ctx)
            ms, out = graph_ms(m.step)
            assert torch.isfinite(out.float()).all(), f"{name}: non-finite logits"
            free, total = torch.cuda.mem_get_info()
            row = dict(kind="decode", model=name, context=ctx, ms=ms,
                       peak_alloc_gib=torch.cuda.max_memory_allocated() / GIB,
                       in_use_gib=(total - free) / GIB)
            print(f"| {name} | {ck}K | {ms:.3f} | {row['peak_alloc_gib']:.2f} | {row['in_use_gib']:.2f} |",
                  flush=True)
            rows.append(row)
            del out, m
    return rows


def ssd_torch(x, B, C, dt, A, L=128):
    """Chunked SSD (x (T, G, P), B (T, G, N), C (T, H, N) bf16; dt (T, H), A (H) fp32)."""
    T, G, P = x.shape
    H, nc, rep = C.shape[1], T // L, C.shape[1] // G
    xc = x.repeat_interleave(rep, 1).view(nc, L, H, P)
    bc = B.repeat_interleave(rep, 1).view(nc, L, H, -1)
    cc = C.view(nc, L, H, -1)
    dtc = dt.view(nc, L, H)
    a = (dtc * A).cumsum(1)  # (nc, L, H)
    seg = a[:, :, None, :] - a[:, None, :, :]  # a_i − a_j, (nc, L, L, H)
    causal = torch.ones(L, L, device=DEV, dtype=torch.bool).tril()[None, :, :, None]
    decay = torch.where(causal, torch.exp(seg.clamp(max=0)), torch.zeros((), device=DEV))
    cb = torch.einsum("cihn,cjhn->cijh", cc, bc).float()
    m = (cb * decay * dtc[:, None, :, :]).to(BF)
    y = torch.einsum("cijh,cjhp->cihp", m, xc).float()
    w = (torch.exp(a[:, -1:, :] - a) * dtc).to(BF)  # (nc, L, H)
    states = torch.einsum("cjhn,cjh,cjhp->chpn", bc, w, xc).float()
    last = a[:, -1, :]  # (nc, H): log-decay of each chunk
    csum = torch.cumsum(last, 0)
    # state entering chunk c: Σ_{z<c} exp(Σ_{z<r<c} last_r)·states_z
    ex = csum[:, None, :] - last[:, None, :] - csum[None, :, :]  # (c, z, H)
    before = torch.ones(nc, nc, device=DEV, dtype=torch.bool).tril(-1)[:, :, None]
    dchunk = torch.where(before, torch.exp(ex.clamp(max=0)), torch.zeros((), device=DEV))
    s_in = torch.einsum("czh,zhpn->chpn", dchunk, states)
    y = y + torch.einsum("cihn,chpn,cih->cihp", cc.float(), s_in, torch.exp(a))
    return y.reshape(T, H, P).to(BF)


def check_ssd_torch():
    """The baseline must compute the same function: compare with the recurrence on a small case."""
    T, H, G, P, N = 200, 4, 2, 16, 8
    x, B = uniform(T, G, P, lo=-1, hi=1), uniform(T, G, N, lo=-1, hi=1)
    C, dt = uniform(T, H, N, lo=-1, hi=1), uniform(T, H, lo=0.01, hi=0.3, dtype=F32)
    A = uniform(H, lo=-2, hi=-0.5, dtype=F32)
    y = ssd_torch(x, B, C, dt, A, L=50).float()
    S = torch.zeros(H, P, N, device=DEV)
    ref = torch.empty(T, H, P, device=DEV)
    xr, br = x.float().repeat_interleave(H // G, 1), B.float().repeat_interleave(H // G, 1)
    for t in range(T):
        S = torch.exp(dt[t] * A)[:, None, None] * S + (dt[t][:, None] * xr[t])[:, :, None] * br[t][:, None, :]
        ref[t] = torch.einsum("hpn,hn->hp", S, C[t].float())
    err = ((y - ref).abs().max() / ref.abs().max()).item()
    assert err < 2e-2, f"einsum SSD differs from the recurrence: {err}"
    print(f"einsum SSD matches the recurrence (rel err {err:.1e})")


def prefill_rows(quick):
    rows = []
    for T in ([4096, 16384] if quick else [4096, 16384, 32768, 65536]):
        q = uniform(1, HEADS, T, HD, lo=-2, hi=2)
        k = uniform(1, KVH, T, HD, lo=-2, hi=2)
        v = uniform(1, KVH, T, HD, lo=-1, hi=1)
        ta = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                       warm=2, reps=5)
        fa = 4.0 * HD * HEADS * (T * (T + 1) / 2)
        del q, k, v
        x, B = uniform(T, KVH, HD, lo=-1, hi=1), uniform(T, KVH, HD, lo=-1, hi=1)
        C = uniform(T, HEADS, HD, lo=-1, hi=1)
        dt, A = uniform(T, HEADS, lo=0.001, hi=0.1, dtype=F32), uniform(HEADS, lo=-3, hi=-0.5, dtype=F32)
        with torch.no_grad():
            ts = median_ms(lambda: ssd_torch(x, B, C, dt, A), warm=2, reps=5)
        L = 128
        fs = T / L * HEADS * (L * L * (HD + HD) + 4 * L * HD * HD)
        del x, B, C, dt, A
        torch.cuda.empty_cache()
        row = dict(kind="prefill", T=T, attn_ms=ta, attn_tflops=fa / (ta * 1e-3) / 1e12, ssd_ms=ts,
                   ssd_tflops=fs / (ts * 1e-3) / 1e12)
        print(f"| {T} | {ta:.3f} | {row['attn_tflops']:.1f} | {ts:.3f} | {row['ssd_tflops']:.2f} |", flush=True)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--decode-contexts", help="decode only, at these contexts in K tokens (e.g. 1,103)")
    args = ap.parse_args()
    torch.manual_seed(0)
    name = torch.cuda.get_device_name()
    print(f"PyTorch {torch.__version__} on {name}")
    check_ssd_torch()
    print("| model | context | ms/token | peak allocated GiB | device in use GiB |\n|---|---:|---:|---:|---:|")
    rows = decode_rows(args.quick, [int(c) for c in args.decode_contexts.split(",")] if args.decode_contexts else None)
    if not args.decode_contexts:
        print("| T | SDPA ms | SDPA TFLOP/s | einsum SSD ms | SSD TFLOP/s |\n|---:|---:|---:|---:|---:|")
        rows += prefill_rows(args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=name, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
