#!/usr/bin/python3
"""Round trip mmm -> files -> upstream mmMamba's PyTorch modules: the logits must agree.

A student that mmm wrote (config.json + safetensors, any --save-dtype) is loaded into the
modules of upstream's own repository (github.com/hustvl/mmMamba, a checkout given by --upstream):
HoVLE's InternVLChatModel (hovle/), whose attention layers named "mamba2" in layers_block_type
are replaced, as upstream's distillation does, by its Mamba2_Attention
(src/model/linear_attention/mamba2.py, with configs/model/distill_mmMamba.yaml's options). The
fused wvkqgdt rows [v | k | q | g | dt] are split back into the q/k/v/g/in_proj weights that
upstream's change_weight() concatenates. The model then runs the inputs of an `mmm forward
--dump` file (input_ids, and pixel_values when there are images) and its logits are compared
with the dump's.

The forward runs in float32 whatever the file dtype: BF16 / F16 weights are widened exactly, so
mmm (which computes in fp32 from the same rounded weights) must agree to fp32 rounding.

Upstream imports CUDA extension kernels that this machine may not have. When an import fails,
the script installs a reference version and says so:
  mamba_ssm mamba_chunk_scan_combined  the SSD recurrence in its explicit T x T form (float64)
  causal_conv1d causal_conv1d_fn       depthwise causal conv (F.conv1d, left padding), SiLU
  fla RMSNorm / ACT2FN                 per-row RMSNorm in fp32, SiLU (fla's package __init__
                                       registers models that recent transformers refuse)
  flash_attn, peft, omegaconf          names only (eager attention; no LoRA, no yaml configs)
  pdb.set_trace                        a no-op: HoVLE's embedding attention has a leftover breakpoint

usage (repository root; --case may repeat):
  python3 tools/reference/check_upstream_student.py --upstream PATH/TO/mmMamba \\
      --case MODEL_DIR DUMP.safetensors [--case ...] [--tol 1e-4] [--device cuda|cpu]
Exit status 0 when every case agrees.
"""
import argparse
import copy
import importlib
import importlib.machinery
import json
import os
import pdb
import sys
import types

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

# ---- reference kernels for the extension modules upstream imports ----

def ref_chunk_scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                   seq_idx=None, cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
                   return_final_states=False, return_varlen_states=False):
    """mamba_chunk_scan_combined's result without chunks: x (b, l, h, p), dt (b, l, h), A (h),
    B, C (b, l, g, n) shared by h/g heads each; y_t = sum_{s<=t} (C_t.B_s) exp(A sum_{s<r<=t} dt_r)
    dt_s x_s, in float64."""
    if seq_idx is not None or cu_seqlens is not None or initial_states is not None:
        raise NotImplementedError("reference chunk scan: one sequence from a zero state only")
    out_dtype = x.dtype
    x, dt, A, B, C = (t.double() for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.double()
    if dt_softplus:
        dt = F.softplus(dt)
    dt = dt.clamp(dt_limit[0], dt_limit[1])
    h = x.shape[2]
    B = B.repeat_interleave(h // B.shape[2], dim=2)
    C = C.repeat_interleave(h // C.shape[2], dim=2)
    cum = torch.cumsum(dt * A, dim=1)                                    # (b, l, h)
    seg = cum.unsqueeze(2) - cum.unsqueeze(1)                            # (b, t, s, h)
    T = x.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp(seg.masked_fill(~causal[None, :, :, None], float("-inf")))
    scores = torch.einsum("bthn,bshn->btsh", C, B) * decay * dt.unsqueeze(1)
    y = torch.einsum("btsh,bshp->bthp", scores, x)
    if D is not None:
        y = y + x * (D.double()[:, None] if D.dim() == 1 else D.double())
    if z is not None:
        y = y * F.silu(z.double())
    y = y.to(out_dtype)
    if not return_final_states:
        return y
    last = torch.exp(cum[:, -1:, :] - cum) * dt                          # (b, s, h)
    state = torch.einsum("bsh,bshp,bshn->bhpn", last, x, B)
    return y, state.to(out_dtype)


def ref_causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                         final_states_out=None, activation=None):
    """causal_conv1d_fn: x (b, d, l), weight (d, w): out_t = bias + sum_k w_k x_{t-w+1+k}."""
    if seq_idx is not None or initial_states is not None:
        raise NotImplementedError("reference causal conv: one sequence from a zero state only")
    d, w = weight.shape
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=w - 1, groups=d)[..., :x.shape[-1]]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    if return_final_states:
        return out, F.pad(x, (w - 1, 0))[..., -(w - 1):]
    return out


def not_here(name):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"{name} is not needed by this check and has no reference here")
    return fail


