#!/usr/bin/python3
"""Golden files for mmm's mmMamba students, from the independent reference hovle_reference.py.

Regenerate (deterministic: fixed seeds, the same bytes every run), from the repository root:

    /usr/bin/python3 tools/reference/make_student_goldens.py

It writes tests/data/student/<case>/ with the file set of make_teacher_goldens.py (see there):
config.json (with layers_block_type in embedding_config and llm_config), model.safetensors,
inputs.safetensors, expected.safetensors (float64 computation of the fp32 weights, stored F32).
A "mamba2" layer holds, instead of wqkv / wo (docs/design.md §3, n heads, n_kv groups, P = N =
head_dim, D hidden):
  attention.wvkqgdt.weight             (2·n_kv·P + 2·n·P + n, D), rows [v | k | q | g | dt]
  attention.conv1d.weight              (2·n_kv·P + n·P, 1, 2); [:, 0, 1] is the current token's
                                       tap, [:, 0, 0] the previous token's (zero before t = 0)
  attention.conv1d.bias                (2·n_kv·P + n·P)
  attention.dt_bias, attention.A_log_bias    (n)
  attention.g_norm_swish_gate.weight   (P), per-head RMSNorm of y, eps 1e-5, before the SiLU gate
  attention.o_proj.weight              (D, n·P)
Mixer weights are random but shaped like a seeded student: conv current tap 1 + 0.2·noise,
previous tap 0.3·noise, bias 0.05·noise; dt_bias = softplus⁻¹(dt0), dt0 log-uniform in
[1e-3, 1e-1]; A_log_bias uniform in [−0.5, 1.5]; gate-norm weight uniform in [0.8, 1.2];
wvkqgdt (dt rows included, so dt varies per token) and o_proj 0.1·noise.
Cases:
  linear_image  the teacher's one_image shape and inputs (hidden 32, 4 heads / 2 kv, E = L = 2,
                one image of 2 tiles), every layer mamba2, T = 34
  hybrid_text   the two_images_resized_grid shape (8 heads / 2 kv, head_dim 4, normalized
                encoder output), layers_block_type ["mha", "mamba2"] in both stacks, text only,
                T = 40
  linear_long   hidden 16, 2 heads / 1 kv, head_dim 8, E = L = 1, vocab 40, all mamba2, text
                only, T = 300 (two chunks of 128 and a remainder); its expected file keeps only
                logits, hidden_states, loss and the grads
Then it checks: a float32 run agrees with the float64 logits; every mixer's step-by-step
recurrence matches an explicit T×T form with a hand-written conv; central finite differences in
float64 on conv weight, conv bias, dt_bias, A_log_bias, the gate-norm weight and wvkqgdt; and an
all-"mha" layers_block_type reproduces tests/data/teacher exactly.
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hovle_reference as ref  # noqa: E402
import make_teacher_goldens as teacher  # noqa: E402
import st_io  # noqa: E402

OUT = os.path.join("tests", "data", "student")
TEACHER = os.path.join("tests", "data", "teacher")
MIXER = ("wvkqgdt.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log_bias",
         "g_norm_swish_gate.weight", "o_proj.weight")


def with_blocks(cfg_dict, emb_blocks, llm_blocks):
    cfg = copy.deepcopy(cfg_dict)
    cfg["embedding_config"]["layers_block_type"] = list(emb_blocks)
    cfg["llm_config"]["layers_block_type"] = list(llm_blocks)
    return cfg


def tiny_config():
    """hidden 16, 2 heads / 1 kv, E = L = 1, LM vocab 40 (35 text rows + 5 specials)."""
    # chat()'s system turn holds the id 37, so <IMG_CONTEXT> must sit elsewhere
    special = {"<img>": 35, "</img>": 36, "<|im_start|>": 37, "<|im_end|>": 38,
               "<IMG_CONTEXT>": 39}
    cfg = teacher.config_dict(2, 1, 8, False, special)
    for stack in (cfg["embedding_config"], cfg["llm_config"]):
        stack.update(hidden_size=16, num_hidden_layers=1, intermediate_size=24)
    cfg["embedding_config"].update(llm_hidden_size=16, llm_vocab_size=35)
    cfg["llm_config"]["vocab_size"] = 40
    return cfg, special


def softplus_inverse(y):
    return y + torch.log(-torch.expm1(-y))


def mixer_weight(name, shape, g):
    """A seeded-student-like random value for one Mamba-2 mixer tensor."""
    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    def normal(std):
        return std * torch.randn(shape, generator=g, dtype=torch.float64)

    if name.endswith("conv1d.weight"):
        w = normal(0.3)
        w[:, 0, 1] = 1.0 + 0.2 * torch.randn(shape[0], generator=g, dtype=torch.float64)
    elif name.endswith("conv1d.bias"):
        w = normal(0.05)
    elif name.endswith("dt_bias"):
        w = softplus_inverse(torch.exp(uniform(math.log(1e-3), math.log(1e-1))))
    elif name.endswith("A_log_bias"):
        w = uniform(-0.5, 1.5)
    elif name.endswith("g_norm_swish_gate.weight"):
        w = uniform(0.8, 1.2)
    else:  # wvkqgdt, o_proj
        w = normal(0.1)
    return w.to(torch.float32)


def random_weights(model, seed):
    """The teacher's recipe outside the mixers, mixer_weight inside them."""
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name, p in teacher.drawing_order(model):
        if ".attention." in name and name.endswith(MIXER):
            weights[name] = mixer_weight(name, p.shape, g)
            continue
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight"):
            weights[name] = 1.0 + 0.1 * noise
        else:
            key = next(k for k in teacher.STD if name.endswith(k))
            weights[name] = teacher.STD[key] * noise
    return weights


