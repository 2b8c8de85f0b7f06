#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite:
#   1. .venv (pydicom 3, numpy 2, highdicom): every test;
#   2. .venv-monailabel (MONAI Label 0.8.5 with its pins: pydicom 2.4, numpy 1.26): the tests marked `compat`, i.e.
#      the core (schema, readers, transforms, networks, predictor) under the versions MONAI Label forces.
# As root it first installs dcmtk and dicom3tools for the DICOM validation tests (otherwise those tests skip and say
# why). Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-monailabel.sh
if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then bash scripts/system-deps.sh; fi
# The main run is spread over the CPU cores by pytest-xdist: whole files per worker (`--dist loadfile`, so a module's
# fixtures are built once), one torch thread per worker. PYTEST_WORKERS sets the count (at most 4 by default; 1: one
# process with 2 threads, as before).
workers=${PYTEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}
if [ -z "${PYTEST_WORKERS:-}" ] && [ "$workers" -gt 4 ]; then workers=4; fi
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist loadfile); main_threads=${OMP_NUM_THREADS:-1}
else
  parallel=(); main_threads=${OMP_NUM_THREADS:-2}
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
versions='import pydicom, numpy; print(f"pydicom {pydicom.__version__}, numpy {numpy.__version__}")'
echo "== main environment (.venv): $(.venv/bin/python -c "$versions"), ${workers} pytest worker(s)"
# --durations: the slowest tests, since the suite must stay under 15 minutes on CI's 2 cores
OMP_NUM_THREADS=$main_threads .venv/bin/python -m pytest -q "${parallel[@]}" --durations=15 "$@"
echo "== MONAI Label environment (.venv-monailabel), core tests: $(.venv-monailabel/bin/python -c "$versions")"
.venv-monailabel/bin/python -m pytest -q -m compat -p no:cacheprovider
