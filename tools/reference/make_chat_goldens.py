#!/usr/bin/env python3
"""Builds the chat-template goldens in tests/data/chat/: the prompts InternVL's conversation
code makes for HoVLE ("internlm2-chat") and the chatml form of mmm's embedded default, for
single and multi-turn conversations, with and without images, with the default, a custom and an
empty system message, in training form and as generation prompts.

    python3 tools/reference/make_chat_goldens.py [--out tests/data/chat] [--ids]

Without --ids only the standard library is needed (/usr/bin/python3 here): prompts.json holds
each case's prompt text and the text of the spans training puts the loss on. With --ids (the GPU
device machine: transformers, tokenizers, sentencepiece) ids_<tokenizer>.json also holds each
case's token ids and InternVL's training targets for the repository's test tokenizers
tests/data/tokenizers/bpe_gpt2.json, sp_bpe.model (in a tokenizer shaped like InternLM2's:
SentencePiece, BOS first) and the InternLM2-shaped directories internlm2_sp (transformers' slow
sentencepiece tokenizer, the one InternVL loads) and internlm2_fast (the same as tokenizer.json).

The upstream code (InternVL's internvl_chat/internvl/conversation.py, the same in HoVLE's and
mmMamba's copies, and preprocess_internlm in internvl/train/dataset.py) cannot be imported here,
so this script restates it in its own words:
  * Conversation.get_prompt for SeparatorStyle.MPT: system_template filled with the system
    message, then sep; then per message role + message + sep, or the bare role for the message
    left empty (None) to ask for the answer. internlm2-chat: system_template
    "<|im_start|>system\\n{system_message}", roles "<|im_start|>user\\n" and
    "<|im_start|>assistant\\n", sep "<|im_end|>", and the default system message below, which
    HoVLE's chat() keeps (it sets the template's system_message from its own attribute,
    initialised from the template's).
  * chat(): each "<image>" of the prompt, in order, becomes "<img>" + "<IMG_CONTEXT>" x
    (num_image_token x tiles) + "</img>"; the prompt is tokenised with tokenizer(query), which
    puts the tokenizer's BOS first (InternLM2's add_bos_token).
  * preprocess_internlm (training): the same prompt without the empty message; targets are the
    ids with everything ignored except, for each answer, the tokens counted by
    len(tokenizer(answer + "<|im_end|>")) - 1 placed after the prompt up to its
    "<|im_start|>assistant\\n"; positions are found by such counts, and when the counts do not
    add up to the sequence's length the whole sample is ignored ("tokenization mismatch").
chatml is mmm's own form (docs/model-format.md): "<|im_start|>{role}\\n{text}<|im_end|>\\n" per
turn, a system turn only when a non-empty system message is given, no BOS, the loss on each
answer and the <|im_end|> closing it.
"""
import argparse
import json
import os

SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]
TOKENS_PER_TILE = 4  # the test config: 8-pixel tiles, 2-pixel patches, pixel shuffle by 2

INTERNLM2_SYSTEM = ("\u4f60\u662f\u7531\u4e0a\u6d77\u4eba\u5de5\u667a\u80fd\u5b9e\u9a8c\u5ba4"
                    "\u8054\u5408\u5546\u6c64\u79d1\u6280\u5f00\u53d1\u7684\u4e66\u751f\u591a"
                    "\u6a21\u6001\u5927\u6a21\u578b\uff0c\u82f1\u6587\u540d\u53eb"
                    "InternVL, \u662f\u4e00\u4e2a\u6709\u7528\u65e0\u5bb3\u7684\u4eba\u5de5"
                    "\u667a\u80fd\u52a9\u624b\u3002")

