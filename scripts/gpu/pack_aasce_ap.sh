#!/usr/bin/env bash
# Prepare what scripts/gpu/train_aasce_ap.sh needs on a lent GPU machine, which reads only this repository:
#   .gpu/aasce16  a copy of the AASCE images with the longer side at most 1024 px (the stage-1 cache's size) and the
#                 label files that do not depend on the image size (landmarks.csv is normalised)
#   .whl/         wheels of the packages the lent machine lacks (MONAI, Ignite, pydicom, nibabel, jsonschema and its
#                 needs), for its Python 3.12, at the versions of this checkout's environment
# Both folders are ignored by git (.gitignore); name them in the device tool's carry. About 36 MB together.
# Usage: bash scripts/gpu/pack_aasce_ap.sh [AASCE_DIR]      (needs pip's network access here, not there)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data/aasce16}
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import sys; from lumbar_monai.io.aasce import shrink_aasce_copy as s; \
print('shrunk AASCE copy:', s(sys.argv[1], '.gpu/aasce16', long_side=1024))" "$DATA"
pkgs=()
for name in monai pytorch-ignite pydicom nibabel jsonschema jsonschema-specifications referencing rpds-py; do
    pkgs+=("$name==$("$PY" -c "import sys; from importlib.metadata import version; print(version(sys.argv[1]))" "$name")")
done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${pkgs[@]}"
du -sh .gpu .whl
echo "device run: command 'bash scripts/gpu/train_aasce_ap.sh', carry ['.gpu', '.whl'], timeout_s 600"
