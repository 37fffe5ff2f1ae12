#!/usr/bin/python3
"""Seeding against upstream mmMamba: the students `mmm seed --init KIND` wrote, tensor by tensor,
against the mixers upstream's own Mamba2_Attention builds from the same teacher.

For each init, upstream's Mamba2_Attention (src/model/linear_attention/mamba2.py of a checkout of
github.com/hustvl/mmMamba given by --upstream) is built on every attention layer of the teacher
that the student turned into mamba2, with inherit_qkv = (KIND != scratch), mimic_init =
(KIND == mimic) and configs/model/distill_mmMamba.yaml's other options, --draws times under
different torch seeds. A tensor that comes out the same in every draw is deterministic under that
init: mmm's must be equal to it. One that varies is drawn from torch's RNG, which mmm does not
reproduce (docs/design.md §4): mmm's values, pooled over the layers and the students given for
that init, are compared with upstream's pooled draws by a two-sample Kolmogorov-Smirnov test
(alpha 1e-3), and with 256 values or more, by their largest magnitude (within 10 %).

The modules load as in check_upstream_student.py (beside this file), which says what it replaces
when upstream's CUDA extensions are not installed.

usage (repository root; the students in f32 so that inherited weights compare exactly):
  for k in mimic inherit scratch; do for s in 1 2 3 4; do
    mmm seed --teacher T --out S.$k.$s --init $k --seed $s --save-dtype f32; done; done
  python3 tools/reference/check_upstream_seed.py --upstream PATH/TO/mmMamba --teacher T \\
      --student mimic S.mimic.1 ... --student scratch S.scratch.4 [--draws 8]
Exit status 0 when every tensor agrees.
"""
import argparse
import importlib
import json
import math
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_upstream_student as cus  # noqa: E402 (beside this file)

ALPHA = 1e-3
# the student's tensors of one mamba2 layer, under "PREFIX.attention."; v k q g dt are wvkqgdt's rows
FILE_TENSORS = ("conv1d.weight", "conv1d.bias", "dt_bias", "A_log_bias", "g_norm_swish_gate.weight", "o_proj.weight")


