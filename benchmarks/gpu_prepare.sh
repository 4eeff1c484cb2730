#!/usr/bin/env bash
# Prepares, on this machine, everything benchmarks/gpu_check.sh needs on the GPU machine
# (which has no network and builds nothing):
#   python/cs336/_core.abi3.so   the release abi3 extension (one build serves Python 3.12 there)
#   .carry/gpu/tinystories/      a 10K BPE trained here on ../shared's TinyStories text, and its
#                                train.npy / valid.npy (the last ~5% of the stories)
#   .carry/gpu/web/              a 32K BPE trained on the web mix, train.npy / valid.npy
# Then call the device with carry = ["python/cs336/_core.abi3.so", ".carry/gpu"].
#
#   bash benchmarks/gpu_prepare.sh            # needs ../shared/data; takes about a minute
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$HOME/.cache/cs336/venv}
SHARED=${SHARED:-$(cd .. && pwd)/shared/data}
OUT=.carry/gpu
make build >/dev/null
python_=$VENV/bin/python
cs336=$VENV/bin/cs336
test -f "$SHARED/tinystories/tinystories.txt.gz" || { echo "no $SHARED: cannot prepare the runs' data" >&2; exit 1; }
mkdir -p "$OUT/tinystories" "$OUT/web" "$OUT/text"
gunzip -c "$SHARED/tinystories/tinystories.txt.gz" > "$OUT/text/tinystories.txt"
gunzip -c "$SHARED/web/web_mix_train.txt.gz" > "$OUT/text/web_train.txt"
gunzip -c "$SHARED/web/web_mix_valid.txt.gz" > "$OUT/text/web_valid.txt"
"$python_" -c "from cs336.demo import split_corpus; split_corpus('$OUT/text/tinystories.txt', '$OUT/text/ts_train.txt', '$OUT/text/ts_valid.txt')"

"$cs336" train-bpe "$OUT/text/ts_train.txt" --vocab-size 10000 --special-token '<|endoftext|>' \
    --out "$OUT/tinystories/tokenizer" --quiet
"$cs336" tokenize "$OUT/text/ts_train.txt" --tokenizer "$OUT/tinystories/tokenizer" --out "$OUT/tinystories/train.npy" --quiet
"$cs336" tokenize "$OUT/text/ts_valid.txt" --tokenizer "$OUT/tinystories/tokenizer" --out "$OUT/tinystories/valid.npy" --quiet

"$cs336" train-bpe "$OUT/text/web_train.txt" --vocab-size 32000 --special-token '<|endoftext|>' \
    --out "$OUT/web/tokenizer" --quiet
"$cs336" tokenize "$OUT/text/web_train.txt" --tokenizer "$OUT/web/tokenizer" --out "$OUT/web/train.npy" --quiet
"$cs336" tokenize "$OUT/text/web_valid.txt" --tokenizer "$OUT/web/tokenizer" --out "$OUT/web/valid.npy" --quiet
rm -r "$OUT/text"
du -sh "$OUT" python/cs336/_core.abi3.so
"$python_" - <<'PY'
import numpy as np
for name in ("tinystories", "web"):
    for split in ("train", "valid"):
        a = np.load(f".carry/gpu/{name}/{split}.npy", mmap_mode="r")
        print(f"{name}/{split}.npy: {len(a):,} tokens ({a.dtype})")
PY
