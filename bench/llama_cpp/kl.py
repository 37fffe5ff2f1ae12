#!/usr/bin/env python3
"""What a lower weight precision does to the next-token distributions: KL(reference || other) per
position and top-1 agreement, from two sets of logits of the same token ids — `mmm forward --dump`
safetensors files or logits.c's raw T x V float32 (given --positions T). Positions before --first are
left out (those of a prefill that both computed the same way). Prints one line, or a JSON object
with --json."""
import argparse
import json

import numpy as np

from check_logits import mmm_logits


def load(path, positions):
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # a safetensors header
        return mmm_logits(path).astype(np.float64)
    if not positions:
        raise SystemExit(f"{path}: raw float32 logits need --positions")
    return np.fromfile(path, "<f4").astype(np.float64).reshape(positions, -1)


def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--positions", type=int, default=0, help="rows of raw float32 files")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ref = load(a.reference, a.positions)[a.first:]
    oth = load(a.other, a.positions)[a.first:]
    lp, lq = log_softmax(ref), log_softmax(oth)
    kl = (np.exp(lp) * (lp - lq)).sum(1)
    out = {"label": a.label, "positions": int(kl.size), "kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
           "top1_agree": float((ref.argmax(1) == oth.argmax(1)).mean())}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.label}: KL(ref || other) mean {out['kl_mean']:.3g}, max {out['kl_max']:.3g} over {kl.size} positions; "
              f"same top token at {out['top1_agree']:.1%}")


if __name__ == "__main__":
    main()
