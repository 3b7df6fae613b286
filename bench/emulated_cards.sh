#!/usr/bin/env bash
# The generated Kaggle notebook itself on emulated Kaggle cards, lanes side by side on ONE GPU: each lane is a
# tools/kaggle_dry_run.py run (nbclient, offline in `unshare -n`, the task pipeline, every task of the set) with
# ARCSUB_CAPABILITY forcing the card's code path (7.5: fp16 + loss scaling, SDPA with dense masks, the torch
# engine; 8.9: bf16 + flex attention) and ARCSUB_GPU_MEMORY_GB capping each process to the card's memory.
# Lanes share the GPU the same way, so their scores compare at equal compute (each gets a fraction of the chip).
# Repository root, PYTHONPATH=. (this checkout's arcsub), data at $ARCSUB_DATA, nbclient + ipykernel importable.
# Usage: bench/emulated_cards.sh OUT_DIR TIME_LIMIT LANE ...
#   LANE is NAME:CAPABILITY:MEMORY_GB:COMPETITION:SET[:TASKS]   (TASKS default 400: the whole evaluation set)
#   bench/emulated_cards.sh /tmp/cards 500 t4-agi1:7.5:15:arc-prize-2024:arc-agi-1 l4-agi2:8.9:22:arc-prize-2026:arc-agi-2
# Writes OUT_DIR/NAME.log, OUT_DIR/NAME/report.json (stages' seconds, peak GPU memory, score) and
# OUT_DIR/smi.csv (nvidia-smi's per-process GPU memory every 2 s: what each lane really held).
set -uo pipefail
out=$1; limit=$2; shift 2; mkdir -p "$out"; names=(); pids=()
network=off; unshare -n true 2>/dev/null || network=on  # no outside network on the GPU machine either way
nvidia-smi --query-compute-apps=timestamp,pid,used_memory --format=csv,noheader -l 2 > "$out/smi.csv" 2>/dev/null &
smi=$!
for lane in "$@"; do
  IFS=: read -r name cap mem comp set tasks <<< "$lane"; names+=("$name")
  env ARCSUB_CAPABILITY="$cap" ARCSUB_GPU_MEMORY_GB="$mem" "${PYTHON:-python3}" tools/kaggle_dry_run.py --skip-install \
    --pipeline task --mode full --network "$network" --competition "$comp" --set "$set" --tasks "${tasks:-400}" \
    --time-limit "$limit" --timeout "$((limit + 20))" --out "$out/$name" > "$out/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
kill "$smi" 2>/dev/null
for name in "${names[@]}"; do
  echo "== $name"; grep -E "kaggle_dry_run: (notebook|killed|FAILED)|out of memory|Error" "$out/$name.log" | tail -5
done
