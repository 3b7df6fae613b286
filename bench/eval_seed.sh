#!/usr/bin/env bash
# The seed's table for a model on ARC-AGI-1 (GPU): training subset, evaluation subset without and with TTFT,
# same inference settings. Usage: bench/eval_seed.sh MODEL_DIR OUT_DIR [N_TRAIN] [N_EVAL] [N_TTFT]
# Data from $ARCSUB_DATA (default ../shared/data). Prints one line per run; full summaries in OUT_DIR/*/run__*.json.
set -euo pipefail
model=$1; out=$2; ntrain=${3:-100}; neval=${4:-100}; nttft=${5:-50}
data=${ARCSUB_DATA:-../shared/data}/arc-agi-1
pred() { python -m arcsub.cli predict "$model" "$data/arc-agi_$1_challenges.json" -o "$out/$2" --tasks "$3" \
         --solutions "$data/arc-agi_$1_solutions.json" --quiet "${@:4}" views=8; }
mkdir -p "$out"
start=$(date +%s)
pred training train "$ntrain"
pred evaluation eval "$neval"
pred evaluation eval-base-$nttft "$nttft"
t0=$(date +%s)
python -m arcsub.cli ttft "$model" "$data/arc-agi_evaluation_challenges.json" -o "$out/adapters" --tasks "$nttft" --quiet \
  steps=100 seq_len=4096 max_len=4096
echo "ttft seconds: $(( $(date +%s) - t0 )) for $nttft tasks"
pred evaluation eval-ttft-$nttft "$nttft" --adapters "$out/adapters"
echo "total seconds: $(( $(date +%s) - start ))"
