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
number, framing, outlier, mean shift, per-centre x/y errors in spacings; no file names).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from lumbar_monai.framing import detect_centres_framed, lumbar_window
from lumbar_monai.io.annotations import read_annotation_json
from lumbar_monai.io.datalist import load_landmark_datalist
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.predictor import LandmarkPredictor

#: mean vertical error (centre spacings) beyond which an outlier chain counts as shifted by a level
SHIFT = 0.5


def centres_of(pred: LandmarkPredictor, image: np.ndarray, truth_window: tuple | None) -> np.ndarray:
    """Stage-1 centres ``(V, 2)``: the model's framed passes, or one pass on ``truth_window``."""
    fr = pred.stage1["framing"]
    out = detect_centres_framed(pred.centre_net, image, pred._centre_decoder(),
                                passes=1 if truth_window else int(fr.get("passes", 2)),
                                factor=float(fr.get("factor", 2.0)), preprocessing=pred.stage1["preprocessing"],
                                repair=pred.stage1["repair"], first_window=truth_window, level=pred.level_pass())
    return out["original"]


def classify(outlier: bool, mean_shift: float) -> str:
    """``ok`` / ``caudal shift`` / ``cranial shift`` / ``partial`` (image y grows caudally)."""
    if not outlier:
        return "ok"
    if mean_shift > SHIFT:
        return "caudal shift"
    if mean_shift < -SHIFT:
        return "cranial shift"
    return "partial"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--datalist", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", help="per-image CSV")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    pred = LandmarkPredictor.load(a.model, device="cpu")
    if not pred.stage1.get("framing"):
        raise SystemExit(f"error: {a.model}: not a framed model (no stage1 framing)")
    layout = pred.layout
    factor = float(pred.stage1["framing"].get("factor", 2.0))
    items = load_landmark_datalist(a.datalist, a.split)[: a.limit]
    kinds = ("model framing", "ground-truth window")
    rows: list[dict] = []
    for i, item in enumerate(items):
        image = pred.read_input(item["image"])[0]
        points = np.asarray(read_annotation_json(item["label"]).points, dtype=np.float64)
        truth = layout.centres(points)
        spacing = float(np.median(np.linalg.norm(np.diff(truth, axis=0), axis=1)))
        for kind in kinds:
            window = lumbar_window(truth, factor) if kind != kinds[0] else None
            c = centres_of(pred, image, window)
            err = (c - truth) / spacing
            outlier = bool(centre_outliers(c, points, layout))
            shift = float(err[:, 1].mean())
            rows.append({"image": i, "framing": kind, "outlier": int(outlier), "mean_shift": round(shift, 3),
                         "class": classify(outlier, shift),
                         **{f"d{ax}_{n}": round(float(err[k, j]), 3) for k, n in enumerate(layout.vertebra_names)
                            for j, ax in enumerate("xy")}})
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(f"split {a.split}, {len(items)} images; level shift: mean vertical centre error beyond {SHIFT} spacing")
    print("| stage-1 framing | n | centre detection (%) | outliers: caudal level shift | cranial level shift "
          "| partial |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        cls = [r["class"] for r in rows if r["framing"] == kind]
        n = len(cls)
        print(f"| {kind} | {n} | {100.0 * cls.count('ok') / max(n, 1):.1f} | {cls.count('caudal shift')} | "
              f"{cls.count('cranial shift')} | {cls.count('partial')} |")


if __name__ == "__main__":
    main()
