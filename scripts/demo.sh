#!/usr/bin/env bash
# The main job on the embedded default data: set up (if needed), make a synthetic study set, render an overview.
# Extra arguments go to `lumbar-monai demo` (e.g. --n 16 --out outputs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/lumbar-monai demo --out outputs/demo "$@"
