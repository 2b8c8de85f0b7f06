#!/usr/bin/env bash
# The main job on the embedded default data: set up (if needed), then the MONAI Bundle's training (which first
# generates the synthetic study set), evaluate (the paper's tables and figures) and inference (JSON, overlays, SR,
# GSPS) on the test split. Small CPU schedule; extra arguments are bundle overrides for all three runs
# (e.g. --output_dir /tmp/run or --config_file ... is NOT accepted here: use the bundle directly for that).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd bundles/lumbar_landmarks
PY=../../.venv/bin/python
start=$(date +%s)
$PY -m monai.bundle run training --config_file configs/train.json "$@"
$PY -m monai.bundle run evaluate --config_file configs/evaluate.json "$@"
$PY -m monai.bundle run inference --config_file configs/inference.json "$@"
out=$($PY -c "import sys; a=sys.argv[1:]; print(a[a.index('--output_dir')+1] if '--output_dir' in a else 'runs/default')" "$@")
echo
echo "done in $(( $(date +%s) - start )) s (synthetic data, CPU demonstration schedule: not a clinical model)"
echo "  model:       bundles/lumbar_landmarks/$out/models/lumbar_landmarks.pt"
echo "  tables:      bundles/lumbar_landmarks/$out/eval/*.md (figures: *.png)"
echo "  predictions: bundles/lumbar_landmarks/$out/predictions/"
