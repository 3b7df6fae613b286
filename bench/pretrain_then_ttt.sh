#!/usr/bin/env bash
# Pretrain-then-TTT against transductive at equal steps on ARC-AGI-2 evaluation, in calls of <= 10 minutes on
# one warm GPU machine (/tmp/w survives between calls; a rerun resumes what a call left unfinished):
#   lane ptt: configs/task-pretrain-arc2.yaml for PRE steps (no evaluation task), then the competition path
#             continues that model for TTT steps (model=DIR: mode=ttt, new rows for the hidden tasks)
#   lane tr:  the competition path from scratch (transductive) for PRE + TTT steps
# Fixed steps, not seconds, so the lanes see the same tokens whatever the card. Each lane leaves its summary
# (score, metrics, per-task scores), log and training log in OUT_DIR.
#   Usage: bench/pretrain_then_ttt.sh OUT_DIR LANES LIMIT   (LANES: ptt, tr or ptt,tr; PRE/TTT env, default 5000/3500,
#   the twelfth session's run; one lane fits one call, so run ptt and tr in two calls). SEED (default 0) seeds the
#   pretraining and both pipelines; another seed gets its own folders and files (suffix -sSEED), never a resume
#   PRE_ARGS / ARGS: more overrides of the pretraining / of both pipelines (a CPU check: PRE_ARGS="model=tiny
#   compile=false rows=1 seq_len=2048" ARGS="train.compile=false train.rows=1 train.seq_len=2048 predict.views=2")
# Run from the repository root with the data archive at .carry/data.tar.xz (bench/pack_data.sh).
set -u
OUT=$1; LANES=$2; LIM=$3; PRE=${PRE:-5000}; TTT=${TTT:-3500}; T0=$(date +%s); W=/tmp/w
SEED=${SEED:-0}; SUF=$([ "$SEED" = 0 ] || echo "-s$SEED")
mkdir -p /tmp/arcdata $W "$OUT"
[ -d /tmp/arcdata/arc-agi-2 ] || tar -xJf .carry/data.tar.xz -C /tmp/arcdata
export ARCSUB_DATA=/tmp/arcdata PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader > "$OUT/gpu.txt"
left() { echo $(( LIM - ($(date +%s) - T0) )); }
pipeline() {  # lane, overrides...: the command at fixed steps, stopped (resumable) before LIMIT
  local lane=$1$SUF; shift
  timeout -s INT "$(left)" python -m arcsub.cli dry-run --pipeline task --config configs/task-pipeline-arc2.yaml \
    --challenges data:arc-agi-2/arc-agi_evaluation_challenges.json --tasks 120 -o $W/$lane --json \
    time_budget=0 train.seconds=0 train.seed="$SEED" "$@" ${ARGS:-} > "$OUT/$lane.json" 2> "$OUT/$lane.log"
  echo "$lane rc=$? at $(( $(date +%s) - T0 )) s"; tail -n 2 "$OUT/$lane.log"
  cp $W/$lane/task-model/log.jsonl "$OUT/$lane-train-log.jsonl" 2>/dev/null
}
if [[ ",$LANES," == *",ptt,"* ]]; then
  pre=$W/task-pretrain-base-arc2$SUF
  [ -f $pre/model/config.json ] || timeout -s INT "$(left)" python -m arcsub.cli task-train \
    --config configs/task-pretrain-arc2.yaml name="$(basename $pre)" steps="$PRE" seconds=0 seed="$SEED" out_dir=$W time_budget=$(( $(left) - 30 )) \
    ${PRE_ARGS:-} --quiet 2>&1 | grep -v -i warn | tail -n 3
  cp $pre/log.jsonl "$OUT/pretrain$SUF-log.jsonl" 2>/dev/null
  [ -f $pre/model/config.json ] && pipeline ptt model=$pre/model train.steps="$TTT"
fi
if [[ ",$LANES," == *",tr,"* ]]; then pipeline tr train.steps=$(( PRE + TTT )); fi
echo "call seconds: $(( $(date +%s) - T0 ))"
