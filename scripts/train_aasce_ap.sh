#!/usr/bin/env bash
# Train the shipped AP model (bundles/lumbar_landmarks/models/aasce_ap.pt) on the AASCE / SpineWeb-16 training split,
# selecting checkpoints on the validation split (the test split is not read), then evaluate it on the test split.
# Usage: bash scripts/train_aasce_ap.sh [AASCE_DIR] [RUN_DIR]     (CPU: both stages side by side, one thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/aasce16}
RUN=${2:-runs/aasce_ap}
SCHEDULE=configs/schedules/aasce_ap_cpu.json
MODEL=bundles/lumbar_landmarks/models/aasce_ap.pt
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$RUN"
"$PY" -c "import sys; from lumbar_monai.io.aasce import write_aasce_datalist; write_aasce_datalist(sys.argv[1], sys.argv[2])" \
    "$DATA" "$RUN/datalist.json"
export OMP_NUM_THREADS=1
"$PY" -m lumbar_monai.training.framed posenet --datalist "$RUN/datalist.json" --schedule $SCHEDULE --out "$RUN" \
    > "$RUN/posenet.log" 2>&1 &
P1=$!
"$PY" -m lumbar_monai.training.framed mnet --datalist "$RUN/datalist.json" --schedule $SCHEDULE --out "$RUN" \
    > "$RUN/mnet.log" 2>&1 &
P2=$!
wait $P1
wait $P2
mkdir -p "$(dirname $MODEL)"
"$PY" -m lumbar_monai.training.framed export --datalist "$RUN/datalist.json" --schedule $SCHEDULE --out "$RUN" \
    --model $MODEL --trained-on "AASCE 2019 / SpineWeb-16 training split (research use)"
"$PY" -c "import sys; from lumbar_monai.workflows.evaluate import evaluate_predictor as e; \
print(e(sys.argv[1], sys.argv[2], sys.argv[3], split='test'))" $MODEL "$RUN/datalist.json" "$RUN/eval_test"
