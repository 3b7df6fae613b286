#!/usr/bin/env bash
# Per-task TTFT and prediction seconds of the 0.5B-shaped preset (trained 150 steps from scratch so that it writes
# grids) and of the embedded small model, same settings as the kernel run (TTFT 32 steps x 2048 tokens, 8 views),
# on N ARC-AGI-1 evaluation tasks; for docs/kaggle.md's projection. The 0.5B shape goes first and every stage
# prints its seconds as soon as it ends, so a call cut by its limit still brings back what it measured.
# Usage: bench/time_per_task.sh [N]
set -uo pipefail
n=${1:-8}; w=/tmp/tp; mkdir -p $w; a="python -m arcsub.cli"
ev=${ARCSUB_DATA}/arc-agi-1/arc-agi_evaluation_challenges.json
since() { python -c "import sys; print('%.2f' % ((float(sys.argv[2]) - float(sys.argv[1])) / float(sys.argv[3])))" \
  "$1" "$(date +%s.%N)" "${2:-1}"; }
t=$(date +%s.%N)
$a train --config configs/train-small.yaml model=qwen0.5b-shape rows=4 steps=150 save_every=100000 out_dir=$w/r05 --quiet \
  2>&1 | grep "arcsub train"
echo "qwen0.5b-shape training, 150 steps: $(since $t) s"
for m in $(ls -d $w/r05/*/model | head -1) models/arcsub-small; do
  name=$(basename $(dirname $m)); t=$(date +%s.%N)
  $a ttft $m $ev -o $w/ad-$name --tasks $n --quiet steps=32 seq_len=2048 max_len=2048 2>&1 | grep -v -i "warn\|Loading"
  echo "$name s/task: ttft $(since $t $n)"; t=$(date +%s.%N)
  $a predict $m $ev -o $w/p-$name --tasks $n --adapters $w/ad-$name --quiet views=8 2>&1 | grep "predicted"
  echo "$name s/task: predict $(since $t $n)"
done
