#!/usr/bin/env python3
"""Builds the tokenizer fixtures and golden cases in tests/data/tokenizers/ with the reference
libraries: Hugging Face `tokenizers` (byte-level BPE tokenizer.json) and `sentencepiece`
(tokenizer.model). mmm's tests compare its own encoder and decoder against these files.

    python3 tools/reference/make_tokenizer_goldens.py [--only hf|sp|nfc|dirs] [--check-sp] [--dir tests/data/tokenizers]

hf needs `tokenizers` (made on the GPU device machine: tokenizers 0.23.2), sp needs `sentencepiece`
(Debian's python3-sentencepiece 0.1.97, run with /usr/bin/python3), nfc only the standard library,
dirs all three and `transformers` (made on the GPU device machine: transformers 5.17.0,
tokenizers 0.23.2, sentencepiece 0.2.2).

dirs writes Hugging Face model DIRECTORIES (tokenizer files + tokenizer_config.json,
special_tokens_map.json, added_tokens.json, generation_config.json) shaped like InternLM2's /
InternVL's, each with a golden.json:
  internlm2_sp/     tokenizer.model only (the slow, sentencepiece-based tokenizer InternVL loads
                    with use_fast=False): its vocabulary ends in [UNUSED_TOKEN_141..146] which
                    tokenizer_config.json renames (145 = <|im_end|>, 146 = <|im_start|>), and
                    <img>, </img>, <IMG_CONTEXT>, ... are added past the vocabulary.
                    Reference: transformers' SentencePieceBackend (legacy=True, the slow
                    tokenizer InternLM2Tokenizer is a copy of), checked against a direct
                    emulation (split at the added tokens, sentencepiece on each stretch).
  internlm2_fast/   the same converted to tokenizer.json by transformers' LlamaConverter with
                    legacy=True (normalizer Prepend+Replace, byte_fallback BPE, decoder
                    Replace/ByteFallback/Fuse/Strip): reference `tokenizers`.
  internlm2_meta/   the same with a Metaspace pre-tokenizer (prepend_scheme first, split) and a
                    ByteFallback + Metaspace decoder.
In both, model.vocab holds the renamed strings (<|im_start|> at [UNUSED_TOKEN_146]'s id): tokenizers
does not read the ids written in added_tokens (a content outside model.vocab takes the next free
id), so that is the only way a tokenizer.json can keep InternLM2's ids.
plus byte-level tokenizer.json files with Split patterns other than GPT-2/Llama-3/Qwen2's
(bpe_o200k, and one per Split behavior) with `tokenizers` goldens.

Everything is deterministic: a rerun with the same library versions rewrites identical files.
If tests/data/tokenizers/mmm_trained.json exists (written by `mmm tokenizer train` with the
settings of hf_train), the script also checks that `tokenizers` loads it and learns the same vocab
and merges with BpeTrainer (tokenizers 0.23.2: identical). mmm's tests then hold its trainer to
bpe_gpt2.json's model, which is BpeTrainer's.
"""
import argparse
import json
import os
import random
import sys
import traceback

SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]
HF_VOCAB = len(SPECIALS) + 256 + 500  # specials, the byte alphabet, 500 merges
SP_VOCAB = 1000
# Rules for the SentencePiece model with a custom normalizer: multi-character sources and
# targets, prefixes of one another, whitespace that becomes a space, a deletion.
NORMALIZATION_RULES = [("\uff21", "A"), ("\uff22", "B"), ("\uff41", "a"), ("\u2460", "1"),
                       ("\ufb01", "fi"), ("\u00a0", " "), ("\t", " "), ("\u3000", " "),
                       ("e\u0301", "\u00e9"), ("\u00bd", "1/2"), ("\u200b", ""),
                       ("ab", "AB"), ("abc", "xyz")]

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                  r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                 r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

