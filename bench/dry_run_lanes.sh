#!/usr/bin/env bash
# The competition path (`arcsub dry-run --pipeline task`) in lanes side by side on ONE GPU: an ablation at
# equal compute where every lane shares the GPU the same way, each scored on the same tasks of $SET's
# evaluation file. Repository root, PYTHONPATH=., data at $ARCSUB_DATA. Each lane's GPU memory is capped
# (ARCSUB_GPU_MEMORY_GB, default 60) so that two predictions fit on one card beside each other.
# Usage: bench/dry_run_lanes.sh OUT_DIR SET TASKS LANE ...   LANE is NAME[:OVERRIDES], OVERRIDES comma-separated
# key=value for the pipeline; $CONFIG (default configs/task-pipeline-arc2.yaml; empty: none) and $ARGS (e.g.
# "time_budget=480") apply to every lane. SET is a folder of $ARCSUB_DATA (its evaluation file is scored) or a
# folder of task files with their test outputs inline (an ARC-like set, scored against those: bench/heldout_sets.py).
#   bench/dry_run_lanes.sh OUT arc-agi-2 120 base refine:refine_share=0.25
# Writes OUT/NAME/ (the run folder: summary.json, logs), OUT/NAME.log and OUT/lanes.json (the summaries).
# ENSEMBLE=1: then one task-predict pools every lane's model (the first lane's plus --ensemble the others;
# configs/task-predict.yaml, $VIEWS views, default 32; the lanes' tasks) into OUT/ensemble/: e.g. lanes of two seeds
#   ENSEMBLE=1 bench/dry_run_lanes.sh OUT arc-agi-2 120 s0 s1:train.seed=1
# and bench/task_overlap.py compares the lanes and the pooled run task by task (OUT/overlap.json).
set -uo pipefail
out=$1; set_=$2; tasks=$3; shift 3; mkdir -p "$out"; names=()
config=${CONFIG-configs/task-pipeline-arc2.yaml}
if [[ $set_ == */* && -d $set_ ]]; then ch=$set_; solutions=()  # an ARC-like set (a path): outputs inline
else ch=$ARCSUB_DATA/$set_/arc-agi_evaluation_challenges.json; solutions=(--solutions "${ch/_challenges/_solutions}"); fi
for lane in "$@"; do
  IFS=: read -r name args <<< "$lane"; names+=("$name")
  # shellcheck disable=SC2086  # ARGS and the lane's overrides are word lists
  ARCSUB_GPU_MEMORY_GB=${ARCSUB_GPU_MEMORY_GB:-60} python -m arcsub.cli dry-run --pipeline task \
    ${config:+--config "$config"} --challenges "$ch" \
    --tasks "$tasks" --json -o "$out/$name" ${ARGS:-} ${args//,/ } > "$out/$name.json" 2> "$out/$name.log" &
done
wait
python - "$out" "${names[@]}" <<'PY'
import json, sys
from pathlib import Path
out, names = Path(sys.argv[1]), sys.argv[2:]
lanes = {}
for n in names:
    f = out / n / "summary.json"
    lanes[n] = json.loads(f.read_text()) if f.exists() else {"error": f"no summary: see {out / n}.log"}
    s = lanes[n]
    print(f"== {n}: score {s.get('score')} stages {s.get('stage_seconds')} seconds {s.get('seconds')}"
          f" peak {s.get('peak_gpu_gb')} GB metrics {s.get('metrics')}", flush=True)
(out / "lanes.json").write_text(json.dumps(lanes, indent=2))
PY
if [ "${ENSEMBLE:-0}" = 1 ]; then
  models=(); for n in "${names[@]}"; do models+=("$out/$n/task-model/model"); done
  extra=(); for m in "${models[@]:1}"; do extra+=(--ensemble "$m"); done
  ids=$(python -c "import sys; from arcsub.core.runs import pick_dry_run_tasks as p; print(','.join(p(*sys.argv[1:2], int(sys.argv[2]))))" "$ch" "$tasks")
  python -m arcsub.cli task-predict "${models[0]}" "$ch" -o "$out/ensemble" \
    "${extra[@]}" --tasks "$ids" "${solutions[@]}" --quiet \
    --config configs/task-predict.yaml views="${VIEWS:-32}" 2>&1 | tail -n 6
  runs=(); for n in "${names[@]}"; do runs+=("$out/$n/summary.json"); done
  python bench/task_overlap.py "${runs[@]}" "$out"/ensemble/run__*.json -o "$out/overlap.json"
fi
