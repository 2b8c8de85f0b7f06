#!/usr/bin/env bash
# Set up .venv-monailabel: MONAI Label 0.8.5 + lumbar-monai (editable) for the app in apps/lumbar_monailabel.
#   bash scripts/setup-monailabel.sh
# MONAI Label pins pydicom < 3 and numpy < 2, so it lives apart from .venv; scripts/monailabel-constraints.txt keeps
# pip from replacing torch and torchvision while resolving monailabel.
# torch/torchvision: torch 2.14.1 with torchvision 0.29.1 (PyPI builds; the two wheels lie on this machine's disk,
# pip takes the rest of their closure from its indexes). Not the CPU-only torch 2.13.0 of .venv: PyPI's torchvision
# is built against CUDA torch, and next to a CPU-only torch `import torchvision` fails ("operator torchvision::nms
# does not exist"), and with it MONAI Label's BundleInferTask/BundleTrainTask. The CUDA build runs on CPU.
# Idempotent: a stamp of its inputs (setup.cfg, this script, the constraints) skips an up-to-date environment; nothing
# here is needed at run time (no network once installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=.venv-monailabel
constraints=scripts/monailabel-constraints.txt
want=$(cat setup.cfg scripts/setup-monailabel.sh "$constraints" | sha256sum | cut -c1-16)
stamp="$venv/.lumbar-monai-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup-monailabel] creating $venv (a few minutes the first time)" >&2
"$PY" -m venv "$venv"
pip_() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
pip_ -c "$constraints" torch torchvision
pip_ -c "$constraints" monailabel==0.8.5 "pydicom<3" "dicomweb-client<0.60" "pynetdicom<3"
# the project itself, resolved against the same constraints (torch, numpy and pydicom stay as they are)
pip_ -c "$constraints" -e .
# pytest: scripts/test.sh runs the core's `compat` tests here, under MONAI Label's pins (pydicom 2.4, numpy 1.26)
pip_ -c "$constraints" "pytest>=7.4"
# smoke check: the app's imports (monailabel's task interfaces + the pydicom-2-safe helpers)
"$venv/bin/python" -c "import monailabel.interfaces.app, monailabel.interfaces.config, lumbar_monai.monailabel_support, lumbar_monai.predictor" \
  || { echo "[setup-monailabel] $venv does not import the app's modules" >&2; exit 1; }
# torchvision with its ops, and MONAI Label's bundle tasks (which import it)
"$venv/bin/python" -c "import torch, torchvision.ops as o; o.nms(torch.zeros(1, 4), torch.ones(1), 0.5); import monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle" \
  || { echo "[setup-monailabel] $venv: torchvision or MONAI Label's bundle tasks do not import" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[setup-monailabel] $venv ready: $("$venv/bin/python" -c 'import monailabel, pydicom, numpy, torch; import torchvision; print(f"monailabel {monailabel.__version__}, pydicom {pydicom.__version__}, numpy {numpy.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")')" >&2
