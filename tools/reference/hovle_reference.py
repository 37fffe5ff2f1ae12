"""Independent PyTorch reference of the HoVLE teacher (docs/design.md §2, docs/model-format.md) and
of the mmMamba student, whose layers may swap attention for the Mamba-2 mixer (docs/design.md §3).

Plain torch.nn, batch of one sequence, no caches and no fused kernels: it exists to be obviously
right, not fast. Parameter names are exactly the checkpoint's tensor names, so
`model.load_state_dict(weights)` reads a model.safetensors as is (one without the optional, unused
vision_embeddings.class_embedding with strict=False). Where the spec is silent it
follows the HoVLE / InternLM2 / InternVL PyTorch code: RMSNorm x·rsqrt(mean(x²)+eps)·w, RoPE
tables computed in fp32 as Hugging Face does (then cast to the working dtype), softmax over
causally masked scores, InternVL's pixel-shuffle view/permute sequence.

The Mamba-2 mixer runs the plain step-by-step recurrence, one Python iteration per token, so
that it checks chunked implementations rather than sharing their algorithm.

Run it in torch.float64 with fp32 weights cast up to get golden values (make_teacher_goldens.py,
make_student_goldens.py).
"""
import json
import math

import torch
import torch.nn.functional as F
from torch import nn


class StackConfig:
    """One decoder stack's shape, from embedding_config or llm_config."""

    def __init__(self, d):
        self.hidden = d["hidden_size"]
        self.n_layers = d["num_hidden_layers"]
        self.n_heads = d["num_attention_heads"]
        self.n_kv = d.get("num_key_value_heads", self.n_heads)
        self.ffn = d["intermediate_size"]
        self.eps = d.get("rms_norm_eps", 1e-5)
        self.theta = d.get("rope_theta", 10000.0)
        assert d.get("hidden_act", "silu") == "silu"
        assert self.hidden % self.n_heads == 0 and self.n_heads % self.n_kv == 0
        self.head_dim = self.hidden // self.n_heads
        # students name each layer's mixer; a teacher config has no list and is all attention
        self.block_types = d.get("layers_block_type", ["mha"] * self.n_layers)
        assert len(self.block_types) == self.n_layers
        assert all(b in ("mha", "mamba2") for b in self.block_types)


class HoVLEConfig:
    def __init__(self, d):
        e, l = d["embedding_config"], d["llm_config"]
        self.emb = StackConfig(e)
        self.llm = StackConfig(l)
        assert self.emb.hidden == self.llm.hidden == e.get("llm_hidden_size", self.emb.hidden)
        self.hidden = self.emb.hidden
        self.image_size = e["image_size"]
        self.patch_size = e["patch_size"]
        self.num_channels = e.get("num_channels", 3)
        self.tile = d.get("force_image_size") or self.image_size
        self.downsample_ratio = d.get("downsample_ratio", e.get("downsample_ratio", 0.5))
        assert e.get("use_pixel_shuffle_proj", True) and e.get("pixel_shuffle_loc", "pre") == "pre"
        self.llm_vocab_size = e["llm_vocab_size"]
        self.special_token_maps = e.get("special_token_maps", {})
        self.img_context_token_id = d.get("img_context_token_id", e.get("img_context_token_id"))
        self.normalize_encoder_output = bool(d.get("normalize_encoder_output", False))
        self.vocab_size = l["vocab_size"]

    @staticmethod
    def load(path):
        with open(path) as f:
            return HoVLEConfig(json.load(f))

    def tokens_per_tile(self):
        grid = self.tile // self.patch_size
        return int(grid * grid * self.downsample_ratio ** 2)