# Texts every tokenizer is checked on: ASCII, unicode, whitespace, digits, punctuation,
# contractions, special tokens inside text, the empty string, and characters the corpus lacks.
TEXTS = [
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "hello",
    " leading space",
    "trailing space ",
    "  multiple   spaces  between   words  ",
    " ",
    "   ",
    "\n",
    "\ttab\tseparated\tvalues\t",
    "line1\nline2\r\nline3\n\n\nend",
    "a \n b",
    "a  \n\n  b\t\n\tc",
    "x\r\n\r\ny\r\rz",
    "   \n  \n",
    "end with newline\n",
    "I'm sure it's John's dog; they've, we'll, I'd, you're, don't.",
    "IT'S I'M WE'LL THEY'RE YOU'VE HE'D DON'T",
    "'s 't 're 've 'm 'll 'd 'x ' s",
    "it\u017f and it'\u017f and 'S",
    "rock 'n' roll, the '90s, students' books",
    "1234567890 3.14159 1e-5 2024-01-15 $19.99 12345 7 42 999 1000000",
    "\u2460\u2461\u2462 \u00bd \u0663\u0664 \u216b x\u00b2",
    "Hello!!! What??? (yes) [no] {maybe} <tag> ... --- ;;; :: @#$%^&*",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Gr\u00f6\u00dfe \u00fcber se\u00f1or a\u00e7\u00e3o",
    "cafe\u0301 e\u0301te\u0301 n\u0303 a\u030a \u212b \u1e9b\u0323",
    "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 \ubb38\uc7a5",
    "I love \U0001f917 and \U0001f44d\U0001f3fd and \U0001f468\u200d\U0001f469\u200d\U0001f467 family",
    "\U0001f389\U0001f389\U0001f389",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 "
    "\u0645\u0631\u062d\u0628\u0627 \u03a9\u2248\u00e7\u221a\u222b",
    "a\u00a0b\u3000c\u2028d\u2003e\u0085f \u00a0 g",
    "\x00\x01\x1f\x7f ctrl",
    "def f(x):\n    return x**2  # square\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 40,
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<img><IMG_CONTEXT><IMG_CONTEXT></img>\nWhat is this?",
    "text<|im_end|>text",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "<IMG_CONTEXT> <IMG_CONTEXT>  <IMG_CONTEXT>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<img><IMG_CONTEXT></img>\n"
    "Is it a bag?<|im_end|>\n<|im_start|>assistant\nNo.<|im_end|>\n",
    "Think: <think>step by step</think> done",
    "Fill the <mask> here and   <mask>there",
    "na\u00efve and nai\u0308ve",
    "MixedCase WordsLikeThis andCamelCase snake_case_names UPPER",
    "https://example.org/index.html?q=tokens&page=2 someone@example.com",
    "Le renard brun rapide saute par-dessus le chien paresseux. C'est l'\u00e9t\u00e9.",
    "zzz azzz zzz_ zzz. zzz\u00e9 (zzz) zzz\nzzz zzzz",
    "a <sep>  b<sep>\n\nc <sep>",
]

# Pieces that random texts are strung from: every character class of the pre-tokenizer regexes,
# the boundaries between them, and the added tokens with their strip and word rules.
RANDOM_POOL = ["a", "Z", "the", " the", "\u00e9", "\u00df", "\u017f", "'", "s", "t", "re", "LL", "'S", " ",
               "  ", "\t", "\n", "\r\n", "\r", "\x0b", "1", "23", "4567", "\u0663", "\u00bd", "\u4e2d",
               "\u6587", "\U0001f600", "\U0001f44d\U0001f3fd", "!", "?", ".", ",", "-", "_", "$", "\u00a0",
               "\u3000", "\u2028", "\x85", "\u0301", "e\u0301", "<|im_end|>", "<img>", "<IMG_CONTEXT>",
               "<think>", "<mask>", "<sep>", "na\u00efve", "nai\u0308ve", "zzz", "<", "|", "\x00"]


def random_texts(n, seed=1234, pool=RANDOM_POOL):
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 14))) for _ in range(n)]


# Texts for the model directories: chat markers and image tokens next to text, repeated, inside
# words, between spaces and newlines; the names the model's vocabulary stores them under;
# multilingual text and whitespace runs.
DIR_TEXTS = [
    "<|im_start|>system\nYou are InternVL.<|im_end|>\n<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\n"
    "\u63cf\u8ff0\u8fd9\u5f20\u56fe\u7247\u3002<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_start|><|im_end|><|im_end|>",
    "a<|im_start|>b",
    " <|im_start|> ",
    "  <|im_end|>  \n",
    "\n<|im_end|>\n",
    "word<img>word</img>word",
    "inside<IMG_CONTEXT>a<IMG_CONTEXT>word",
    "<im_start|> <|im_start <|im_start| |im_start|>",
    "[UNUSED_TOKEN_146]user\nhi[UNUSED_TOKEN_145]",
    "<s>hello</s> <unk> x",
    "x <mask> y  <mask>z\t<mask>",
    "x<sep>  y <sep>\nz<sep>",
    "<think> thinking </think><think>",
    "\u0645\u0631\u062d\u0628\u0627 <|im_end|>\u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u4f60\u597d<|im_end|>\u4e16\u754c <img>\u65e5\u672c\u8a9e</img>",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467<|im_start|>\U0001f44d\U0001f3fd",
    "cafe\u0301 n\u0303 a\u030a<|im_end|>e\u0301",
    "\n\n\n   \t  ",
    "   leading and trailing   ",
    "tab\there\r\nand\u3000ideographic\u00a0nbsp",
]
DIR_POOL = RANDOM_POOL + ["<|im_start|>", "<|im_end|>", "</img>", "[UNUSED_TOKEN_146]", "<s>", "</s>",
                          "\u0645\u0631\u062d", "\u3002", "\u200d", " ", "\n\n"]


