#!/usr/bin/env bash
# The accelerator figures of the README in one run (about 6 minutes on one H200): our
# training throughput for configs/mmoe.py at batch 4,096 and 65,536 in fp32 and bf16,
# the 100x-tables case with lazy_adam_optimizer, then the PyTorch peers on the same
# machine. One JSON line per measurement in $OUT/benchmark.jsonl and $OUT/peers.jsonl.
#
#   OUT=/tmp/bench bash scripts/gpu_benchmark.sh
#
# Needs a Python with jax (GPU build), flax, optax, orbax-checkpoint, pyarrow, tqdm and
# ml_collections ($PYTHON, default python3); wheels in .whl/ are installed first (see the
# device notes: ml_collections is the one the H200 image lacks). PEERS is peers.py
# (default ../shared/bench/peers.py, else .bench/peers.py: copy it there when ../shared
# does not travel). SECONDS_PER sets each rate's seconds, for us and the peers alike.
# A CPU smoke run at small sizes:
#   BENCH_BATCHES="64 256" BENCH_ROWS=20000 TABLE_SCALE=1 SECONDS_PER=1 SMALL=1 \
#     PYTHON=.venv/bin/python PEERS_PYTHON=/tmp/torchvenv/bin/python OUT=/tmp/smoke \
#     bash scripts/gpu_benchmark.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mmoe_bench}
PYTHON=${PYTHON:-python3}
SECONDS_PER=${SECONDS_PER:-5}
PEERS=${PEERS:-../shared/bench/peers.py}
PEERS_PYTHON=${PEERS_PYTHON:-$PYTHON}  # a Python with torch
BENCH_BATCHES=${BENCH_BATCHES:-4096 65536}
BENCH_ROWS=${BENCH_ROWS:-1000000}
TABLE_SCALE=${TABLE_SCALE:-100}
BIG=${BENCH_BATCHES##* }
[ -f "$PEERS" ] || PEERS=.bench/peers.py
mkdir -p "$OUT"
if compgen -G '.whl/*.whl' >/dev/null; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  > "$OUT/machine.txt" 2>&1
date -u +%FT%TZ >> "$OUT/machine.txt"

bench() {  # extra flags for scripts/benchmark.py; appends its JSON line
  $PYTHON scripts/benchmark.py --seconds="$SECONDS_PER" --rows="$BENCH_ROWS" \
    --eval_rows=200000 "$@" \
    2>>"$OUT/benchmark.log" | tee -a "$OUT/benchmark.jsonl"
}
# steps_per_dispatch 20: as the minimal JAX step of the peers' table (lax.scan of 20)
for batch in $BENCH_BATCHES; do
  for precision in FP32 BF16; do
    bench --config=configs/mmoe.py --config.data_config.batch_size=$batch \
      --config.train_config.mixed_precision=$precision \
      --config.train_config.steps_per_dispatch=20
  done
done
# 71M table rows: lazy_adam_optimizer, and dense Adam for the comparison
for lazy in lazy_adam ''; do
  bench --config=configs/mmoe.py:table_scale=$TABLE_SCALE${lazy:+,$lazy} \
    --config.data_config.batch_size=$BIG --config.train_config.mixed_precision=BF16 \
    --config.train_config.steps_per_dispatch=20 --eval_rows=$BIG
done
# The streaming input at the largest batch: does it keep up with the device?
bench --config=configs/mmoe.py --config.data_config.batch_size=$BIG \
  --config.train_config.mixed_precision=BF16 --config.data_config.input_mode=streaming

SECONDS_PER=$SECONDS_PER $PEERS_PYTHON "$PEERS" torch 2>>"$OUT/peers.log" | tee -a "$OUT/peers.jsonl"