def rope_tables(head_dim, theta, n_pos, dtype):
    """cos, sin of shape (n_pos, head_dim), computed in fp32 like HF's rotary embedding."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    t = torch.arange(n_pos, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.wqkv = nn.Linear(c.hidden, (c.n_heads + 2 * c.n_kv) * c.head_dim, bias=False)
        self.wo = nn.Linear(c.n_heads * c.head_dim, c.hidden, bias=False)

    def forward(self, h, cos, sin):
        c = self.c
        T = h.shape[0]
        rep = c.n_heads // c.n_kv
        # rows grouped per kv head: its `rep` query heads, then k, then v ("(h gs d)")
        qkv = self.wqkv(h).view(T, c.n_kv, rep + 2, c.head_dim)
        q = qkv[:, :, :rep].reshape(T, c.n_heads, c.head_dim)
        k = qkv[:, :, rep]
        v = qkv[:, :, rep + 1]
        q = q * cos[:, None] + rotate_half(q) * sin[:, None]
        k = k * cos[:, None] + rotate_half(k) * sin[:, None]
        # query head i reads kv head i // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(c.head_dim)
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(T, c.n_heads * c.head_dim)
        return self.wo(out)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w1 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w3 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w2 = nn.Linear(c.ffn, c.hidden, bias=False)

    def forward(self, h):
        return self.w2(F.silu(self.w1(h)) * self.w3(h))


class Mamba2Mixer(nn.Module):
    """mmMamba's attention replacement (docs/design.md §3), with P = N = head_dim. wvkqgdt rows:
    [v (n_kv·P) | k (n_kv·N) | q (n·N) | g (n·P) | dt (n)], each block head-major."""

    GATE_NORM_EPS = 1e-5

    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c.head_dim
        self.conv_channels = 2 * c.n_kv * d + c.n_heads * d
        self.wvkqgdt = nn.Linear(c.hidden, self.conv_channels + c.n_heads * d + c.n_heads,
                                 bias=False)
        # depthwise; padding 1 then keeping the first T outputs makes it causal, so
        # weight[:, 0, 1] multiplies the current token and weight[:, 0, 0] the previous one
        self.conv1d = nn.Conv1d(self.conv_channels, self.conv_channels, kernel_size=2,
                                groups=self.conv_channels, padding=1, bias=True)
        self.dt_bias = nn.Parameter(torch.zeros(c.n_heads))
        self.A_log_bias = nn.Parameter(torch.zeros(c.n_heads))
        self.g_norm_swish_gate = RMSNorm(d, self.GATE_NORM_EPS)
        self.o_proj = nn.Linear(c.n_heads * d, c.hidden, bias=False)

    def forward(self, h, cos=None, sin=None):
        """h (T, D) -> (T, D); cos, sin are the attention's RoPE tables, unused here."""
        c = self.c
        T, n, d = h.shape[0], c.n_heads, c.head_dim
        z = self.wvkqgdt(h)
        vkq, g, dt_raw = z.split([self.conv_channels, n * d, n], dim=-1)
        vkq = self.conv1d(vkq.t()[None])[0, :, :T].t()
        vkq = F.silu(vkq)
        v, k, q = vkq.split([c.n_kv * d, c.n_kv * d, n * d], dim=-1)
        rep = n // c.n_kv
        # head i reads x and B of kv group i // rep, C of its own q head
        x = v.view(T, c.n_kv, d).repeat_interleave(rep, dim=1)
        B = k.view(T, c.n_kv, d).repeat_interleave(rep, dim=1)
        C = q.view(T, n, d)
        dt = F.softplus(dt_raw + self.dt_bias)  # (T, n)
        A = -torch.exp(self.A_log_bias)  # (n)
        decay = torch.exp(dt * A)
        S = h.new_zeros(n, d, d)  # (head, P, N)
        ys = []
        for t in range(T):
            update = dt[t, :, None, None] * x[t, :, :, None] * B[t, :, None, :]  # dt·x⊗B
            S = decay[t, :, None, None] * S + update
            ys.append(torch.einsum("hpn,hn->hp", S, C[t]))
        y = torch.stack(ys)  # (T, n, P)
        y = self.g_norm_swish_gate(y) * F.silu(g.view(T, n, d))
        return self.o_proj(y.reshape(T, n * d))


class DecoderLayer(nn.Module):
    def __init__(self, c, block_type="mha"):
        super().__init__()
        self.attention = Attention(c) if block_type == "mha" else Mamba2Mixer(c)
        self.feed_forward = FeedForward(c)
        self.attention_norm = RMSNorm(c.hidden, c.eps)
        self.ffn_norm = RMSNorm(c.hidden, c.eps)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


