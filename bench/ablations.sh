#!/usr/bin/env bash
# The task model's ablations at equal compute on a 4-GPU host: four lanes side by side, one GPU each, the same
# training seconds, then 32-view prediction and the views x selection table (bench/gpu_stages.sh stages).
# Usage (repository root, PYTHONPATH=., data at $ARCSUB_DATA): bench/ablations.sh OUT_DIR SECONDS [LIMIT] [LANES]
# LANES: a comma list of base (3-D positions, task rows, NorMuon), 1d (positions=1d), notask (task_embedding=false),
# adamw (optim.name=adamw); default all four. Re-run the same command to resume training that hit LIMIT;
# prediction runs once a lane's model is saved.
set -uo pipefail
out=$1; secs=$2; limit=${3:-560}; lanes=${4:-base,1d,notask,adamw}
mkdir -p "$out"
declare -A args=([base]="" [1d]="positions=1d" [notask]="task_embedding=false" [adamw]="optim.name=adamw")
gpu=0
for lane in ${lanes//,/ }; do
  CUDA_VISIBLE_DEVICES=$gpu NGPU=1 TAG=$lane TASK_ARGS="${args[$lane]}" \
    bash bench/gpu_stages.sh "$out/$lane" task,predict,select "$secs" "$limit" > "$out/$lane.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait
for lane in ${lanes//,/ }; do echo "== $lane"; grep -E "Kaggle score|views, |saved|budget spent" "$out/$lane.log"; done
