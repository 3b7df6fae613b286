#!/usr/bin/env bash
# One 4-GPU device call, four independent lanes (one GPU each), then a summary. Usage (on the GPU machine, repo
# root, data unpacked at $ARCSUB_DATA): bench/gpu4_lanes.sh OUT_DIR
#   GPU0: the kernel path (dry-run: TTFT + predict + vote) on the first 100 ARC-AGI-1 evaluation tasks, 1 worker
#   GPU1: bench_train small and 0.5B-shape (vs transformers.Trainer), then `arcsub train` small, 1 GPU, 16 rows
#   GPU2: predict without TTFT (train/eval, first 100 each); 0.5B-shape per-task TTFT and predict times
#   GPU3: the task-embedding model: transductive run fitted to 240 s, then task-predict on all evaluation tasks
# Work files in /tmp/w (kept for the next call on a warm machine), logs and results in OUT_DIR.
set -uo pipefail
out=$1; w=/tmp/w; mkdir -p "$out" "$w"; t0=$(date +%s)
left() { echo $(( 535 - ($(date +%s) - t0) )); }  # seconds until this call must end
d=${ARCSUB_DATA}/arc-agi-1; ev=$d/arc-agi_evaluation_challenges.json; evs=$d/arc-agi_evaluation_solutions.json
tr=$d/arc-agi_training_challenges.json; trs=$d/arc-agi_training_solutions.json
a="python -m arcsub.cli"
nvidia-smi -L | tee "$out/gpus.txt"
lane0() {
  timeout $(left) $a dry-run --tasks 100 --first -o $w/pipe1 --json workers=1 ttft.steps=32 ttft.seq_len=2048 ttft.max_len=2048 \
    predict.views=8 > "$out/pipe1.json"
}
lane1() {
  python bench/bench_train.py --preset small --variants sdpa,flex_attention+compile --steps 80 --out "$out/bt_small.json"
  python bench/bench_train.py --preset qwen0.5b-shape --rows 2 --baseline-batch 4 --baseline-steps 40 --steps 40 \
    --variants flex_attention+compile --out "$out/bt_05b_r2.json"
  python bench/bench_train.py --preset qwen0.5b-shape --rows 4 --baseline-batch 4 --baseline-steps 40 --steps 40 \
    --variants flex_attention+compile --out "$out/bt_05b_r4.json"
  $a train --config configs/train-small.yaml steps=300 rows=16 log_every=25 save_every=100000 out_dir=$w/scale1 --quiet
}
lane2() {
  $a predict models/arcsub-small $tr -o $w/p-train --tasks 100 --solutions $trs --quiet views=8
  $a predict models/arcsub-small $ev -o $w/p-eval --tasks 100 --solutions $evs --quiet views=8
  $a train --config configs/train-small.yaml model=qwen0.5b-shape rows=2 steps=150 save_every=100000 out_dir=$w/r05 --quiet
  m=$(ls -d $w/r05/*/model | head -1)
  t0=$(date +%s.%N); $a ttft $m $ev -o $w/ad05 --tasks 8 --quiet; t1=$(date +%s.%N)
  $a predict $m $ev -o $w/p05 --tasks 8 --adapters $w/ad05 --solutions $evs --quiet views=8; t2=$(date +%s.%N)
  python -c "print('0.5B s/task: ttft %.1f predict %.1f' % (($t1-$t0)/8, ($t2-$t1)/8))"
}
lane3() {
  $a task-train --config configs/task-transductive.yaml name=tt-1gpu-240s seconds=240 steps=100000 \
    time_budget=330 out_dir=$w --quiet
  cp $w/tt-1gpu-240s/log.jsonl "$out/tt1_log.jsonl"
  timeout $(left) $a task-predict $w/tt-1gpu-240s/model $ev -o $w/tp1 --solutions $evs --quiet views=32
  cp $w/tp1/run__*.json "$out/"
}
pids=()
for i in 0 1 2 3; do
  (export CUDA_VISIBLE_DEVICES=$i; lane$i > "$out/lane$i.log" 2>&1; echo "lane$i rc=$? at $(( $(date +%s) - t0 )) s") &
  pids+=($!)
done
(sleep $(left); pkill -f "arcsub.cli|bench_train") &  # a lane that overruns is stopped; the others' results stand
watchdog=$!
wait "${pids[@]}"; kill $watchdog 2>/dev/null
for i in 0 1 2 3; do echo "== lane$i"; grep -v "Warning\|warn(" "$out/lane$i.log" | tail -n 14; done
