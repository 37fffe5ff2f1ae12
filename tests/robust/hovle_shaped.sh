#!/usr/bin/env bash
# A model directory shaped like HoVLE's release, end to end through the CLI: config.json with
# rope_scaling (dynamic NTK, a max_position_embeddings that the prompts cross) and
# "template": "internlm2-chat", an InternLM2-style tokenizer (tokenizer.model whose chat markers are
# [UNUSED_TOKEN_*] pieces renamed by tokenizer_config.json, <img>/</img>/<IMG_CONTEXT> past the
# vocabulary, add_bos_token, generation_config.json), LLaVA JSON-array data with --image-root and an
# InternVL meta file. train, forward, chat, eval, seed (bf16 export) and distill must all run, with
# the sample counts the data defines. The exact values are held elsewhere (tokenizer and chat
# goldens against transformers, RoPE scaling against the PyTorch reference); this checks that the
# pieces meet in the product.
# usage: tests/robust/hovle_shaped.sh [MMM_BINARY]   (ends with "N passed, N failed"; KEEP=1 keeps
# the work folder and names it)
set -u
cd "$(dirname "$0")/../.."
mmm=${1:-build/mmm}
work=$(mktemp -d)
trap 'if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT
passed=0 failed=0
ok() { # $1 = what, rest = command whose success is checked
    local what=$1; shift
    if "$@" > "$work/out" 2>&1; then
        echo "hovle-shaped: $what ok"; passed=$((passed + 1))
    else
        echo "FAIL hovle-shaped: $what: $(tail -n 2 "$work/out" | tr '\n' ' ')"; failed=$((failed + 1))
    fi
}
has() { # $1 = what, $2 = file, $3 = fixed string it must contain
    if grep -qF -- "$3" "$2"; then
        echo "hovle-shaped: $1 ok"; passed=$((passed + 1))
    else
        echo "FAIL hovle-shaped: $1: '$3' not in $(tr '\n' ' ' < "$2" | cut -c1-300)"; failed=$((failed + 1))
    fi
}

# ---- data: Fashion-MNIST records as a LLaVA JSON array over a separate image folder, and an
# InternVL meta file over two JSONL annotations (one repeated twice) ----
d=$work/data
"$mmm" data fashion-mnist --out "$d/src" --train 12 --test 4 > /dev/null 2> "$work/err" ||
    { echo "FAIL hovle-shaped: fixture data: $(tail -n 1 "$work/err")"; exit 1; }