def byte_chars():
    """GPT-2's printable stand-in character for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def with_hex(case):
    """JSON strings cannot carry NUL through C's cJSON: such texts also go as hex UTF-8."""
    out = dict(case)
    for k, v in case.items():
        if isinstance(v, str) and "\x00" in v:
            out[k + "_hex"] = v.encode("utf-8").hex()
    return out


def write_json(path, obj):
    """One golden case per line: small files and readable diffs."""
    dumps = lambda x: json.dumps(x, ensure_ascii=True, separators=(",", ":"))
    items = list(obj.items())
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        for i, (k, v) in enumerate(items):
            end = ",\n" if i + 1 < len(items) else "\n"
            if isinstance(v, list) and v and isinstance(v[0], dict):
                f.write(" %s: [\n%s\n ]%s" % (dumps(k), ",\n".join("  " + dumps(with_hex(c)) for c in v), end))
            else:
                f.write(" %s: %s%s" % (dumps(k), dumps(v), end))
        f.write("}\n")


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizers


def hf_train(corpus, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([corpus], trainer)
    return tok


def hf_variants(corpus):
    """The byte-level tokenizers under test, as (file name, JSON text)."""
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
    base = hf_train(corpus, HF_VOCAB)
    base.add_tokens([AddedToken("<think>", normalized=True),
                     AddedToken("</think>", normalized=True),
                     AddedToken("na\u00efve", normalized=True),
                     AddedToken("zzz", single_word=True, normalized=False)])
    base.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False),
                             AddedToken("<sep>", rstrip=True, normalized=False)])
    out = [("bpe_gpt2.json", base.to_str(pretty=True))]

    def split_then_bytes(pattern):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    # Llama-3 style: Split + ByteLevel(use_regex=false), ignore_merges, merges as "a b" strings.
    llama = Tokenizer.from_str(base.to_str())
    llama.pre_tokenizer = split_then_bytes(LLAMA3_PATTERN)
    d = json.loads(llama.to_str())
    d["model"]["ignore_merges"] = True
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    out.append(("bpe_llama3.json", json.dumps(d, ensure_ascii=False, indent=1)))

    # Qwen2 style: NFC normalizer and single-digit numbers.
    qwen = Tokenizer.from_str(base.to_str())
    qwen.normalizer = normalizers.NFC()
    qwen.pre_tokenizer = split_then_bytes(QWEN2_PATTERN)
    out.append(("bpe_qwen2.json", qwen.to_str(pretty=True)))

    # RoBERTa style: a prefix space added to every piece of text between added tokens.
    prefix = Tokenizer.from_str(base.to_str())
    prefix.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    out.append(("bpe_prefix.json", prefix.to_str(pretty=True)))
    return out


def hf_decode_cases(tok):
    """Id sequences that are not encodings of text: partial UTF-8 and special tokens."""
    bc = byte_chars()
    byte_id = {b: tok.token_to_id(bc[b]) for b in range(256)}
    sid = [tok.token_to_id(s) for s in SPECIALS]
    hello = tok.encode("Hello", add_special_tokens=False).ids
    seqs = [
        [],
        [byte_id[0xC3]],                              # a lead byte alone
        [byte_id[0xE4], byte_id[0xB8]],               # a truncated 3-byte character
        [byte_id[0x80]] + hello,                      # a lone continuation byte
        [byte_id[0xF0], byte_id[0x9F], byte_id[0x98], byte_id[ord("a")]],
        [byte_id[0xED], byte_id[0xA0], byte_id[0x80]],  # an encoded surrogate
        [byte_id[0xC0], byte_id[0xAF], byte_id[0xFF]],  # bytes that never occur in UTF-8
        [byte_id[0xE2], byte_id[0x82], byte_id[0xAC]],  # a complete euro sign from bytes
        [sid[0]] + hello + [sid[1]],
        hello + [sid[4], sid[4]] + hello,
        [tok.token_to_id("<think>"), tok.token_to_id("na\u00efve"), tok.token_to_id("<mask>")],
        hello + [tok.token_to_id("zzz"), tok.token_to_id("<sep>")] + hello + [tok.token_to_id("na\u00efve")],
        list(range(0, 40)),
        list(range(HF_VOCAB - 30, tok.get_vocab_size())),
    ]
    return [{"ids": s, "text": tok.decode(s, skip_special_tokens=False),
             "text_skip": tok.decode(s, skip_special_tokens=True)} for s in seqs if None not in s]


def encode_plain(tok, text):
    """The ids with special tokens read as text (None where `tokenizers` is too old for that)."""
    try:
        tok.encode_special_tokens = True
    except AttributeError:
        return None
    try:
        return tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False


