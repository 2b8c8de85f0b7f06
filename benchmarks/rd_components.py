"""Where a model's landmark error lies: RD split into its horizontal and vertical parts (Eq. 12-14), signed and
absolute, per vertebra and per corner, on the images whose centres are all detected (Section 4.2), as the paper's RD.

``r_x`` is the horizontal offset over the length of the end plate through the label, ``r_y`` the vertical offset over
the vertebra's side edge through it (``RD = sqrt(r_x^2 + r_y^2)``); a signed mean far from zero is a bias a
correction could remove, an absolute mean with a signed mean near zero is scatter; the share of corners with RD over
30 % shows how much of it is a heavy tail (a corner on the wrong edge) rather than imprecision. ``Total`` is the mean
of the per-vertebra means, as the paper's tables. ``--centres labels`` runs stage 2 (and the shape prior) on the
labelled centres instead of stage 1's, every image counted: what the corner networks do when the centres are right.
No file names are printed; nothing is written.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rd_components.py \\
        --model bundles/lumbar_landmarks/models/aasce_ap.pt --datalist runs/aasce_ap/datalist.json --split validation
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _splits import add_split_arguments, labelled_images

from lumbar_monai.anatomy import Layout
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.metrics.landmark import relative_distance_components
from lumbar_monai.predictor import LandmarkPredictor

COLUMNS = ("landmarks", "n values", "mean r_x (%)", "mean r_y (%)", "mean abs r_x (%)", "mean abs r_y (%)",
           "mean RD (%)", "RD over 30 % (% of values)")
TAIL = 30.0


def _stats(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Mean r_x, mean r_y, mean |r_x|, mean |r_y|, mean RD, share of RD over :data:`TAIL` (%)."""
    rd = np.sqrt(rx * rx + ry * ry)
    return np.array([rx.mean(), ry.mean(), np.abs(rx).mean(), np.abs(ry).mean(), rd.mean(),
                     100.0 * np.mean(rd > TAIL)])


def _row(name: str, n: int, stats: np.ndarray) -> list[str]:
    return [name, str(n), *(f"{float(v):.2f}" for v in stats[:5]), f"{float(stats[5]):.1f}"]


def component_rows(rx: np.ndarray, ry: np.ndarray, layout: Layout) -> list[list[str]]:
    """Table rows from ``(images, N)`` signed components (%): one per vertebra, one per corner kind over the
    vertebrae that have it, and ``Total`` (each mean the mean of the per-vertebra means; the tail share of all
    values)."""
    slices = list(zip(layout.vertebrae, layout.vertebra_slices, strict=True))
    per_vertebra = [_stats(rx[:, sl], ry[:, sl]) for _, sl in slices]
    rows = [_row(spec.name, rx[:, sl].size, st) for (spec, sl), st in zip(slices, per_vertebra, strict=True)]
    kinds: dict[str, list[int]] = {}
    for spec, sl in slices:
        for corner, index in zip(spec.corners, range(sl.start, sl.stop), strict=True):
            kinds.setdefault(corner, []).append(index)
    rows += [_row(f"{corner} (all vertebrae)", rx[:, idx].size, _stats(rx[:, idx], ry[:, idx]))
             for corner, idx in kinds.items()]
    total = np.mean(per_vertebra, axis=0)
    total[5] = _stats(rx, ry)[5]
    rows.append(_row("Total", rx.size, total))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p)
    p.add_argument("--limit", type=int, default=None, help="the first N images of the split")
    p.add_argument("--centres", choices=("pipeline", "labels"), default="pipeline",
                   help="stage 1's centres (images with a centre outlier left out, as the paper's RD) or the labelled ones")
    a = p.parse_args()
    pred = LandmarkPredictor.load(a.model, device="cpu")
    layout = pred.layout
    n, rxs, rys = 0, [], []
    for image, gt, _ in labelled_images(a.datalist, a.split, layout, a.limit):
        n += 1
        with torch.no_grad():  # a context, not a global switch: main() also runs inside the test process
            r = pred.predict(image, centres=layout.centres(gt)) if a.centres == "labels" else pred.predict(image)
        if a.centres != "labels" and bool(centre_outliers(np.asarray(r.centres), gt, layout)):
            continue
        rx, ry = relative_distance_components(np.asarray(r.points), gt, layout)
        rxs.append(rx)
        rys.append(ry)
    counted = "scored on their labelled centres" if a.centres == "labels" else "with all centres detected"
    print(f"split {a.split}: {len(rxs)} of {n} images {counted}; model {a.model}")
    if not rxs:
        raise SystemExit("error: no image of the split has all its centres detected")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * (len(COLUMNS) - 1))
    for row in component_rows(np.stack(rxs), np.stack(rys), layout):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