def mixer_quadratic(m, h):
    """The mixer as an explicit T×T sum with the conv written out: an independent check of
    Mamba2Mixer.forward's nn.Conv1d convention and its recurrence (float64)."""
    c = m.c
    T, n, d, rep = h.shape[0], c.n_heads, c.head_dim, c.n_heads // c.n_kv
    z = h @ m.wvkqgdt.weight.t()
    u = z[:, :m.conv_channels]
    w = m.conv1d.weight[:, 0]
    prev = torch.cat([torch.zeros_like(u[:1]), u[:-1]])
    u = F.silu(w[:, 1] * u + w[:, 0] * prev + m.conv1d.bias)
    g = z[:, m.conv_channels:m.conv_channels + n * d].reshape(T, n, d)
    dt = F.softplus(z[:, -n:] + m.dt_bias)
    A = -torch.exp(m.A_log_bias)
    cum = torch.cumsum(dt * A, dim=0)  # (T, n)
    y = torch.zeros(T, n, d, dtype=h.dtype)
    for i in range(n):
        grp = i // rep
        x = u[:, grp * d:(grp + 1) * d]
        B = u[:, (c.n_kv + grp) * d:(c.n_kv + grp + 1) * d]
        C = u[:, (2 * c.n_kv + i) * d:(2 * c.n_kv + i + 1) * d]
        seg = cum[:, i, None] - cum[None, :, i]  # sum of dt·A over (s, t]
        L = torch.exp(seg.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf))
        y[:, i] = (L * (C @ B.t()) * dt[None, :, i]) @ x
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * m.g_norm_swish_gate.weight
    y = y * F.silu(g)
    return y.reshape(T, n * d) @ m.o_proj.weight.t()


def check_mixers(model, seed):
    """Every mamba2 mixer against mixer_quadratic on random inputs, float64."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, ref.Mamba2Mixer):
                for T in (1, 7, 150):
                    h = torch.randn(T, mod.c.hidden, generator=g, dtype=torch.float64)
                    a, b = mod(h), mixer_quadratic(mod, h)
                    worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
    assert worst < 1e-12, f"recurrence vs T×T form: rel {worst:.2e}"
    return worst


def finite_differences(model, ids, labels, pixels, grads, names, count=4, eps=1e-6):
    """Central differences in float64 on `count` entries of each named parameter; the error is
    relative to the larger of |fd| and a hundredth of the parameter's largest gradient."""
    model.to(torch.float64)
    params = dict(model.named_parameters())
    worst = 0.0
    with torch.no_grad():
        for name in names:
            flat, grad = params[name].data.view(-1), grads[name].view(-1)
            scale = 1e-2 * grad.abs().max().item()
            for i in torch.linspace(0, flat.numel() - 1, count).long().tolist():
                old = flat[i].item()
                flat[i] = old + eps
                up = teacher.run(model, ids, labels, pixels, torch.float64)["loss"].item()
                flat[i] = old - eps
                down = teacher.run(model, ids, labels, pixels, torch.float64)["loss"].item()
                flat[i] = old
                fd = (up - down) / (2 * eps)
                err = abs(fd - grad[i].item()) / max(abs(fd), scale, 1e-12)
                assert err < 1e-5, f"{name}[{i}]: fd {fd:.8e} vs grad {grad[i].item():.8e}"
                worst = max(worst, err)
    return worst


