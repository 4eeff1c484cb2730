#!/usr/bin/env bash
# The one command for a lent GPU (an H200; results in results/h200/ and benchmarks/RESULTS.md):
#   1. the GPU tests (pytest -m gpu), in one process;
#   2. bench_train_step.py at the TinyStories shape of each handout (2024: GELU, learned
#      positions; 2025: SwiGLU 1344, RoPE), batch 128: cs336's step with its defaults (and
#      options, 2024) against the plain PyTorch baselines (eager; compiled with the loss
#      outside; nanoGPT's: loss in the compiled forward, fused AdamW), with a profile;
#   3. the handout's TinyStories run as a user runs it, `cs336 train configs/2024/tinystories.toml`
#      (10,000 steps x 128 x 256 = 327.68M tokens; only the data paths are overridden), timed
#      from launch with an empty compile cache: seconds to the first step, wall time;
#   4. GPT-2 small's shape (configs/2024/gpt2_small.toml) for GPT2_STEPS steps, also from an
#      empty compile cache: seconds to the first step, tokens/s, MFU.
# With --explore instead: the GPU tests, bench_gpu_parts.py (ceilings, attention backends,
# loss, AdamW, FP8), the step benchmark with the experiments and a profile, and `cs336 train`
# end to end against the baselines' own loops (the loop ran 20% below its step on
# 2026-12-04): the measurements that choose the defaults.
# It builds nothing there: run benchmarks/gpu_prepare.sh here first, then call the device
# with carry = ["python/cs336/_core.abi3.so", ".carry/gpu"].
#
#   bash benchmarks/gpu_check.sh [--explore]  # on the GPU machine: about 7 (explore: 6) minutes
#   PYTHON=~/.cache/cs336/venv/bin/python bash benchmarks/gpu_check.sh --dry-run
#                                            # here: tiny shapes on the CPU (checks the script)
#
# Environment: PYTHON (python3), OUT (results; the device tool sets it), GPT2_STEPS (200).
# Results: env.txt, gpu_tests.txt, bench_2024.md, bench_2025.md (explore:
# parts.md, bench_2024_real.md, e2e.md), runs.tar.gz (each run's metrics.jsonl, log, command, loss.png, samples), and
# summary.md (printed last).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=final
case "${1:-}" in --dry-run) MODE=dry ;; --explore) MODE=explore ;; esac
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/cs336-gpu-check}
WORK=$(mktemp -d)
DATA=.carry/gpu
GPT2_STEPS=${GPT2_STEPS:-200}
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
failed=()
note() { echo "== $*" | tee -a "$OUT/summary.md"; }
: > "$OUT/summary.md"

if [ $MODE = dry ]; then
    DEVICE=cpu; SHAPES=(tiny tiny); NEW_TOKENS=40
    BENCH=(--steps 2 --repeats 2 --warmup 1)
    TINY=(--model.d_model 64 --model.num_layers 2 --model.num_heads 4 --model.d_ff 192
          --model.context_length 64 --data.batch_size 8 --eval_batches 2 --compile false
          --max_steps 20 --eval_interval 10 --checkpoint_interval 10 --optim.warmup_iters 2)
    GPT2_STEPS=10
else
    DEVICE=cuda; SHAPES=(tinystories tinystories-2025); NEW_TOKENS=200
    BENCH=(--steps 10 --repeats 5 --warmup 3); TINY=()
fi