def hf_goldens(name, text_json):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(text_json)
    cases = []
    for t in TEXTS + random_texts(60):
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids, "ids_plain": encode_plain(tok, t),
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    return {"tokenizer": name, "reference": "tokenizers " + tokenizers_version(),
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "cases": cases, "decode_cases": hf_decode_cases(tok)}


def tokenizers_version():
    import tokenizers
    return tokenizers.__version__


def check_mmm_trained(d, corpus):
    """mmm's own trainer output: tokenizers must load it; compare with BpeTrainer's result."""
    path = os.path.join(d, "mmm_trained.json")
    if not os.path.exists(path):
        print("no mmm_trained.json yet: skipping the trainer check")
        return
    from tokenizers import Tokenizer
    with open(path, encoding="utf-8") as f:
        ours_text = f.read()
    ours = json.loads(ours_text)
    Tokenizer.from_str(ours_text)  # raises if tokenizers cannot load it
    print("tokenizers loads mmm_trained.json")
    specials = [t["content"] for t in ours["added_tokens"]]
    vocab_size = len(ours["model"]["vocab"])
    if specials != SPECIALS:
        print("mmm_trained.json: specials differ from the script's; not comparing with BpeTrainer")
    else:
        ref = json.loads(hf_train(os.path.join(d, "corpus.txt"), vocab_size).to_str())
        norm = lambda ms: [m.split(" ") if isinstance(m, str) else m for m in ms]
        same_vocab = ref["model"]["vocab"] == ours["model"]["vocab"]
        same_merges = norm(ref["model"]["merges"]) == norm(ours["model"]["merges"])
        print(f"mmm_trained.json vs BpeTrainer: vocab {'identical' if same_vocab else 'DIFFERENT'}, "
              f"merges {'identical' if same_merges else 'DIFFERENT'}")
        if not (same_vocab and same_merges):
            a, b = norm(ours["model"]["merges"]), norm(ref["model"]["merges"])
            diff = [i for i in range(min(len(a), len(b))) if a[i] != b[i]][:5]
            print(f"  {len(a)} vs {len(b)} merges; first differences:",
                  [(i, a[i], b[i]) for i in diff])
            write_json(os.path.join(d, "bpe_trainer_reference.json"), ref)


def make_hf(d):
    print("tokenizers", tokenizers_version())
    corpus = os.path.join(d, "corpus.txt")
    for name, text in hf_variants(corpus):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
        try:
            write_json(os.path.join(d, name.replace(".json", ".golden.json")), hf_goldens(name, text))
            print("wrote", name)
        except Exception:
            traceback.print_exc()
    check_mmm_trained(d, corpus)


# ---------------------------------------------------------------------------------------------
# SentencePiece


def sp_train(corpus, prefix, **kw):
    import sentencepiece as spm
    args = dict(input=corpus, model_prefix=prefix, vocab_size=SP_VOCAB, character_coverage=1.0,
                num_threads=1, minloglevel=2, hard_vocab_limit=False)
    args.update(kw)
    spm.SentencePieceTrainer.train(**args)
    with open(prefix + ".model", "rb") as f:
        blob = f.read()
    for ext in (".model", ".vocab"):
        os.remove(prefix + ext)
    # The trainer records its temporary paths; drop them so that reruns write identical files.
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(blob)
    m.trainer_spec.ClearField("model_prefix")
    m.normalizer_spec.ClearField("normalization_rule_tsv")
    return m.SerializeToString()