def make_case(name, cfg_dict, ids, labels, tiles, seed, fd_layer, small=False):
    directory = os.path.join(OUT, name)
    os.makedirs(directory, exist_ok=True)
    cfg = ref.HoVLEConfig(cfg_dict)
    model = ref.HoVLE(cfg)
    weights = random_weights(model, seed)
    model.load_state_dict(weights)
    ids_t = torch.tensor(ids, dtype=torch.int64)
    labels_t = torch.tensor(labels, dtype=torch.int64)
    pixels = None
    if tiles:
        g = torch.Generator().manual_seed(seed + 1)
        pixels = torch.randn(tiles, cfg.num_channels, cfg.tile, cfg.tile, generator=g)

    out = teacher.run(model, ids_t, labels_t, pixels, torch.float64)
    out["loss"].backward()
    grads = {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for k, p in model.named_parameters()}
    keys = ("logits",) if small else ("logits", "input_embeds", "encoder_output")
    expected = {k: out[k] for k in keys}
    expected["hidden_states"] = torch.stack(out["hidden_states"])
    expected["loss"] = out["loss"].reshape(1)
    if pixels is not None:
        expected["image_embeds"] = out["image_embeds"]
    for pname, g in grads.items():
        expected["grad." + pname] = g
    expected = {k: v.detach().to(torch.float32).numpy() for k, v in expected.items()}
    inputs = {"input_ids": np.array(ids, dtype=np.int32),
              "labels": np.array(labels, dtype=np.int32)}
    if pixels is not None:
        inputs["pixel_values"] = pixels.numpy()

    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(json.dumps(cfg_dict, indent=2) + "\n")
    meta = {"format": "pt"}
    files = {"model.safetensors": {k: v.numpy() for k, v in weights.items()},
             "inputs.safetensors": inputs, "expected.safetensors": expected}
    for fname, tensors in files.items():
        st_io.write(os.path.join(directory, fname), tensors, meta)
        back, _ = st_io.read(os.path.join(directory, fname))
        assert back.keys() == tensors.keys()
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k

    out32 = teacher.run(model, ids_t, labels_t, pixels, torch.float32)
    l32, l64 = out32["logits"].detach().numpy(), expected["logits"]
    rel32 = np.abs(l32 - l64).max() / np.abs(l64).max()
    assert rel32 < 1e-5, f"{name}: float32 logits differ by {rel32:.2e}"
    model.to(torch.float64)
    quad = check_mixers(model, seed)
    checked = [fd_layer + ".attention." + m for m in MIXER[:-1]]
    fd = finite_differences(model, ids_t, labels_t, pixels, grads, checked)

    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    print(f"{directory}: T={len(ids)} tiles={tiles} loss={expected['loss'][0]:.6f} "
          f"fp32-vs-fp64 logits rel={rel32:.1e} recurrence-vs-TxT rel={quad:.1e} "
          f"fd-grad rel={fd:.1e} {size} bytes")


def check_teacher_as_all_mha():
    """An explicit all-"mha" layers_block_type must give the teacher goldens bit for bit."""
    for case in sorted(os.listdir(TEACHER)):
        directory = os.path.join(TEACHER, case)
        with open(os.path.join(directory, "config.json")) as f:
            cfg_dict = json.load(f)
        n_emb = cfg_dict["embedding_config"]["num_hidden_layers"]
        n_llm = cfg_dict["llm_config"]["num_hidden_layers"]
        cfg_dict = with_blocks(cfg_dict, ["mha"] * n_emb, ["mha"] * n_llm)
        model = ref.HoVLE(ref.HoVLEConfig(cfg_dict))
        weights, _ = st_io.read(os.path.join(directory, "model.safetensors"))
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
        inputs, _ = st_io.read(os.path.join(directory, "inputs.safetensors"))
        expected, _ = st_io.read(os.path.join(directory, "expected.safetensors"))
        pixels = inputs.get("pixel_values")
        pixels = None if pixels is None else torch.from_numpy(pixels.copy())
        out = teacher.run(model, torch.from_numpy(inputs["input_ids"].astype(np.int64)),
                          torch.from_numpy(inputs["labels"].astype(np.int64)), pixels,
                          torch.float64)
        out["loss"].backward()
        got = {"logits": out["logits"], "hidden_states": torch.stack(out["hidden_states"]),
               "loss": out["loss"].reshape(1)}
        got.update({"grad." + k: p.grad for k, p in model.named_parameters() if p.grad is not None})
        for k, v in got.items():
            assert np.array_equal(v.detach().to(torch.float32).numpy(), expected[k]), f"{case}: {k}"
    print(f"all-mha layers_block_type reproduces {TEACHER} exactly")


def main():
    torch.set_num_threads(1)  # bit-identical reruns
    special = teacher.SPECIAL_HIGH
    ids, labels = teacher.chat(special, [31, 8], [17, 42, 6], images=[2], tokens_per_tile=4)
    make_case("linear_image", with_blocks(teacher.config_dict(4, 2, 8, False, special),
                                          ["mamba2"] * 2, ["mamba2"] * 2),
              ids, labels, 2, 1234, "embedding_model.encoder.1")

    special = teacher.SPECIAL_MIXED
    ids, labels = teacher.chat(special, [31, 53, 8, 14, 2, 47, 19, 25, 44, 7, 30, 1, 16, 38],
                               [17, 42, 6, 33, 21, 10, 45, 27])
    make_case("hybrid_text", with_blocks(teacher.config_dict(8, 2, 12, True, special),
                                         ["mha", "mamba2"], ["mha", "mamba2"]),
              ids, labels, 0, 4321, "language_model.model.layers.1")

    cfg, special = tiny_config()
    g = torch.Generator().manual_seed(77)
    user = torch.randint(0, 35, (242,), generator=g).tolist()
    answer = torch.randint(0, 35, (40,), generator=g).tolist()
    ids, labels = teacher.chat(special, user, answer)
    make_case("linear_long", with_blocks(cfg, ["mamba2"], ["mamba2"]), ids, labels, 0, 999,
              "embedding_model.encoder.0", small=True)

    check_teacher_as_all_mha()


if __name__ == "__main__":
    main()