# name, system (None: the template's default), turns, tiles per image, generation prompt
CASES = [
    ("text_single", None, ["What is 2+2?", "4"], [], False),
    ("image_single", None, ["<image>\nWhat item is this?", "Sneaker"], [1], False),
    ("image_multi_turn", None, ["<image>\nWhat item is this?", "Sneaker", "And the group?", "footwear"], [5], False),
    ("custom_system", "Be brief.", ["<image>\nWhat item is this?", "Sneaker"], [1], False),
    ("empty_system", "", ["Say hi.", "hi"], [], False),
    ("image_mid_text", None, ["Look: <image> then say what it is.", "A bag"], [2], False),
    ("two_images", None, ["<image><image>\nSame item?", "No", "Which is larger?", "The second"], [1, 2], False),
    ("unicode", "\u7b80\u77ed\u56de\u7b54\u3002", ["\u8fd9\u662f\u4ec0\u4e48\uff1f", "\u8fd0\u52a8\u978b"], [], False),
    ("answer_leading_space", None, ["Name a color.", " Red"], [], False),
    ("generate_image", None, ["<image>\nWhat item is this?"], [1], True),
    ("generate_history", "Be brief.", ["<image>\nWhat item is this?", "Sneaker", "And the group?"], [1], True),
    ("generate_default_text", None, ["Hello"], [], True),
]
TEMPLATES = ["internlm2-chat", "chatml"]


def mpt_prompt(system_message, messages):
    """Conversation.get_prompt, SeparatorStyle.MPT, with internlm2-chat's strings."""
    system_template, sep = "<|im_start|>system\n{system_message}", "<|im_end|>"
    out = system_template.format(system_message=system_message) + sep
    for role, message in messages:
        out += role + message + sep if message else role
    return out


def internlm2_prompt(system, turns, generate):
    roles = ("<|im_start|>user\n", "<|im_start|>assistant\n")
    messages = [(roles[i % 2], t) for i, t in enumerate(turns)]
    if generate:
        messages.append((roles[1], None))
    return mpt_prompt(INTERNLM2_SYSTEM if system is None else system, messages)


def chatml_prompt(system, turns, generate):
    out = "<|im_start|>system\n" + system + "<|im_end|>\n" if system else ""
    for i, t in enumerate(turns):
        out += "<|im_start|>" + ("user", "assistant")[i % 2] + "\n" + t + "<|im_end|>\n"
    return out + ("<|im_start|>assistant\n" if generate else "")


def expand_images(prompt, tiles):
    for n in tiles:  # chat() and preprocess_internlm: one replace per image, in order
        prompt = prompt.replace("<image>", "<img>" + "<IMG_CONTEXT>" * (TOKENS_PER_TILE * n) + "</img>", 1)
    return prompt


def prompt_of(template, system, turns, tiles, generate):
    build = internlm2_prompt if template == "internlm2-chat" else chatml_prompt
    return expand_images(build(system, turns, generate), tiles)


def text_goldens():
    cases = []
    for template in TEMPLATES:
        for name, system, turns, tiles, generate in CASES:
            trained = [] if generate else [turns[i] + "<|im_end|>" for i in range(1, len(turns), 2)]
            cases.append({"name": name, "template": template, "system": system, "turns": turns, "tiles": tiles,
                          "generate": generate, "bos": template == "internlm2-chat",
                          "text": prompt_of(template, system, turns, tiles, generate), "trained": trained})
    return {"reference": "InternVL conversation.py (internlm2-chat, MPT style) restated; chatml: mmm's form",
            "tokens_per_tile": TOKENS_PER_TILE, "internlm2_default_system": INTERNLM2_SYSTEM, "cases": cases}


# ---------------------------------------------------------------------------------------------
# Ids and training targets with real tokenizers (transformers)


def internlm2_shaped(sp_path):
    """A transformers python-backend tokenizer doing what InternLM2's remote tokenizer class does
    (restated): SentencePiece pieces for the text between added tokens, BOS first."""
    import sentencepiece as spm
    from transformers import PreTrainedTokenizer

    class InternLM2Shaped(PreTrainedTokenizer):
        def __init__(self, **kw):
            self.sp = spm.SentencePieceProcessor(model_file=sp_path)
            super().__init__(bos_token="<s>", eos_token="</s>", unk_token="<unk>", **kw)

        @property
        def vocab_size(self):
            return self.sp.get_piece_size()

        def get_vocab(self):
            vocab = {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}
            vocab.update(self.added_tokens_encoder)
            return vocab

        def _tokenize(self, text):
            return self.sp.encode(text, out_type=str)

        def _convert_token_to_id(self, token):
            return self.sp.piece_to_id(token)

        def _convert_id_to_token(self, index):
            return self.sp.id_to_piece(index)

        def convert_tokens_to_string(self, tokens):
            return self.sp.decode(tokens)

        def build_inputs_with_special_tokens(self, ids, pair=None):
            return [self.bos_token_id] + ids + ([] if pair is None else [self.bos_token_id] + pair)

    tok = InternLM2Shaped()
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tok


