#!/usr/bin/env bash
# Several task-model runs side by side on one multi-GPU host, one GPU per argument (bench/gpu_stages.sh stages:
# training, then prediction, the views x selection table and the training-set table once a lane's model is
# saved). Re-run the same command to resume lanes that hit LIMIT. Repository root, PYTHONPATH=., data at
# $ARCSUB_DATA. Usage: bench/lanes.sh OUT_DIR LIMIT LANE[+LANE...] ...
#   LANE is NAME:SECONDS:OVERRIDES, OVERRIDES comma-separated: lower-case key=value go to task-train, UPPER-CASE
#   ones are this lane's environment for gpu_stages.sh (SET, TASK_CONFIG, VIEWS, STAGES with '/' between stages);
#   LANE+LANE runs lanes one after the other on the same GPU, within the same LIMIT; GPUS=k in a slot's first
#   lane gives that slot k GPUs (DDP training), e.g. "arc2:380:GPUS=2,SET=arc-agi-2,rows=2,TASK_CONFIG=..." beside
#   one-GPU lanes (docs/experiments/task-model-ablations.md has the session-5 call).
#   ablations at equal compute (docs/experiments/task-model-ablations.md has the calls that were run):
#     bench/lanes.sh OUT 560 base:360: 1d:360:positions=1d notask:360:task_embedding=false adamw:360:optim.name=adamw
#   pretraining, then joint TTT from its model, in sequence on one GPU; per-task times on another:
#     bench/lanes.sh OUT 560 "pre:240:TASK_CONFIG=configs/task-pretrain.yaml,STAGES=task+ttt:120:TASK_CONFIG=configs/task-ttt.yaml,model=/tmp/w/task-pretrain-pre-1gpu-240s/model" \
#       times:0:STAGES=pertask
# STAGES (default task,predict,select,trainset) and VIEWS / TRAIN_VIEWS pass through to gpu_stages.sh.
set -uo pipefail
out=$1; limit=$2; shift 2; mkdir -p "$out"; t0=$(date +%s); gpu=0; names=()
run_lane() {  # GPU LANE: one gpu_stages.sh run, with what is left of LIMIT
  local name secs args envs=() targs=() stages=${STAGES:-task,predict,select,trainset}
  IFS=: read -r name secs args <<< "$2"
  IFS=, read -ra kv <<< "$args"
  for x in "${kv[@]}"; do
    if [[ $x == STAGES=* ]]; then stages=${x#STAGES=}; stages=${stages//\//,}
    elif [[ $x =~ ^[A-Z_]+= ]]; then envs+=("$x"); else targs+=("$x"); fi
  done
  env CUDA_VISIBLE_DEVICES=$1 NGPU=$(( $(tr -cd , <<< "$1" | wc -c) + 1 )) TAG=$name TASK_ARGS="${targs[*]}" "${envs[@]}" \
    bash bench/gpu_stages.sh "$out/$name" "$stages" "$secs" $(( limit - ($(date +%s) - t0) )) > "$out/$name.log" 2>&1
}
for slot in "$@"; do
  IFS=+ read -ra seq <<< "$slot"
  for lane in "${seq[@]}"; do names+=("${lane%%:*}"); done
  k=1; [[ ${seq[0]} =~ GPUS=([0-9]+) ]] && k=${BASH_REMATCH[1]}
  devs=$(seq -s, $gpu $((gpu + k - 1)))
  ( for lane in "${seq[@]}"; do run_lane "$devs" "$lane"; done ) &
  gpu=$((gpu + k))
done
wait
for name in "${names[@]}"; do
  echo "== $name"; grep -E "Kaggle score|views, |saved|budget spent|s/task|call seconds" "$out/$name.log"
done