def sp_variants(d):
    """The SentencePiece models under test, as (file name, serialized ModelProto)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    import tempfile
    corpus = os.path.join(d, "corpus.txt")
    tmp = tempfile.mkdtemp()
    # InternLM2 / Llama style: BPE, byte fallback, identity normalizer, spaces kept as they are.
    bpe = sp_train(corpus, os.path.join(tmp, "bpe"), model_type="bpe", byte_fallback=True,
                   user_defined_symbols=SPECIALS, normalization_rule_name="identity",
                   remove_extra_whitespaces=False, split_digits=True)
    out = [("sp_bpe.model", bpe)]
    # The same pieces with the other whitespace options.
    m = pb.ModelProto()
    m.ParseFromString(bpe)
    m.normalizer_spec.remove_extra_whitespaces = True
    m.normalizer_spec.add_dummy_prefix = False
    out.append(("sp_bpe_ws.model", m.SerializeToString()))
    # A rule-based normalizer (a small precompiled charsmap, the same machinery as the default
    # NFKC one, which would be 240 KB) and no byte fallback: unknowns become <unk>.
    rules = os.path.join(tmp, "rules.tsv")
    with open(rules, "w") as f:
        for src, dst in NORMALIZATION_RULES:
            f.write(" ".join("%X" % ord(c) for c in src) + "\t" + " ".join("%X" % ord(c) for c in dst) + "\n")
    out.append(("sp_rules.model", sp_train(corpus, os.path.join(tmp, "rules"), model_type="bpe",
                                           vocab_size=600, user_defined_symbols=SPECIALS,
                                           normalization_rule_tsv=rules)))
    os.remove(rules)
    # A unigram model (mmm rejects it with a clear message).
    out.append(("sp_unigram.model", sp_train(corpus, os.path.join(tmp, "uni"), model_type="unigram",
                                             vocab_size=300, normalization_rule_name="identity")))
    os.rmdir(tmp)
    return out


def sp_goldens(name, blob):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_proto=blob)
    controls = sorted((sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i)),
                      key=len, reverse=True)

    def encode_special(text):
        """Control pieces in the text become their ids; the text between them is encoded
        on its own (what transformers' sentencepiece-based tokenizers do)."""
        ids, seg, i = [], "", 0
        while i < len(text):
            hit = next((c for c in controls if text.startswith(c, i)), None)
            if hit is None:
                seg += text[i]
                i += 1
                continue
            ids += sp.encode(seg)
            ids.append(sp.piece_to_id(hit))
            seg, i = "", i + len(hit)
        return ids + sp.encode(seg)

    texts = TEXTS + random_texts(40) + ["<s>Hello</s> world", "</s></s>x<s>", "<unk> stays text",
                     "\uff21\uff22\uff41 \ufb01ne \u2460\u00bd a\u200bb abcd ab\u3000\t x",
                     "e\u0301e\u0301 abab abcabc"]
    cases = [{"text": t, "ids": sp.encode(t), "ids_special": encode_special(t),
              "decoded": sp.decode(sp.encode(t))} for t in texts]
    byte = lambda b: sp.piece_to_id("<0x%02X>" % b)
    hello = sp.encode("Hello")
    seqs = [[], hello, [1] + hello + [2], [0], [0, 0] + hello, sp.encode("  two"),
            [sp.piece_to_id("\u2581")] * 3 + hello, list(range(0, 40)),
            list(range(sp.get_piece_size() - 40, sp.get_piece_size()))]
    if sp.piece_to_id("<0x41>") != sp.unk_id():
        seqs += [[byte(0xE4), byte(0xB8)], [byte(0xE4), byte(0xB8), byte(0xAD)] + hello,
                 hello + [byte(0x80), byte(0x41), byte(0xC3)], [byte(0xF0), byte(0x9F)] + hello]
    return {"tokenizer": name, "reference": "sentencepiece " + spm.__version__,
            "vocab_size": sp.get_piece_size(), "cases": cases,
            "decode_cases": [{"ids": s, "text": sp.decode(s)} for s in seqs]}


def make_sp(d):
    for name, blob in sp_variants(d):
        with open(os.path.join(d, name), "wb") as f:
            f.write(blob)
        if name != "sp_unigram.model":
            write_json(os.path.join(d, name.replace(".model", ".golden.json")), sp_goldens(name, blob))
        print("wrote", name)


# ---------------------------------------------------------------------------------------------
# Model directories (InternLM2 / InternVL shaped) and byte-level Split patterns

O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""])

# Split pre-tokenizers with each behavior (before a ByteLevel without its own regex).
SPLIT_VARIANTS = [
    ("bpe_o200k.json", ("regex", O200K_PATTERN), "isolated", False),
    ("bpe_merged_prev.json", ("regex", r"\s+"), "merged_with_previous", False),
    ("bpe_merged_next.json", ("regex", r"\p{P}+|\d"), "merged_with_next", False),
    ("bpe_removed_invert.json", ("regex", r"[\p{L}\p{N}]+"), "removed", True),
    ("bpe_contiguous.json", ("string", "a"), "contiguous", False),
]


def split_variants(corpus):
    from tokenizers import Regex, Tokenizer, pre_tokenizers
    base = json.loads(dict(hf_variants(corpus))["bpe_gpt2.json"])
    out = []
    for name, (kind, pat), behavior, invert in SPLIT_VARIANTS:
        tok = Tokenizer.from_str(json.dumps(base))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pat) if kind == "regex" else pat, behavior=behavior, invert=invert),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        out.append((name, tok.to_str(pretty=True)))
    return out


SP_DIR_VOCAB = 1000
UNUSED = ["[UNUSED_TOKEN_%d]" % k for k in range(141, 147)]  # ids 1000..1005, as InternLM2 ends its vocabulary
# id -> (content, special, lstrip, rstrip): InternLM2's renamings, InternVL's image tokens past the
# vocabulary, and added tokens with the strip flags.
DIR_ADDED = {
    0: ("<unk>", True, False, False), 1: ("<s>", True, False, False), 2: ("</s>", True, False, False),
    1004: ("<|im_end|>", True, False, False), 1005: ("<|im_start|>", True, False, False),
    1006: ("<img>", True, False, False), 1007: ("</img>", True, False, False), 1008: ("<IMG_CONTEXT>", True, False, False),
    1009: ("<think>", False, False, False), 1010: ("</think>", False, False, False),
    1011: ("<mask>", True, True, False), 1012: ("<sep>", True, False, True),
}
ADDITIONAL = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<mask>", "<sep>"]


