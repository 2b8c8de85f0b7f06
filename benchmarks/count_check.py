"""What the vertebra counter of a framed AP model does on a labelled split: its count, and what renaming by it
changes.

For every image of a datalist split: the counter's L1-L5 (:mod:`lumbar_monai.counting`) against the labelled
centres (*right*: every centre within half a labelled spacing; *a level high / low*: the chain's mean vertical error
beyond half a spacing; *refused*: no regular chain from a T1), and stage 1 with and without the counter's renaming
(centre outliers as in Section 4.2), and what the level check said (``meta["level_check"]``, the QC flags
``level_unconfirmed``) with how many of those images kept a centre outlier. Prints three tables::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/count_check.py --model MODEL_WITH_COUNTER \\
        --datalist runs/aasce_ap/datalist.json --split validation

``--mirror-check on|off`` overrides the checkpoint's ``mirror_check``. No file names are printed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from lumbar_monai.io.annotations import read_annotation_json
from lumbar_monai.io.datalist import load_landmark_datalist
from lumbar_monai.levels import LEVEL_OFF, LEVEL_STATUSES, chain_shift
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.predictor import LandmarkPredictor


def count_class(chain: np.ndarray | None, truth: np.ndarray, spacing: float) -> str:
    """``right`` / ``a level high`` / ``a level low`` / ``other`` / ``refused`` (image y grows caudally)."""
    if chain is None:
        return "refused"
    if np.all(np.linalg.norm(chain - truth, axis=1) < 0.5 * spacing):
        return "right"
    shift = chain_shift(chain, truth)
    return "a level low" if shift > LEVEL_OFF else "a level high" if shift < -LEVEL_OFF else "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--datalist", required=True)
    p.add_argument("--split", default="validation")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--mirror-check", choices=("model", "on", "off"), default="model")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    pred = LandmarkPredictor.load(a.model, device="cpu")
    count = pred.level_pass()
    if pred.counter_net is None or count is None:
        raise SystemExit(f"error: {a.model}: the model has no vertebra counter (training.counter attach)")
    if a.mirror_check != "model":
        count = replace(count, mirror_check=a.mirror_check == "on")
    items = load_landmark_datalist(a.datalist, a.split)[: a.limit]
    classes, before, after, statuses = [], [], [], []
    for item in items:
        image = pred.read_input(item["image"])[0]
        points = np.asarray(read_annotation_json(item["label"]).points, dtype=np.float64)
        truth = pred.layout.centres(points)
        spacing = float(np.median(np.linalg.norm(np.diff(truth, axis=0), axis=1)))
        classes.append(count_class(count.reference(image), truth, spacing))
        for level, out in ((None, before), (count, after)):
            found = pred.framed_centres(image, level=level)
            out.append(not centre_outliers(found["original"], points, pred.layout))
        statuses.append(found["level_check"]["status"])
    n = len(items)
    print(f"split {a.split}, {n} images; mirror check {'on' if count.mirror_check else 'off'}")
    print("| counter's L1-L5 | right | a level high | a level low | other | refused |")
    print("|---|---:|---:|---:|---:|---:|")
    print("| images | " + " | ".join(str(classes.count(c)) for c in
                                     ("right", "a level high", "a level low", "other", "refused")) + " |")
    b, c = np.array(before), np.array(after)
    print()
    print("| stage 1 | centre detection (%) | images the counter's renaming made right | made wrong |")
    print("|---|---:|---:|---:|")
    print(f"| window Pose-Net alone | {100.0 * b.mean():.1f} | - | - |")
    print(f"| renamed by the count | {100.0 * c.mean():.1f} | {int((c & ~b).sum())} | {int((b & ~c).sum())} |")
    st = np.array(statuses)
    print()
    print("| level check (renamed by the count) | QC flag | images | all centres found | centre outliers |")
    print("|---|---|---:|---:|---:|")
    for status in LEVEL_STATUSES:
        k = st == status
        flag = "-" if status == "confirmed" else "`level_unconfirmed`"
        print(f"| {status} | {flag} | {int(k.sum())} | {int(c[k].sum())} | {int((~c[k]).sum())} |")
    flagged = st != "confirmed"
    print(f"\nflagged: {int(flagged.sum())} of {n} images, holding {int((flagged & ~c).sum())} of the "
          f"{int((~c).sum())} images with a centre outlier")


if __name__ == "__main__":
    main()
