#!/usr/bin/env bash
# The competition path (`arcsub dry-run --pipeline task`) longer than one 10-minute device call: call N of a run
# that is killed before LIMIT seconds (`timeout -s INT`) and rerun at once on the same warm machine, where it
# resumes from its last checkpoint (/tmp/w/$RUN) to the step count its first call fitted, then predicts.
# Everything the call leaves (logs, the GPU's clocks and power every 30 s, training log, plan, settings,
# submission, summary, attempts) returns as one file, OUT_DIR/callN.tgz: a call brings back at most 8 files.
# Run from the repository root with the data archive at .carry/data.tar.xz (bench/pack_data.sh).
#   Usage: bench/pipeline_calls.sh OUT_DIR N LIMIT
#   TIME_BUDGET  the run's time_budget (default 1680, the 28 minutes), the same in every call
#   RUN          the run's folder under /tmp/w (default dr$TIME_BUDGET)
#   CONFIG       default configs/task-pipeline-arc2.yaml; CHALLENGES default ARC-AGI-2 evaluation; TASKS 120
#   ARGS         more key=value overrides of the pipeline, the same in every call (e.g. model=DIR: continue a
#                pretrained task model, mode=ttt)
#   STEP_BENCH=1 call 1 first runs bench/bench_task_step.py (~2 min; its compilation warms the cache)
# The ninth session's 26-minute run (docs/experiments/arc2.md): TIME_BUDGET=1560 RUN=dr26 STEP_BENCH=1, calls
# 1, 2, 3 with LIMIT 580, 585, 475.
set -u
OUT=$1; N=$2; LIM=$3
T=${TIME_BUDGET:-1680}; W=/tmp/w/${RUN:-dr$T}; O=/tmp/o$N
CONFIG=${CONFIG:-configs/task-pipeline-arc2.yaml}
CHALLENGES=${CHALLENGES:-data:arc-agi-2/arc-agi_evaluation_challenges.json}
T0=$(date +%s)
mkdir -p /tmp/arcdata /tmp/w "$O"
[ -d /tmp/arcdata/arc-agi-2 ] || tar -xJf .carry/data.tar.xz -C /tmp/arcdata
export ARCSUB_DATA=/tmp/arcdata PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ "$N" = 1 ]; then
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,power.limit,power.draw,temperature.gpu --format=csv \
    > "$O/gpu-info.txt"
  lscpu | grep -E "Model name|^CPU\(s\)|MHz" >> "$O/gpu-info.txt"
  if [ "${STEP_BENCH:-0}" = 1 ]; then
    timeout 220 python bench/bench_task_step.py --config configs/task-transductive-arc2.yaml data.scale=0.3 \
      --out "$O/bench_task_step.json" > "$O/bench.log" 2>&1
    echo "bench rc=$? at $(( $(date +%s) - T0 )) s"
    tail -4 "$O/bench.log"
  fi
fi
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,utilization.gpu --format=csv -l 30 \
  > "$O/gpu-$N.csv" &
REST=$(( LIM - ($(date +%s) - T0) ))
echo "pipeline gets $REST s"
timeout -s INT "$REST" python -m arcsub.cli dry-run --pipeline task --config "$CONFIG" --challenges "$CHALLENGES" \
  --tasks "${TASKS:-120}" -o "$W" --json time_budget="$T" ${ARGS:-} > "$O/call$N.json" 2> "$O/call$N.log"
echo "pipeline rc=$? at $(( $(date +%s) - T0 )) s"
kill %1 2>/dev/null
grep -i "task-train\|solver\|predicted\|score\|interrupted\|error" "$O/call$N.log" | tail -12
cp "$W"/submission.json "$W"/summary.json "$W"/attempts.0.json "$O"/ 2>/dev/null
cp "$W"/task-model/*.jsonl "$W"/task-model/plan.json "$W"/task-model/config.json "$O"/ 2>/dev/null
tar -czf "$OUT/call$N.tgz" -C "$O" .
