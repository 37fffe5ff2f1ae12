#!/usr/bin/python3
"""Golden files for RoPE scaling (docs/model-format.md, "RoPE scaling"): hovle_reference.py's
teacher with InternLM2's scaled rotary embeddings, run as InternLM2's modeling code runs them —
one stateful rotary module per attention layer, called with kv_seq_len (the cached keys plus the
new ones), whose cos/sin cache is rebuilt only when a call needs more positions than it holds
(for "dynamic", with a new base past max_position_embeddings), and a KV cache that keeps every key
as it was rotated when it was computed.

Regenerate (deterministic), from the repository root, with torch and numpy:

    /usr/bin/python3 tools/reference/make_rope_goldens.py [OUT_DIR]

It reads tests/data/teacher/text_only/{config.json, model.safetensors} (the weights every case
uses; the C test links them beside each case's config) and writes, per case,
OUT_DIR/<case>/ (OUT_DIR: tests/data/rope):
  config.json           text_only's, with max_position_embeddings and rope_scaling of each stack
  inputs.safetensors    input_ids I32 (T,); labels I32 (T,) (labels[t] = input_ids[t+1], the last
                        -100); prefill I32 (1,): how many tokens the first call of the stepped run
                        takes
  expected.safetensors  F32, computed in float64 from the fp32 weights, with fp32 rotary tables
                        (as Hugging Face builds them, then cast):
                        logits (T, V): one call over all T tokens (a training forward, or one
                        prefill); loss (1,) and grad.<name> of every parameter, from that call;
                        step_logits (T, V): a fresh model, one call over the first `prefill` tokens,
                        then one call per token with the KV cache (decoding)
Cases (text only; both stacks scaled, each with its own max_position_embeddings):
  dynamic_decode   dynamic, factor 3 past 6 (embedding) and factor 2 past 8 (language model);
                   T = 14, prefill 5: the decode steps cross both thresholds
  dynamic_prefill  the same model; prefill 11, already past both thresholds, then 3 decode steps
  linear           linear, factor 4 (embedding) and 2 (language model); T = 14, prefill 5
It checks, in float64, that for "linear" the stepped logits equal the one-call logits (no call
dependence), that for "dynamic" they differ once a call passes a threshold, and the gradient of
two parameters by central finite differences.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hovle_reference as ref  # noqa: E402
import st_io  # noqa: E402

SRC = os.path.join("tests", "data", "teacher", "text_only")
IDS = [53, 11, 9, 23, 5, 37, 54, 9, 53, 12, 9, 41, 7, 30]  # text only: no <IMG_CONTEXT> (52)


class ScaledRotary:
    """InternLM2's rotary embedding with its rope_scaling, stateful like upstream's module:
    tables for positions 0 .. cached − 1, rebuilt when a call asks for more."""

    def __init__(self, dim, max_pos, base, kind, factor):
        self.dim, self.max_pos, self.base, self.kind, self.factor = dim, max_pos, base, kind, factor
        self.inv_freq = self.frequencies(base)
        self.build(max_pos)

    def frequencies(self, base):
        # a Python float to a float32 tensor's power: the base is rounded to fp32, as upstream
        return 1.0 / (base ** (torch.arange(0, self.dim, 2).float() / self.dim))

    def build(self, n):
        self.cached = n
        if self.kind == "dynamic" and n > self.max_pos:
            base = self.base * ((self.factor * n / self.max_pos) - (self.factor - 1)) ** (
                self.dim / (self.dim - 2))
            self.inv_freq = self.frequencies(base)
        t = torch.arange(n, dtype=torch.float32)
        if self.kind == "linear":
            t = t / self.factor
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def __call__(self, seq_len):
        if seq_len > self.cached:
            self.build(seq_len)
        return self.cos[:seq_len], self.sin[:seq_len]


def attention_step(att, h, cache, rotary, past):
    """InternLM2 attention over T new tokens at positions past .. past+T−1 with a KV cache."""
    c = att.c
    T = h.shape[0]
    rep = c.n_heads // c.n_kv
    qkv = att.wqkv(h).view(T, c.n_kv, rep + 2, c.head_dim)
    q = qkv[:, :, :rep].reshape(T, c.n_heads, c.head_dim)
    k = qkv[:, :, rep]
    v = qkv[:, :, rep + 1]
    cos, sin = rotary(past + T)  # kv_seq_len
    cos = cos[past:past + T].to(h.dtype)[:, None]
    sin = sin[past:past + T].to(h.dtype)[:, None]
    q = q * cos + ref.rotate_half(q) * sin
    k = k * cos + ref.rotate_half(k) * sin
    if "k" in cache:
        k = torch.cat([cache["k"], k])
        v = torch.cat([cache["v"], v])
    cache["k"], cache["v"] = k, v
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(c.head_dim)
    future = torch.arange(past + T)[None, :] > (past + torch.arange(T))[:, None]
    probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    out = torch.einsum("hts,shd->thd", probs, v).reshape(T, c.n_heads * c.head_dim)
    return att.wo(out)


def scaling_of(stack_dict):
    s = stack_dict.get("rope_scaling")
    return (s["type"], float(s["factor"])) if s else ("plain", 1.0)


class Runner:
    """A fresh generation: rotary modules and KV caches of every layer."""

    def __init__(self, model, cfg_dict):
        self.model = model
        self.rotary, self.caches = [], []
        for key, c, layers in (("embedding_config", model.cfg.emb, model.embedding_model.encoder),
                               ("llm_config", model.cfg.llm, model.language_model.model.layers)):
            d = cfg_dict[key]
            kind, factor = scaling_of(d)
            for _ in layers:
                self.rotary.append(ScaledRotary(c.head_dim, d["max_position_embeddings"], c.theta,
                                                kind, factor))
                self.caches.append({})
        self.length = 0

    def call(self, ids):
        """One forward call over ids after the cached tokens: their logits (T, V)."""
        m = self.model
        x = m.embedding_model.text_embeds(ids)
        layers = list(m.embedding_model.encoder) + list(m.language_model.model.layers)
        n_emb = len(m.embedding_model.encoder)
        for i, layer in enumerate(layers):
            if i == n_emb and m.cfg.normalize_encoder_output:
                x = x / x.norm(dim=-1, keepdim=True)
            x = x + attention_step(layer.attention, layer.attention_norm(x), self.caches[i],
                                   self.rotary[i], self.length)
            x = x + layer.feed_forward(layer.ffn_norm(x))
        self.length += ids.shape[0]
        return m.language_model.output(m.language_model.model.norm(x))


def one_call_loss(model, cfg_dict, ids, labels):
    model.zero_grad()
    logits = Runner(model, cfg_dict).call(ids)
    return logits, ref.loss_fn(logits, labels)


def make_case(name, out_dir, cfg_dict, weights, prefill):
    model = ref.HoVLE(ref.HoVLEConfig(cfg_dict))
    model.load_state_dict(weights, strict=False)
    model.to(torch.float64)
    ids = torch.tensor(IDS, dtype=torch.int64)
    labels = torch.tensor(IDS[1:] + [-100], dtype=torch.int64)
    logits, loss = one_call_loss(model, cfg_dict, ids, labels)
    loss.backward()
    grads = {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for k, p in model.named_parameters()}
    with torch.no_grad():
        run = Runner(model, cfg_dict)
        steps = [run.call(ids[:prefill])]
        for t in range(prefill, len(IDS)):
            steps.append(run.call(ids[t:t + 1]))
        step_logits = torch.cat(steps)
        diff = (step_logits - logits).abs().max().item()
        if scaling_of(cfg_dict["llm_config"])[0] == "linear":
            assert diff < 1e-10, f"{name}: linear scaling depends on the calls ({diff:.2e})"
        else:
            assert diff > 1e-4, f"{name}: the dynamic base did not change the stepped logits"

        # finite differences on two parameters of the one-call loss
        for pname in ("language_model.model.layers.1.attention.wqkv.weight",
                      "embedding_model.encoder.0.attention.wqkv.weight"):
            p = dict(model.named_parameters())[pname].data.view(-1)
            for i in (0, p.numel() // 2, p.numel() - 1):
                old, eps = p[i].item(), 1e-6
                p[i] = old + eps
                up = one_call_loss(model, cfg_dict, ids, labels)[1].item()
                p[i] = old - eps
                down = one_call_loss(model, cfg_dict, ids, labels)[1].item()
                p[i] = old
                fd, g = (up - down) / (2 * eps), grads[pname].view(-1)[i].item()
                assert abs(fd - g) <= 1e-6 * max(abs(fd), 1e-3), f"{name} {pname}[{i}]: {fd} vs {g}"

    directory = os.path.join(out_dir, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(json.dumps(cfg_dict, indent=2) + "\n")
    inputs = {"input_ids": np.array(IDS, dtype=np.int32),
              "labels": labels.numpy().astype(np.int32), "prefill": np.array([prefill], dtype=np.int32)}
    expected = {"logits": logits, "step_logits": step_logits, "loss": loss.reshape(1)}
    for pname, g in grads.items():
        expected["grad." + pname] = g
    expected = {k: v.detach().to(torch.float32).numpy() for k, v in expected.items()}
    meta = {"format": "pt"}
    for fname, tensors in (("inputs.safetensors", inputs), ("expected.safetensors", expected)):
        st_io.write(os.path.join(directory, fname), tensors, meta)
        back, _ = st_io.read(os.path.join(directory, fname))
        assert back.keys() == tensors.keys()
    print(f"{name}: stepped vs one-call logits differ by {diff:.3e}; loss {loss.item():.6f}")


def scaled(base, emb, llm):
    d = json.loads(json.dumps(base))
    for key, (kind, factor, max_pos) in (("embedding_config", emb), ("llm_config", llm)):
        d[key]["max_position_embeddings"] = max_pos
        d[key]["rope_scaling"] = {"type": kind, "factor": factor}
    return d


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "rope")
    with open(os.path.join(SRC, "config.json")) as f:
        base = json.load(f)
    tensors, _ = st_io.read(os.path.join(SRC, "model.safetensors"))
    weights = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    dynamic = scaled(base, ("dynamic", 3.0, 6), ("dynamic", 2.0, 8))
    make_case("dynamic_decode", out_dir, dynamic, weights, 5)
    make_case("dynamic_prefill", out_dir, dynamic, weights, 11)
    make_case("linear", out_dir, scaled(base, ("linear", 4.0, 6), ("linear", 2.0, 8)), weights, 5)


if __name__ == "__main__":
    main()
