#!/usr/bin/env python3
"""How close llama.cpp's logits (logits.c's raw T × V float32) are to `mmm forward --dump`'s on
the same weights and token ids. Prints one line; exits 1 when the relative difference passes
--tol (the gap is then a mapping bug, not rounding)."""
import argparse
import json
import struct
import sys

import numpy as np


def mmm_logits(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        info = json.loads(f.read(n))["logits"]
        f.seek(8 + n + info["data_offsets"][0])
        return np.frombuffer(f.read(info["data_offsets"][1] - info["data_offsets"][0]), "<f4").reshape(info["shape"])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mmm_dump")
    ap.add_argument("llama_f32")
    ap.add_argument("--label", default="")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest |difference| / largest |logit| accepted")
    a = ap.parse_args()
    ours = mmm_logits(a.mmm_dump).astype(np.float64)
    theirs = np.fromfile(a.llama_f32, "<f4").astype(np.float64)
    if theirs.size != ours.size:
        sys.exit(f"{a.llama_f32}: {theirs.size} values, {a.mmm_dump} has {ours.shape}")
    theirs = theirs.reshape(ours.shape)
    diff = np.abs(ours - theirs).max()
    scale = np.abs(ours).max()
    same_top = int((ours.argmax(1) == theirs.argmax(1)).sum())
    rel = diff / scale
    print(f"{a.label}: {ours.shape[0]} positions x {ours.shape[1]} logits: max |mmm - llama.cpp| = {diff:.3g} "
          f"(largest |logit| {scale:.3g}, relative {rel:.2g}); same top token at {same_top}/{ours.shape[0]} positions")
    sys.exit(0 if rel <= a.tol else 1)


if __name__ == "__main__":
    main()
