#!/usr/bin/env bash
# Task-model lanes side by side on ONE GPU (each a bench/gpu_stages.sh run: training, then prediction on the
# evaluation tasks of $SET): an ablation at equal compute where every lane shares the same GPU the same way.
# Repository root, PYTHONPATH=., data at $ARCSUB_DATA. Usage: bench/arc2_lanes.sh OUT_DIR LIMIT LANE ...
#   LANE is NAME:SECONDS:TASK_CONFIG[:OVERRIDES], OVERRIDES comma-separated key=value for task-train.
#   bench/arc2_lanes.sh OUT 540 old:400:configs/task-transductive-arc2.yaml new:400:configs/task-transductive-arc2-data.yaml
set -uo pipefail
out=$1; limit=$2; shift 2; mkdir -p "$out"; names=()
for lane in "$@"; do
  IFS=: read -r name secs cfg args <<< "$lane"; names+=("$name")
  env SET=${SET:-arc-agi-2} NGPU=1 TAG=$name TASK_CONFIG=$cfg TASK_ARGS="${args//,/ }" \
    bash bench/gpu_stages.sh "$out/$name" "${STAGES:-task,predict}" "$secs" "$limit" > "$out/$name.log" 2>&1 &
done
wait
for name in "${names[@]}"; do echo "== $name"; grep -E "Kaggle score|views, |saved|budget spent|call seconds|rror" "$out/$name.log"; done