# ---- 0. the machine ----------------------------------------------------------------------
{
    date -u +"%Y-%m-%d %H:%M UTC"
    git log -1 --format="commit %H %s" 2>/dev/null || true
    $PY -c "import sys, torch, cs336._core; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ---- 1. GPU tests --------------------------------------------------------------------------
note "1. GPU tests (pytest -m gpu, one process)"
timeout 150 $PY -m pytest -q -m gpu tests -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1 \
    || failed+=("gpu tests")
grep -E "passed|failed|error" "$OUT/gpu_tests.txt" | tail -3 | tee -a "$OUT/summary.md"

# ---- 2. the training step --------------------------------------------------------------------
bench() {  # name timeout shape args...
    local name=$1 limit=$2 shape=$3; shift 3
    timeout "$limit" $PY benchmarks/bench_train_step.py --device $DEVICE --shape "$shape" \
        "${BENCH[@]}" "$@" > "$OUT/$name.md" 2> "$WORK/$name.err" \
        || { failed+=("$name"); tail -5 "$WORK/$name.err"; }
    grep -E "^(\||#)" "$OUT/$name.md" | head -16 | tee -a "$OUT/summary.md"; echo | tee -a "$OUT/summary.md"
}
if [ $MODE = explore ]; then
    note "2. the parts (bench_gpu_parts.py)"
    timeout 100 $PY benchmarks/bench_gpu_parts.py > "$OUT/parts.md" 2> "$WORK/parts.err" \
        || { failed+=("parts"); tail -5 "$WORK/parts.err"; }
    cat "$OUT/parts.md" >> "$OUT/summary.md"
    note "2. training step, ${SHAPES[0]} (2024), the experiments"
    bench bench_2024 230 "${SHAPES[0]}" --profile 5 --variants default \
        "exp: block-by-block compile" "exp: AdamW per tensor (not flat)" \
        "exp: loss F.cross_entropy in graph" "exp: CUDA graphs (reduce-overhead)"
    grep -A 32 "^### profile" "$OUT/bench_2024.md" >> "$OUT/summary.md"
    note "2. the same step on real text (windows of the TinyStories tokens: skewed ids for the embedding's backward)"
    if [ -f "$DATA/tinystories/train.npy" ]; then
        bench bench_2024_real 150 "${SHAPES[0]}" --variants default --baselines \
            "baseline nanoGPT (loss in graph, fused AdamW)" --batch-from "$DATA/tinystories/train.npy"
    fi
    note "2. cs336 train against its own step: end to end, each run in its own process"
    timeout 240 $PY benchmarks/bench_train_step.py --mode e2e --device $DEVICE \
        --shape "${SHAPES[0]}" --train-steps 200 > "$OUT/e2e.md" 2> "$WORK/e2e.err" \
        || { failed+=("e2e"); tail -5 "$WORK/e2e.err"; }
    grep "^|" "$OUT/e2e.md" | tee -a "$OUT/summary.md"
else
    note "2. training step, ${SHAPES[0]} (2024) and ${SHAPES[1]} (2025)"
    bench bench_2024 200 "${SHAPES[0]}" --profile 5 --variants default \
        "exp: block-by-block compile" compile=false optim.impl=torch
    grep -A 22 "^### profile" "$OUT/bench_2024.md" >> "$OUT/summary.md"
    bench bench_2025 140 "${SHAPES[1]}" --variants default
fi

# ---- 3. runs as a user runs them -------------------------------------------------------------
run() {  # name config data-dir prompt [overrides...]
    local name=$1 config=$2 data=$3 prompt=$4 dir=$WORK/runs/$1; shift 4
    mkdir -p "$dir"
    local cmd=($PY -m cs336 train "$config" --data.train_path "$data/train.npy"
               --data.val_path "$data/valid.npy" --progress false --out_dir "$dir/run"
               --device $DEVICE "$@" "${TINY[@]}")
    echo "${cmd[*]}" > "$dir/command.txt"
    note "3. $name: ${cmd[*]}"
    # an empty compile cache, as on a user's first run
    TORCHINDUCTOR_CACHE_DIR=$WORK/cache-$name TRITON_CACHE_DIR=$WORK/triton-$name \
        timeout 400 $PY benchmarks/timed_run.py --log "$dir/train.log" -- "${cmd[@]}" \
        > "$dir/timing.json" || { failed+=("run $name"); tail -5 "$dir/train.log"; return; }
    cp "$dir/run/metrics.jsonl" "$dir/"
    for seed in 0 1; do
        echo "--- sample $seed (temperature 0.8, top-p 0.95)"
        $PY -m cs336 generate --checkpoint "$dir/run/checkpoint.pt" --tokenizer "$data/tokenizer" \
            --prompt "$prompt" --max-new-tokens $NEW_TOKENS --temperature 0.8 --top-p 0.95 \
            --seed $seed --device $DEVICE
    done > "$dir/samples.txt" 2>&1 || failed+=("samples $name")
    $PY -m cs336 plot "$dir/run" --out "$dir/loss.png" > /dev/null 2>&1 || failed+=("plot $name")
    rm -rf "$dir/run"
    $PY - "$dir" "$name" >> "$OUT/summary.md" <<'PY'
import json, math, statistics, sys
from cs336.training.metrics import read_metrics
d, name = sys.argv[1], sys.argv[2]
timing = json.load(open(f"{d}/timing.json"))
r = read_metrics(f"{d}/metrics.jsonl")
train = [x for x in r if "train_loss" in x]
val = [x for x in r if "val_loss" in x]
tps = statistics.median(x["tokens_per_s"] for x in train[1:] or train)
mfu = [x["mfu"] for x in train[1:] if x.get("mfu") is not None]
mfu_s = f"{100 * statistics.median(mfu):.1f}%" if mfu else "n/a"
first, exit_s = timing["first_step_s"], timing.get("after_last_line_s")
# the loop's own pace: from the first logged step to the last (validations and checkpoints
# in between included), against the step benchmark's ms/step
a, b = train[0], train[-1]
loop_ms = 1e3 * (b["time"] - a["time"]) / max(1, b["step"] - a["step"])
r1 = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
print("| run | steps | tokens | wall s | first step s | exit s | loop ms/step | tokens/s | MFU "
      "| train loss | val loss |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {name} | {b['step']:,} | {b['tokens']:,} | {timing['wall_s']:.1f} | {r1(first)} | "
      f"{r1(exit_s)} | {loop_ms:.2f} | {tps:,.0f} | {mfu_s} | {b['train_loss']:.3f} | "
      f"{val[-1]['val_loss']:.3f} |")
print("\nval loss by step: " + ", ".join(f"{x['step']}: {x['val_loss']:.3f}" for x in val) + "\n")
PY
    head -3 "$dir/samples.txt"
}
if [ $MODE != explore ]; then
    if [ -d "$DATA/tinystories" ] && [ -d "$DATA/web" ]; then
        run tinystories-2024 configs/2024/tinystories.toml "$DATA/tinystories" "Once upon a time"
        run gpt2-small configs/2024/gpt2_small.toml "$DATA/web" "The" \
            --max_steps "$GPT2_STEPS" --optim.warmup_iters $(( GPT2_STEPS / 10 )) \
            --eval_interval 0 --checkpoint_interval 0
    else
        note "3. no $DATA: run benchmarks/gpu_prepare.sh here and carry it"; failed+=("runs: no data")
    fi
fi
[ -d "$WORK/runs" ] && tar -C "$WORK" -czf "$OUT/runs.tar.gz" runs
if [ $MODE = final ]; then
    note "4. the AdamW update and FP8 matmuls alone (bench_gpu_parts.py)"
    timeout 60 $PY benchmarks/bench_gpu_parts.py --only adamw,fp8 > "$OUT/parts.md" 2>&1 \
        || failed+=("parts")
    grep -E "^(\||###|[a-z0-9]+ failed)" "$OUT/parts.md" >> "$OUT/summary.md"
fi

echo
cat "$OUT/summary.md"
rm -rf "$WORK"
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all parts ran"
