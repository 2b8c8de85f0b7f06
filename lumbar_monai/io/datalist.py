"""Datalists (MONAI decathlon-style JSON) and the dictionary transform that loads one landmark sample.

A datalist file::

    {
      "description": "...",
      "split_rule": "...",                          # how the split was made (see assign_split)
      "training":   [{"image": "img/0001-F-037Y1.jpg", "label": "img/0001-F-037Y1.csv", "case": "0001", ...}],
      "validation": [...],
      "test":       [...]
    }

``image`` is any file :func:`~lumbar_monai.io.loader.load_radiograph` reads (DICOM, PNG, JPEG, ...), ``label``
an annotation (the project's JSON or a BUU-LSPINE CSV), optional ``dicom`` a DICOM file whose header gives the
pixel spacing of a non-DICOM ``image`` (e.g. a PNG export). Relative paths are relative to the datalist file.

Splits are fixed and deterministic: :func:`assign_split` hashes the *case* key (the patient where file names
show it), so all images of a case land in the same split, independent of file order or of which other files
exist, and adding files never moves existing ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..anatomy import Layout, get_layout
from ..errors import InputError
from .annotations import check_points_in_image, read_landmark_file
from .atomic import atomic_write_json

__all__ = [
    "SPLITS",
    "DEFAULT_FRACTIONS",
    "assign_split",
    "split_rule",
    "parse_buu_name",
    "build_buu_datalist",
    "write_buu_datalist",
    "write_datalist",
    "load_landmark_datalist",
    "LoadLandmarkSampled",
]

SPLITS = ("training", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
_SALT = "lumbar-monai-split-v1"

#: BUU-LSPINE image names: ``{ID}-{F|M}-{AGE}Y{0|1}.jpg``; Y0 = AP, Y1 = lateral.
BUU_NAME = re.compile(r"^(?P<case>\d+)-(?P<sex>[FM])-(?P<age>\d+)Y(?P<view>[01])$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm")


def assign_split(case: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """The split of ``case``: ``u = sha256("lumbar-monai-split-v1:" + case)`` read as a number in [0, 1), then
    ``training`` if ``u < f0``, ``validation`` if ``u < f0 + f1``, else ``test``. Deterministic, per case."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    digest = hashlib.sha256(f"{_SALT}:{case}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return SPLITS[int(np.searchsorted(np.cumsum(f)[:2], u, side="right"))]