class RefRMSNorm(nn.Module):
    """fla.modules.RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the last dimension, in fp32."""

    def __init__(self, hidden_size, elementwise_affine=True, eps=1e-5, **kwargs):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size)) if elementwise_affine else None

    def forward(self, x, *args, **kwargs):
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.float()
        return y.to(x.dtype)


def module(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)  # transformers probes packages by their spec
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def package(name, path):
    """A package whose modules load from path, without running its __init__.py."""
    m = module(name)
    m.__path__ = [path]
    return m


def install_upstream(root):
    """Makes hovle.* and src.model.linear_attention.* importable from the checkout at root,
    with reference stand-ins for the extension modules that do not import. Returns notes."""
    notes = []
    sys.path.insert(0, root)
    importlib.import_module("transformers.modeling_utils")  # its availability probes see the real packages
    try:
        importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        notes.append("mamba_ssm: installed kernels")
    except Exception as e:  # noqa: BLE001 (any failure means: use the reference)
        for name in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton"):
            module(name)
        module("mamba_ssm.ops.triton.ssd_combined", mamba_chunk_scan_combined=ref_chunk_scan)
        notes.append(f"mamba_ssm: reference chunk scan ({type(e).__name__}: {e})")
    try:
        importlib.import_module("causal_conv1d")
        notes.append("causal_conv1d: installed kernels")
    except Exception as e:  # noqa: BLE001
        module("causal_conv1d", causal_conv1d_fn=ref_causal_conv1d_fn,
               causal_conv1d_update=not_here("causal_conv1d_update"))
        notes.append(f"causal_conv1d: reference conv ({type(e).__name__}: {e})")
    try:
        importlib.import_module("flash_attn")
    except ImportError:  # HoVLE's embedding module imports it unconditionally; eager attention is used here
        module("flash_attn", flash_attn_func=not_here("flash_attn_func"),
               flash_attn_varlen_func=not_here("flash_attn_varlen_func"))
        module("flash_attn.bert_padding", pad_input=not_here("pad_input"), index_first_axis=not_here("index_first_axis"),
               unpad_input=not_here("unpad_input"))
        notes.append("flash_attn: names only (the layers run their eager attention)")
    for name, attrs in (("peft", {"LoraConfig": not_here("LoraConfig"), "get_peft_model": not_here("get_peft_model")}),
                        ("omegaconf", {"OmegaConf": type("OmegaConf", (), {}), "DictConfig": type("DictConfig", (), {})})):
        try:
            importlib.import_module(name)
        except ImportError:
            module(name, **attrs)
            notes.append(f"{name}: names only")
    # fla's package __init__ pulls in all its models; the mixer needs only RMSNorm and ACT2FN
    package("fla", os.path.join(root, "fla"))
    try:
        importlib.import_module("fla.modules")
        importlib.import_module("fla.modules.activations")
        importlib.import_module("fla.ops.gla")
        notes.append("fla: upstream's modules (triton)")
    except Exception as e:  # noqa: BLE001
        for name in [n for n in sys.modules if n == "fla" or n.startswith("fla.")]:
            del sys.modules[name]
        module("fla")
        module("fla.ops")
        module("fla.ops.gla", chunk_gla=not_here("chunk_gla"), fused_chunk_gla=not_here("fused_chunk_gla"),
               fused_recurrent_gla=not_here("fused_recurrent_gla"))
        module("fla.modules", RMSNorm=RefRMSNorm, FusedRMSNormSwishGate=not_here("FusedRMSNormSwishGate"),
               ShortConvolution=not_here("ShortConvolution"))
        module("fla.modules.activations", ACT2FN={"swish": F.silu, "silu": F.silu})
        notes.append(f"fla: reference RMSNorm and SiLU ({type(e).__name__}: {str(e)[:120]})")
    # HoVLE's eager attention in the embedding module stops at a leftover `pdb.set_trace()`
    # (upstream ran flash attention there); let it pass through
    pdb.set_trace = lambda *args, **kwargs: None
    notes.append("pdb.set_trace: a no-op (hovle/modeling_holistic_embedding.py's eager attention calls it)")
    package("hovle", os.path.join(root, "hovle"))
    package("src", os.path.join(root, "src"))
    package("src.model", os.path.join(root, "src", "model"))
    package("src.model.linear_attention", os.path.join(root, "src", "model", "linear_attention"))
    return notes


