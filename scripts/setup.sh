#!/usr/bin/env bash
# Set up .venv for lumbar-monai (idempotent; used by both README commands and by CI): torch==2.13.0 first (a looser
# requirement would pull a CUDA build of several GB), then the project with its [dicom,dev] extras.
# Re-running is cheap: a stamp of setup.cfg + this script skips an up-to-date environment.
# (MONAI Label's environment, which is also where the core is tested under pydicom 2.4 / numpy 1.26, is made by
# scripts/setup-monailabel.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=.venv
want=$(cat setup.cfg scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$venv/.lumbar-monai-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating $venv (this takes a few minutes the first time)" >&2
"$PY" -m venv "$venv"
pip_() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
# torch first: a looser requirement would pull a CUDA build of several GB
pip_ torch==2.13.0
pip_ -e ".[dicom,dev]"
echo "$want" > "$stamp"
echo "[setup] $venv ready" >&2
