#!/usr/bin/env bash
# One bounded GPU run of the AP model recipe: train every plan entry's two stages side by side on one GPU, export
# each as a predictor, score it on the validation and test splits, pack the results. Made for a GPU machine lent for
# minutes that cannot read ../shared (scripts/gpu/pack_aasce_ap.sh prepares what it needs: .gpu/ and .whl/); it runs
# on the CPU too (DEVICE=cpu), which is how it is tested (tests/test_gpu_kit.py).
#
# Usage, from the repository root:   bash scripts/gpu/train_aasce_ap.sh
# Environment (all optional):
#   PLAN           space-separated entries SCHEDULE[:INIT_MODEL]; INIT_MODEL continues both stages from a predictor
#                  checkpoint (default: configs/framed/aasce_ap_gpu.json, aasce_ap_paper.json, and the shipped model
#                  continued with aasce_ap_continue.json)
#   LEVEL          a level network's schedule, trained beside the plan; every entry is also exported with it
#                  (NAME_level.pt) (default: empty, none; e.g. configs/framed/aasce_ap_level.json, round 8's)
#   COUNTER        a model (or counter file) whose vertebra counter every entry is also scored with (NAME_count.pt;
#                  default: the shipped AP model's counter; empty: none)
#   PRIOR_MODES    modes of the shape prior every exported model gets, fitted on the training labels (8, as shipped)
#   DATA           AASCE copy the datalist is written from (.gpu/aasce16; the split is the fixed one, by patient)
#   DATALIST       an existing datalist instead (DATA is then not read)
#   TRAIN_SECONDS  wall-time cap of every training process (420); DEADLINE (570): seconds after the start by which
#                  scoring stops and the results are packed, inside one 600 s call; DEVICE (cuda);
#                  WORKERS: DataLoader processes per training process (2)
#   RUN            work folder (/tmp/lumbar_gpu_run); OUT where results go ($OUT, else runs/gpu_out); PY (python3)
# Results in OUT: results.tar.gz (logs, training curves, evaluation tables and per-case CSVs; no images, caches or
# weights) and every exported model under 16 MB as NAME.pt (the paper-size one, about 124 MB, stays behind).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-2}
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
RUN=${RUN:-/tmp/lumbar_gpu_run}
OUT=${OUT:-runs/gpu_out}
DATA=${DATA:-.gpu/aasce16}
SHIPPED=bundles/lumbar_landmarks/models/aasce_ap.pt
F=configs/framed
PLAN=${PLAN:-"$F/aasce_ap_gpu.json $F/aasce_ap_paper.json $F/aasce_ap_continue.json:$SHIPPED"}
LEVEL=${LEVEL-}  # round 8's level network was not kept; the vertebra counter (COUNTER) names the levels instead
COUNTER=${COUNTER-$SHIPPED}
PRIOR_MODES=${PRIOR_MODES:-8}  # the shape prior's modes (the shipped model's 8; fewer for a dry run on a few labels)
DEADLINE=${DEADLINE:-570}  # seconds after the start by which results are packed, whatever is still scoring
T0=$(date +%s)
left() { echo $((DEADLINE - 15 - ($(date +%s) - T0))); }  # seconds a scoring step may still take
mkdir -p "$RUN" "$OUT"
log() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$RUN/run.log"; }

# MONAI, Ignite and pydicom are not installed on the lent machine: the carried wheels are (scripts/gpu/env.sh)
# shellcheck source=scripts/gpu/env.sh
source scripts/gpu/env.sh || exit 2
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee -a "$RUN/run.log"
if command -v nvidia-smi > /dev/null 2>&1; then  # the hardware behind every number of the run
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$RUN/run.log"
fi
echo "CPU cores: $(nproc)" | tee -a "$RUN/run.log"

if [ -z "${DATALIST:-}" ]; then
    DATALIST="$RUN/datalist.json"
    "$PY" -c "import sys; from lumbar_monai.io.aasce import write_aasce_datalist as w; w(sys.argv[1], sys.argv[2])" \
        "$DATA" "$DATALIST" || exit 2
fi
log "datalist $DATALIST"

