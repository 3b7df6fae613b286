#!/usr/bin/env bash
# Per-task TTFT and prediction seconds of the embedded small model and of the 0.5B-shaped preset (trained 150 steps
# from scratch so that it writes grids), same settings as the kernel run (TTFT 32 steps x 2048 tokens, 8 views),
# on N ARC-AGI-1 evaluation tasks; for docs/kaggle.md's projection. Usage: bench/time_per_task.sh [N]
set -uo pipefail
n=${1:-8}; w=/tmp/tp; mkdir -p $w; a="python -m arcsub.cli"
ev=${ARCSUB_DATA}/arc-agi-1/arc-agi_evaluation_challenges.json
$a train --config configs/train-small.yaml model=qwen0.5b-shape rows=4 steps=150 save_every=100000 out_dir=$w/r05 --quiet \
  2>&1 | grep "arcsub train"
for m in models/arcsub-small $(ls -d $w/r05/*/model | head -1); do
  name=$(basename $(dirname $m)); t0=$(date +%s.%N)
  $a ttft $m $ev -o $w/ad-$name --tasks $n --quiet steps=32 seq_len=2048 max_len=2048 2>&1 | grep -v -i "warn\|Loading"
  t1=$(date +%s.%N)
  $a predict $m $ev -o $w/p-$name --tasks $n --adapters $w/ad-$name --quiet views=8 2>&1 | grep "predicted"
  t2=$(date +%s.%N)
  python -c "print('$name s/task: ttft %.2f predict %.2f' % (($t1-$t0)/$n, ($t2-$t1)/$n))"
done
