#!/usr/bin/env bash
# GPU session stages on a machine with N >= 1 GPUs; /tmp/w is reused while the machine stays warm, so a later call
# resumes or predicts from an earlier call's model. Run from the repository root with PYTHONPATH=. and the data
# unpacked at $ARCSUB_DATA. Usage: bench/gpu_stages.sh OUT_DIR STAGES [SECONDS] [LIMIT]; STAGES is a comma list of
#   pipe      the kernel path on the first 100 ARC-AGI-1 evaluation tasks, one worker per GPU
#   scale     `arcsub train` small on 1, 2, 4 GPUs (as many as there are; torchrun), same global batch (16 rows of
#             8192): the data-parallel scaling ratio
#   task      task-embedding model, $TASK_CONFIG (default configs/task-transductive.yaml) plus $TASK_ARGS
#             (key=value overrides; name the run with $TAG), DDP over the $NGPU GPUs (default: all), fitted to
#             SECONDS of training (default 420); stops before LIMIT seconds of this call (default 560) with a
#             checkpoint: run the stage again to resume; TASK_ARGS=steps=N on a resumed call shortens the fitted plan
#             to N steps while its lr decay is still ahead (when the device time left is short)
#   predict   task-predict on all evaluation tasks of $SET (default arc-agi-1; arc-agi-2 with
#             TASK_CONFIG=configs/task-transductive-arc2.yaml) with $VIEWS views (default 32), once the model exists;
#             it, trainset and pool are skipped with a line when under $PREDICT_S seconds (default 90) are left
#   select    bench/task_selection.py on that prediction: 8/16/32/... views x vote / likelihood, and with
#             $SCORE_VIEWS (e.g. 8,16,32) likelihood over that many scoring views; SELECT=pool: on the pool stage's
#             run instead (every member loaded, their likelihoods summed)
#   trainset  task-predict on the training tasks of $SET ($TRAIN_VIEWS views, default 32): the seed's
#             training-set table (the transductive model trained on them, test outputs included)
#   pertask   bench/time_per_task.sh ${TIMING_TASKS:-8}: per-task TTFT and prediction times, small and 0.5B shape
#   joint     joint vs per-task test-time training at equal compute on the first $TASKS (default 20) evaluation
#             tasks of $SET, demonstrations only (no training tasks, no RE-ARC), no compile: one task model on all
#             of them for $STEPS steps (default 3000) against one model per task for $STEPS/$TASKS steps each
#   pool      task-predict of this run's model pooled with the runs named in $POOL (space-separated run folders
#             under /tmp/w, e.g. earlier calls' TAG=s1 runs; --ensemble), $VIEWS views, then bench/task_overlap.py
#             over the single runs' and the pooled run files
#   KEEP_PREDS=1: predict and pool also bring back their predictions file, xz-compressed (~1 MB), for the offline
#             tools (bench/near_misses.py, bench/ensemble_members.py); off by default: a call returns at most 8 files
#   pack      the trained task model in bf16 (tools/export_model.py: ~58 MB for base) as 15 MiB parts in OUT_DIR,
#             so it outlives the machine (the device returns at most 8 files of 16 MiB): `cat OUT/RUN-model.tar.part-*
#             | tar xf -` restores model/ (in bf16: ready to commit under models/, or to predict from here)
set -uo pipefail
out=$1; stages=$2; secs=${3:-420}; limit=${4:-560}; t0=$(date +%s); w=/tmp/w; mkdir -p "$out" "$w"
d=${ARCSUB_DATA}/${SET:-arc-agi-1}; ev=$d/arc-agi_evaluation_challenges.json; evs=$d/arc-agi_evaluation_solutions.json
cfg=${TASK_CONFIG:-configs/task-transductive.yaml}; views=${VIEWS:-32}; tviews=${TRAIN_VIEWS:-32}
a="python -m arcsub.cli"; n=${NGPU:-$(nvidia-smi -L | wc -l)}; run=$(basename $cfg .yaml)${TAG:+-$TAG}-${n}gpu-${secs}s
has() { [[ ",$stages," == *",$1,"* ]]; }
left() { echo $(( limit - ($(date +%s) - t0) - 10 )); }
# a prediction needs ~60-150 s on 120 ARC-AGI-2 tasks: one that cannot finish before LIMIT is skipped with a
# line, so the call returns (the model stays in /tmp/w: run the stage again) instead of running out mid-way
keep_preds() { [ -z "${KEEP_PREDS:-}" ] || xz -T4 -c $1/predictions__*.json > "$out/$2-predictions.json.xz"; }
room() { [ "$(left)" -ge "${PREDICT_S:-90}" ] || { echo "$1: $(left) s left before LIMIT, under PREDICT_S=${PREDICT_S:-90}: skipped, run it again"; return 1; }; }
if has pipe; then
  $a dry-run --tasks 100 --first -o $w/pipe$n --json workers=0 ttft.steps=32 ttft.seq_len=2048 ttft.max_len=2048 \
    predict.views=8 > "$out/pipe$n.json" 2> "$out/pipe$n.log"; echo "pipe$n rc=$? $(date +%s)"
