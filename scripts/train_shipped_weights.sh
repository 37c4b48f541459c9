#!/usr/bin/env bash
# Rebuilds the shipped weights exactly as they were made: the synthetic corpus, both backbones trained the same
# way (one process each, side by side on a 2-core CPU: about 40 minutes per 2500-step phase, two phases), then the
# held-out evaluation (20-40 minutes).
#   bash scripts/train_shipped_weights.sh [WORK_DIR]     (default WORK_DIR: /tmp/dimgestor_shipped)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/dimgestor_shipped}"
source "$REPO/.venv/bin/activate"
mkdir -p "$WORK/val20"
dimgestor make-corpus "$WORK/corpus" --clips-per-speaker 40 --seed 0
# Validation during training: every 10th held-out clip (the final evaluation uses all of them).
for wav in $(ls "$WORK/corpus/held-out"/*.wav | awk 'NR % 10 == 1'); do
  ln -sf "$wav" "$WORK/val20/"; ln -sf "${wav%.wav}.bvh" "$WORK/val20/"
done
for backbone in mamba2 transformer; do
  OMP_NUM_THREADS=1 dimgestor train --data "$WORK/corpus/train" --val-data "$WORK/val20" --out "$WORK/run_$backbone" \
    --config "$REPO/config/training/synthetic_$backbone.yaml" > "$WORK/train_$backbone.log" 2>&1 &
done
wait
# Phase 2: both runs resumed from their step-2500 checkpoints and trained on to step 5000 (a warm restart of the
# cosine schedule; see the _phase2 configs). The shipped weights are the EMA weights at step 5000.
for backbone in mamba2 transformer; do
  OMP_NUM_THREADS=1 dimgestor train --data "$WORK/corpus/train" --val-data "$WORK/val20" --out "$WORK/run_$backbone" \
    --config "$REPO/config/training/synthetic_${backbone}_phase2.yaml" --resume >> "$WORK/train_$backbone.log" 2>&1 &
done
wait
python "$REPO/scripts/evaluate_weights.py" --weights mamba2="$WORK/run_mamba2/weights" \
  transformer="$WORK/run_transformer/weights" --held-out "$WORK/corpus/held-out" --train "$WORK/corpus/train" \
  --out "$WORK/eval/report.json" --streaming
echo "weights: $WORK/run_mamba2/weights -> weights/dimgestor_default, $WORK/run_transformer/weights -> weights/dimgestor_transformer"