# ---- the model ----

def teacher_config(student_cfg):
    """The HoVLE (InternVLChatConfig) form of a student's config.json: upstream builds the student
    by converting the teacher's layers, so the modules start from the teacher's classes."""
    cfg = copy.deepcopy(student_cfg)
    for key in ("model_type", "architectures", "auto_map", "torch_dtype", "_name_or_path", "transformers_version"):
        cfg.pop(key, None)
    emb, llm = cfg["embedding_config"], cfg["llm_config"]
    for sub in (emb, llm):
        for key in ("model_type", "architectures", "auto_map", "torch_dtype", "_name_or_path"):
            sub.pop(key, None)
        sub["attn_implementation"] = "eager"  # flash-attn is not needed for a check
    llm["architectures"] = ["InternLM2ForCausalLM"]
    llm.setdefault("bias", False)         # HoVLE's projections have no biases (InternLM2Config says True)
    emb.setdefault("use_ls", False)       # HolisticEmbedding refuses layer scale
    return cfg


def split_wvkqgdt(w, n_heads, n_kv, head_dim):
    """The inverse of upstream's change_weight(): rows [v | k | q | g | dt]."""
    kv, hd = n_kv * head_dim, n_heads * head_dim
    return torch.split(w, [kv, kv, hd, hd, n_heads], dim=0)


def build(model_dir, device):
    with open(os.path.join(model_dir, "config.json")) as f:
        student_cfg = json.load(f)
    chat_cfg_mod = importlib.import_module("hovle.configuration_internvl_chat")
    chat_mod = importlib.import_module("hovle.modeling_internvl_chat")
    mamba_mod = importlib.import_module("src.model.linear_attention.mamba2")
    config = chat_cfg_mod.InternVLChatConfig(**teacher_config(student_cfg))
    for c in (config, config.embedding_config, config.llm_config):
        if not hasattr(c, "use_return_dict"):  # transformers 5 dropped the property HoVLE's code reads
            type(c).use_return_dict = property(lambda self: getattr(self, "return_dict", True))
    # transformers 5 fills in rope_scaling as {"rope_type": "default", ...}; HoVLE's code wants the
    # file's (null, or {"type": ..., "factor": ...})
    for c, key in ((config.embedding_config, "embedding_config"), (config.llm_config, "llm_config")):
        c.rope_scaling = student_cfg[key].get("rope_scaling")
        c.rope_theta = student_cfg[key].get("rope_theta", 10000.0)
    model = chat_mod.InternVLChatModel(config).float()

    weights = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    stored = set()
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                stored.add(str(t.dtype).replace("torch.", ""))
                weights[key] = t.float()

    stacks = [("embedding_config", model.embedding_model.encoder, "embedding_model.encoder."),
              ("llm_config", model.language_model.model.layers, "language_model.model.layers.")]
    converted = []
    for stack_key, layers, prefix in stacks:
        kinds = student_cfg[stack_key].get("layers_block_type") or ["mha"] * len(layers)
        for i, layer in enumerate(layers):
            if kinds[i] != "mamba2":
                continue
            base = layer.attention
            mixer = mamba_mod.Mamba2_Attention(
                base_attn=base, layer_idx=i, train_attention=False, remove_base_attn=True, attention_type="mamba2",
                use_D=False, use_qknorm=False, use_conv=True, use_gnorm=True, use_A=True, inherit_qkv=True,
                mimic_init=True, stage1=False, stage2=True)
            p = f"{prefix}{i}.attention."
            v, k, q, g, dt = split_wvkqgdt(weights.pop(p + "wvkqgdt.weight"), mixer.num_heads,
                                           mixer.num_key_value_heads, mixer.head_dim)
            with torch.no_grad():
                for lin, w in ((mixer.v_proj, v), (mixer.k_proj, k), (mixer.q_proj, q), (mixer.g_proj, g),
                               (mixer.in_proj, dt)):
                    lin.weight.copy_(w)
                mixer.conv1d.weight.copy_(weights.pop(p + "conv1d.weight"))
                mixer.conv1d.bias.copy_(weights.pop(p + "conv1d.bias"))
                mixer.dt_bias.copy_(weights.pop(p + "dt_bias"))
                mixer.A_log_bias.copy_(weights.pop(p + "A_log_bias"))
                mixer.g_norm.weight.copy_(weights.pop(p + "g_norm_swish_gate.weight"))
                mixer.o_proj.weight.copy_(weights.pop(p + "o_proj.weight"))
            layer.attention = mixer
            converted.append(p[:-1])
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # optional in a checkpoint and unused on this path: the class token (tiles never use it) and
    # the language model's own token table (it reads the embedding module's output)
    unused = {"embedding_model.vision_embeddings.class_embedding", "language_model.model.tok_embeddings.weight"}
    buffers = dict(model.named_buffers())  # computed state (rotary tables), not weights
    missing = [n for n in missing if n not in unused and n not in buffers and
               not any(n.startswith(c + ".") for c in converted)]
    if missing or unexpected:
        raise SystemExit(f"{model_dir}: weights do not fit upstream's modules: missing {missing}, "
                         f"unexpected {unexpected}")
    return model.to(device).eval(), student_cfg, stored, converted


