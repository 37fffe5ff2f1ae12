#!/usr/bin/env bash
# `mmm serve` driven by real clients over loopback: curl, and the official openai npm package
# (installed into build/npm from the npm registry; skipped loudly without npm). A tiny teacher
# and a linear student made on the spot are served on a free port the kernel picks (--port 0);
# answers must equal `mmm chat`'s for the same prompt, seed and sampling, streams must be
# well-formed chunks that concatenate to the same text, 16 clients at once must all be answered,
# a client that leaves must free its session, every refusal must carry the right status and an
# OpenAI error object, and the server must go on serving. Every wait is bounded; every server
# started is killed on exit. Prints "<case> ok" or "FAIL <case>: why", then "N passed, N failed".
# usage: tests/serve/serve_clients.sh [MMM_BINARY [OPTION...]]     (KEEP=1 keeps the work folder)
#   OPTIONs go to both mmm chat and mmm serve: `--device cuda` (and `--dtype bf16`) for the GPU path
set -u
cd "$(dirname "$0")/../.."
mmm=${1:-build/mmm}
shift $(( $# > 0 ? 1 : 0 ))
dev=("$@")
npm_dir=${MMM_NPM_DIR:-build/npm}
command -v curl > /dev/null || { echo "FAIL serve: curl is missing (scripts/deps.sh installs it)"; exit 1; }
work=$(mktemp -d /tmp/mmm_serve_XXXXXX)
passed=0 failed=0
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done
    wait 2> /dev/null
    [ -n "${KEEP:-}" ] && echo "work folder: $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
export PYTHONIOENCODING=utf-8 # answers of a barely trained model hold any character

ok() { echo "$1 ok"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
expect() { if [ "$2" = 1 ]; then ok "$1"; else fail "$1" "$3"; fi; } # $1 case, $2 1|0, $3 why

# ---- fixtures: a tiny teacher trained one step, and a linear student seeded from it ----
fx=$work/fx
"$mmm" data fashion-mnist --out "$fx/data" --train 16 --test 4 > /dev/null 2> "$work/fixture.err" ||
    { echo "FAIL serve: fixture data: $(tail -n 1 "$work/fixture.err")"; exit 1; }
"$mmm" tokenizer train --corpus "$fx/data/corpus.txt" --vocab-size 300 --special "<|im_start|>" --special "<|im_end|>" \
    --special "<img>" --special "</img>" --special "<IMG_CONTEXT>" --out "$fx/tok.json" > /dev/null || exit 1
# hidden 32 (head_dim 8) on the CPU; the CUDA attention kernels take head_dim 32 at the least
# (the small-budget case below scales with it: a 4-token request's state is 0.7 MB, 2.9 MB at 128)
hidden=32 ffn=64 small_budget=0.001
case " ${dev[*]-} " in *" cuda "*) hidden=128 ffn=384 small_budget=0.004 ;; esac
sed -e "s/\"hidden_size\": 128/\"hidden_size\": $hidden/; s/\"llm_hidden_size\": 128/\"llm_hidden_size\": $hidden/" \
    -e "s/\"intermediate_size\": 384/\"intermediate_size\": $ffn/; s/\"vocab_size\": 384/\"vocab_size\": 300/" \
    configs/teacher-fmnist.json > "$fx/config.json"
"$mmm" train --config "$fx/config.json" --tokenizer "$fx/tok.json" --data "$fx/data/train.jsonl" --out "$fx/teacher" \
    --steps 1 > /dev/null || { echo "FAIL serve: fixture teacher"; exit 1; }
"$mmm" seed --teacher "$fx/teacher" --out "$fx/linear" > /dev/null || { echo "FAIL serve: fixture student"; exit 1; }
image=$(ls "$fx"/data/images/train/*.png | head -n 1)

# ---- helpers ----
# start NAME MODEL [OPTION...]: starts a server on a free port; sets $port and $pid
start() {
    local name=$1 model=$2
    shift 2
    server=$name
    "$mmm" serve --model "$model" --port 0 --name tiny ${dev[@]+"${dev[@]}"} "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pid=$!
    pids+=("$pid")
    port=
    for _ in $(seq 1 300); do
        port=$(sed -n 's/^mmm serve: listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/$name.out")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    echo "FAIL serve: the $name server did not start: $(tail -n 2 "$work/$name.err" "$work/$name.out" | tr '\n' ' ')"
    exit 1
}
# stop: ends the last server started with SIGTERM; it must exit by itself within 10 s, with status 0
# and nothing on stderr (where a sanitizer would report); sets $rc
stop() {
    kill -TERM "$pid" 2> /dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    wait "$pid" 2> /dev/null
    rc=$?
    expect "${server}_server_stops_cleanly_on_sigterm" "$([ "$rc" = 0 ] && [ ! -s "$work/$server.err" ] && echo 1)" \
        "exit $rc: $(head -c 300 "$work/$server.err")"
}
# post PATH BODY OUT: POSTs BODY (a string, or @file) and prints the status; the body goes to OUT
post() { curl -s -m 120 -o "$3" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$2" "http://127.0.0.1:$port$1"; }
# json FILE EXPR: evaluates the Python expression EXPR on the JSON in FILE (as d); prints the result
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2> /dev/null; }
# metric NAME: the value of a line of /metrics
metric() { curl -s -m 10 "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"; }
# wait_metric NAME VALUE: waits (up to 10 s) until the metric reads VALUE
wait_metric() {
    for _ in $(seq 1 100); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}
# is_error FILE TYPE: the body is an OpenAI error object of that type with a message
is_error() { [ "$(json "$1" "d['error']['type'] == '$2' and len(d['error']['message']) > 0 and set(d['error']) == {'message', 'type', 'param', 'code'}")" = True ]; }
# chat_body PROMPT EXTRA: a chat request's JSON (EXTRA: more members, with a leading comma)
chat_body() { python3 -c 'import json, sys; print(json.dumps({"model": "tiny", "messages": [{"role": "user", "content": sys.argv[1]}]})[:-1] + sys.argv[2] + "}")' "$1" "$2"; }
# sse FILE: checks an event stream (chunks that parse, [DONE] last) and prints its text
sse() {
    python3 - "$1" << 'EOF'
import json, sys
events = [l[6:] for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l.startswith("data: ")]
assert events and events[-1] == "[DONE]", "no [DONE] at the end"
text, finish = "", None
for e in events[:-1]:
    c = json.loads(e)
    assert c["object"] in ("chat.completion.chunk", "text_completion"), c
    for ch in c["choices"]:
        text += ch.get("delta", {}).get("content") or ch.get("text") or ""
        finish = ch["finish_reason"] or finish
assert finish in ("stop", "length"), finish
sys.stdout.write(text)
EOF
}

prompt="What item is this?"
# mmm chat's answers: greedy, sampled, with an image, and the linear student's
"$mmm" chat ${dev[@]+"${dev[@]}"} --model "$fx/teacher" -p "$prompt" --max-new 24 > "$work/chat_greedy.txt" || exit 1
"$mmm" chat ${dev[@]+"${dev[@]}"} --model "$fx/teacher" -p "$prompt" --max-new 24 --temperature 0.9 --top-p 0.95 --seed 11 > "$work/chat_sampled.txt" || exit 1
"$mmm" chat ${dev[@]+"${dev[@]}"} --model "$fx/teacher" -p "$prompt" --max-new 24 --image "$image" > "$work/chat_image.txt" || exit 1
"$mmm" chat ${dev[@]+"${dev[@]}"} --model "$fx/linear" -p "$prompt" --max-new 24 > "$work/chat_linear.txt" || exit 1
# (newline="": a \r in the answer stays a \r)
answer() { python3 -c 'import sys; t = open(sys.argv[1], encoding="utf-8", newline="").read(); print(t[:-1] if t.endswith("\n") else t, end="")' "$1"; }

# ---- the teacher: answers, streams, GET endpoints ----
start teacher "$fx/teacher" --max-sessions 16 --max-queue 16 --image-dir "$fx/data/images" --context 100000
# the command line: help, usage mistakes (exit 2) and a port that is taken (exit 1), each one line
"$mmm" serve --help > "$work/help.txt"
expect serve_help "$([ $? = 0 ] && grep -q '^usage: mmm serve' "$work/help.txt" && echo 1)" "$(head -n 1 "$work/help.txt")"
one_line() { # CASE STATUS TEXT ARGS...: mmm serve exits with STATUS and one stderr line holding TEXT
    local name=$1 want=$2 text=$3
    shift 3
    timeout 60 "$mmm" serve "$@" > /dev/null 2> "$work/cli.err"
    local got=$?
    expect "$name" "$([ "$got" = "$want" ] && [ "$(wc -l < "$work/cli.err")" = 1 ] && grep -q -- "$text" "$work/cli.err" && echo 1)" \
        "exit $got: $(head -c 300 "$work/cli.err")"
}
one_line serve_needs_model 2 "needs --model"
one_line serve_bad_port 2 "port" --model "$fx/teacher" --port 70000
one_line serve_host_not_numeric 1 "not a numeric" --model "$fx/teacher" --host example.invalid
one_line serve_port_taken 1 "cannot listen on 127.0.0.1 port $port" --model "$fx/teacher" --port "$port"
code=$(curl -s -m 10 -o "$work/health.json" -w '%{http_code}' "http://127.0.0.1:$port/health")
expect health "$([ "$code" = 200 ] && [ "$(json "$work/health.json" "d['status']")" = ok ] && echo 1)" "status $code"
code=$(curl -s -m 10 -o "$work/models.json" -w '%{http_code}' "http://127.0.0.1:$port/v1/models")
expect models "$([ "$code" = 200 ] && [ "$(json "$work/models.json" "d['data'][0]['id']")" = tiny ] && echo 1)" "status $code"

code=$(post /v1/chat/completions "$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24')" "$work/greedy.json")
got=$(json "$work/greedy.json" "d['choices'][0]['message']['content']")
expect chat_equals_mmm_chat "$([ "$code" = 200 ] && [ "$got" = "$(answer "$work/chat_greedy.txt")" ] && echo 1)" \
    "status $code: '$got' vs '$(answer "$work/chat_greedy.txt")'"
expect chat_usage "$([ "$(json "$work/greedy.json" "d['usage']['total_tokens'] == d['usage']['prompt_tokens'] + d['usage']['completion_tokens'] > d['usage']['prompt_tokens'] > 0")" = True ] && echo 1)" \
    "$(head -c 300 "$work/greedy.json")"
code=$(post /v1/chat/completions "$(chat_body "$prompt" ', "temperature": 0.9, "top_p": 0.95, "seed": 11, "max_tokens": 24')" "$work/sampled.json")
got=$(json "$work/sampled.json" "d['choices'][0]['message']['content']")
expect chat_sampled_equals_mmm_chat "$([ "$code" = 200 ] && [ "$got" = "$(answer "$work/chat_sampled.txt")" ] && echo 1)" \
    "status $code: '$got' vs '$(answer "$work/chat_sampled.txt")'"

# without a seed, two requests sample differently (24 tokens from a barely trained model: equal
# answers would mean the seed did not change)
post /v1/completions '{"prompt": "What item", "max_tokens": 24, "temperature": 1}' "$work/unseeded1.json" > /dev/null
post /v1/completions '{"prompt": "What item", "max_tokens": 24, "temperature": 1}' "$work/unseeded2.json" > /dev/null
a=$(json "$work/unseeded1.json" "d['choices'][0]['text']")
b=$(json "$work/unseeded2.json" "d['choices'][0]['text']")
expect unseeded_requests_sample_differently "$([ -n "$a" ] && [ "$a" != "$b" ] && echo 1)" "'$a' twice"

# an image as a base64 data: URL, and as a file in --image-dir: both as mmm chat --image
b64=$(base64 -w 0 "$image")
python3 -c 'import json, sys; print(json.dumps({"messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": sys.argv[1]}}, {"type": "text", "text": sys.argv[2]}]}],
    "temperature": 0, "max_tokens": 24}))' "data:image/png;base64,$b64" "$prompt" > "$work/image_req.json"
code=$(post /v1/chat/completions "@$work/image_req.json" "$work/image.json")
got=$(json "$work/image.json" "d['choices'][0]['message']['content']")
expect chat_data_url_image_equals_mmm_chat "$([ "$code" = 200 ] && [ "$got" = "$(answer "$work/chat_image.txt")" ] && echo 1)" \
    "status $code: '$got' vs '$(answer "$work/chat_image.txt")' $(head -c 200 "$work/image.json")"
sed "s|data:image/png;base64,$b64|train/$(basename "$image")|" "$work/image_req.json" > "$work/image_file_req.json"
code=$(post /v1/chat/completions "@$work/image_file_req.json" "$work/image_file.json")
got=$(json "$work/image_file.json" "d['choices'][0]['message']['content']")
expect chat_local_image_equals_mmm_chat "$([ "$code" = 200 ] && [ "$got" = "$(answer "$work/chat_image.txt")" ] && echo 1)" \
    "status $code: $(head -c 200 "$work/image_file.json")"

# streaming: well-formed chunks that concatenate to the whole answer, [DONE] last
curl -s -N -m 120 -o "$work/stream.txt" -H 'Content-Type: application/json' \
    --data-binary "$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24, "stream": true')" "http://127.0.0.1:$port/v1/chat/completions"
got=$(sse "$work/stream.txt" 2> "$work/sse.err")
expect chat_stream_chunks "$([ "$got" = "$(answer "$work/chat_greedy.txt")" ] && echo 1)" \
    "'$got' $(tail -n 1 "$work/sse.err") $(head -c 300 "$work/stream.txt")"
# completions, whole and streamed, with a stop string: the text ends before it
# (sampled with a seed: a barely trained model's greedy tokens can all be ones that print nothing)
code=$(post /v1/completions '{"prompt": "What item", "max_tokens": 16, "temperature": 0.9, "top_p": 0.95, "seed": 11}' "$work/completion.json")
full=$(json "$work/completion.json" "d['choices'][0]['text']")
expect completion "$([ "$code" = 200 ] && [ -n "$full" ] && echo 1)" "status $code: $(head -c 300 "$work/completion.json")"
# the stop string: two characters from the middle of the answer; the text must end before its first place
python3 -c 'import json, sys; t = json.load(open(sys.argv[1]))["choices"][0]["text"]; s = t[3:5]
json.dump({"prompt": "What item", "max_tokens": 16, "temperature": 0.9, "top_p": 0.95, "seed": 11, "stop": [s], "stream": True}, open(sys.argv[2], "w"))
open(sys.argv[3], "w", encoding="utf-8").write(t[:t.find(s)])' "$work/completion.json" "$work/stop_req.json" "$work/stop_want.txt"
curl -s -N -m 120 -o "$work/completion_stream.txt" --data-binary "@$work/stop_req.json" "http://127.0.0.1:$port/v1/completions"
got=$(sse "$work/completion_stream.txt" 2> "$work/sse.err")
want=$(cat "$work/stop_want.txt")
expect completion_stream_stop_string "$([ "$got" = "$want" ] && [ "${#full}" -ge 5 ] && echo 1)" "'$got' vs '$want' ($(cat "$work/stop_req.json"))"

# ---- the openai npm package ----
if ! command -v npm > /dev/null || ! command -v node > /dev/null; then
    echo "SKIP openai npm client: npm or node is missing (install Node.js to run it)"
else
    if [ ! -f "$npm_dir/node_modules/openai/package.json" ]; then
        mkdir -p "$npm_dir"
        (cd "$npm_dir" && timeout 300 npm install --no-audit --no-fund --silent openai@4 > /dev/null 2>&1)
    fi
    if [ ! -f "$npm_dir/node_modules/openai/package.json" ]; then
        fail openai_npm "cannot install the openai package into $npm_dir (npm install openai@4)"
    else
        python3 -c 'import json, sys; r = lambda p: (lambda t: t[:-1] if t.endswith("\n") else t)(open(p, encoding="utf-8", newline="").read())
print(json.dumps({"model": "tiny", "prompt": sys.argv[1], "seed": 0, "max_tokens": 24, "expected": r(sys.argv[2]),
                  "sampled": {"temperature": 0.9, "top_p": 0.95, "seed": 11, "expected": r(sys.argv[3])},
                  "completion": {"prompt": "What item", "max_tokens": 16, "temperature": 0.9, "top_p": 0.95, "seed": 11,
                                 "expected": json.load(open(sys.argv[4]))["choices"][0]["text"]}}))' \
            "$prompt" "$work/chat_greedy.txt" "$work/chat_sampled.txt" "$work/completion.json" > "$work/cases.json"
        timeout 300 node tests/serve/openai_client.mjs "$(cd "$npm_dir" && pwd)" "http://127.0.0.1:$port/v1" \
            < "$work/cases.json" > "$work/node.out" 2>&1
        cat "$work/node.out"
        passed=$((passed + $(grep -c ' ok$' "$work/node.out")))
        failed=$((failed + $(grep -c '^FAIL' "$work/node.out")))
    fi
fi

# ---- a client that leaves cancels its generation and frees its session ----
long='{"prompt": "What item", "max_tokens": 60000, "temperature": 0, "stream": true}'
before=$(metric mmm_requests_cancelled_total)
curl -s -N -m 120 -o "$work/cancel.txt" --data-binary "$long" "http://127.0.0.1:$port/v1/completions" &
cpid=$!
pids+=("$cpid")
for _ in $(seq 1 100); do
    n=$(grep -c '^data: ' "$work/cancel.txt" 2> /dev/null)
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.1
done
running=$(metric mmm_sessions_active)
# sessions interleave: a short request is answered while the long one goes on
code=$(post /v1/chat/completions "$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24')" "$work/beside.json")
expect answered_beside_a_long_stream "$([ "$code" = 200 ] && [ "$(json "$work/beside.json" "d['choices'][0]['message']['content']")" = "$(answer "$work/chat_greedy.txt")" ] &&
    ! grep -q DONE "$work/cancel.txt" && [ "$(metric mmm_sessions_active)" = 1 ] && echo 1)" \
    "status $code, $(metric mmm_sessions_active) active, stream ended: $(grep -c DONE "$work/cancel.txt")"
kill "$cpid" 2> /dev/null
wait "$cpid" 2> /dev/null
wait_metric mmm_sessions_active 0
expect cancelled_stream_frees_its_session "$([ "$running" = 1 ] && ! grep -q DONE "$work/cancel.txt" && [ "$(metric mmm_sessions_active)" = 0 ] &&
    [ "$(metric mmm_state_bytes)" = 0 ] && [ "$(metric mmm_requests_cancelled_total)" = $((before + 1)) ] && echo 1)" \
    "active while streaming: $running; after: $(metric mmm_sessions_active) active, $(metric mmm_state_bytes) bytes, cancelled $before -> $(metric mmm_requests_cancelled_total)"
curl -s -m 1 -o /dev/null --data-binary '{"prompt": "What item", "max_tokens": 60000}' "http://127.0.0.1:$port/v1/completions"
wait_metric mmm_sessions_active 0
expect cancelled_whole_answer_frees_its_session "$([ "$(metric mmm_requests_cancelled_total)" = $((before + 2)) ] && echo 1)" \
    "cancelled $(metric mmm_requests_cancelled_total), active $(metric mmm_sessions_active)"

# ---- refusals: status and error object, each ----
refuse() { # CASE PATH BODY STATUS TYPE
    local code
    code=$(post "$2" "$3" "$work/refused.json")
    expect "$1" "$([ "$code" = "$4" ] && is_error "$work/refused.json" "$5" && echo 1)" "status $code: $(head -c 300 "$work/refused.json")"
}
refuse unknown_field /v1/chat/completions "$(chat_body hi ', "frequency_penalty": 1')" 400 invalid_request_error
refuse wrongly_typed_field /v1/chat/completions "$(chat_body hi ', "max_tokens": "many"')" 400 invalid_request_error
refuse out_of_range_field /v1/chat/completions "$(chat_body hi ', "temperature": 7')" 400 invalid_request_error
refuse malformed_json /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}' 400 invalid_request_error
refuse not_an_object /v1/chat/completions '[1, 2]' 400 invalid_request_error
refuse no_messages /v1/chat/completions '{"model": "tiny"}' 400 invalid_request_error
refuse unknown_role /v1/chat/completions '{"messages": [{"role": "robot", "content": "hi"}]}' 400 invalid_request_error
refuse ends_with_assistant /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}' 400 invalid_request_error
refuse five_stop_strings /v1/chat/completions "$(chat_body hi ', "stop": ["a", "b", "c", "d", "e"]')" 400 invalid_request_error
refuse two_choices /v1/chat/completions "$(chat_body hi ', "n": 2')" 400 invalid_request_error
refuse duplicate_field /v1/chat/completions "$(chat_body hi ', "seed": 1, "seed": 2')" 400 invalid_request_error
refuse context_exceeded /v1/chat/completions "$(chat_body hi ', "max_tokens": 100000000')" 400 invalid_request_error
refuse completion_without_prompt /v1/completions '{"max_tokens": 4}' 400 invalid_request_error
image_req() { printf '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "%s"}}]}]}' "$1"; }
refuse image_that_does_not_decode /v1/chat/completions "$(image_req "data:image/png;base64,$(head -c 300 /dev/urandom | base64 -w 0)")" 400 invalid_request_error
refuse truncated_image /v1/chat/completions "$(image_req "data:image/png;base64,${b64:0:200}")" 400 invalid_request_error
refuse image_not_base64 /v1/chat/completions "$(image_req "data:image/png;base64,@@@@")" 400 invalid_request_error
refuse image_over_http /v1/chat/completions "$(image_req "http://example.com/a.png")" 400 invalid_request_error
refuse image_outside_image_dir /v1/chat/completions "$(image_req "../config.json")" 400 invalid_request_error
ln -s "$(cd "$fx" && pwd)/config.json" "$fx/data/images/escape.png"
refuse image_link_out_of_image_dir /v1/chat/completions "$(image_req "escape.png")" 400 invalid_request_error
refuse image_absolute_path_outside /v1/chat/completions "$(image_req "file://$(cd "$fx" && pwd)/config.json")" 400 invalid_request_error
refuse image_missing_file /v1/chat/completions "$(image_req "train/no-such.png")" 400 invalid_request_error
head -c $((33 << 20)) /dev/zero | tr '\0' ' ' > "$work/big.json"
refuse body_over_limit /v1/chat/completions "@$work/big.json" 413 invalid_request_error
code=$(curl -s -m 10 -o "$work/refused.json" -w '%{http_code}' "http://127.0.0.1:$port/v1/nothing")
expect unknown_endpoint "$([ "$code" = 404 ] && is_error "$work/refused.json" invalid_request_error && echo 1)" "status $code"
code=$(curl -s -m 10 -o "$work/refused.json" -w '%{http_code}' "http://127.0.0.1:$port/v1/chat/completions")
expect wrong_method "$([ "$code" = 405 ] && is_error "$work/refused.json" invalid_request_error && echo 1)" "status $code"
# the server went on serving through all of that
code=$(post /v1/chat/completions "$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24')" "$work/after.json")
expect still_serving_after_refusals "$([ "$code" = 200 ] && [ "$(json "$work/after.json" "d['choices'][0]['message']['content']")" = "$(answer "$work/chat_greedy.txt")" ] && echo 1)" \
    "status $code"
stop

# ---- admission: one session, one queue place ----
start busy "$fx/teacher" --max-sessions 1 --max-queue 1 --context 100000
curl -s -N -m 120 -o "$work/hold.txt" --data-binary "$long" "http://127.0.0.1:$port/v1/completions" &
hold=$!
pids+=("$hold")
wait_metric mmm_sessions_active 1
curl -s -m 120 -o "$work/queued.json" -w '%{http_code}' --data-binary '{"prompt": "What item", "max_tokens": 4}' \
    "http://127.0.0.1:$port/v1/completions" > "$work/queued.code" &
queued=$!
pids+=("$queued")
wait_metric mmm_sessions_queued 1
refuse busy_server_429 /v1/completions '{"prompt": "What item", "max_tokens": 4}' 429 rate_limit_error
kill "$hold" 2> /dev/null
wait "$hold" 2> /dev/null
wait "$queued" 2> /dev/null
expect queued_request_answered_when_a_session_frees "$([ "$(cat "$work/queued.code")" = 200 ] && [ "$(json "$work/queued.json" "d['usage']['completion_tokens']")" = 4 ] && echo 1)" \
    "status $(cat "$work/queued.code"): $(head -c 200 "$work/queued.json")"
stop

# ---- a request whose state alone exceeds the memory budget ----
start small "$fx/teacher" --max-memory "$small_budget" --context 100000
refuse state_over_memory_budget_503 /v1/completions '{"prompt": "What item", "max_tokens": 90000}' 503 server_error
code=$(post /v1/completions '{"prompt": "What item", "max_tokens": 4, "temperature": 0}' "$work/small.json")
expect small_request_fits_the_budget "$([ "$code" = 200 ] && echo 1)" "status $code: $(head -c 200 "$work/small.json")"
stop

# ---- the linear student ----
start linear "$fx/linear" --context 100000
code=$(post /v1/chat/completions "$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24')" "$work/linear.json")
got=$(json "$work/linear.json" "d['choices'][0]['message']['content']")
expect linear_student_equals_mmm_chat "$([ "$code" = 200 ] && [ "$got" = "$(answer "$work/chat_linear.txt")" ] && echo 1)" \
    "status $code: '$got' vs '$(answer "$work/chat_linear.txt")'"
# 8 clients at once decode together (one pool step feeds them all): each answer is mmm chat's
body=$(chat_body "$prompt" ', "temperature": 0, "max_tokens": 24')
cpids=()
for i in 1 2 3 4 5 6 7 8; do
    curl -s -m 120 -o "$work/batch$i.json" -H 'Content-Type: application/json' --data-binary "$body" \
        "http://127.0.0.1:$port/v1/chat/completions" &
    cpids+=("$!")
done
wait "${cpids[@]}"
same=0
for i in 1 2 3 4 5 6 7 8; do
    [ "$(json "$work/batch$i.json" "d['choices'][0]['message']['content']")" = "$(answer "$work/chat_linear.txt")" ] && same=$((same + 1))
done
mean=$(metric mmm_batch_size_mean)
expect linear_concurrent_clients_batched "$([ "$same" = 8 ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 1 else 1)' "$mean" && echo 1)" \
    "$same of 8 answers equal mmm chat's; sessions per decode step $mean"
# stopping the server ends a stream in flight with an error event and [DONE]
curl -s -N -m 120 -o "$work/shutdown.txt" --data-binary "$long" "http://127.0.0.1:$port/v1/completions" &
spid=$!
pids+=("$spid")
wait_metric mmm_sessions_active 1
stop
wait "$spid" 2> /dev/null
expect shutdown_ends_a_stream_with_an_error_event "$([ "$rc" = 0 ] && python3 -c 'import json, sys
ev = [l[6:] for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l.startswith("data: ")]
assert ev[-1] == "[DONE]" and json.loads(ev[-2])["error"]["type"] == "server_error"' "$work/shutdown.txt" 2> /dev/null && echo 1)" \
    "exit $rc: $(tail -c 300 "$work/shutdown.txt")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
