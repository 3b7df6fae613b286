#!/usr/bin/env bash
# Several task-model runs side by side on one multi-GPU host, one GPU per lane (bench/gpu_stages.sh stages:
# training, then prediction, the views x selection table and the training-set table once a lane's model is
# saved). Re-run the same command to resume lanes that hit LIMIT. Repository root, PYTHONPATH=., data at
# $ARCSUB_DATA. Usage: bench/lanes.sh OUT_DIR LIMIT NAME:SECONDS:OVERRIDES ...   (OVERRIDES comma-separated)
#   ablations at equal compute (docs/task-model.md):
#     bench/lanes.sh OUT 560 base:500: 1d:500:positions=1d notask:500:task_embedding=false adamw:500:optim.name=adamw
#   sizes (the seed experiment's capacity study):
#     bench/lanes.sh OUT 560 small:500:model=small base:500: large:500:model=large
# STAGES (default task,predict,select,trainset) and VIEWS / TRAIN_VIEWS pass through to gpu_stages.sh.
set -uo pipefail
out=$1; limit=$2; shift 2; mkdir -p "$out"; gpu=0; names=()
for lane in "$@"; do
  IFS=: read -r name secs args <<< "$lane"; names+=("$name")
  CUDA_VISIBLE_DEVICES=$gpu NGPU=1 TAG=$name TASK_ARGS="${args//,/ }" \
    bash bench/gpu_stages.sh "$out/$name" "${STAGES:-task,predict,select,trainset}" "$secs" "$limit" \
    > "$out/$name.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait
for name in "${names[@]}"; do echo "== $name"; grep -E "Kaggle score|views, |saved|budget spent" "$out/$name.log"; done