def check_config(cfg, stored):
    """The keys upstream's convert_weight.py writes, and torch_dtype naming the stored dtype."""
    problems = []
    if cfg.get("model_type") != "mmMamba_chat":
        problems.append(f"model_type = {cfg.get('model_type')!r}, want 'mmMamba_chat'")
    if cfg.get("architectures") not in (["mmMambaChatModel"], "mmMambaChatModel"):
        problems.append(f"architectures = {cfg.get('architectures')!r}")
    amap = cfg.get("auto_map", {})
    if amap.get("AutoModel") != "modeling_mmMamba_chat.mmMambaChatModel" or \
            amap.get("AutoConfig") != "configuration_mmMamba_chat.mmMambaChatConfig":
        problems.append(f"auto_map = {amap!r}")
    if cfg["embedding_config"].get("model_type") != "mmMamba_embedding":
        problems.append("embedding_config.model_type is not mmMamba_embedding")
    llm = cfg["llm_config"]
    if llm.get("model_type") != "mmMamba" or llm.get("auto_map", {}).get("AutoModel") != "modeling_mmMamba.mmMambaForCausalLM":
        problems.append("llm_config model_type / auto_map are not mmMamba's")
    if len(stored) != 1 or cfg.get("torch_dtype") != next(iter(stored)):
        problems.append(f"torch_dtype {cfg.get('torch_dtype')!r} but the tensors are {sorted(stored)}")
    for stack in ("embedding_config", "llm_config"):
        kinds = cfg[stack].get("layers_block_type")
        if not kinds or len(kinds) != cfg[stack]["num_hidden_layers"] or set(kinds) - {"mha", "mamba2"}:
            problems.append(f"{stack}.layers_block_type = {kinds!r}")
    return problems


def run_case(model_dir, dump_path, device, tol):
    model, cfg, stored, converted = build(model_dir, device)
    problems = check_config(cfg, stored)
    with safe_open(dump_path, framework="pt") as f:
        ids = f.get_tensor("input_ids").long().unsqueeze(0).to(device)
        want = f.get_tensor("logits").double()
        pixels = f.get_tensor("pixel_values").float().to(device) if "pixel_values" in f.keys() else None
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(ids.shape[1], device=device).unsqueeze(0), use_cache=False,
                    return_dict=True)
    got = out.logits[0].double().cpu()
    err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-30)
    same_top = bool((got.argmax(-1) == want.argmax(-1)).all())
    what = (f"{model_dir} [{', '.join(sorted(stored))}; {len(converted)} mamba2 layers; T = {ids.shape[1]}, "
            f"{0 if pixels is None else pixels.shape[0]} image tiles]")
    ok = err <= tol and same_top and not problems
    print(f"{'ok' if ok else 'FAIL'} {what}: max |logits - mmm| / max |mmm| = {err:.2e} (tol {tol:g}), "
          f"argmax {'identical' if same_top else 'DIFFERS'}")
    for p in problems:
        print(f"  config.json: {p}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="checkout of github.com/hustvl/mmMamba")
    ap.add_argument("--case", nargs=2, action="append", required=True, metavar=("MODEL_DIR", "DUMP"),
                    help="a directory mmm wrote and an `mmm forward --dump` of it")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    notes = install_upstream(os.path.abspath(args.upstream))
    for n in notes:
        print(f"note: {n}")
    results = [run_case(d, p, args.device, args.tol) for d, p in args.case]
    print(f"{sum(results)} of {len(results)} cases agree")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
