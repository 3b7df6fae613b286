#!/usr/bin/env bash
# The multi-GPU half of the 4-GPU session (after bench/gpu4_lanes.sh, on the same warm machine: /tmp/w is reused).
# Usage: bench/gpu4_ddp.sh OUT_DIR STAGES [SECONDS] [LIMIT]; STAGES is a comma list of
#   pipe4   the kernel path on the first 100 ARC-AGI-1 evaluation tasks, one worker per GPU (lane 0 had 1 worker)
#   scale   `arcsub train` small on 2 and 4 GPUs (torchrun), same global batch (16 rows of 8192) as lane 1's 1 GPU
#   task    task-embedding model, transductive, DDP over every GPU, fitted to SECONDS (default 420); stops before
#           LIMIT seconds of this call (default 560) with a checkpoint: run the stage again to resume
#   predict task-predict (configs/task-predict.yaml: 64 views) on all 400 evaluation tasks, once the model exists
set -uo pipefail
out=$1; stages=$2; secs=${3:-420}; limit=${4:-560}; t0=$(date +%s); w=/tmp/w; mkdir -p "$out" "$w"
d=${ARCSUB_DATA}/arc-agi-1; ev=$d/arc-agi_evaluation_challenges.json; evs=$d/arc-agi_evaluation_solutions.json
a="python -m arcsub.cli"; n=$(nvidia-smi -L | wc -l); run=tt-${n}gpu-${secs}s
has() { [[ ",$stages," == *",$1,"* ]]; }
if has pipe4; then
  $a dry-run --tasks 100 --first -o $w/pipe$n --json workers=0 ttft.steps=32 ttft.seq_len=2048 ttft.max_len=2048 \
    predict.views=8 > "$out/pipe$n.json" 2> "$out/pipe$n.log"; echo "pipe$n rc=$? $(date +%s)"
fi
if has scale; then
  for g in 2 4; do
    CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((g-1))) torchrun --standalone --nproc_per_node=$g -m arcsub.cli train \
      --config configs/train-small.yaml steps=300 rows=$((16/g)) log_every=25 save_every=100000 out_dir=$w/scale$g \
      --quiet > "$out/scale$g.log" 2>&1; echo "scale$g rc=$?"
  done
  python - <<'PY'
import glob, json, statistics
for g in (1, 2, 4):
    logs = glob.glob(f"/tmp/w/scale{g}/*/log.jsonl")
    if logs:
        recs = [json.loads(x) for x in open(logs[0])]
        print(f"scale {g} GPU(s): median useful tok/s after step 100:",
              round(statistics.median(r["tokens_per_s"] for r in recs if r["step"] > 100)))
PY
fi
if has task; then
  left=$(( limit - ($(date +%s) - t0) - 20 ))
  torchrun --standalone --nproc_per_node=$n -m arcsub.cli task-train --config configs/task-transductive.yaml \
    name=$run seconds=$secs steps=100000 time_budget=$left out_dir=$w --quiet 2>&1 | grep -v -i warn | tail -n 8
  cp $w/$run/log.jsonl "$out/${run}_log.jsonl"; cp $w/$run/plan.json "$out/${run}_plan.json" 2>/dev/null
fi
if has predict && [ -f $w/$run/model/config.json ]; then
  $a task-predict $w/$run/model $ev -o $w/tp-$run --config configs/task-predict.yaml --solutions $evs --quiet
  cp $w/tp-$run/run__*.json "$out/" 2>/dev/null
fi
echo "call seconds: $(( $(date +%s) - t0 ))"