def internlm2_dir(d):
    """tests/data/tokenizers' InternLM2-shaped directory (tokenizer.model, tokenizer_config.json
    renaming [UNUSED_TOKEN_146] to <|im_start|>, InternVL's image tokens past the vocabulary) as
    transformers' slow sentencepiece tokenizer reads it (legacy=True, as InternLM2Tokenizer)."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    class SlowSentencePiece(SentencePieceBackend):
        vocab_files_names = {"vocab_file": "tokenizer.model"}
        model_input_names = ["input_ids", "attention_mask"]

    tok = SlowSentencePiece.from_pretrained(d, legacy=True)
    bos = tok.convert_tokens_to_ids("<s>")
    # InternLM2Tokenizer's build_inputs_with_special_tokens puts <s> first (add_bos_token);
    # transformers 5's generic backend adds nothing, so the rule is applied here.
    return lambda text: [bos] + tok(text, add_special_tokens=False).input_ids, tok, bos


def load_tokenizers(tok_dir):
    """(name, file, tokenizer(text) ids, token-to-id, BOS id or None, chunk encoder, len(vocab))
    for the test tokenizers. The chunk encoder is the bare library (tokenizers, sentencepiece) on
    text without special tokens."""
    import sentencepiece as spm
    import tokenizers
    from transformers import PreTrainedTokenizerFast
    out = []
    gpt2_path = os.path.join(tok_dir, "bpe_gpt2.json")
    gpt2 = PreTrainedTokenizerFast(tokenizer_file=gpt2_path)
    gpt2_raw = tokenizers.Tokenizer.from_file(gpt2_path)
    out.append(("bpe_gpt2", "bpe_gpt2.json", lambda t: gpt2(t).input_ids, gpt2.convert_tokens_to_ids, None,
                lambda t: gpt2_raw.encode(t, add_special_tokens=False).ids, len(gpt2)))
    sp_path = os.path.join(tok_dir, "sp_bpe.model")
    sp = internlm2_shaped(sp_path)
    sp_raw = spm.SentencePieceProcessor(model_file=sp_path)
    out.append(("sp_bpe", "sp_bpe.model", lambda t: sp(t).input_ids, sp.convert_tokens_to_ids, sp.bos_token_id,
                lambda t: sp_raw.encode(t), len(sp)))
    d = os.path.join(tok_dir, "internlm2_sp")
    slow_ids, slow, bos = internlm2_dir(d)
    raw = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    out.append(("internlm2_sp", "internlm2_sp", slow_ids, slow.convert_tokens_to_ids, bos, lambda t: raw.encode(t), len(slow)))
    d = os.path.join(tok_dir, "internlm2_fast")
    fast = PreTrainedTokenizerFast.from_pretrained(d)
    fast_raw = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    out.append(("internlm2_fast", "internlm2_fast", lambda t: fast(t).input_ids, fast.convert_tokens_to_ids,
                fast.convert_tokens_to_ids("<s>"), lambda t: fast_raw.encode(t, add_special_tokens=False).ids, len(fast)))
    return out


def manual_ids(enc, sid, text, bos):
    """tokenizer(text) spelt out: specials split out left to right, each chunk between encoded alone."""
    ids = [] if bos is None else [bos]
    i = start = 0
    while True:
        hit = next((s for s in SPECIALS if text.startswith(s, i)), None)
        if hit is None and i < len(text):
            i += 1
            continue
        if i > start:
            ids += enc(text[start:i])
        if hit is None:
            return ids
        ids.append(sid(hit))
        i = start = i + len(hit)


def internvl_targets(tokenize, text, ids):
    """preprocess_internlm's target mask for one conversation (unshifted; -100 = ignored)."""
    user, assistant = "<|im_start|>user\n", "<|im_start|>assistant\n"
    bos = len(tokenize(""))  # upstream's "- 1" and cur_len = 1 take InternLM2's BOS off
    n = lambda s: len(tokenize(s)) - bos
    target = list(ids)
    cur = bos
    target[:cur] = [-100] * cur
    parts = text.split(assistant)
    info = parts[0] + assistant
    span = n(info)
    target[cur:cur + span] = [-100] * len(target[cur:cur + span])
    cur += span
    for part in parts[1:-1]:
        answer, question = part.split(user)
        cur += n(answer)
        span = n(user + question + assistant)
        target[cur:cur + span] = [-100] * len(target[cur:cur + span])
        cur += span
    cur += n(parts[-1])
    target[cur:] = [-100] * len(target[cur:])
    ok = cur == len(ids)
    return (target if ok else [-100] * len(ids)), ok


