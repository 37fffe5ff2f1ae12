#!/usr/bin/env bash
# The small-inputs guarantee: mmm given a hostile input of under 1 MB (a header promising a huge
# image, JSON that would build a tree many times its size, a gzip promising millions of images,
# a FIFO where a file belongs, a context larger than memory...) either succeeds or exits with a
# one-line error, within 60 s and 256 MB of peak memory (RSS, by /usr/bin/time), never hanging,
# crashing or swapping. Each case prints "<case> ok (exit N, M MB)" or "FAIL <case>: why".
# usage: tests/robust/small_inputs.sh [MMM_BINARY] [CASE...]    (prints "N passed, N failed")
set -u
cd "$(dirname "$0")/../.."
mmm=${1:-build/mmm}
shift $(( $# > 0 ? 1 : 0 ))
only=("$@")
budget_mb=256
limit_s=60
command -v /usr/bin/time > /dev/null || { echo "FAIL robust: /usr/bin/time is missing (scripts/deps.sh installs it)"; exit 1; }
work=$(mktemp -d /tmp/mmm_robust_XXXXXX)
[ -n "${KEEP:-}" ] && echo "work directory: $work" || trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# ---- fixtures: a tiny trained model with its tokenizer and data (seconds) ----
fx=$work/fx
"$mmm" data fashion-mnist --out "$fx/data" --train 16 --test 4 > /dev/null 2> "$work/fixture.err" ||
    { echo "FAIL robust: fixture data: $(tail -n 1 "$work/fixture.err")"; exit 1; }
"$mmm" tokenizer train --corpus "$fx/data/corpus.txt" --vocab-size 300 --special "<|im_start|>" --special "<|im_end|>" \
    --special "<img>" --special "</img>" --special "<IMG_CONTEXT>" --out "$fx/tok.json" > /dev/null || exit 1
sed -e 's/"hidden_size": 128/"hidden_size": 32/; s/"llm_hidden_size": 128/"llm_hidden_size": 32/' \
    -e 's/"intermediate_size": 384/"intermediate_size": 64/; s/"vocab_size": 384/"vocab_size": 300/' \
    configs/teacher-fmnist.json > "$fx/config.json"
"$mmm" train --config "$fx/config.json" --tokenizer "$fx/tok.json" --data "$fx/data/train.jsonl" --out "$fx/model" \
    --steps 1 > /dev/null || { echo "FAIL robust: fixture model"; exit 1; }
model=$fx/model

# ---- the hostile inputs, made by a short Python script (all under 1 MB) ----
h=$work/in
mkdir -p "$h"
python3 - "$h" <<'EOF' || { echo "FAIL robust: making the inputs"; exit 1; }
import gzip, json, struct, sys, zlib
d = sys.argv[1]
def put(name, data):
    with open(f"{d}/{name}", "wb") as f: f.write(data)
# GIF: a 1x1 image on a 16384x16384 logical screen
put("screen.gif", b"GIF89a" + struct.pack("<HHBBB", 16384, 16384, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00;")
# BMP and PPM headers claiming 16384x16384 with a few bytes of pixels
put("huge.bmp", b"BM" + struct.pack("<IHHI", 54 + 3 * 16384 * 16384, 0, 0, 54)
    + struct.pack("<IiiHHIIiiII", 40, 16384, 16384, 1, 24, 0, 0, 2835, 2835, 0, 0) + b"\0" * 64)
put("huge.ppm", b"P6\n16384 16384\n255\n" + b"\0" * 64)
# a complete all-zero 16384x16384 PNG (1-bit grey: 33 MB of rows deflate to ~33 KB)
def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
z = zlib.compressobj(9)
row = b"\0" * (1 + 16384 // 8)
idat = b"".join(z.compress(row) for _ in range(16384)) + z.flush()
put("zero.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16384, 16384, 1, 0, 0, 0, 0))
    + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
# JSON whose one array has 400K elements (800 KB; cJSON would spend ~32 MB on it, a 40 MB
# file 1.6 GB)
zeros = b"[" + b",".join([b"0"] * 400000) + b"]"
hdr = b'{"__metadata__":{"x":' + zeros + b"}}"
put("array.safetensors", struct.pack("<Q", len(hdr)) + hdr)
put("array.index.json", b'{"metadata":{"x":' + zeros + b'},"weight_map":{"w":"model.safetensors"}}')
put("array.tokenizer.json", b'{"version":"1.0","added_tokens":[],"model":{"type":"BPE","vocab":{},"merges":' + zeros + b"}}")
conv = [{"from": "human", "value": "<image>\nWhat item is this?"}, {"from": "gpt", "value": "Coat"}]
put("array.jsonl", json.dumps({"image": "zero.png", "conversations": conv})[:-1].encode() + b',"x":' + zeros + b"}\n")
# a dataset record of a 16384x16384 all-zero PNG
put("zero_png.jsonl", json.dumps({"image": "zero.png", "conversations": conv}).encode() + b"\n")
# one 900 KB word; one 900 KB turn of ordinary words (~300K tokens)
put("long_word.jsonl", json.dumps({"conversations": [{"from": "human", "value": "a" * 900000},
                                                    {"from": "gpt", "value": "Coat"}]}).encode() + b"\n")
put("long_turn.jsonl", json.dumps({"conversations": [{"from": "human", "value": "what item is this " * 50000},
                                                    {"from": "gpt", "value": "Coat"}]}).encode() + b"\n")
# gzipped IDX files whose headers promise 2M images (and labels) of 28x28
import os
os.makedirs(f"{d}/idx", exist_ok=True)
for split in ("train", "t10k"):
    put(f"idx/{split}-images-idx3-ubyte.gz", gzip.compress(struct.pack(">IIII", 0x803, 2000000, 28, 28) + b"\0" * 784))
    put(f"idx/{split}-labels-idx1-ubyte.gz", gzip.compress(struct.pack(">II", 0x801, 2000000) + b"\0"))
EOF

# model directories with one file replaced
with_file() { # $1 = new directory, $2 = file name in it, $3 = what to put there (a path, or "fifo")
    rm -rf "$1"
    cp -r "$model" "$1"
    rm -rf "$1/$2"
    if [ "$3" = fifo ]; then mkfifo "$1/$2"; else cp "$3" "$1/$2"; fi
}
with_file "$work/st_array" model.safetensors "$h/array.safetensors"
with_file "$work/index_array" model.safetensors.index.json "$h/array.index.json"
rm "$work/index_array/model.safetensors"
with_file "$work/fifo_config" config.json fifo
with_file "$work/fifo_weights" model.safetensors fifo
with_file "$work/fifo_tokenizer" tokenizer.json fifo
with_file "$work/fifo_sp_model" tokenizer.model fifo
rm "$work/fifo_sp_model/tokenizer.json"
with_file "$work/fifo_checkpoint" checkpoints/step-0000001/trainer_state.json fifo
mkfifo "$h/fifo.png" "$h/fifo.jsonl"
# a config.json whose sizes pass the config checks but make a 49-billion-parameter model
with_file "$work/huge_config" config.json "$model/config.json"
python3 - "$work/huge_config/config.json" <<'EOF' || exit 1
import json, sys
c = json.load(open(sys.argv[1]))
for s in ("embedding_config", "llm_config"):
    c[s].update(hidden_size=8192, intermediate_size=32768, num_hidden_layers=24)
c["embedding_config"]["llm_hidden_size"] = 8192
json.dump(c, open(sys.argv[1], "w"))
EOF
# a config.json with a 400K-element array beside the real keys
with_file "$work/config_array" config.json "$model/config.json"
python3 - "$work/config_array/config.json" <<'EOF' || exit 1
import json, sys
c = json.load(open(sys.argv[1]))
c["x"] = [0] * 400000
json.dump(c, open(sys.argv[1], "w"), separators=(",", ":"))
EOF

# ---- running a case ----
# run NAME ARGS...: runs mmm ARGS under the time and memory limits (stdin empty) and checks the
# outcome: success, or exit 1/2 with exactly one line on stderr.
run() {
    local name=$1
    shift
    if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$name"; then return; fi
    /usr/bin/time -f %M -o "$work/rss" timeout -k 5 "$limit_s" "$mmm" "$@" < /dev/null > "$work/out" 2> "$work/err"
    local rc=$? kb
    kb=$(tail -n 1 "$work/rss")
    local mb=$(( ${kb:-0} / 1024 )) lines
    lines=$(wc -l < "$work/err")
    local first
    first=$(head -n 1 "$work/err" | cut -c 1-300)
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "FAIL $name: still running after ${limit_s} s (killed; $mb MB)"
    elif [ "$rc" -gt 2 ]; then
        echo "FAIL $name: exit $rc (a crash or signal), $mb MB: $(tail -n 3 "$work/err" | tr '\n' ' ' | cut -c 1-300)"
    elif [ "$rc" -ne 0 ] && { [ "$lines" -ne 1 ] || [ -z "$first" ]; }; then
        echo "FAIL $name: exit $rc with $lines lines on stderr, not one: $(head -c 300 "$work/err" | tr '\n' '|')"
    elif [ "$mb" -gt "$budget_mb" ]; then
        echo "FAIL $name: peak RSS $mb MB, over $budget_mb MB (exit $rc${first:+: $first})"
    else
        echo "$name ok (exit $rc, $mb MB)${first:+: $first}"
        passed=$((passed + 1))
        return
    fi
    failed=$((failed + 1))
}

img=(forward --model "$model" --ids 1,-1,2)
run gif_16384_screen "${img[@]}" --image "$h/screen.gif"
run bmp_16384_header "${img[@]}" --image "$h/huge.bmp"
run ppm_16384_header "${img[@]}" --image "$h/huge.ppm"
run png_16384_zeros "${img[@]}" --image "$h/zero.png"
run png_16384_zeros_eval eval --model "$model" --data "$h/zero_png.jsonl"
run json_array_config forward --model "$work/config_array" --ids 1,2
run json_array_safetensors_header forward --model "$work/st_array" --ids 1,2
run json_array_shard_index forward --model "$work/index_array" --ids 1,2
run json_array_tokenizer forward --model "$model" --text hello --tokenizer "$h/array.tokenizer.json"
run json_array_dataset_line eval --model "$model" --data "$h/array.jsonl"
run idx_promises_2m_images data fashion-mnist --source "$h/idx" --out "$work/idx_out" --train 4 --test 4
run long_word_dataset_line eval --model "$model" --data "$h/long_word.jsonl"
run long_turn_over_max_tokens eval --model "$model" --data "$h/long_turn.jsonl"
# a 30M-token context needs ~23 GB of KV cache, the 49B-parameter model 195 GB: over the
# address-space limit set here, or the machine's memory, and refused before allocating either way
run_limited() { (ulimit -v 16000000; run "$@"; echo "$passed $failed" > "$work/counts"); read -r passed failed < "$work/counts"; }
run_limited context_over_memory chat --model "$model" --context 30000000 -p hi
run_limited model_over_memory forward --model "$work/huge_config" --ids 1,2
run fifo_config forward --model "$work/fifo_config" --ids 1,2
run fifo_weights forward --model "$work/fifo_weights" --ids 1,2
run fifo_tokenizer forward --model "$work/fifo_tokenizer" --text hello
run fifo_tokenizer_model forward --model "$work/fifo_sp_model" --text hello
run fifo_image "${img[@]}" --image "$h/fifo.png"
run fifo_dataset eval --model "$model" --data "$h/fifo.jsonl"
run fifo_checkpoint train --config "$fx/config.json" --tokenizer "$fx/tok.json" --data "$fx/data/train.jsonl" \
    --out "$work/fifo_checkpoint" --steps 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