def load_student(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                if t.dtype != torch.float32:
                    raise SystemExit(f"{model_dir}: {key} is {t.dtype}; write the student with --save-dtype f32")
                weights[key] = t
    return cfg, weights


def mamba_layers(cfg, model):
    """(prefix, upstream attention module, layer index) of every layer the student made mamba2."""
    out = []
    for key, layers, prefix in (("embedding_config", model.embedding_model.encoder, "embedding_model.encoder."),
                                ("llm_config", model.language_model.model.layers, "language_model.model.layers.")):
        kinds = cfg[key].get("layers_block_type") or []
        out += [(f"{prefix}{i}.attention.", layer.attention, i) for i, layer in enumerate(layers)
                if i < len(kinds) and kinds[i] == "mamba2"]
    return out


def upstream_tensors(mamba_mod, base, layer_idx, kind):
    mixer = mamba_mod.Mamba2_Attention(
        base_attn=base, layer_idx=layer_idx, train_attention=False, remove_base_attn=True, attention_type="mamba2",
        use_D=False, use_qknorm=False, use_conv=True, use_gnorm=True, use_A=True,
        inherit_qkv=kind != "scratch", mimic_init=kind == "mimic", stage1=False, stage2=True)
    t = {"v": mixer.v_proj.weight, "k": mixer.k_proj.weight, "q": mixer.q_proj.weight, "g": mixer.g_proj.weight,
         "dt": mixer.in_proj.weight, "conv1d.weight": mixer.conv1d.weight, "conv1d.bias": mixer.conv1d.bias,
         "dt_bias": mixer.dt_bias, "A_log_bias": mixer.A_log_bias, "g_norm_swish_gate.weight": mixer.g_norm.weight,
         "o_proj.weight": mixer.o_proj.weight}
    return {name: w.detach().float().cpu().clone() for name, w in t.items()}


def student_tensors(weights, prefix, base):
    v, k, q, g, dt = cus.split_wvkqgdt(weights[prefix + "wvkqgdt.weight"], base.num_heads,
                                       base.num_key_value_heads, base.head_dim)
    t = {"v": v, "k": k, "q": q, "g": g, "dt": dt}
    t.update({name: weights[prefix + name] for name in FILE_TENSORS})
    return t


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov D = max |F_a - F_b| over the pooled values."""
    a, b = torch.sort(a.double().flatten())[0], torch.sort(b.double().flatten())[0]
    at = torch.cat([a, b])
    fa = torch.searchsorted(a, at, right=True).double() / len(a)
    fb = torch.searchsorted(b, at, right=True).double() / len(b)
    return (fa - fb).abs().max().item()


def check_kind(kind, student_dirs, model, mamba_mod, draws):
    """Prints one line per tensor; returns whether all agree."""
    students = [load_student(d) for d in student_dirs]
    layers = mamba_layers(students[0][0], model)
    if not layers:
        print(f"FAIL {kind}: {student_dirs[0]} has no mamba2 layer")
        return False
    for d, (cfg, _) in zip(student_dirs, students):
        if [p for p, _, _ in mamba_layers(cfg, model)] != [p for p, _, _ in layers]:
            raise SystemExit(f"{d}: its mamba2 layers are not those of {student_dirs[0]}")
    up = []  # up[draw][layer] = {name: tensor}
    for d in range(draws):
        torch.manual_seed(1000 + d)
        up.append([upstream_tensors(mamba_mod, base, i, kind) for _, base, i in layers])
    ok = True
    for name in up[0][0]:
        fixed = all(torch.equal(up[d][j][name], up[0][j][name]) for d in range(draws) for j in range(len(layers)))
        if fixed:
            worst = 0.0
            for _, weights in students:
                for j, (prefix, base, _) in enumerate(layers):
                    got, want = student_tensors(weights, prefix, base)[name], up[0][j][name]
                    worst = max(worst, math.inf if got.shape != want.shape else (got - want).abs().max().item())
            good = worst == 0
            print(f"{'ok' if good else 'FAIL'} {kind}: {name} is deterministic upstream"
                  f"{'' if good else f'; mmm differs by up to {worst:.3g}'}")
        else:
            want = torch.cat([up[d][j][name].flatten() for d in range(draws) for j in range(len(layers))])
            got = torch.cat([student_tensors(w, prefix, base)[name].flatten()
                             for _, w in students for prefix, base, _ in layers])
            D = ks_statistic(got, want)
            crit = math.sqrt(-0.5 * math.log(ALPHA / 2)) * math.sqrt((len(got) + len(want)) / (len(got) * len(want)))
            mg, mw = got.abs().max().item(), want.abs().max().item()
            good = D <= crit and (len(got) < 256 or abs(mg / mw - 1) <= 0.1)
            print(f"{'ok' if good else 'FAIL'} {kind}: {name} is random upstream; KS D = {D:.3f} (critical {crit:.3f}), "
                  f"max |w| mmm {mg:.4g} / upstream {mw:.4g}, mean {got.mean().item():.3g} / {want.mean().item():.3g} "
                  f"({len(got)} / {len(want)} values)")
        ok &= good
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="checkout of github.com/hustvl/mmMamba")
    ap.add_argument("--teacher", required=True, help="the teacher directory the students were seeded from")
    ap.add_argument("--student", nargs=2, action="append", required=True, metavar=("KIND", "DIR"),
                    help="mimic, inherit or scratch, and a student `mmm seed --init KIND --save-dtype f32` wrote")
    ap.add_argument("--draws", type=int, default=8, help="upstream mixers built per layer and init")
    args = ap.parse_args()
    if args.draws < 2:
        raise SystemExit("--draws: at least 2, to tell what upstream draws from what it fixes")
    by_kind = {}
    for kind, d in args.student:
        if kind not in ("mimic", "inherit", "scratch"):
            raise SystemExit(f"--student {kind}: the init is mimic, inherit or scratch")
        by_kind.setdefault(kind, []).append(d)
    for n in cus.install_upstream(os.path.abspath(args.upstream)):
        print(f"note: {n}")
    model = cus.build(args.teacher, "cpu")[0]  # the teacher has no mamba2 layer: all its attention stays
    mamba_mod = importlib.import_module("src.model.linear_attention.mamba2")
    results = [check_kind(kind, dirs, model, mamba_mod, args.draws) for kind, dirs in by_kind.items()]
    print(f"{sum(results)} of {len(results)} inits agree with upstream")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
