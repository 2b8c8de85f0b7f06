"""Find training images whose L1-L5 labels sit a whole vertebra off the level two trained networks agree on
(*ours*, issue 15), and write a datalist without them.

The AASCE files label 17 vertebrae per image, read as T1-L5. Where the 17 labelled vertebrae start a vertebra lower
or higher than on the other images, their "L1-L5" are anatomically T12-L4 or L2-S1, and a network trained on them
is taught two names for one anatomy. This audit looks for such images: it runs a model that holds both a window
Pose-Net (which names the lumbar vertebrae from their local look) and a vertebra counter (which counts from T1) and
flags an image when *both* place the labelled chain a level off in the same direction: two differently built
readers agreeing against the label (which can also be an error both share: the audit finds candidates, it does not
prove the label wrong). Flagged images are left out of the audited split (training by default) in the written
datalist; the other splits stay whole, so that every score stays comparable::

    python -m lumbar_monai.training.level_audit --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --datalist runs/aasce_ap/datalist.json --out runs/aasce_ap/datalist_audited.json \\
        --report runs/aasce_ap/level_audit.csv

The report lists, per image of the split, its index, both shifts (in labelled centre spacings, positive: the
network's chain lies below the label) and the flag; no file names.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_json, atomic_write_text
from ..levels import LEVEL_OFF, chain_shift

__all__ = ["level_flag", "audit_split", "write_audited_datalist", "main"]


def level_flag(window_shift: float, count_shift: float, off: float = LEVEL_OFF) -> bool:
    """True when both readers put the labelled chain more than ``off`` spacings away, on the same side (a refused
    count, NaN, never flags)."""
    if not (np.isfinite(window_shift) and np.isfinite(count_shift)):
        return False
    return bool(abs(window_shift) > off and abs(count_shift) > off and np.sign(window_shift) == np.sign(count_shift))


def audit_split(model: str | Path, datalist: str | Path, split: str = "training",
                limit: int | None = None) -> list[dict[str, Any]]:
    """``[{"index", "window_shift", "count_shift", "flagged"}]`` for the items of one split (the window Pose-Net's
    chain without renaming, the counter's L1-L5; both from ``model``, which must hold a counter). An item whose
    image or label cannot be read gets NaN shifts, is not flagged and is named (by index) in a one-line warning on
    stderr; the audit carries on."""
    import sys

    from ..errors import InputError
    from ..io.annotations import read_annotation_json
    from ..io.datalist import load_landmark_datalist
    from ..predictor import LandmarkPredictor

    pred = LandmarkPredictor.load(model, device="cpu")
    count = pred.level_pass()
    if pred.counter_net is None or count is None:
        raise ValueError(f"{model}: the model has no vertebra counter (training.counter attach)")
    rows = []
    for i, item in enumerate(load_landmark_datalist(datalist, split)[:limit]):
        try:
            image = pred.read_input(item["image"])[0]
            truth = pred.layout.centres(np.asarray(read_annotation_json(item["label"]).points, dtype=np.float64))
        except (InputError, OSError, ValueError) as e:
            print(f"warning: {split} item {i} skipped: {type(e).__name__}", file=sys.stderr)
            rows.append({"index": i, "window_shift": float("nan"), "count_shift": float("nan"), "flagged": False})
            continue
        window = chain_shift(pred.framed_centres(image, level=None)["original"], truth)
        counted = chain_shift(count.reference(image), truth)
        rows.append({"index": i, "window_shift": window, "count_shift": counted,
                     "flagged": level_flag(window, counted)})
    return rows


def write_audited_datalist(datalist: str | Path, out: str | Path, flagged: Sequence[int],
                           split: str = "training") -> Path:
    """Copy ``datalist`` to ``out`` without the ``flagged`` item indices of ``split``; relative ``image`` /
    ``label`` paths are rewritten relative to ``out``'s folder, so the copy can live anywhere. Written atomically."""
    src, dst = Path(datalist).resolve(), Path(out).resolve()
    raw = json.loads(src.read_text())
    drop = set(int(i) for i in flagged)

    def moved(item: dict[str, Any]) -> dict[str, Any]:
        item = dict(item)
        for key in ("image", "label", "dicom"):
            if isinstance(item.get(key), str) and not os.path.isabs(item[key]):
                item[key] = os.path.relpath(src.parent / item[key], dst.parent)
        return item

    for key, value in raw.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            raw[key] = [moved(it) for i, it in enumerate(value) if not (key == split and i in drop)]
    raw["level_audit"] = f"{len(drop)} {split} item(s) left out: labels a level off both networks' reading"
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(dst, raw)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.level_audit", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="an AP model holding a vertebra counter")
    p.add_argument("--datalist", required=True)
    p.add_argument("--out", required=True, help="the datalist written without the flagged items")
    p.add_argument("--split", default="training")
    p.add_argument("--report", default=None, help="CSV: index, window_shift, count_shift, flagged")
    p.add_argument("--limit", type=int, default=None, help="audit only the split's first N items")
    args = p.parse_args(argv)
    from ..errors import InputError

    try:
        rows = audit_split(args.model, args.datalist, args.split, args.limit)
        flagged = [r["index"] for r in rows if r["flagged"]]
        path = write_audited_datalist(args.datalist, args.out, flagged, args.split)
        if args.report:
            text = io.StringIO(newline="")
            w = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["index"])
            w.writeheader()
            w.writerows({**r, "window_shift": f"{r['window_shift']:.3f}", "count_shift": f"{r['count_shift']:.3f}"}
                        for r in rows)
            atomic_write_text(args.report, text.getvalue())
    except (InputError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(flagged)} of {len(rows)} {args.split} images flagged (labels a level off both networks); wrote {path}")


if __name__ == "__main__":
    main()