def pixel_shuffle(x, scale):
    """InternVL's pixel shuffle of (n, l, c) patch vectors (l = grid², row-major) ->
    (n, l·scale², c/scale²); each 2×2 block becomes one vector, channel blocks ordered
    (dy, dx) = (0,0), (0,1), (1,0), (1,1)."""
    n, l, c = x.shape
    h = w = int(round(l ** 0.5))
    hs, ws = int(h * scale), int(w * scale)
    x = x.reshape(n, w, hs, int(c / scale))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, hs, ws, int(c / (scale * scale)))
    x = x.permute(0, 2, 1, 3).contiguous()
    return x.reshape(n, hs * ws, int(c / (scale * scale)))


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.grid = cfg.image_size // cfg.patch_size
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        # slot 0 is InternViT's class position, unused by HoVLE
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, cfg.hidden))
        # InternViT's class token: in HoVLE's checkpoints, never read on its path
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, cfg.hidden))

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values)  # (n, C, H, W)
        _, C, H, W = x.shape
        x = x.flatten(2).transpose(1, 2)  # (n, H·W, C), row-major patches
        pos = self.position_embedding[:, 1:].reshape(1, self.grid, self.grid, C).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(H, W), mode="bicubic", align_corners=False)
        return x + pos.reshape(1, C, H * W).permute(0, 2, 1)


class EmbeddingModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C = cfg.hidden
        self.vision_embeddings = VisionEmbeddings(cfg)
        self.llm_text_embeddings = nn.Embedding(cfg.llm_vocab_size, C)
        self.special_text_embeddings = nn.Embedding(len(cfg.special_token_maps), C)
        c4 = int(C / cfg.downsample_ratio ** 2)
        self.pixel_shuffle_proj = nn.Sequential(nn.Linear(c4, C), nn.GELU(), nn.Linear(C, C))
        self.encoder = nn.ModuleList(DecoderLayer(cfg.emb, b) for b in cfg.emb.block_types)

    def image_embeds(self, pixel_values):
        """(n_tiles, 3, S, S) -> (n_tiles · tokens_per_tile, C), tiles in order."""
        x = self.vision_embeddings(pixel_values)
        x = pixel_shuffle(x, self.cfg.downsample_ratio)
        return self.pixel_shuffle_proj(x).flatten(0, 1)

    def text_embeds(self, ids):
        """id < llm_vocab_size -> llm_text_embeddings[id], else special_text_embeddings[id - it]."""
        V = self.cfg.llm_vocab_size
        special = (ids >= V)[:, None]
        llm = self.llm_text_embeddings.weight[ids.clamp(max=V - 1)]
        spc = self.special_text_embeddings.weight[(ids - V).clamp(min=0)]
        return torch.where(special, spc, llm)


class LanguageModelBody(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)  # unused on this path
        self.layers = nn.ModuleList(DecoderLayer(cfg.llm, b) for b in cfg.llm.block_types)
        self.norm = RMSNorm(cfg.hidden, cfg.llm.eps)


class LanguageModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.model = LanguageModelBody(cfg)
        self.output = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)


class HoVLE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding_model = EmbeddingModel(cfg)
        self.language_model = LanguageModel(cfg)

    def forward(self, input_ids, pixel_values=None):
        """input_ids (T,) int64, pixel_values (n_tiles, 3, S, S) or None -> dict of
        image_embeds, input_embeds, hidden_states (list of E+L (T, C)), encoder_output, logits."""
        cfg = self.cfg
        dtype = self.language_model.output.weight.dtype
        T = input_ids.shape[0]
        out = {}
        x = self.embedding_model.text_embeds(input_ids)
        ctx = input_ids == cfg.img_context_token_id
        if pixel_values is not None:
            img = self.embedding_model.image_embeds(pixel_values)
            assert int(ctx.sum()) == img.shape[0], "IMG_CONTEXT count != image tokens"
            out["image_embeds"] = img
            x = x.clone()
            x[ctx] = img
        else:
            assert not bool(ctx.any()), "IMG_CONTEXT ids without pixel_values"
        out["input_embeds"] = x
        hidden = []
        # position ids 0..T-1 in both stacks
        cos, sin = rope_tables(cfg.emb.head_dim, cfg.emb.theta, T, dtype)
        for layer in self.embedding_model.encoder:
            x = layer(x, cos, sin)
            hidden.append(x)
        if cfg.normalize_encoder_output:
            x = x / x.norm(dim=-1, keepdim=True)
        out["encoder_output"] = x
        cos, sin = rope_tables(cfg.llm.head_dim, cfg.llm.theta, T, dtype)
        for layer in self.language_model.model.layers:
            x = layer(x, cos, sin)
            hidden.append(x)
        out["hidden_states"] = hidden
        out["logits"] = self.language_model.output(self.language_model.model.norm(x))
        return out


def loss_fn(logits, labels):
    """Mean cross-entropy of logits[t] against labels[t] over positions with labels[t] >= 0
    (labels are already shifted: labels[t] is the token that should follow position t)."""
    keep = labels >= 0
    return F.cross_entropy(logits[keep], labels[keep])