names=()
for entry in $PLAN; do
    schedule=${entry%%:*}
    init=""
    [ "$entry" != "$schedule" ] && init=${entry#*:}
    name=$(basename "$schedule" .json)${init:+_continued}
    names+=("$name")
    d="$RUN/$name"
    mkdir -p "$d"
    echo "$entry" > "$d/plan.txt"
    for stage in posenet mnet; do
        key=$([ $stage = posenet ] && echo posenet || echo mnet_lumbar)
        timeout $((TRAIN_SECONDS + 90)) "$PY" -m lumbar_monai.training.framed $stage --datalist "$DATALIST" \
            --schedule "$schedule" --out "$d" --device "$DEVICE" --workers "$WORKERS" \
            --override "$key.max_seconds" "$TRAIN_SECONDS" ${init:+--init "$init"} > "$d/$stage.log" 2>&1 &
    done
done
if [ -n "$LEVEL" ]; then  # the level network (whole image, counts from T1): Pose-Net only, shared by every entry
    mkdir -p "$RUN/level"
    timeout $((TRAIN_SECONDS + 90)) "$PY" -m lumbar_monai.training.framed posenet --datalist "$DATALIST" \
        --schedule "$LEVEL" --out "$RUN/level" --device "$DEVICE" --workers "$WORKERS" \
        --override posenet.max_seconds "$TRAIN_SECONDS" > "$RUN/level/posenet.log" 2>&1 &
fi
log "training ${names[*]}${LEVEL:+ and a level network} (${TRAIN_SECONDS} s cap per process)"
wait
log "training done"

score() {  # score() NAME VARIANT: a model on the validation and test splits side by side, then kept if small
    local name=$1 v=$2 d="$RUN/$1" split
    local model="$d/model$v.pt"
    for split in validation test; do
        (
            [ "$(left)" -le 0 ] && { log "$name$v $split: not scored (out of time)"; exit 0; }
            timeout "$(left)" "$PY" benchmarks/eval_aasce_ap.py --model "$model" --datalist "$DATALIST" \
                --split $split --passes 3 --device "$DEVICE" --out "$d/eval${v}_$split" \
                > "$d/eval${v}_$split.md" 2> "$d/eval${v}_$split.err"
            log "$name$v $split: $(tail -n 1 "$d/eval${v}_$split.md")"
        ) &
    done
    wait
    if [ "$(stat -c %s "$model")" -lt 16000000 ]; then cp "$model" "$OUT/$name$v.pt"; fi
}

export_model() {  # export_model NAME VARIANT: the entry as a predictor ("" as trained, _level with the level network)
    local name=$1 v=$2 d="$RUN/$1"
    local schedule model="$d/model$v.pt"
    schedule=$(cut -d: -f1 "$d/plan.txt")
    if [ "$(left)" -le 0 ] || ! timeout "$(left)" "$PY" -m lumbar_monai.training.framed export \
            --datalist "$DATALIST" --schedule "$schedule" --out "$d" --model "$model" \
            --trained-on "AASCE 2019 / SpineWeb-16 training split (research use)" --tta mirror \
            ${v:+--level "$RUN/level/posenet.pt"} > "$d/export$v.log" 2>&1; then
        log "$name$v: export failed or out of time (see $name/export$v.log)"
        return 1
    fi
    # the shipped model's shape prior (README "The shape prior"), fitted on the training labels: a few seconds
    if [ "$(left)" -le 0 ] || ! timeout "$(left)" "$PY" -m lumbar_monai.training.shape_prior --model "$model" \
            --datalist "$DATALIST" --modes "$PRIOR_MODES" --out "$model" > "$d/prior$v.log" 2>&1; then
        log "$name$v: no shape prior (see $name/prior$v.log)"
    fi
}

attach_counter() {  # attach_counter NAME: the exported entry (its shape prior included) with the counter attached
    local name=$1 d="$RUN/$1"
    if [ "$(left)" -le 0 ] || ! timeout "$(left)" "$PY" -m lumbar_monai.training.counter attach \
            --model "$d/model.pt" --counter "$COUNTER" --out "$d/model_count.pt" > "$d/attach.log" 2>&1; then
        log "${name}_count: counter not attached (see $name/attach.log)"
        return 1
    fi
}

entry_as_trained() {  # entry_as_trained NAME: export and score it; beside the scoring, attach the counter and score that
    export_model "$1" "" || return 0
    score "$1" "" &
    if [ -n "$COUNTER" ] && attach_counter "$1"; then score "$1" _count; fi
    wait
}

# every entry and each of its variants exported and scored side by side (as trained, with the counter, with the level
# network's first pass)
for name in "${names[@]}"; do
    entry_as_trained "$name" &
    if [ -f "$RUN/level/posenet.pt" ]; then (export_model "$name" _level && score "$name" _level) & fi
done
wait
log "evaluation done"
tar czf "$OUT/results.tar.gz" -C "$RUN" --exclude='*.npz' --exclude='*.pt' --exclude='*.png' . \
    && log "packed $OUT/results.tar.gz"
