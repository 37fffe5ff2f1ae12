"""Joins bench_cuda's and the PyTorch baseline's JSON into one markdown table with ratios.
usage: python3 report.py MMM_JSON TORCH_JSON"""
import json
import sys


def main():
    mmm, torch = (json.load(open(p)) for p in sys.argv[1:3])
    tr = {(r["model"], r["context"]): r for r in torch["rows"] if r["kind"] == "decode"}
    tp = {r["T"]: r for r in torch["rows"] if r["kind"] == "prefill"}
    print(f"device: {mmm['device']}; baseline: PyTorch {torch['torch']}")
    for r in mmm["rows"]:
        if r["kind"] == "ceiling":
            print(f"ceilings measured: copy {r['copy_gbs']:.0f} GB/s, cuBLAS bf16 GEMM {r['gemm_bf16_tflops']:.0f} TFLOP/s")
    print("\n| model | context | mmm ms/token | PyTorch ms/token | speed-up | mmm GiB (alloc / in use) "
          "| PyTorch GiB (peak alloc / in use) |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in mmm["rows"]:
        if r["kind"] != "decode":
            continue
        t = tr.get((r["model"], r["context"]))
        tms = f"{t['ms']:.3f}" if t else "-"
        ratio = f"{t['ms'] / r['ms']:.2f}x" if t else "-"
        tmem = f"{t['peak_alloc_gib']:.2f} / {t['in_use_gib']:.2f}" if t else "-"
        print(f"| {r['model']} | {r['context'] // 1024}K | {r['ms']:.3f} | {tms} | {ratio} | "
              f"{r['alloc_gib']:.2f} / {r['in_use_gib']:.2f} | {tmem} |")
    print("\n| T | mmm attention TFLOP/s | SDPA TFLOP/s | ratio | mmm SSD TFLOP/s | einsum SSD TFLOP/s | ratio |"
          "\n|---:|---:|---:|---:|---:|---:|---:|")
    for r in mmm["rows"]:
        if r["kind"] != "prefill":
            continue
        t = tp.get(r["T"])
        if not t:
            continue
        print(f"| {r['T']} | {r['attn_tflops']:.1f} | {t['attn_tflops']:.1f} | {r['attn_tflops'] / t['attn_tflops']:.2f} "
              f"| {r['ssd_tflops']:.2f} | {t['ssd_tflops']:.2f} | {r['ssd_tflops'] / t['ssd_tflops']:.2f} |")


if __name__ == "__main__":
    main()