def added_entry(content, special, lstrip, rstrip):
    return {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": rstrip, "single_word": False,
            "special": special}


def internlm2_model(corpus, tmp):
    from sentencepiece import sentencepiece_model_pb2 as pb
    blob = sp_train(corpus, os.path.join(tmp, "internlm2"), model_type="bpe", vocab_size=SP_DIR_VOCAB,
                    byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
                    split_digits=True)
    m = pb.ModelProto()
    m.ParseFromString(blob)
    assert len(m.pieces) == SP_DIR_VOCAB, len(m.pieces)
    for name in UNUSED:  # user-defined pieces at the end of the vocabulary
        p = m.pieces.add()
        p.piece, p.score, p.type = name, 0.0, pb.ModelProto.SentencePiece.USER_DEFINED
    return m.SerializeToString()


def write_config_files(d, add_bos=True):
    cfg = {"add_bos_token": add_bos, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "pad_token": "</s>", "clean_up_tokenization_spaces": False, "legacy": True,
           "model_max_length": 4096, "tokenizer_class": "LlamaTokenizer",
           "added_tokens_decoder": {str(i): added_entry(*v) for i, v in sorted(DIR_ADDED.items())},
           "additional_special_tokens": ADDITIONAL}
    tok = lambda c: {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    stm = {"bos_token": tok("<s>"), "eos_token": tok("</s>"), "unk_token": tok("<unk>"), "pad_token": tok("</s>"),
           "additional_special_tokens": ADDITIONAL}
    added = {v[0]: i for i, v in DIR_ADDED.items() if i >= SP_DIR_VOCAB + len(UNUSED)}
    gen = {"bos_token_id": 1, "eos_token_id": [2, 1004], "pad_token_id": 2}
    for name, obj in (("tokenizer_config.json", cfg), ("special_tokens_map.json", stm), ("added_tokens.json", added),
                      ("generation_config.json", gen)):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def slow_reference(d):
    """transformers' slow sentencepiece tokenizer (legacy=True) over the directory."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    class SlowSentencePiece(SentencePieceBackend):
        vocab_files_names = {"vocab_file": "tokenizer.model"}
        model_input_names = ["input_ids", "attention_mask"]

    return SlowSentencePiece.from_pretrained(d, legacy=True)


def emulate_slow(sp, text):
    """What transformers' slow tokenizers do, written out: the added tokens (leftmost, longest
    first) split out of the raw text, lstrip/rstrip taking the whitespace beside them, each
    stretch between them encoded by sentencepiece on its own."""
    by_len = sorted(((v[0], i, v[2], v[3]) for i, v in DIR_ADDED.items()), key=lambda x: -len(x[0]))
    parts, i, start = [], 0, 0
    while i < len(text):
        hit = next((a for a in by_len if text.startswith(a[0], i)), None)
        if hit is None:
            i += 1
            continue
        parts += [text[start:i], hit]
        i = start = i + len(hit[0])
    parts.append(text[start:])
    for k, p in enumerate(parts):
        if isinstance(p, tuple):
            if p[2] and k > 0: parts[k - 1] = parts[k - 1].rstrip()
            if p[3] and k + 1 < len(parts): parts[k + 1] = parts[k + 1].lstrip()
    ids = []
    for p in parts:
        ids += [p[1]] if isinstance(p, tuple) else (sp.encode(p) if p else [])
    return ids


def slow_decode(sp, ids, skip):
    """Runs of model ids decoded by sentencepiece, each added token its content (special ones
    left out with skip): the rule mmm implements for a tokenizer.model directory."""
    out, run = "", []
    for i in ids + [None]:
        if i is not None and i not in DIR_ADDED:
            run.append(i)
            continue
        out += sp.decode(run) if run else ""
        run = []
        if i is not None and not (skip and DIR_ADDED[i][1]):
            out += DIR_ADDED[i][0]
    return out


def dir_texts():
    return TEXTS + DIR_TEXTS + random_texts(60, seed=77, pool=DIR_POOL)


def make_sp_dir(d, corpus, tmp):
    import sentencepiece as spm
    os.makedirs(d, exist_ok=True)
    blob = internlm2_model(corpus, tmp)
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(blob)
    write_config_files(d)
    sp = spm.SentencePieceProcessor(model_proto=blob)
    ref, agree_emul, agree_bos = None, 0, 0
    try:
        ref = slow_reference(d)
    except Exception:
        traceback.print_exc()
    cases = []
    texts = dir_texts()
    for t in texts:
        emul = emulate_slow(sp, t)
        ids = ref.encode(t, add_special_tokens=False) if ref else emul
        agree_emul += ids == emul
        # InternLM2Tokenizer (like transformers 4's slow LlamaTokenizer) puts the BOS first when
        # add_bos_token; transformers 5's generic SentencePieceBackend adds none (the agreement
        # count below says so), so the golden writes the rule out.
        bos = [1] + ids
        if ref:
            agree_bos += ref.encode(t, add_special_tokens=True) == bos
        cases.append({"text": t, "ids": ids, "ids_bos": bos, "decoded": slow_decode(sp, ids, False),
                      "decoded_skip": slow_decode(sp, ids, True)})
    print(f"internlm2_sp: transformers slow vs emulation agree on {agree_emul}/{len(texts)}, "
          f"add_special_tokens=True gives [<s>] + ids on {agree_bos}/{len(texts)}")
    hello = sp.encode("Hello")
    seqs = [[1005] + hello + [1004, 13], [1006, 1008, 1008, 1007] + hello, hello + [1009] + hello + [1012, 1011],
            [1, 2, 0] + hello, list(range(990, 1013)), [sp.piece_to_id("<0xE4>"), sp.piece_to_id("<0xB8>")] + [1004]]
    golden = {"tokenizer": "internlm2_sp", "reference": (
                  "transformers %s SentencePieceBackend(legacy=True), sentencepiece %s" % (transformers_version(), spm.__version__)
                  if ref else "emulation over sentencepiece %s" % spm.__version__),
              "vocab_size": SP_DIR_VOCAB + len(UNUSED) + 7, "stop_ids": [2, 1004],
              "token_ids": {"<|im_start|>": 1005, "<|im_end|>": 1004, "[UNUSED_TOKEN_146]": 1005, "<img>": 1006,
                            "<IMG_CONTEXT>": 1008, "<s>": 1, "<think>": 1009, "<0x0A>": sp.piece_to_id("<0x0A>")},
              "cases": cases,
              "decode_cases": [{"ids": q, "text": slow_decode(sp, q, False), "text_skip": slow_decode(sp, q, True)}
                               for q in seqs]}
    write_json(os.path.join(d, "golden.json"), golden)
    return blob


def transformers_version():
    import transformers
    return transformers.__version__


def convert_dir(sp_dir, d, legacy):
    """The HF-converted tokenizer.json of the sentencepiece directory: transformers' LlamaTokenizer
    converts tokenizer.model (vocab and merges; Metaspace with prepend_scheme "first", the
    Replace/ByteFallback/Fuse/Strip decoder); legacy swaps in what LlamaConverter writes for
    legacy=True, the normalizer Prepend("▁") + Replace(" ", "▁") and no pre-tokenizer. Then the
    renamed and added tokens with their ids, and the BOS post-processor of add_bos_token."""
    from tokenizers import Tokenizer, processors
    from transformers import LlamaTokenizer
    os.makedirs(d, exist_ok=True)
    tok = Tokenizer.from_str(LlamaTokenizer.from_pretrained(sp_dir).backend_tokenizer.to_str())
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    j = json.loads(tok.to_str())
    if legacy:
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
    else:  # Metaspace both ways, prepend_scheme "first", split into words
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}]}
    # tokenizers gives an added token the model's id when model.vocab has its content, else the
    # next free id (the ids written in added_tokens are not read): the renamed pieces are renamed
    # in model.vocab itself, so that <|im_start|> keeps [UNUSED_TOKEN_146]'s id.
    vocab = j["model"]["vocab"]
    for i, (content, *_) in DIR_ADDED.items():
        old = next((k for k, v in vocab.items() if v == i), None)
        if old is not None and old != content:
            vocab[content] = vocab.pop(old)
            j["model"]["merges"] = [m for m in j["model"]["merges"] if "".join(m) != old]
    j["added_tokens"] = [dict(added_entry(*v), id=i) for i, v in sorted(DIR_ADDED.items())]
    text = json.dumps(j, ensure_ascii=False, indent=1)
    loaded = Tokenizer.from_str(text)  # tokenizers must load it, with the ids written
    assert all(loaded.token_to_id(v[0]) == i for i, v in DIR_ADDED.items()), "added token ids moved"
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    write_config_files(d)
    return text


def fast_dir_golden(name, d, text):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(text)
    cases = []
    for t in dir_texts():
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids, "ids_plain": encode_plain(tok, t),
                      "ids_bos": tok.encode(t, add_special_tokens=True).ids,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    agree = 0
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(d)
        agree = sum(at.encode(c["text"]) == c["ids_bos"] for c in cases)
    except Exception:
        traceback.print_exc()
    print(f"{name}: transformers AutoTokenizer(...).encode(text) equals tokenizers' ids with BOS on {agree}/{len(cases)}")
    hello = tok.encode("Hello", add_special_tokens=False).ids
    byte = lambda b: tok.token_to_id("<0x%02X>" % b)
    seqs = [[1005] + hello + [1004], [1006, 1008, 1007] + hello, [1, 2, 0] + hello, hello + [1009, 1011] + hello,
            [byte(0xE4), byte(0xB8)], [byte(0xE4), byte(0xB8), byte(0xAD)] + hello + [byte(0x80)], list(range(990, 1013)),
            [tok.token_to_id("\u2581")] * 3 + hello]
    golden = {"tokenizer": name, "reference": "tokenizers " + tokenizers_version(),
              "vocab_size": tok.get_vocab_size(with_added_tokens=True), "stop_ids": [2, 1004],
              "token_ids": {k: tok.token_to_id(k) for k in ("<|im_start|>", "<|im_end|>", "<img>", "<IMG_CONTEXT>", "<s>",
                                                            "<think>", "<0x0A>")},
              "cases": cases,
              "decode_cases": [{"ids": q, "text": tok.decode(q, skip_special_tokens=False),
                                "text_skip": tok.decode(q, skip_special_tokens=True)} for q in seqs if None not in q]}
    write_json(os.path.join(d, "golden.json"), golden)


def make_dirs(d):
    import tempfile
    print("tokenizers", tokenizers_version(), "transformers", transformers_version())
    corpus = os.path.join(d, "corpus.txt")
    tmp = tempfile.mkdtemp()
    sp_dir = os.path.join(d, "internlm2_sp")
    make_sp_dir(sp_dir, corpus, tmp)
    print("wrote internlm2_sp")
    for name, legacy in (("internlm2_fast", True), ("internlm2_meta", False)):
        try:
            text = convert_dir(sp_dir, os.path.join(d, name), legacy)
            fast_dir_golden(name, os.path.join(d, name), text)
            print("wrote", name)
        except Exception:
            traceback.print_exc()
    for name, text in split_variants(corpus):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        try:
            write_json(os.path.join(d, name.replace(".json", ".golden.json")), hf_goldens(name, text))
            print("wrote", name)
        except Exception:
            traceback.print_exc()



def make_nfc(d):
    """NFC of random strings rich in what composition has to get right (Python's unicodedata, the
    Unicode version src/text/unicode_tables.c is generated from): combining marks in and out of
    canonical order, blocked and unblocked pairs, Hangul jamo and syllables, singletons,
    composition exclusions, characters with several decomposition levels."""
    import unicodedata
    pool = ["a", "e", "o", "u", "A", "E", "\u00e9", "\u00c5", "\u212b", "\u2126", "\u0301", "\u0300", "\u0308",
            "\u0323", "\u0327", "\u031b", "\u0345", "\u0344", "\u0958", "\u0915\u093c", "\u1100", "\u1161",
            "\u11a8", "\uac00", "\uac01", "\u1e9b", "\u1fc1", "\u1f80", "\u03b1", "\u0313", "\u0342", "\u00a8",
            "\u0f73", "\u0fb2\u0f80", "\U0001d15e", "\U0001d165", "\u3099", "\u304b", "\u30cf\u309a", "x", " ",
            "\U0001f600", "\u4e2d", "\u0627\u0653", "\u05d0\u05b7", "\u2adc", "\u0338", "=", "\u226e"]
    rng = random.Random(99)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 8))) for _ in range(250)]
    write_json(os.path.join(d, "nfc.golden.json"), {
        "reference": "unicodedata " + unicodedata.unidata_version,
        "cases": [{"text": t, "nfc": unicodedata.normalize("NFC", t)} for t in texts]})
    print("wrote nfc.golden.json")


def check_sp(d):
    """Re-runs this sentencepiece on the committed models' golden texts and counts agreements:
    the goldens were made with another version of the library."""
    import sentencepiece as spm
    for name in sorted(os.listdir(d)):
        if not name.endswith(".golden.json") or not name.startswith("sp_"):
            continue
        with open(os.path.join(d, name), encoding="utf-8") as f:
            g = json.load(f)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, g["tokenizer"]))
        same = sum(sp.encode(c["text"]) == c["ids"] and sp.decode(c["ids"]) == c["decoded"] for c in g["cases"])
        print(f"{name}: sentencepiece {spm.__version__} agrees on {same}/{len(g['cases'])} cases")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="tests/data/tokenizers")
    ap.add_argument("--only", choices=["hf", "sp", "nfc", "dirs"])
    ap.add_argument("--check-sp", action="store_true", help="compare this sentencepiece with the SP goldens")
    a = ap.parse_args()
    failed = 0
    steps = [step for name, step in (("hf", make_hf), ("sp", make_sp), ("nfc", make_nfc), ("dirs", make_dirs))
             if a.only in (None, name)]
    steps += [check_sp] if a.check_sp else []
    for step in steps:  # one failing step must not cost the others' files
        try:
            step(a.dir)
        except Exception:
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