def split_rule(fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """Human-readable statement of :func:`assign_split`, stored in every datalist."""
    a, b, c = (float(v) for v in fractions)
    return (
        f"per case: u = sha256('{_SALT}:' + case) as a fraction in [0, 1); "
        f"training u < {a:g}, validation u < {a + b:g}, else test (fractions {a:g}/{b:g}/{c:g})"
    )


def parse_buu_name(name: str) -> dict[str, str] | None:
    """``"0001-F-037Y1.jpg"`` -> ``{"case": "0001", "sex": "F", "age": "037", "view": "lateral"}``; None if not BUU."""
    m = BUU_NAME.match(Path(name).stem)
    if not m:
        return None
    return {
        "case": m["case"],
        "sex": m["sex"].upper(),
        "age": m["age"],
        "view": "lateral" if m["view"] == "1" else "ap",
    }


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # other drive (Windows)
        return str(path)


def write_datalist(
    path: str | os.PathLike,
    items: Sequence[Mapping[str, Any]],
    description: str,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split: str | None = None,
) -> Path:
    """Split ``items`` (each with a ``"case"`` key and absolute paths) and write a datalist JSON atomically.

    Paths under ``image``/``label``/``dicom`` are written relative to the datalist's folder. ``split`` (one of
    :data:`SPLITS`) puts every item in that split instead (e.g. ``"test"``: a batch that is only scored).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out = Path(path)
    base = out.resolve().parent
    rule = split_rule(fractions) if split is None else f"every item in {split}"
    doc: dict[str, Any] = {"description": description, "split_rule": rule}
    doc.update({s: [] for s in SPLITS})
    for item in items:
        entry = dict(item)
        for key in ("image", "label", "dicom"):
            if entry.get(key) is not None:
                entry[key] = _rel(Path(entry[key]).resolve(), base)
        doc[split or assign_split(str(item["case"]), fractions)].append(entry)
    return atomic_write_json(out, doc)


def build_buu_datalist(
    folder: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    views: Sequence[str] = ("lateral", "ap"),
    require_labels: bool = True,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, list[dict[str, Any]]]:
    """Scan a BUU-LSPINE folder (recursively) and make a datalist: one item per image named
    ``{ID}-{F|M}-{AGE}Y{0|1}.<ext>``, its label the CSV with the same stem anywhere in the folder.

    Items: ``{"image", "label", "case", "view", "layout"}`` (Y1 -> lateral, Y0 -> AP). Images without a CSV
    are skipped when ``require_labels`` (else listed without ``label``). Written to ``out_path`` when given
    (paths relative to it); returned with absolute paths, split by case (:func:`assign_split`).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    csvs: dict[str, Path] = {}
    for c in sorted(root.rglob("*")):
        if c.suffix.lower() == ".csv" and parse_buu_name(c.name):
            if c.stem.upper() in csvs:
                raise InputError(c, f"second label file for {c.stem} (first: {csvs[c.stem.upper()]})")
            csvs[c.stem.upper()] = c
    items = []
    for img in sorted(root.rglob("*")):
        if img.suffix.lower() not in _IMAGE_SUFFIXES or not img.is_file():
            continue
        info = parse_buu_name(img.name)
        if info is None or info["view"] not in views:
            continue
        item: dict[str, Any] = {
            "image": str(img.resolve()),
            "case": info["case"],
            "view": info["view"],
            "layout": get_layout(info["view"]).name,
        }
        label = csvs.get(img.stem.upper())
        if label is not None:
            item["label"] = str(label.resolve())
        elif require_labels:
            continue
        items.append(item)
    if out_path is not None:
        write_datalist(out_path, items, f"BUU-LSPINE images under {root.name}", fractions)
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for item in items:
        out[assign_split(item["case"], fractions)].append(item)
    return out


def write_buu_datalist(
    folder: str | os.PathLike,
    out_path: str | os.PathLike,
    layout: str | Layout | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split: str | None = None,
) -> Path:
    """:func:`build_buu_datalist` written to ``out_path``: only ``layout``'s view (lateral Y1 / AP Y0) when given,
    else both; ``split`` as in :func:`write_datalist`. Raises :class:`InputError` when the folder holds no labelled
    BUU-LSPINE image of that view."""
    views = ("lateral", "ap") if layout is None else (get_layout(layout).view,)
    lists = build_buu_datalist(folder, None, views=views, fractions=fractions)
    items = [i for s in SPLITS for i in lists[s]]
    if not items:
        raise InputError(folder, f"no BUU-LSPINE image ({'/'.join(views)}) with a CSV of the same name found")
    return write_datalist(out_path, items, f"BUU-LSPINE {'/'.join(views)} images under {Path(folder).name}", fractions,
                          split)


def load_landmark_datalist(path: str | os.PathLike, split: str = "training") -> list[dict[str, Any]]:
    """Read one split of a datalist with MONAI's ``load_decathlon_datalist``; paths come back absolute.

    ``image`` and ``label`` are resolved by MONAI (relative to the datalist's folder); ``dicom`` is resolved here.
    """
    from monai.data import load_decathlon_datalist

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "datalist file not found")
    try:
        raw = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(p, f"not a JSON datalist ({type(e).__name__}: {e})") from None
    if isinstance(raw, dict) and isinstance(raw.get(split), list) and not raw[split]:
        return []  # an empty split (MONAI's reader would fail with an IndexError on it)
    try:
        # an absolute datalist path makes MONAI return absolute item paths (it joins them to the datalist's folder)
        items = load_decathlon_datalist(p.resolve(), is_segmentation=True, data_list_key=split)
    except ValueError as e:  # missing key, bad JSON
        raise InputError(p, f"cannot read split {split!r}: {e}") from None
    except TypeError as e:
        raise InputError(p, f"malformed datalist: {e}") from None
    base = p.resolve().parent
    for i, item in enumerate(items):
        if "image" not in item:
            raise InputError(p, f'item {i} of {split!r} has no "image"')
        if item.get("dicom") and not Path(item["dicom"]).is_absolute():
            item["dicom"] = str(base / item["dicom"])
    return items