fi
if has scale; then
  for g in 1 2 4; do
    [ $g -le $n ] || break
    CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((g-1))) torchrun --standalone --nproc_per_node=$g -m arcsub.cli train \
      --config configs/train-small.yaml steps=300 rows=$((16/g)) log_every=25 save_every=100000 out_dir=$w/scale$g \
      --quiet > "$out/scale$g.log" 2>&1; echo "scale$g rc=$?"
    cp $w/scale$g/*/log.jsonl "$out/scale${g}_log.jsonl" 2>/dev/null
  done
  python - <<'PY'
import glob, json, statistics
base = None
for g in (1, 2, 4):
    logs = glob.glob(f"/tmp/w/scale{g}/*/log.jsonl")
    if logs:
        recs = [json.loads(x) for x in open(logs[0])]
        tps = statistics.median(r["tokens_per_s"] for r in recs if r["step"] > 100)
        base = base or tps
        print(f"scale {g} GPU(s): median useful tok/s after step 100: {tps:.0f} ({tps / base:.2f}x)")
PY
fi
if has task; then
  left=$(( limit - ($(date +%s) - t0) - 20 ))
  torchrun --standalone --nproc_per_node=$n -m arcsub.cli task-train --config $cfg \
    name=$run seconds=$secs steps=100000 time_budget=$left out_dir=$w ${TASK_ARGS:-} --quiet 2>&1 | grep -v -i warn \
    | tail -n 8
  cp $w/$run/log.jsonl "$out/${run}_log.jsonl"; cp $w/$run/plan.json "$out/${run}_plan.json" 2>/dev/null
fi
if has predict && [ -f $w/$run/model/config.json ] && room predict; then
  $a task-predict $w/$run/model $ev -o $w/tp-$run-v$views --config configs/task-predict.yaml views=$views \
    --solutions $evs --quiet | tail -n 8
  cp $w/tp-$run-v$views/run__*.json "$out/"; keep_preds $w/tp-$run-v$views $run-v$views
fi
sel=${SELECT:-tp}
if has select && [ -d $w/$sel-$run-v$views ]; then
  python bench/task_selection.py $w/$sel-$run-v$views/run__*.json --solutions $evs ${SCORE_VIEWS:+--score-views $SCORE_VIEWS} \
    -o "$out/selection-${SELECT:+$SELECT-}$run-v$views.json" | tail -n 16
fi
if has trainset && [ -f $w/$run/model/config.json ] && room trainset; then
  $a task-predict $w/$run/model $d/arc-agi_training_challenges.json -o $w/tr-$run --config configs/task-predict.yaml \
    views=$tviews --solutions $d/arc-agi_training_solutions.json --quiet | tail -n 8
  cp $w/tr-$run/run__*.json "$out/"
fi
if has pool && [ -f $w/$run/model/config.json ] && room pool; then
  extra=(); for r in ${POOL:-}; do extra+=(--ensemble "$w/$r/model"); done
  $a task-predict $w/$run/model $ev -o $w/pool-$run-v$views "${extra[@]}" --config configs/task-predict.yaml \
    views=$views --solutions $evs --quiet | tail -n 3
  cp $w/pool-$run-v$views/run__*.json "$out/pool-$run-v$views.json"; keep_preds $w/pool-$run-v$views pool-$run-v$views
  python bench/task_overlap.py $w/tp-*-v$views/run__*.json "$out/pool-$run-v$views.json" -o "$out/overlap-$run.json"
fi
if has pack && [ -f $w/$run/model/config.json ]; then
  rm -rf $w/bf16-$run && python tools/export_model.py $w/$run/model $w/bf16-$run/model --dtype bf16 \
    && tar cf - -C $w/bf16-$run model | split -b 15m - "$out/$run-model.tar.part-"; ls "$out" | grep -c part-
fi
k=${TASKS:-20}
if has joint; then
  st=${STEPS:-3000}; abl="--pipeline task --challenges $ev --tasks $k --first --json train.data.challenges=[] train.data.re_arc=null
    beside_data=false train.compile=false train.seconds=0 time_budget=0"
  timeout $(left) $a dry-run $abl -o $w/joint$k train.steps=$st train.optim.warmup=$((st / 20)) \
    > "$out/joint$k.json" 2> "$out/joint$k.log"; echo "joint$k rc=$? $(date +%s)"
  timeout $(left) $a dry-run $abl -o $w/pertask$k per_task=true train.steps=$((st / k)) \
    train.optim.warmup=$((st / k / 20)) > "$out/pertask$k.json" 2> "$out/pertask$k.log"; echo "pertask$k rc=$?"
  cp $w/pertask$k/submission.json "$out/pertask$k-submission.json" 2>/dev/null
fi
if has pertask; then bash bench/time_per_task.sh ${TIMING_TASKS:-8} 2>&1; fi
echo "call seconds: $(( $(date +%s) - t0 ))"
