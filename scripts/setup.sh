#!/usr/bin/env bash
# Set up a virtual environment for lumbar-monai (idempotent; used by both README commands and by CI).
#   scripts/setup.sh            -> .venv        : torch==2.13.0 first, then the project with [dicom,dev] extras
#   scripts/setup.sh --compat   -> .venv-compat : the core under pydicom 2.4 and numpy 1.26 (MONAI Label's pins)
# Re-running is cheap: a stamp of setup.cfg + this script skips an up-to-date environment.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-main}
PY=${PYTHON:-python3}
if [ "$mode" = "--compat" ]; then venv=.venv-compat; else venv=.venv; fi
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
if [ "$mode" = "--compat" ]; then
  pip_ -e ".[dev]" "pydicom>=2.4,<2.5" "numpy>=1.26,<2" "monai==1.6.1"
else
  pip_ -e ".[dicom,dev]"
fi
echo "$want" > "$stamp"
echo "[setup] $venv ready" >&2