class LoadLandmarkSampled(MapTransform):
    """Load a datalist item into the sample dict the pipeline trains on.

    Output keys: ``image`` ``(1, H, W)`` float32 numpy (bone bright), ``points`` ``(N, 2)`` float64 (x, y)
    pixels, ``pixel_spacing`` ``(sx, sy)`` mm or ``None``, ``spacing_source``, ``layout`` (name), ``facing``,
    ``image_path`` (and ``label_path``); other item keys pass through.

    Spacing priority: the image's own header (DICOM ``PixelSpacing``/``ImagerPixelSpacing``, or a MetaImage/
    NRRD/NIfTI header), then the header of the item's ``dicom`` file, then the annotation's ``pixel_spacing``
    (``spacing_source = "annotation"``). Points are checked against the image size (InputError naming the
    annotation file, the point and, for CSVs, the line).

    Args:
        keys: ``(image key, label key)``; the label key may be left out (inference: no ``points``).
        layout: force a layout (else the item's ``"layout"`` or the annotation's own).
        voi: apply the DICOM VOI LUT (see :func:`~lumbar_monai.io.dicom.read_dicom`).
        dicom_key: item key of an optional DICOM header source for the spacing.
        tolerance: how far (px) a point may lie outside the image before it is an error.
        allow_missing_keys: a missing label key gives a sample without ``points``.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        layout: str | Layout | None = None,
        voi: bool = False,
        dicom_key: str = "dicom",
        tolerance: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) not in (1, 2):
            raise ValueError(f"keys must be (image key[, label key]), got {self.keys}")
        self.layout = None if layout is None else get_layout(layout)
        self.voi = voi
        self.dicom_key = dicom_key
        self.tolerance = tolerance

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from .loader import load_radiograph

        d = dict(data)
        image_key = self.keys[0]
        label_key = self.keys[1] if len(self.keys) > 1 else None
        if image_key not in d:
            raise KeyError(f"key {image_key!r} not found in the item (keys: {list(d)})")
        image_path = d.pop(image_key)
        rad = load_radiograph(image_path, voi=self.voi)
        spacing, source = rad.pixel_spacing, rad.spacing_source
        if spacing is None and d.get(self.dicom_key):
            from .dicom import dicom_pixel_spacing, read_dicom_header

            header = read_dicom_header(d[self.dicom_key])
            spacing, source = dicom_pixel_spacing(header)
            if "Rows" in header and (int(header.Columns), int(header.Rows)) != rad.size_wh:
                raise InputError(
                    d[self.dicom_key],
                    f"DICOM is {header.Columns}x{header.Rows}, image {image_path} is {rad.width}x{rad.height}",
                )
        out: dict[Hashable, Any] = d
        out["image"] = rad.channel_first()
        out["image_path"] = str(image_path)
        layout = self.layout or (get_layout(d["layout"]) if d.get("layout") else None)
        facing = "left"
        if label_key is not None and d.get(label_key) is not None:
            label_path = d.pop(label_key)
            ann = read_landmark_file(label_path, layout)
            layout = ann.layout
            if ann.image_size is not None and tuple(ann.image_size) != rad.size_wh:
                raise InputError(
                    label_path,
                    f"annotation is for a {ann.image_size[0]}x{ann.image_size[1]} image, "
                    f"{image_path} is {rad.width}x{rad.height}",
                )
            check_points_in_image(
                ann.points,
                rad.size_wh,
                label_path,
                self.tolerance,
                names=layout.point_names,
                lines=ann.lines,
            )
            if spacing is None and ann.pixel_spacing is not None:
                spacing, source = tuple(float(v) for v in ann.pixel_spacing), "annotation"
            out["points"] = np.asarray(ann.points, dtype=np.float64)
            out["label_path"] = str(label_path)
            facing = ann.facing
        elif label_key is not None and not self.allow_missing_keys:
            raise KeyError(f"key {label_key!r} not found in the item (keys: {list(data)})")
        out["pixel_spacing"] = None if spacing is None else (float(spacing[0]), float(spacing[1]))
        out["spacing_source"] = source if spacing is not None else None
        out["layout"] = None if layout is None else layout.name
        out["facing"] = facing
        return out