python3 - "$d" <<'EOF' || { echo "FAIL hovle-shaped: making the data files"; exit 1; }
import json, os, sys
d = sys.argv[1]
def records(name):
    with open(f"{d}/src/{name}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
train, test = records("train"), records("test")
os.makedirs(f"{d}/llava", exist_ok=True)
for name, recs in (("train", train), ("test", test)):
    with open(f"{d}/llava/{name}.json", "w") as f:  # one JSON array, images relative to --image-root
        json.dump(recs, f, indent=1)
half = len(train) // 2
for name, recs in (("a", train[:half]), ("b", train[half:])):
    with open(f"{d}/llava/{name}.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
meta = {"part_a": {"root": "../src", "annotation": "a.jsonl", "repeat_time": 2, "length": half},
        "part_b": {"root": "../src", "annotation": "b.jsonl", "repeat_time": 1, "length": len(train) - half}}
with open(f"{d}/llava/meta.json", "w") as f:
    json.dump(meta, f, indent=1)
print(len(train), len(test))
EOF
n_train=$(python3 -c "import json; print(len(json.load(open('$d/llava/train.json'))))")
n_test=$(python3 -c "import json; print(len(json.load(open('$d/llava/test.json'))))")

# ---- the model's files: HoVLE's config fields at a tiny size, InternLM2's tokenizer files ----
tok=tests/data/tokenizers/internlm2_sp
cfg=$work/config.json
python3 - "$cfg" <<'EOF' || { echo "FAIL hovle-shaped: making config.json"; exit 1; }
import json, sys
c = json.load(open("configs/teacher-fmnist.json"))
c["template"] = "internlm2-chat"
special = {"<|im_end|>": 1004, "<|im_start|>": 1005, "<img>": 1006, "</img>": 1007, "<IMG_CONTEXT>": 1008,
           "<think>": 1009, "</think>": 1010, "<mask>": 1011, "<sep>": 1012}
e, l = c["embedding_config"], c["llm_config"]
for s in (e, l):
    s.update(hidden_size=32, intermediate_size=64, max_position_embeddings=64,
             rope_scaling={"type": "dynamic", "factor": 2.0})
e.update(llm_hidden_size=32, llm_vocab_size=1004, special_token_maps=special, img_context_token_id=1008)
l.update(vocab_size=1013)
json.dump(c, open(sys.argv[1], "w"), indent=2)
EOF

t=$work/teacher
ok "train on a LLaVA JSON array with --image-root" \
    "$mmm" train --config "$cfg" --tokenizer "$tok" --data "$d/llava/train.json" --image-root "$d/src" \
    --out "$t" --steps 2 --eval-every 0 --save-every 0 --strict
for f in tokenizer.model tokenizer_config.json special_tokens_map.json added_tokens.json generation_config.json; do
    ok "the trained model keeps $f" test -f "$t/$f"
done
ok "the trained model keeps rope_scaling and the template" \
    python3 -c "import json,sys; c=json.load(open('$t/config.json')); sys.exit(not (c['template']=='internlm2-chat' and c['llm_config']['rope_scaling']['type']=='dynamic'))"

"$mmm" tokenizer encode --tokenizer "$t" --text "<|im_start|>user" --add-special > "$work/ids" 2>&1
has "<|im_start|> is one token after BOS" "$work/ids" "1,1005,"

img=$(python3 -c "import json; r=[x for x in json.load(open('$d/llava/test.json')) if 'image' in x][0]; i=r['image']; print(i if isinstance(i,str) else i[0])")
ok "forward with an image" "$mmm" forward --model "$t" --ids 1,1005,-1,1004 --image "$d/src/$img" --top 3
"$mmm" chat --model "$t" --image "$d/src/$img" -p "What item is this?" --max-new 4 > "$work/chat" 2>&1
ok "chat with an image" test $? -eq 0

"$mmm" eval --model "$t" --data "$d/llava/test.json" --image-root "$d/src" --strict --json "$work/ev.json" > "$work/eval" 2>&1
ok "eval on a JSON array with --image-root" test $? -eq 0
has "eval scored every record of the array" "$work/ev.json" "\"samples\": $n_test,"

s=$work/seeded
ok "seed a bf16 student" "$mmm" seed --teacher "$t" --out "$s" --save-dtype bf16
ok "the student's config names upstream's classes and its weights are BF16" python3 - "$s" <<'EOF'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
assert c["model_type"] == "mmMamba_chat" and c["architectures"] == ["mmMambaChatModel"], c["model_type"]
assert "layers_block_type" in c["llm_config"] and c["torch_dtype"] == "bfloat16", c.get("torch_dtype")
with open(f"{d}/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
assert {v["dtype"] for k, v in h.items() if k != "__metadata__"} == {"BF16"}
EOF
ok "forward on the bf16 student" "$mmm" forward --model "$s" --ids 1,1005,7,8,1004 --top 3

u=$work/student
"$mmm" distill --teacher "$t" --data "$d/llava/meta.json" --out "$u" --steps1 1 --steps2 1 --steps3 1 \
    --eval-samples 0 --strict > "$work/distill" 2>&1
ok "distill on an InternVL meta file" test $? -eq 0
# the meta file defines 2 × half + (n − half) records: part_a twice, part_b once
n_meta=$(( n_train / 2 * 2 + n_train - n_train / 2 ))
"$mmm" eval --model "$t" --data "$d/llava/meta.json" --strict --max-new 2 --json "$work/ev_meta.json" > "$work/eval_meta" 2>&1
ok "eval on the InternVL meta file" test $? -eq 0
has "the meta file's records counted with repeat_time" "$work/ev_meta.json" "\"samples\": $n_meta,"
"$mmm" eval --model "$u" --data "$d/llava/test.json" --image-root "$d/src" --teacher "$t" --json "$work/ev2.json" > "$work/eval2" 2>&1
ok "eval of the distilled student against its teacher" test $? -eq 0
has "the student's eval scored every record" "$work/ev2.json" "\"samples\": $n_test,"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
