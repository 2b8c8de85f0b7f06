"""Labelled data a user brings, made into the datalist that the evaluate workflow scores (``lumbar-monai evaluate``).

Three kinds are recognised:

* a datalist JSON (MONAI decathlon style, :mod:`lumbar_monai.io.datalist`): one of its splits, or all of them;
* an AASCE-format folder (:mod:`lumbar_monai.io.aasce`: ``images_<subset>/`` and ``labels_<subset>/landmarks.csv``
  with ``filenames.csv``, or the challenge release's ``data/<subset>/`` and ``labels/<subset>/``; AP layout, L1-L5),
  e.g. another batch of AASCE / SpineWeb-16 images such as the release's 128 test images;
* a BUU-LSPINE folder (images named ``{ID}-{F|M}-{AGE}Y{0|1}.<ext>``, each with its CSV of the same name; the view
  the model reads).

A folder becomes a datalist under the output folder with every labelled image in one split (``test``): a batch
brought for scoring is not split by patient. The source files are only read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..anatomy import get_layout
from ..errors import InputError
from .aasce import UNREADABLE, aasce_subsets, write_aasce_datalist
from .datalist import SPLITS, load_landmark_datalist, write_buu_datalist, write_datalist

__all__ = ["ALL_SPLITS", "ScoringData", "scoring_datalist"]

#: ``split`` value that scores every split of a datalist together.
ALL_SPLITS = "all"
#: the split a folder's images (or a datalist's merged splits) are written into.
SCORED_SPLIT = "test"


@dataclass(frozen=True)
class ScoringData:
    """What :func:`scoring_datalist` made: the datalist to score, its split, the kind of source and a description
    without file names (safe for the console)."""

    datalist: Path
    split: str
    kind: str
    description: str


def scoring_datalist(data: str | os.PathLike, out_dir: str | os.PathLike, layout: str, split: str = SCORED_SPLIT,
                     subset: str | None = None) -> ScoringData:
    """The datalist that scores ``data`` with a model of ``layout`` (``"ap"`` / ``"lateral"``).

    Args:
        data: a datalist JSON, an AASCE-format folder or a BUU-LSPINE folder.
        out_dir: where a folder's datalist (``scored_datalist.json``) and label JSONs (``scored_labels/``) go, and
            a datalist's merged splits with ``split="all"``.
        layout: the model's layout; AASCE labels are AP, a BUU-LSPINE folder is read for this view only.
        split: a datalist's split to score (``training``, ``validation``, ``test`` or ``all``); folders ignore it.
        subset: an AASCE folder's ``<subset>`` (needed only when it holds more than one).

    Raises:
        InputError: one line naming ``data`` when it is none of the three kinds, holds nothing this model can
            score, or ``split`` / ``subset`` do not fit it.
    """
    src = Path(data)
    out = Path(out_dir)
    view = get_layout(layout).view
    if src.is_file():
        return _from_datalist(src, out, split)
    if not src.is_dir():
        raise InputError(src, "not found (give a datalist JSON, an AASCE-format folder or a BUU-LSPINE folder)")
    subsets = aasce_subsets(src)
    if subsets:
        return _from_aasce(src, out, view, subsets, subset)
    try:
        path = write_buu_datalist(src, out / "scored_datalist.json", layout=layout, split=SCORED_SPLIT)
    except InputError:
        raise InputError(src, "not a datalist JSON, an AASCE-format folder (labels_*/landmarks.csv) or a "
                              f"BUU-LSPINE folder with labelled {view} images") from None
    n = len(json.loads(path.read_text())[SCORED_SPLIT])
    return ScoringData(path, SCORED_SPLIT, "buu-lspine", f"BUU-LSPINE folder, {n} labelled {view} images")


def _from_datalist(src: Path, out: Path, split: str) -> ScoringData:
    if split not in (*SPLITS, ALL_SPLITS):
        raise InputError(src, f"unknown split {split!r} (one of {', '.join((*SPLITS, ALL_SPLITS))})")
    if split != ALL_SPLITS:
        n = len(load_landmark_datalist(src, split))
        if n == 0:
            raise InputError(src, f"split {split!r} is empty")
        return ScoringData(src, split, "datalist", f"datalist, split {split}, {n} images")
    items = [dict(item, case=str(item.get("case", Path(item["image"]).stem)))
             for s in SPLITS for item in load_landmark_datalist(src, s)]
    if not items:
        raise InputError(src, "every split is empty")
    path = write_datalist(out / "scored_datalist.json", items, f"every split of {src.name}", split=SCORED_SPLIT)
    return ScoringData(path, SCORED_SPLIT, "datalist", f"datalist, all splits, {len(items)} images")


def _from_aasce(src: Path, out: Path, view: str, subsets: list[str], subset: str | None) -> ScoringData:
    if view != "ap":
        raise InputError(src, f"AASCE labels are AP (L1-L5); this model reads {view} images")
    if subset is None:
        if len(subsets) > 1:
            raise InputError(src, f"holds several AASCE subsets ({', '.join(subsets)}): choose one")
        subset = subsets[0]
    elif subset not in subsets:
        raise InputError(src, f"no AASCE subset {subset!r} (labels_{subset}/landmarks.csv beside images_{subset}/, "
                              f"or labels/{subset}/landmarks.csv beside data/{subset}/)")
    excluded: list[tuple[Path, str]] = []
    path = write_aasce_datalist(src, out / "scored_datalist.json", out / "scored_labels", subset=subset,
                                split=SCORED_SPLIT, unreadable="skip", excluded=excluded)
    n = len(json.loads(path.read_text())[SCORED_SPLIT])
    bad = sum(why.startswith(UNREADABLE) for _, why in excluded)
    counts = ((len(excluded) - bad, "with landmarks outside the image"), (bad, "missing or unreadable"))
    left_out = "".join(f", {k} left out {why}" for k, why in counts if k)  # named in the datalist's description
    return ScoringData(path, SCORED_SPLIT, "aasce", f"AASCE-format folder, subset {subset}, {n} images{left_out}")
