#!/usr/bin/env bash
# Every throughput number of issue 16 on one GPU, in one run (budget: under 8 minutes on an H200-class machine).
#
#   benchmarks/gpu_check.sh            # on the GPU machine, from anywhere in the checkout
#   QUICK=1 benchmarks/gpu_check.sh    # tiny settings: a dry run of the script on a CPU (minutes, not numbers)
#
# Prints, with the hardware first:
#   1. stage-1 pre-processing, network resolution against the former full-resolution path (CPU, same images);
#   2. whole predictor, one image at a time (latency, per-stage table) and in batch mode (images/s, peak memory),
#      paper-size networks (random weights), DICOM DX files in, facing given (one pass through the networks);
#   3. the same batch mode with facing "auto" (the CLI default: both networks on the image and its mirror);
#   4. training throughput at paper size, both stages: data alone (uncached / MONAI CacheDataset), model step alone,
#      loop (uncached / cached), with DataLoader workers; peak RSS.
# Each step has its own time limit (timeout), so a slow step cannot take the whole budget.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
QUICK=${QUICK:-0}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}
if [ "$QUICK" = "1" ]; then
    DEV=cpu; IMAGES=1; REPEATS=1; MAXSIDE=400; CROP=64; BATCH=2; NFILES=2; TRAIN_IMAGES=2; TRAIN_BATCH=1
    TRAIN_SIZE=demo; TRAIN_SIDE=256; WORKERS=1; L1=600; L2=600; L3=600
else
    DEV=cuda; IMAGES=5; REPEATS=3; MAXSIDE=2500; CROP=256; BATCH=16; NFILES=128; TRAIN_IMAGES=64; TRAIN_BATCH=16
    TRAIN_SIZE=paper; TRAIN_SIDE=768; L1=180; L2=90; L3=180  # 7.5 minutes at most
fi
start=$(date +%s)
echo "== hardware"
date -u
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
echo "CPU cores: $(nproc); DataLoader workers: $WORKERS"
"$PY" -c "import torch, monai; print('torch', torch.__version__, '| MONAI', monai.__version__, '| CUDA', torch.cuda.is_available())"

step() {  # step <seconds> <title> <command...>
    local limit=$1 title=$2
    shift 2
    echo
    echo "== $title"
    echo "\$ $*"
    timeout "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "(stopped after ${limit} s)"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "(failed: exit status $rc)"
    return 0
}

step "$L1" "whole predictor: latency (one image at a time) and batch mode, facing given" \
    "$PY" benchmarks/bench_predictor.py --devices "$DEV" --images "$IMAGES" --repeats "$REPEATS" \
    --max-side "$MAXSIDE" --crop-size "$CROP" --facing left --batch-mode "$BATCH" --workers "$WORKERS" \
    --batch-images "$NFILES" --compare-preprocessing
step "$L2" "whole predictor in batch mode, facing auto (the CLI default: image and mirror)" \
    "$PY" benchmarks/bench_predictor.py --devices "$DEV" --images "$IMAGES" --repeats "$REPEATS" \
    --max-side "$MAXSIDE" --crop-size "$CROP" --facing auto --batch-mode "$BATCH" --workers "$WORKERS" \
    --batch-images "$NFILES" --skip-single
step "$L3" "training throughput, both stages ($TRAIN_SIZE size, $WORKERS workers)" \
    "$PY" benchmarks/bench_training.py --size "$TRAIN_SIZE" --device "$DEV" --images "$TRAIN_IMAGES" \
    --batch "$TRAIN_BATCH" --num-workers "$WORKERS" --stages posenet,mnet --max-side "$TRAIN_SIDE"
echo
echo "== done in $(( $(date +%s) - start )) s"
