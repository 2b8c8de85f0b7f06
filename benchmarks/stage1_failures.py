"""Where the stage-1 centre outliers of a framed AP model come from: the framing or the network.

For every image of a datalist split, stage 1 runs twice: the model's own framing (whole image, then its lumbar
windows) and one pass on the window around the *ground-truth* centres (``first_window`` of
:func:`~lumbar_monai.framing.detect_centres_framed`), i.e. perfect framing. A centre outlier (Section 4.2: a landmark
outside the crop made from the predicted centres) is then classed by the mean vertical error of the five centres in
centre spacings (the median ground-truth spacing of the image): a caudal or cranial *level shift* when the chain as a
whole sits more than half a spacing low or high, *partial* otherwise (one or two centres off). Prints one row per
framing:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/stage1_failures.py \\
        --model bundles/lumbar_landmarks/models/aasce_ap.pt --datalist runs/aasce_ap/datalist.json \\
        --split validation --out runs/aasce_ap/stage1_failures_validation.csv

Reads only the split asked for; ``--limit N`` takes its first N images. ``--out`` writes the per-image errors (case
number, framing, outlier, mean shift, space below the labelled L5, per-centre x/y errors in spacings; no file names).

``--crop-below K`` asks whether the level the network names depends on the lower image edge: a third row runs the
model's framing on each image cut ``K`` centre spacings below its *labelled* L5 centre (images with less than
``K + 0.2`` spacings below L5 stay whole; a diagnostic that reads the labels, not a way to predict), and a second
table splits both rows by the space the image leaves below the labelled L5 (under 1.3, 1.3-1.7, 1.7 spacings and more).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from lumbar_monai.framing import lumbar_window
from lumbar_monai.io.annotations import read_annotation_json
from lumbar_monai.io.datalist import load_landmark_datalist
from lumbar_monai.levels import LEVEL_OFF, chain_shift
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.predictor import LandmarkPredictor


def centres_of(pred: LandmarkPredictor, image: np.ndarray, truth_window: tuple | None) -> np.ndarray:
    """Stage-1 centres ``(V, 2)``: the model's framed passes, or one pass on ``truth_window``."""
    return pred.framed_centres(image, passes=1 if truth_window else None, first_window=truth_window)["original"]


def classify(outlier: bool, mean_shift: float) -> str:
    """``ok`` / ``caudal shift`` / ``cranial shift`` / ``partial`` (image y grows caudally)."""
    if not outlier:
        return "ok"
    if mean_shift > LEVEL_OFF:
        return "caudal shift"
    if mean_shift < -LEVEL_OFF:
        return "cranial shift"
    return "partial"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--datalist", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", help="per-image CSV")
    p.add_argument("--crop-below", type=float, default=None,
                   help="also run on each image cut this many centre spacings below its labelled L5")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    pred = LandmarkPredictor.load(a.model, device="cpu")
    if not pred.stage1.get("framing"):
        raise SystemExit(f"error: {a.model}: not a framed model (no stage1 framing)")
    layout = pred.layout
    factor = float(pred.stage1["framing"].get("factor", 2.0))
    items = load_landmark_datalist(a.datalist, a.split)[: a.limit]
    kinds: tuple[str, ...] = ("model framing", "ground-truth window")
    if a.crop_below is not None:
        if a.crop_below < 1.0:
            raise SystemExit(f"error: --crop-below must be >= 1.0 spacing (L5's lower corners), got {a.crop_below}")
        kinds = (*kinds, f"image cut {a.crop_below:g} spacings below the labelled L5")
    rows: list[dict] = []
    for i, item in enumerate(items):
        image = pred.read_input(item["image"])[0]
        points = np.asarray(read_annotation_json(item["label"]).points, dtype=np.float64)
        truth = layout.centres(points)
        spacing = float(np.median(np.linalg.norm(np.diff(truth, axis=0), axis=1)))
        below = (image.shape[0] - 0.5 - truth[-1, 1]) / spacing
        for kind in kinds:
            window = lumbar_window(truth, factor) if kind == kinds[1] else None
            view = image
            if kind == kinds[-1] and a.crop_below is not None and below > a.crop_below + 0.2:
                view = image[: int(np.ceil(truth[-1, 1] + a.crop_below * spacing))]
            c = centres_of(pred, view, window)
            err = (c - truth) / spacing
            outlier = bool(centre_outliers(c, points, layout))
            shift = chain_shift(c, truth)
            rows.append({"image": i, "framing": kind, "outlier": int(outlier), "mean_shift": round(shift, 3),
                         "class": classify(outlier, shift), "below_l5": round(below, 2),
                         **{f"d{ax}_{n}": round(float(err[k, j]), 3) for k, n in enumerate(layout.vertebra_names)
                            for j, ax in enumerate("xy")}})
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(f"split {a.split}, {len(items)} images; level shift: mean vertical centre error beyond {LEVEL_OFF} spacing")
    print("| stage-1 framing | n | centre detection (%) | outliers: caudal level shift | cranial level shift "
          "| partial |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        cls = [r["class"] for r in rows if r["framing"] == kind]
        n = len(cls)
        print(f"| {kind} | {n} | {100.0 * cls.count('ok') / max(n, 1):.1f} | {cls.count('caudal shift')} | "
              f"{cls.count('cranial shift')} | {cls.count('partial')} |")
    if a.crop_below is not None:
        print_by_space_below(rows, kinds[0], kinds[-1])


def _counts(classes: list[str]) -> str:
    return " / ".join(str(classes.count(c)) for c in ("ok", "caudal shift", "cranial shift", "partial"))


def print_by_space_below(rows: list[dict], whole: str, cut: str) -> None:
    """Second table of ``--crop-below``: outcomes by the space below the labelled L5 (centre spacings)."""
    print()
    print(f"| space below the labelled L5 (spacings) | n | {whole}: right / caudal / cranial / partial "
          f"| {cut}: right / caudal / cranial / partial |")
    print("|---|---:|---|---|")
    for name, lo, hi in (("under 1.3", -np.inf, 1.3), ("1.3-1.7", 1.3, 1.7), ("1.7 and more", 1.7, np.inf)):
        sel = [r for r in rows if lo <= r["below_l5"] < hi]
        n = len({r["image"] for r in sel})
        print(f"| {name} | {n} | {_counts([r['class'] for r in sel if r['framing'] == whole])} "
              f"| {_counts([r['class'] for r in sel if r['framing'] == cut])} |")


if __name__ == "__main__":
    main()
