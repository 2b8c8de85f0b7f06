#!/usr/bin/env bash
# Train the shipped AP model (bundles/lumbar_landmarks/models/aasce_ap.pt) on the AASCE / SpineWeb-16 training split,
# selecting checkpoints on the validation split (the test split is not read), then evaluate it on the test split.
# Usage: bash scripts/train_aasce_ap.sh [AASCE_DIR] [RUN_DIR]     (CPU: both stages side by side, one thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/aasce16}
RUN=${2:-runs/aasce_ap}
SCHEDULE=configs/framed/aasce_ap_cpu.json
MODEL=bundles/lumbar_landmarks/models/aasce_ap.pt
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$RUN"
"$PY" -c "import sys; from lumbar_monai.io.aasce import write_aasce_datalist; write_aasce_datalist(sys.argv[1], sys.argv[2])" \
    "$DATA" "$RUN/datalist.json"
export OMP_NUM_THREADS=1
# Pose-Net in two rounds: the schedule (lr 2e-3, 14 epochs), then 6 more epochs at lr 1e-3 from its best weights;
# the export takes round 2's weights only if their validation loss is lower (select_posenet below).
(
    "$PY" -m lumbar_monai.training.framed posenet --datalist "$RUN/datalist.json" --schedule $SCHEDULE --out "$RUN" \
        > "$RUN/posenet_round1.log" 2>&1
    cp "$RUN/posenet.pt" "$RUN/posenet_round1.pt"; cp "$RUN/posenet.done.json" "$RUN/posenet_round1.done.json"
    "$PY" -m lumbar_monai.training.framed posenet --datalist "$RUN/datalist.json" --schedule $SCHEDULE --out "$RUN" \
        --init "$RUN/posenet_round1.pt" --override posenet.lr 0.001 --override posenet.max_epochs 6 \
        --override posenet.max_seconds 1200 > "$RUN/posenet.log" 2>&1
    "$PY" - "$RUN" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
run = Path(sys.argv[1])
best = {r: min(json.loads((run / f"{r}.done.json").read_text())["val_history"] or [float("inf")])
        for r in ("posenet_round1", "posenet")}
if best["posenet_round1"] <= best["posenet"]:
    shutil.copy(run / "posenet_round1.pt", run / "posenet.pt")
print("select_posenet: validation loss", best)
PYEOF
) &
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
