"""PyTorch baseline of one training step at HoVLE-2.6B dimensions, to set our C/CUDA numbers against.

teacher CE      the teacher (every layer causal GQA attention) forward, cross-entropy on next tokens,
                backward, fused AdamW; fp32 master weights under bf16 autocast
hybrid stage 3  bf16 teacher forward without grad, then the student (attention kept in layers 0, 4, 8, ...,
                the Mamba-2 mixer of docs/design.md §3 elsewhere, chunked SSD in einsum form under autograd)
                forward, KL(teacher || student) at temperature 1 over all positions, backward, fused AdamW
                on all of the student's parameters
linear stage 3  the same with every layer converted

Random weights, batch 1, one sequence of T tokens; 2 warm-up steps, then the mean of N timed steps.
FLOPs are counted as bench_cuda counts them (matrix weights and causal attention products, SSD not counted).

usage: python3 baseline_train.py [--tokens T] [--steps N] [--quick] [--json FILE] [--peak-tflops P]
                                 [--dims hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544]
                                 [--chunk 64] [--device cuda|cpu]
"""
import argparse
import gc
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS, GIB = 1e-5, 1024.0 ** 3


def rms_norm(x, w):
    if hasattr(F, "rms_norm"):  # torch >= 2.4; the fallback keeps CPU smoke tests on older torch working
        return F.rms_norm(x, (x.shape[-1],), w, EPS)
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS).to(x.dtype) * w


def causal_attention(q, k, v):  # (1, H, T, D), k/v already repeated to H heads
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]  # torch < 2.0 (CPU smoke test only)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return s.softmax(-1).to(v.dtype) @ v


def ssd(x, B, C, dt, A, L):
    """Chunked SSD. x (T, G, P), B (T, G, N), C (T, H, N) in the compute dtype; dt (T, H), A (H) fp32.
    Products of fp32 decays with activations are cast back to x's dtype so bf16 stays bf16 (tensor cores)."""
    T, G, P = x.shape
    H, rep, cd = C.shape[1], C.shape[1] // G, x.dtype
    pad = -T % L  # dt = 0 on the padding: no input, no decay, the real outputs are untouched
    if pad:
        x, B, C, dt = (F.pad(t, (0, 0) * (t.dim() - 1) + (0, pad)) for t in (x, B, C, dt))
    nc = (T + pad) // L
    xc = x.repeat_interleave(rep, 1).view(nc, L, H, P)  # head i reads kv group i // rep
    bc = B.repeat_interleave(rep, 1).view(nc, L, H, -1)
    cc = C.view(nc, L, H, -1)
    dtc = dt.view(nc, L, H)
    a = (dtc * A).cumsum(1)  # log-decay from the chunk start, (nc, L, H)
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()[None, :, :, None]
    decay = torch.where(causal, torch.exp((a[:, :, None] - a[:, None]).clamp(max=0)), torch.zeros((), device=x.device))
    cb = torch.einsum("cihn,cjhn->cijh", cc, bc)
    y = torch.einsum("cijh,cjhp->cihp", (cb * decay * dtc[:, None]).to(cd), xc)  # within the chunk
    w = (torch.exp(a[:, -1:] - a) * dtc).to(cd)
    states = torch.einsum("cjhn,cjh,cjhp->chpn", bc, w, xc).float()  # each chunk's own contribution
    last = a[:, -1]  # (nc, H)
    csum = last.cumsum(0)
    # state entering chunk c: sum over z < c of exp(sum_{z<r<c} last_r) * states_z
    before = torch.ones(nc, nc, dtype=torch.bool, device=x.device).tril(-1)[:, :, None]
    ex = (csum[:, None] - last[:, None] - csum[None]).clamp(max=0)
    s_in = torch.einsum("czh,zhpn->chpn", torch.where(before, torch.exp(ex), torch.zeros((), device=x.device)), states)
    y = y + torch.einsum("cihn,chpn->cihp", (cc.float() * torch.exp(a)[..., None]).to(cd), s_in.to(cd))
    return y.reshape(-1, H, P)[:T]


