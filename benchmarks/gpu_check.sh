#!/usr/bin/env bash
# The one command for a lent GPU (an H200; see benchmarks/RESULTS.md, "Training step"):
#   1. the GPU tests (pytest -m gpu): bf16 vs fp32, fused attention and KV cache, the compiled
#      step, the device-side non-finite guard with no host sync, the chunked loss in bf16;
#   2. bench_train_step.py at the TinyStories shape of each handout (2024: GELU, learned
#      positions; 2025: SwiGLU 1344, RoPE), batch 128: cs336's own step with its defaults (and
#      options, 2024) against the plain PyTorch baseline, eager and compiled;
#   3. two short real runs of `cs336 train` with shipped configs (only the data paths, the
#      step count and the warmup for that count are overridden): the 2025 TinyStories model
#      on ../shared's TinyStories, and GPT-2 small's shape on the web mix with a 32K
#      tokenizer, each followed by a validation, a loss plot and 3 samples.
# It builds nothing there: run benchmarks/gpu_prepare.sh here first, then call the device
# with carry = ["python/cs336/_core.abi3.so", ".carry/gpu"].
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine: about 9 minutes
#   PYTHON=~/.cache/cs336/venv/bin/python bash benchmarks/gpu_check.sh --dry-run
#                                            # here: tiny shapes on the CPU (checks the script)
#
# Environment: RUN_SECONDS (training time per run, default 120), PYTHON (python3), OUT
# (results; the device tool sets it). Results, at most 8 files: env.txt, gpu_tests.txt,
# bench_2024.md, bench_2025.md, runs.tar.gz (each run's metrics.jsonl, loss.png,
# samples.txt and command), summary.md (printed last).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/cs336-gpu-check}
WORK=$(mktemp -d)
RUN_SECONDS=${RUN_SECONDS:-120}
DATA=.carry/gpu
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
failed=()
note() { echo "== $*" | tee -a "$OUT/summary.md"; }
: > "$OUT/summary.md"

if [ $DRY = 1 ]; then
    DEVICE=cpu; SHAPES=(tiny tiny); RUN_SECONDS=${RUN_SECONDS_DRY:-15}; NEW_TOKENS=40
    BENCH=(--steps 2 --repeats 2 --warmup 1)
    TINY=(--model.d_model 64 --model.num_layers 2 --model.num_heads 4 --model.d_ff 192
          --model.context_length 64 --data.batch_size 8 --eval_batches 2 --compile false)
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
note "1. GPU tests"
if [ $DRY = 1 ]; then
    timeout 300 $PY -m pytest -q -m gpu tests -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1
else
    timeout 300 $PY -m pytest -q -m gpu tests -p no:cacheprovider -x > "$OUT/gpu_tests.txt" 2>&1
fi || failed+=("gpu tests")
tail -3 "$OUT/gpu_tests.txt" | tee -a "$OUT/summary.md"

# ---- 2. the training step --------------------------------------------------------------------
note "2. training step, ${SHAPES[0]} (2024) and ${SHAPES[1]} (2025), $DEVICE"
timeout 330 $PY benchmarks/bench_train_step.py --device $DEVICE --shape "${SHAPES[0]}" "${BENCH[@]}" \
    --variants default "reference kernels" compile=false optim.impl=torch > "$OUT/bench_2024.md" 2> "$WORK/bench_2024.err" || { failed+=("bench 2024"); tail -5 "$WORK/bench_2024.err"; }
timeout 200 $PY benchmarks/bench_train_step.py --device $DEVICE --shape "${SHAPES[1]}" "${BENCH[@]}" \
    --variants default > "$OUT/bench_2025.md" 2> "$WORK/bench_2025.err" || { failed+=("bench 2025"); tail -5 "$WORK/bench_2025.err"; }
for f in bench_2024 bench_2025; do grep "^|" "$OUT/$f.md" | tee -a "$OUT/summary.md"; echo | tee -a "$OUT/summary.md"; done