def chatml_ids(enc_raw, sid, system, turns, tiles, generate):
    """mmm's chatml pieces: the system turn's "system\\n" and message apart, "\\n" after each <|im_end|>."""
    enc = lambda s: enc_raw(s) if s else []
    ids, mask = [], []

    def add(x, m=0):
        ids.extend(x)
        mask.extend([m] * len(x))
    if system:
        add([sid("<|im_start|>")]); add(enc("system\n")); add(enc(system)); add([sid("<|im_end|>")]); add(enc("\n"))
    image = 0
    for i, t in enumerate(turns):
        add([sid("<|im_start|>")])
        if i % 2:
            whole, head = enc("assistant\n" + t), enc("assistant\n")
            assert whole[:len(head)] == head, "answer merges into 'assistant\\n'"
            add(head); add(whole[len(head):], 1); add([sid("<|im_end|>")], 1)
        else:
            pieces = t.split("<image>")
            for k, p in enumerate(pieces):
                add(enc(("user\n" if k == 0 else "") + p))
                if k + 1 < len(pieces):
                    add([sid("<img>")] + [sid("<IMG_CONTEXT>")] * (TOKENS_PER_TILE * tiles[image]) + [sid("</img>")])
                    image += 1
            add([sid("<|im_end|>")])
        add(enc("\n"))
    if generate:
        add([sid("<|im_start|>")]); add(enc("assistant\n"))
    return ids, [x if m else -100 for x, m in zip(ids, mask)]


def id_goldens(tok_dir, text):
    import transformers
    import tokenizers
    out = {}
    for name, file, tokenize, sid, bos, enc, vocab in load_tokenizers(tok_dir):
        cases = []
        for c in text["cases"]:
            if c["template"] == "internlm2-chat":
                ids = tokenize(c["text"])
                assert ids == manual_ids(enc, sid, c["text"], bos), (name, c["name"], "transformers and the spelt-out split differ")
                targets, ok = (None, None) if c["generate"] else internvl_targets(tokenize, c["text"], ids)
            else:
                ids, targets = chatml_ids(enc, sid, c["system"], c["turns"], c["tiles"], c["generate"])
                ok = None if c["generate"] else True
                if name == "bpe_gpt2":  # byte-level pieces do not depend on where the text is cut
                    assert ids == tokenize(c["text"]), (name, c["name"])
                if c["generate"]:
                    targets = None
            cases.append({"name": c["name"], "template": c["template"], "ids": ids, "targets": targets,
                          "length_check": ok})
        out[name] = {"tokenizer": file, "reference": "transformers %s, tokenizers %s" % (transformers.__version__, tokenizers.__version__),
                     "bos_id": bos, "vocab_size": vocab, "special_ids": {s: sid(s) for s in SPECIALS}, "cases": cases}
    # the InternLM2-shaped directory, slow (tokenizer.model) and fast (tokenizer.json), agree
    assert [c["ids"] for c in out["internlm2_sp"]["cases"] if c["template"] == "internlm2-chat"] == \
        [c["ids"] for c in out["internlm2_fast"]["cases"] if c["template"] == "internlm2-chat"], "slow and fast InternLM2 differ"
    return out


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/chat")
    ap.add_argument("--tokenizers", default="tests/data/tokenizers")
    ap.add_argument("--ids", action="store_true", help="also the ids (needs transformers and sentencepiece)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    text = text_goldens()
    write(os.path.join(a.out, "prompts.json"), text)
    if a.ids:
        for name, obj in id_goldens(a.tokenizers, text).items():
            write(os.path.join(a.out, "ids_%s.json" % name), obj)


if __name__ == "__main__":
    main()