def check_ssd(dev):
    """The baseline must compute the same function as mmm: compare with the recurrence (docs/design.md §3, step 5)."""
    T, H, G, P, N = 100, 4, 2, 8, 8
    g = torch.Generator(device="cpu").manual_seed(1)
    r = lambda *s, lo=-1.0, hi=1.0: (torch.rand(*s, generator=g) * (hi - lo) + lo).to(dev)
    x, B, C, dt, A = r(T, G, P), r(T, G, N), r(T, H, N), r(T, H, lo=0.01, hi=0.3), r(H, lo=-2, hi=-0.5)
    y = ssd(x, B, C, dt, A, L=32)
    S, ref = torch.zeros(H, P, N, device=dev), torch.empty(T, H, P, device=dev)
    xr, br = x.repeat_interleave(H // G, 1), B.repeat_interleave(H // G, 1)
    for t in range(T):
        S = torch.exp(dt[t] * A)[:, None, None] * S + (dt[t][:, None] * xr[t])[:, :, None] * br[t][:, None, :]
        ref[t] = torch.einsum("hpn,hn->hp", S, C[t])
    err = ((y - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-4, f"chunked SSD differs from the recurrence: {err}"
    print(f"chunked SSD matches the recurrence (fp32, T=100 over chunks of 32: rel err {err:.1e})")


class Layer(nn.Module):
    def __init__(s, d, attn, dev, dtype):
        super().__init__()
        D, H, K, P = d["hidden"], d["heads"], d["kv"], d["hd"]
        lin = lambda o, i: nn.Linear(i, o, bias=False, device=dev, dtype=dtype)
        par = lambda *sh, lo, hi: nn.Parameter(torch.empty(*sh, device=dev, dtype=dtype).uniform_(lo, hi))
        s.attn, s.d = attn, d
        s.n1, s.n2 = par(D, lo=0.9, hi=1.1), par(D, lo=0.9, hi=1.1)
        s.w1, s.w3, s.w2 = lin(d["ffn"], D), lin(d["ffn"], D), lin(D, d["ffn"])
        s.wo = lin(D, H * P)  # wo, or o_proj for a Mamba layer
        if attn:
            s.wqkv = lin((H + 2 * K) * P, D)
        else:
            dc = (2 * K + H) * P  # conv channels [v, k, q]
            s.wz = lin(dc + H * P + H, D)  # fused wvkqgdt: rows v | k | q | g | dt
            s.conv_w, s.conv_b = par(dc, 2, lo=-0.5, hi=0.5), par(dc, lo=-0.1, hi=0.1)  # taps (t-1, t)
            s.dt_bias, s.A_log = par(H, lo=-4, hi=-2), par(H, lo=0, hi=1)
            s.gnorm = par(P, lo=0.9, hi=1.1)

    def attention(s, h, cos, sin):
        T, (H, K, P) = h.shape[0], (s.d[k] for k in ("heads", "kv", "hd"))
        qkv = s.wqkv(h).view(T, K, H // K + 2, P)  # rows grouped per kv head: its queries, k, v
        q, k, v = qkv[:, :, :-2].reshape(T, H, P), qkv[:, :, -2], qkv[:, :, -1]
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        rope = lambda x: torch.cat((x[..., :P // 2] * cos - x[..., P // 2:] * sin,
                                    x[..., P // 2:] * cos + x[..., :P // 2] * sin), -1).transpose(0, 1)[None]
        rep = lambda x: x.repeat_interleave(H // K, 1)  # GQA; tiny next to the attention itself
        o = causal_attention(rope(q), rep(rope(k)), rep(v.transpose(0, 1)[None]))
        return s.wo(o[0].transpose(0, 1).reshape(T, H * P))

    def mamba(s, h):
        T, (H, K, P) = h.shape[0], (s.d[k] for k in ("heads", "kv", "hd"))
        dc = (2 * K + H) * P
        z = s.wz(h)
        u = z[:, :dc]
        prev = F.pad(u, (0, 0, 1, 0))[:T]  # causal conv1d, kernel 2: u_{t-1} (0 before the start)
        c = F.silu(prev * s.conv_w[:, 0] + u * s.conv_w[:, 1] + s.conv_b).to(z.dtype)
        x, B, C = c[:, :K * P].view(T, K, P), c[:, K * P:2 * K * P].view(T, K, P), c[:, 2 * K * P:].view(T, H, P)
        dt = F.softplus(z[:, dc + H * P:].float() + s.dt_bias.float())
        y = ssd(x, B, C, dt, -torch.exp(s.A_log.float()), s.d["chunk"])
        y = rms_norm(y.float(), s.gnorm.float()) * F.silu(z[:, dc:dc + H * P].float().view(T, H, P))
        return s.wo(y.reshape(T, H * P).to(z.dtype))

    def forward(s, x, cos, sin):
        h = rms_norm(x, s.n1)
        x = x + (s.attention(h, cos, sin) if s.attn else s.mamba(h))
        h = rms_norm(x, s.n2)
        return x + s.w2(F.silu(s.w1(h)) * s.w3(h))


class Model(nn.Module):
    def __init__(s, d, attn, dev, dtype=torch.float32):
        super().__init__()
        s.emb = nn.Embedding(d["vocab"], d["hidden"], device=dev, dtype=dtype)
        s.layers = nn.ModuleList(Layer(d, a, dev, dtype) for a in attn)
        s.norm = nn.Parameter(torch.ones(d["hidden"], device=dev, dtype=dtype))
        s.lm_head = nn.Linear(d["hidden"], d["vocab"], bias=False, device=dev, dtype=dtype)
        P = d["hd"]
        s.inv = 1.0 / (1e6 ** (torch.arange(0, P, 2, device=dev, dtype=torch.float32) / P))  # RoPE theta 1e6

    def forward(s, ids):
        ang = torch.arange(len(ids), device=ids.device, dtype=torch.float32)[:, None] * s.inv
        cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]  # (T, 1, P/2): broadcast over heads
        x = s.emb(ids)
        for layer in s.layers:
            x = layer(x, cos, sin)
        return s.lm_head(rms_norm(x, s.norm))


def parse_dims(text):
    d = {k: v for k, v in (kv.split("=") for kv in text.split(","))}
    d["layers"] = sum(int(n) for n in d["layers"].split("+"))  # embedding module + language model
    d = {k: int(v) for k, v in d.items()}
    d.setdefault("hd", d["hidden"] // d["heads"])
    return d


def forward_flops(d, attn, T):
    """2 x the matrix weights a token meets x T, plus 2·T²·H·D per attention layer (causal half of QK^T and PV)."""
    D, H, K, P = d["hidden"], d["heads"], d["kv"], d["hd"]
    mix = {True: (H + 2 * K) * P * D, False: ((2 * K + H) * P + H * P + H) * D}
    w = sum(mix[a] + D * H * P + 3 * D * d["ffn"] for a in attn) + d["vocab"] * D
    return 2.0 * w * T + sum(attn) * 2.0 * T * T * H * P, w


def measure(name, d, attn, teacher, ids, args, dev):
    T = len(ids) - 1
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    student = Model(d, attn, dev)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.05, **({"fused": True} if cuda else {}))
    amp = torch.autocast(dev.type, dtype=torch.bfloat16)

    def step():
        with amp:
            if teacher is not None:
                with torch.no_grad():
                    t_logp = F.log_softmax(teacher(ids[:-1]).float(), -1)
            logits = student(ids[:-1]).float()
            if teacher is None:
                loss = F.cross_entropy(logits, ids[1:])
            else:  # KL(teacher || student), temperature 1, mean over positions
                loss = F.kl_div(F.log_softmax(logits, -1), t_logp, log_target=True, reduction="batchmean")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    losses = [step() for _ in range(2)]
    sync()
    t0 = time.perf_counter()
    losses += [step() for _ in range(args.steps)]  # .item() syncs each step too, as a training loop would log
    sync()
    ms = (time.perf_counter() - t0) * 1e3 / args.steps
    assert all(math.isfinite(l) for l in losses), f"{name}: non-finite loss {losses}"
    f_student, w_student = forward_flops(d, attn, T)
    f_teacher = forward_flops(d, [True] * d["layers"], T)[0] if teacher is not None else 0.0
    flops = f_teacher + 2 * f_student + 2.0 * w_student * T  # every matrix of the student is trainable
    tflops = flops / (ms * 1e-3) / 1e12
    return dict(step=name, tokens=T, ms=ms, tokens_per_s=T / (ms * 1e-3), tflops=tflops,
                mfu=tflops / args.peak_tflops, peak_gib=torch.cuda.max_memory_allocated() / GIB if cuda else None,
                loss_first=losses[0], loss_last=losses[-1])


def run(name, d, attn, teacher, ids, args, dev):
    try:
        r = measure(name, d, attn, teacher, ids, args, dev)
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"| {name} | {r['tokens']} | {r['ms']:.1f} | {r['tokens_per_s']:.0f} | {r['tflops']:.1f} | "
              f"{100 * r['mfu']:.1f} % | {peak} | {r['loss_first']:.4f} -> {r['loss_last']:.4f} |", flush=True)
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError; record it, go on with the next
        if "out of memory" not in str(e):
            raise
        r = dict(step=name, tokens=len(ids) - 1, failed="out of memory")
        print(f"| {name} | {len(ids) - 1} | failed: out of memory | | | | | |", flush=True)
    gc.collect()  # the model and its AdamW state go before the next one is built
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 timed steps")
    ap.add_argument("--json")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="for MFU (H100 SXM bf16 dense: 989)")
    ap.add_argument("--dims", default="hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544")
    ap.add_argument("--chunk", type=int, default=64, help="SSD chunk length")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.quick:
        args.steps = 2
    d, dev = parse_dims(args.dims), torch.device(args.device)
    d["chunk"] = args.chunk
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} on {name}; dims {args.dims}, T={args.tokens}, {args.steps} timed steps")
    check_ssd(dev)
    ids = torch.randint(0, d["vocab"], (args.tokens + 1,), device=dev)  # inputs ids[:-1], targets ids[1:]
    n = d["layers"]
    print("| step | tokens | ms/step | tokens/s | TFLOP/s | MFU | peak GiB | loss first -> last |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|")
    rows = [run("teacher CE", d, [True] * n, None, ids, args, dev)]
    try:  # the frozen teacher of stage 3: bf16 copies of the weights, shared by both students
        teacher = Model(d, [True] * n, dev, torch.bfloat16).requires_grad_(False)
    except RuntimeError as e:
        if "out of memory" not in str(e):
            raise
        teacher = None
    for step, attn in (("hybrid stage 3", [l % 4 == 0 for l in range(n)]), ("linear stage 3", [False] * n)):
        if teacher is None:
            rows.append(dict(step=step, tokens=args.tokens, failed="out of memory (teacher)"))
            print(f"| {step} | {args.tokens} | failed: out of memory (teacher) | | | | | |")
        else:
            rows.append(run(step, d, attn, teacher, ids, args, dev))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(benchmark="train_step_torch", device=name, torch=torch.__version__, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
