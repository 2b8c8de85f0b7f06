#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: the main environment, then the core again under the
# MONAI Label pins (pydicom 2.4, numpy 1.26). Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup.sh --compat
# dcmtk + dicom3tools for the DICOM validation tests (needs root or sudo; otherwise those tests skip and say why)
if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then bash scripts/system-deps.sh; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "== main environment: $(.venv/bin/python -c 'import pydicom, numpy; print(f"pydicom {pydicom.__version__}, numpy {numpy.__version__}")')"
.venv/bin/python -m pytest -q "$@"
echo "== compat environment: $(.venv-compat/bin/python -c 'import pydicom, numpy; print(f"pydicom {pydicom.__version__}, numpy {numpy.__version__}")')"
.venv-compat/bin/python -m pytest -q -m compat -p no:cacheprovider