# ---- 3. real runs ------------------------------------------------------------------------------
# tokens/s of the default step at the 2025 shape, scaled by FLOPs per token to the other model
rate=$(grep "^| default |" "$OUT/bench_2025.md" | awk -F'|' '{gsub(/[ ,]/, "", $4); print $4}')
run() {  # name config data-dir prompt
    local name=$1 config=$2 data=$3 prompt=$4 dir=$WORK/runs/$1
    mkdir -p "$dir"
    local steps
    steps=$($PY - "$config" "${rate:-0}" "$RUN_SECONDS" "${SHAPES[1]}" "${TINY[@]}" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
from bench_train_step import SHAPES
from cs336 import ModelConfig
from cs336.accounting import train_flops_per_token
from cs336.training.config import load_config
config, rate, seconds, measured = sys.argv[1], float(sys.argv[2] or 0), float(sys.argv[3]), sys.argv[4]
overrides = sys.argv[5:]
over = {k.removeprefix("--"): v for k, v in zip(overrides[0::2], overrides[1::2])}
over.update({"data.train_path": "x.npy", "data.val_path": "x.npy"})
cfg = load_config(config, over)
shape = ModelConfig(**SHAPES[measured][0])  # what bench_2025 measured
per_step = cfg.data.batch_size * cfg.context_length
rate = rate * train_flops_per_token(shape) / train_flops_per_token(cfg.model) if rate else 2e3
print(max(60, int(seconds * rate / per_step)))
PY
)
    if [ -z "$steps" ]; then failed+=("run $name: no step count"); return; fi
    local warmup=$(( steps / 10 < 500 ? steps / 10 : 500 ))
    local cmd=(cs336 train "$config" --data.train_path "$data/train.npy" --data.val_path "$data/valid.npy"
               --max_steps "$steps" --optim.warmup_iters "$warmup" --eval_interval $(( steps / 5 ))
               --checkpoint_interval 0 --progress false --out_dir "$dir" --device $DEVICE "${TINY[@]}")
    echo "${cmd[*]}" > "$dir/command.txt"
    note "3. $name: ${cmd[*]}"
    # a run past three times its budget gets SIGTERM: it stops cleanly, validated and saved
    timeout $(( RUN_SECONDS * 3 + 120 )) $PY -m cs336 "${cmd[@]:1}" > "$dir/train.log" 2>&1
    local code=$?
    if [ $code = 143 ]; then
        note "$name ran past $(( RUN_SECONDS * 3 + 120 )) s and was stopped (SIGTERM)"
    elif [ $code != 0 ]; then
        failed+=("run $name"); tail -5 "$dir/train.log"; return
    fi
    for seed in 0 1 2; do
        echo "--- sample $seed (temperature 0.8, top-p 0.95)"
        $PY -m cs336 generate --checkpoint "$dir/checkpoint.pt" --tokenizer "$data/tokenizer" \
            --prompt "$prompt" --max-new-tokens $NEW_TOKENS --temperature 0.8 --top-p 0.95 --seed $seed --device $DEVICE
    done > "$dir/samples.txt" 2>&1 || failed+=("samples $name")
    $PY -m cs336 plot "$dir" --out "$dir/loss.png" > /dev/null 2>&1 || failed+=("plot $name")
    $PY - "$dir" "$name" >> "$OUT/summary.md" <<'PY'
import math, statistics, sys
from cs336.training.metrics import read_metrics
d, name = sys.argv[1], sys.argv[2]
r = read_metrics(f"{d}/metrics.jsonl")
train = [x for x in r if "train_loss" in x]
val = [x for x in r if "val_loss" in x]
tps = statistics.median(x["tokens_per_s"] for x in train[1:] or train)
mfu = [x["mfu"] for x in train[1:] if x.get("mfu") is not None]
print(f"| {name} | {train[-1]['step']:,} | {train[-1]['tokens']:,} | {train[-1]['time']:.0f} s | "
      f"{tps:,.0f} | {100 * statistics.median(mfu):.1f}% | {train[-1]['train_loss']:.3f} | "
      f"{val[-1]['val_loss']:.3f} | {math.exp(val[-1]['val_loss']):.2f} |" if mfu else
      f"| {name} | {train[-1]['step']:,} | {train[-1]['tokens']:,} | {train[-1]['time']:.0f} s | "
      f"{tps:,.0f} | n/a | {train[-1]['train_loss']:.3f} | {val[-1]['val_loss']:.3f} | "
      f"{math.exp(val[-1]['val_loss']):.2f} |")
print("|  | val loss by step: " + ", ".join(f"{x['step']}: {x['val_loss']:.3f}" for x in val) + " |")
PY
    head -4 "$dir/samples.txt"
}
if [ -d "$DATA/tinystories" ] && [ -d "$DATA/web" ]; then
    echo "| run | steps | tokens | time | tokens/s | MFU | train loss | val loss | val ppl |" >> "$OUT/summary.md"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|" >> "$OUT/summary.md"
    run tinystories-2025 configs/2025/tinystories.toml "$DATA/tinystories" "Once upon a time"
    run gpt2-small-web configs/2024/gpt2_small.toml "$DATA/web" "The"
    tar -C "$WORK" -czf "$OUT/runs.tar.gz" --exclude=checkpoint.pt runs
else
    note "3. no $DATA: run benchmarks/gpu_prepare.sh here and carry it"; failed+=("runs: no data")
fi

echo
cat "$OUT/summary.md"
rm -rf "$WORK"
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all parts ran"
