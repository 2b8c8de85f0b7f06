# Source this on a lent GPU machine (from the repository root) before running the project there:
#   source scripts/gpu/env.sh
# MONAI, Ignite and pydicom are not installed on it: the wheels that scripts/gpu/pack_aasce_ap.sh put in .whl/ (carried
# with the run) are installed into /tmp/lumbar_site, which goes on PYTHONPATH with the checkout. PY names the Python
# (python3, the one with PyTorch there). Returns non-zero, with one line, when neither the packages nor the wheels
# are there.
PY=${PY:-python3}
export PYTHON=$PY  # the name benchmarks/gpu_check.sh reads
if ! "$PY" -c "import monai, ignite, pydicom" 2>/dev/null; then
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        echo "error: monai/ignite/pydicom are missing and there is no .whl/ folder (run scripts/gpu/pack_aasce_ap.sh)" >&2
        return 2 2>/dev/null || exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lumbar_site \
        .whl/*.whl || { return 2 2>/dev/null || exit 2; }
    export PYTHONPATH=/tmp/lumbar_site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
