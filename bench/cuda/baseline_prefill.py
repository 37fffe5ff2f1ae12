"""PyTorch baseline of whole-model prefill at HoVLE-2.6B dimensions, to set `mmm bench --device cuda
--dtype bf16`'s prefill times against.

For teacher, hybrid (attention in layers 0, 4, 8, ...) and linear: bf16 weights, inference mode, one
forward over T random tokens (causal SDPA for attention, the chunked SSD of baseline_train.py in einsum
form for the Mamba-2 mixer) and the logits of the last position only, as a prefill that samples the next
token needs. The whole prompt goes through in one piece (mmm steps through it 4096 tokens at a time into
its caches); this baseline keeps no caches. Median of 3 timed runs after one warm-up; peak allocated memory.

usage: python3 baseline_prefill.py [--contexts 1K,8K,32K,64K,103K] [--kinds teacher,hybrid,linear]
                                   [--dims ...] [--chunk 128] [--json FILE]
"""
import argparse
import gc
import json
import statistics

import torch

from baseline_train import GIB, Model, check_ssd, parse_dims, rms_norm


def parse_contexts(text):
    return [int(float(c[:-1]) * 1024) if c[-1] in "kK" else int(c) for c in text.split(",")]


@torch.inference_mode()
def prefill(model, ids):
    """The last position's logits after the whole prompt (Model.forward without the other T-1 rows of lm_head)."""
    ang = torch.arange(len(ids), device=ids.device, dtype=torch.float32)[:, None] * model.inv
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    x = model.emb(ids)
    for layer in model.layers:
        x = layer(x, cos, sin)
    return model.lm_head(rms_norm(x[-1:], model.norm))


def time_prefill(model, ids, reps=3):
    prefill(model, ids)  # warm-up: kernels load, the allocator grows
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        logits = prefill(model, ids)
        end.record()
        torch.cuda.synchronize()
        assert torch.isfinite(logits.float()).all(), "non-finite logits"
        times.append(start.elapsed_time(end))
    return statistics.median(times), torch.cuda.max_memory_allocated() / GIB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", default="1K,8K,32K,64K,103K")
    ap.add_argument("--kinds", default="teacher,hybrid,linear")
    ap.add_argument("--dims", default="hidden=2048,layers=8+24,heads=16,kv=8,ffn=8192,vocab=92544")
    ap.add_argument("--chunk", type=int, default=128, help="SSD chunk length")
    ap.add_argument("--json")
    args = ap.parse_args()
    d, dev = parse_dims(args.dims), torch.device("cuda")
    d["chunk"] = args.chunk
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(dev)
    print(f"PyTorch {torch.__version__} on {name}; dims {args.dims}; prefill, bf16 weights, median of 3")
    check_ssd(dev)
    n, rows = d["layers"], []
    layouts = {"teacher": [True] * n, "hybrid": [l % 4 == 0 for l in range(n)], "linear": [False] * n}
    print("| model | tokens | ms | tokens/s | peak GiB |\n|---|---:|---:|---:|---:|")
    for kind in args.kinds.split(","):
        model = Model(d, layouts[kind], dev, torch.bfloat16).requires_grad_(False)
        for T in parse_contexts(args.contexts):
            ids = torch.randint(0, d["vocab"], (T,), device=dev)
            try:
                ms, peak = time_prefill(model, ids)
                rows.append(dict(model=kind, tokens=T, ms=ms, tokens_per_s=T / (ms * 1e-3), peak_gib=peak))
                print(f"| {kind} | {T} | {ms:.1f} | {T / (ms * 1e-3):.0f} | {peak:.2f} |", flush=True)
            except RuntimeError as e:  # out of memory: record it, go on
                if "out of memory" not in str(e):
                    raise
                rows.append(dict(model=kind, tokens=T, failed="out of memory"))
                print(f"| {kind} | {T} | failed: out of memory | | |", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
        del model
        gc.collect()
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(benchmark="prefill_torch", device=name, torch=torch.__version__, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
