#!/usr/bin/python3
"""Golden files for mmm's HoVLE teacher, from the independent reference hovle_reference.py.

Regenerate (deterministic: fixed seeds, the same bytes every run), from the repository root:

    /usr/bin/python3 tools/reference/make_teacher_goldens.py

(Debian's python3-torch and python3-numpy; no network, no transformers.) It writes, for each case,
tests/data/teacher/<case>/:
  config.json            docs/model-format.md schema
  model.safetensors      random fp32 weights under the checkpoint's tensor names (docs/design.md §2)
  inputs.safetensors     input_ids I32 (T,); labels I32 (T,) with -100 = ignored;
                         pixel_values F32 (n_tiles, 3, S, S), already normalised (image cases only)
  expected.safetensors   F32, computed in float64 from the fp32 weights cast up:
                         logits (T, V); hidden_states (E+L, T, C), every decoder layer's output in
                         order, embedding-module layers first, the last one before the final norm;
                         input_embeds (T, C), after IMG_CONTEXT replacement; image_embeds
                         (n_img_tokens, C) after pixel_shuffle_proj (image cases only);
                         encoder_output (T, C), after the optional L2 normalisation; loss (1,);
                         grad.<name> d loss / d parameter for every tensor of model.safetensors.
The loss is mean over {t : labels[t] >= 0} of CE(logits[t], labels[t]): labels come shifted
(labels[t] = input_ids[t+1] on the assistant answer and its <|im_end|>, -100 elsewhere).
Cases (hidden 32, FFN 48, E = L = 2, llm_vocab_size 50, 5 special rows, LM vocab 55):
  text_only                4 heads / 2 kv; specials <img> 50, </img> 51, <IMG_CONTEXT> 52,
                           <|im_start|> 53, <|im_end|> 54; no image
  one_image                the same model (byte-identical files); one image of 2 tiles of 8x8,
                           4 tokens per tile
  two_images_resized_grid  8 heads / 2 kv (head_dim 4), force_image_size 12 on an 8x8 position
                           grid (4x4 resized to 6x6, 9 tokens per tile), normalize_encoder_output,
                           images of 1 and 2 tiles; <|im_start|> 3 and <|im_end|> 4 live in
                           llm_text_embeddings, and the user text holds id 53, which is in no map
                           but still reads special_text_embeddings[3] (the table goes by id)
Then it re-reads every file, checks that a float32 run agrees with the float64 logits to 1e-5
and checks two parameters' gradients (an attention wqkv, the position embedding) by central
finite differences in float64.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hovle_reference as ref  # noqa: E402
import st_io  # noqa: E402

OUT = os.path.join("tests", "data", "teacher")
IGNORE = -100


def config_dict(heads, kv_heads, force_image_size, normalize, special):
    stack = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": heads,
             "num_key_value_heads": kv_heads, "intermediate_size": 48, "rms_norm_eps": 1e-5,
             "rope_theta": 1000000.0, "max_position_embeddings": 32768, "hidden_act": "silu"}
    emb = dict(stack, llm_hidden_size=32, image_size=8, patch_size=2, num_channels=3,
               downsample_ratio=0.5, use_pixel_shuffle_proj=True, pixel_shuffle_loc="pre",
               llm_vocab_size=50, special_token_maps=special,
               img_context_token_id=special["<IMG_CONTEXT>"])
    return {"model_type": "hovle", "template": "internlm2-chat",
            "force_image_size": force_image_size, "downsample_ratio": 0.5,
            "use_thumbnail": True, "min_dynamic_patch": 1, "max_dynamic_patch": 6,
            "normalize_encoder_output": normalize,
            "img_context_token_id": special["<IMG_CONTEXT>"],
            "embedding_config": emb, "llm_config": dict(stack, vocab_size=55)}


SPECIAL_HIGH = {"<img>": 50, "</img>": 51, "<IMG_CONTEXT>": 52, "<|im_start|>": 53,
                "<|im_end|>": 54}
# chat markers inside llm_text_embeddings: the embedding table is chosen by id, not by the map
SPECIAL_MIXED = {"<img>": 50, "</img>": 51, "<IMG_CONTEXT>": 52, "<|im_start|>": 3,
                 "<|im_end|>": 4}
NL = 9  # stands for "\n"


def chat(special, user, answer, images=(), tokens_per_tile=0):
    """internlm2-chat token ids and shifted labels: only the answer and its <|im_end|> count."""
    s, e = special["<|im_start|>"], special["<|im_end|>"]
    ids = [s, 11, NL, 23, 5, 37, e, NL, s, 12, NL]  # system turn, then "user\n"
    for n_tiles in images:
        ids += [special["<img>"]] + [special["<IMG_CONTEXT>"]] * (n_tiles * tokens_per_tile)
        ids += [special["</img>"], NL]
    ids += list(user) + [e, NL, s, 13, NL]
    start = len(ids)
    ids += list(answer) + [e, NL]
    labels = [IGNORE] * len(ids)
    for t in range(start - 1, start + len(answer)):
        labels[t] = ids[t + 1]
    return ids, labels


# standard deviation of each random weight, by the end of its name (norms are 1 + 0.1·noise)
STD = {"patch_embedding.weight": 0.2, "patch_embedding.bias": 0.1,
       "position_embedding": 0.5, "llm_text_embeddings.weight": 0.5,
       "special_text_embeddings.weight": 0.5, "tok_embeddings.weight": 0.5, "class_embedding": 0.5,
       "pixel_shuffle_proj.0.weight": 0.1, "pixel_shuffle_proj.0.bias": 0.1,
       "pixel_shuffle_proj.2.weight": 0.15, "pixel_shuffle_proj.2.bias": 0.1,
       "wqkv.weight": 0.25, "wo.weight": 0.1, "w1.weight": 0.12, "w3.weight": 0.12,
       "w2.weight": 0.1, "output.weight": 0.15}


def drawing_order(model):
    """named_parameters with class_embedding (modelled later than the rest) drawn last, so that
    every other weight keeps the values it had before."""
    return sorted(model.named_parameters(), key=lambda kv: kv[0].endswith("class_embedding"))


def random_weights(model, seed):
    """fp32 weights with every part mattering: norms near 1, projections of a few tenths."""
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name, p in drawing_order(model):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight"):
            weights[name] = 1.0 + 0.1 * noise
        else:
            key = next(k for k in STD if name.endswith(k))
            weights[name] = STD[key] * noise
    return weights


def run(model, ids, labels, pixels, dtype):
    model = model.to(dtype)
    model.zero_grad()
    out = model(ids, None if pixels is None else pixels.to(dtype))
    out["loss"] = ref.loss_fn(out["logits"], labels)
    return out


def finite_difference_check(model, ids, labels, pixels, name, grad, count=6, eps=1e-6):
    """Central differences in float64 on a few entries of one parameter."""
    model.to(torch.float64)
    p = dict(model.named_parameters())[name]
    flat = p.data.view(-1)
    worst = 0.0
    with torch.no_grad():
        for i in torch.linspace(0, flat.numel() - 1, count).long().tolist():
            old = flat[i].item()
            flat[i] = old + eps
            up = run(model, ids, labels, pixels, torch.float64)["loss"].item()
            flat[i] = old - eps
            down = run(model, ids, labels, pixels, torch.float64)["loss"].item()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            worst = max(worst, abs(fd - grad.view(-1)[i].item()) / max(1e-8, abs(fd)))
    assert worst < 1e-6, f"{name}: finite differences disagree, rel {worst:.2e}"
    return worst


def make_case(name, cfg_dict, ids, labels, tiles, seed):
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

    out = run(model, ids_t, labels_t, pixels, torch.float64)
    out["loss"].backward()
    grads = {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for k, p in model.named_parameters()}
    expected = {k: out[k] for k in ("logits", "input_embeds", "encoder_output")}
    expected["hidden_states"] = torch.stack(out["hidden_states"])
    expected["loss"] = out["loss"].reshape(1)
    if pixels is not None:
        expected["image_embeds"] = out["image_embeds"]
    for pname, g in grads.items():
        expected["grad." + pname] = g
    expected = {k: v.detach().to(torch.float32).numpy() for k, v in expected.items()}
    inputs = {"input_ids": np.array(ids, dtype=np.int32), "labels": np.array(labels, dtype=np.int32)}
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
            assert back[k].shape == v.shape and back[k].dtype == v.dtype and np.array_equal(back[k], v), k

    # sanity: the same model in float32 agrees with the float64 goldens
    out32 = run(model, ids_t, labels_t, pixels, torch.float32)
    l32, l64 = out32["logits"].detach().numpy(), expected["logits"]
    rel32 = np.abs(l32 - l64).max() / np.abs(l64).max()
    assert rel32 < 1e-5, f"{name}: float32 logits differ by {rel32:.2e}"
    checked = ["embedding_model.encoder.1.attention.wqkv.weight"]
    if pixels is not None:
        checked.append("embedding_model.vision_embeddings.position_embedding")
    fd = max(finite_difference_check(model, ids_t, labels_t, pixels, k, grads[k]) for k in checked)

    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    n_img = 0 if pixels is None else expected["image_embeds"].shape[0]
    print(f"{directory}: T={len(ids)} tiles={tiles} image_tokens={n_img} "
          f"loss={expected['loss'][0]:.6f} fp32-vs-fp64 logits rel={rel32:.1e} "
          f"fd-grad rel={fd:.1e} {size} bytes")


def main():
    torch.set_num_threads(1)  # bit-identical reruns
    special = SPECIAL_HIGH
    text_ids, text_labels = chat(special, [31, 0, 49, 8], [17, 42, 6, 28, 40])
    make_case("text_only", config_dict(4, 2, 8, False, special), text_ids, text_labels, 0, 1234)

    tpt = 4  # (8 / 2)² · 0.5²
    ids, labels = chat(special, [31, 8], [17, 42, 6], images=[2], tokens_per_tile=tpt)
    make_case("one_image", config_dict(4, 2, 8, False, special), ids, labels, 2, 1234)

    special = SPECIAL_MIXED
    tpt = 9  # (12 / 2)² · 0.5²
    ids, labels = chat(special, [31, 53, 8], [17, 42, 6, 33], images=[1, 2], tokens_per_tile=tpt)
    make_case("two_images_resized_grid", config_dict(8, 2, 12, True, special), ids, labels, 3,
              4321)


if __name__ == "__main__":
    main()
