"""AASCE 2019 / SpineWeb Dataset 16 (Wu et al., MICCAI 2017): real AP spine radiographs with vertebral corners.

Layout of a copy (``../shared/data/aasce16``)::

    images_training/<name>.jpg
    labels_training/filenames.csv      one image name per row (names contain spaces)
    labels_training/landmarks.csv      one row per image: 68 x then 68 y, normalised by image width / height
    labels_training/<name>.jpg.mat     the same points in whole pixels, variable p2 (68, 2) (x, y)

The challenge's own release (``boostnet_labeldata``) keeps the same files as ``data/<subset>/<name>.jpg`` and
``labels/<subset>/`` (subsets ``training`` and ``test``, 481 and 128 images); :func:`aasce_dirs` finds either layout.

Points: 17 vertebrae T1..T12, L1..L5 x 4 corners in image order top-left, top-right, bottom-left,
bottom-right; L1..L5 (rows 48..67) map onto the project's ``AP`` layout through its image-side aliases.

Coordinates are ``landmarks.csv`` times the image size. The CSV keeps 5 decimals (up to ~0.02 px of rounding on
a 3000 px image); the original annotation (the ``.mat``) is in whole pixels, so a row whose values are all within
0.05 px of integers is snapped to them, which reproduces the ``.mat`` exactly. (The ``.mat`` values may be
MATLAB 1-based; nothing in the data set says so, so no offset is applied.)

Known slips in the public training set: one image has an L4 corner below the image (see
``read_aasce(outside=...)``). The files also list some vertebrae out of order: in 23 of the 481 rows one
group of four corners is listed out of place (in 18 rows the group listed last, read as "L5", is the topmost
vertebra, so the rows read as "L1-L5" are anatomically L2-L5 and T1), and a few groups list their lower end plate
first or their right corners first. By default the reader puts each row in anatomical order
(:func:`anatomical_order`: groups cranial to caudal, i.e. top to bottom of an upright AP image; each group's upper
end plate first, then image-left before image-right); ``order="file"`` keeps the files' order.

Patients: names look like ``"sunhl-1th-02-Jan-2017-162 A AP.jpg"``; the number before the letter is the patient
(``162``; the same number recurs on other dates with letters B, C, ...). Names without that pattern (e.g.
``"...-coronal7.jpg"``) are each their own case. The datalist split is by patient (:func:`assign_split`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import AP, Layout, VertebraSpec
from ..errors import InputError
from .annotations import LandmarkAnnotation, check_points_in_image, read_text_file, write_annotation_json
from .datalist import DEFAULT_FRACTIONS, write_datalist

__all__ = [
    "AASCE_VERTEBRAE",
    "AASCE_CORNERS",
    "UNREADABLE",
    "aasce_layout",
    "aasce_patient",
    "aasce_dirs",
    "aasce_copy_of",
    "aasce_subsets",
    "anatomical_order",
    "read_aasce",
    "build_aasce_datalist",
    "write_aasce_datalist",
    "shrink_aasce_copy",
]

#: The vertebrae of the AASCE files, in row order (a property of the file format, not a project layout).
AASCE_VERTEBRAE = tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))
#: Corner order of each vertebra in the files (image sides).
AASCE_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
_PATIENT = re.compile(r"-(\d+)\s+[A-Za-z]\s+(?:AP|PA)\b", re.IGNORECASE)
_SNAP_TOL = 0.05
#: how the reason of an image left out because it is missing or unreadable starts (``excluded`` of
#: :func:`read_aasce` / :func:`write_aasce_datalist`); the others are left out for landmarks outside the image.
UNREADABLE = "unreadable: "


@cache
def aasce_layout(lumbar_only: bool = True) -> Layout:
    """``AP`` (L1-L5) or, with ``lumbar_only=False``, the 17-vertebra T1-L5 spine with AP corner names.

    The full-spine layout is built here from the ``AP`` vertebra spec (same corners, end plates) because only
    this file format has it; it is not registered in :data:`lumbar_monai.anatomy.LAYOUTS`.
    """
    if lumbar_only:
        return AP
    spec = AP.vertebrae[0]
    return Layout(
        name="aasce_spine",
        view="ap",
        vertebrae=tuple(VertebraSpec(v, spec.corners, spec.end_plates, spec.kind) for v in AASCE_VERTEBRAE),
        description="AASCE / SpineWeb-16: T1-L5 x 4 corners (AP).",
    )


def _file_rows(layout: Layout) -> np.ndarray:
    """For each point of ``layout``, its row (0..67) in the AASCE files."""
    rows = np.empty(layout.num_points, dtype=np.int64)
    for v in layout.vertebrae:
        base = 4 * AASCE_VERTEBRAE.index(v.name)
        for k, alias in enumerate(AASCE_CORNERS):
            rows[layout.index(v.name, alias)] = base + k
    return rows


def aasce_patient(name: str) -> str:
    """The patient key of an AASCE image name (``"...-162 A AP.jpg"`` -> ``"162"``; else the name's stem)."""
    m = _PATIENT.search(name)
    return m.group(1) if m else Path(name).stem


def anatomical_order(points: np.ndarray) -> tuple[np.ndarray, bool]:
    """Put an upright AP spine's ``(4 * V, 2)`` corners (V vertebrae, corners top-left, top-right, bottom-left,
    bottom-right) in anatomical order: vertebrae by centre from the top of the image down, each vertebra's
    upper end plate (the corner pair with the smaller mean y) first, each end plate's image-left corner first.

    Comparing end-plate means rather than single corners keeps the order right for tilted (scoliotic)
    vertebrae. Returns the reordered copy and whether anything moved.
    """
    groups = np.asarray(points, dtype=np.float64).reshape(-1, 4, 2)
    groups = groups[np.argsort(groups.mean(axis=1)[:, 1], kind="stable")]
    plates = groups.reshape(-1, 2, 2, 2)  # vertebra, end plate, corner, xy
    upper_last = plates[:, 0, :, 1].mean(axis=1) > plates[:, 1, :, 1].mean(axis=1)
    plates[upper_last] = plates[upper_last, ::-1]
    right_first = plates[:, :, 0, 0] > plates[:, :, 1, 0]
    plates[right_first] = plates[right_first][:, ::-1]
    ordered = plates.reshape(-1, 2)
    return ordered, bool(np.any(ordered != np.asarray(points, dtype=np.float64)))


def aasce_dirs(root: str | os.PathLike, subset: str = "training") -> tuple[Path, Path]:
    """``(images folder, labels folder)`` of ``subset`` in an AASCE copy: ``images_<subset>/`` + ``labels_<subset>/``
    (this project's copy) or the release's ``data/<subset>/`` + ``labels/<subset>/``; the first where
    ``landmarks.csv`` exists, else the first layout (whose missing files the reader then names)."""
    base = Path(root)
    layouts = ((base / f"images_{subset}", base / f"labels_{subset}"), (base / "data" / subset, base / "labels" / subset))
    return next((d for d in layouts if (d[1] / "landmarks.csv").is_file()), layouts[0])


def aasce_copy_of(image: str | os.PathLike) -> tuple[Path, str] | None:
    """``(root, subset)`` of the AASCE copy an image lies in (``root/images_<subset>/`` or the release's
    ``root/data/<subset>/``, with that subset's ``landmarks.csv``), or ``None``."""
    folder = Path(image).parent
    candidates = [(folder.parent, folder.name.removeprefix("images_"))] if folder.name.startswith("images_") else []
    if folder.parent.name == "data":
        candidates.append((folder.parent.parent, folder.name))
    for root, subset in candidates:
        images, labels = aasce_dirs(root, subset)
        if images == folder and (labels / "landmarks.csv").is_file():
            return root, subset
    return None


def aasce_subsets(root: str | os.PathLike) -> list[str]:
    """The subsets of an AASCE copy in either layout (:func:`aasce_dirs`): those whose ``landmarks.csv`` sits beside
    an images folder (the public release: ``training`` and ``test``)."""
    base = Path(root)
    found = {p.parent.name.removeprefix("labels_") for p in base.glob("labels_*/landmarks.csv")}
    found |= {p.parent.name for p in base.glob("labels/*/landmarks.csv")}
    return sorted(s for s in found if aasce_dirs(base, s)[0].is_dir())


def _read_lines(p: Path) -> list[tuple[int, list[str]]]:
    text = read_text_file(p, encoding="utf-8-sig")
    return [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text))) if any(c.strip() for c in r)]


def read_aasce(
    root: str | os.PathLike,
    lumbar_only: bool = True,
    split: str = "training",
    outside: str = "error",
    excluded: list[tuple[Path, str]] | None = None,
    order: str = "anatomical",
    unreadable: str = "error",
) -> list[tuple[Path, LandmarkAnnotation]]:
    """Read an AASCE / SpineWeb-16 copy into ``(image path, LandmarkAnnotation)`` pairs, one per row, in row order.

    Args:
        root: the folder holding ``images_<split>/`` and ``labels_<split>/`` (or the release's ``data/<split>/`` and
            ``labels/<split>/``, :func:`aasce_dirs`).
        lumbar_only: L1-L5 in the ``AP`` layout (default) or all 17 vertebrae (:func:`aasce_layout`).
        split: the folder suffix (``training`` in the public release).
        outside: what to do with an image whose points leave it (each image's size comes from its header, PIL
            lazy open): ``"error"`` (InputError), ``"skip"`` (leave the image out, appending ``(image, message)``
            to ``excluded``) or ``"keep"``. The public training set has one such image (``landmarks.csv`` row
            395: an L4 corner 57 px below the bottom edge), so full-set readers pass ``"skip"`` or ``"keep"``.
        excluded: receives the skipped images (``outside="skip"``, ``unreadable="skip"``) with the reason.
        order: ``"anatomical"`` (default: each row through :func:`anatomical_order`, which fixes the rows that
            list a vertebra out of place; such an annotation gets ``meta["reordered"] = True``) or ``"file"``.

    Raises:
        InputError: naming the file and line for a row that is not 136 numbers, a NaN, a missing image, or a
            point outside its image; or when the two CSVs disagree in length.
    """
    from PIL import Image, UnidentifiedImageError

    if outside not in ("error", "skip", "keep"):
        raise ValueError(f"outside must be 'error', 'skip' or 'keep', got {outside!r}")
    if unreadable not in ("error", "skip"):
        raise ValueError(f"unreadable must be 'error' or 'skip', got {unreadable!r}")
    if order not in ("anatomical", "file"):
        raise ValueError(f"order must be 'anatomical' or 'file', got {order!r}")
    base = Path(root)
    images_dir, labels_dir = aasce_dirs(base, split)
    names_csv, marks_csv = labels_dir / "filenames.csv", labels_dir / "landmarks.csv"
    names = _read_lines(names_csv)
    marks = _read_lines(marks_csv)
    if len(names) != len(marks):
        raise InputError(marks_csv, f"{len(marks)} landmark rows but {len(names)} file names in {names_csv.name}")
    layout = aasce_layout(lumbar_only)
    rows = _file_rows(layout)
    n = 4 * len(AASCE_VERTEBRAE)
    out = []
    for (name_line, name_row), (line, values) in zip(names, marks, strict=True):
        name = name_row[0].strip()
        if len(values) != 2 * n:
            raise InputError(marks_csv, f"expected {2 * n} numbers (68 x then 68 y), found {len(values)}", line=line)
        try:
            v = np.array([float(c) for c in values], dtype=np.float64)
        except ValueError:
            raise InputError(marks_csv, "non-numeric value", line=line) from None
        if not np.isfinite(v).all():
            raise InputError(marks_csv, f"value {int(np.argmax(~np.isfinite(v))) + 1} is NaN or infinite", line=line)
        image = images_dir / name
        try:
            if not image.is_file():
                raise InputError(names_csv, f"image {name!r} not found in {images_dir}", line=name_line)
            try:
                with Image.open(image) as im:
                    w, h = im.size
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(image, f"cannot read image header ({type(e).__name__})") from None
        except InputError as e:
            if unreadable != "skip":
                raise
            if excluded is not None:
                excluded.append((image, UNREADABLE + str(e)))
            continue
        xy = np.stack([v[:n] * w, v[n:] * h], axis=1)
        snapped = np.rint(xy)
        if np.abs(xy - snapped).max() < _SNAP_TOL:
            xy = snapped
        reordered = False
        # the file's own rows are checked first, so that a message names the point as the file has it
        candidates = [xy[rows]]
        if order == "anatomical":
            xy, reordered = anatomical_order(xy)
            candidates.append(xy[rows])
        points = candidates[-1]
        if outside != "keep":
            try:
                for pts in candidates:
                    check_points_in_image(pts, (w, h), marks_csv, names=layout.point_names, lines=[line] * len(pts))
            except InputError as e:
                if outside != "skip":
                    raise
                if excluded is not None:
                    excluded.append((image, str(e)))
                continue
        ann = LandmarkAnnotation(
            layout=layout,
            points=points,
            image=name,
            image_size=(int(w), int(h)),
            facing="left",
            meta={"source_format": "aasce16", "case": aasce_patient(name), **({"reordered": True} if reordered else {})},
            lines=(line,) * len(points),
        )
        out.append((image, ann))
    return out


def write_aasce_datalist(
    root: str | os.PathLike,
    datalist_path: str | os.PathLike,
    labels_dir: str | os.PathLike | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    order: str = "anatomical",
    subset: str = "training",
    split: str | None = None,
    unreadable: str = "error",
    excluded: list[tuple[Path, str]] | None = None,
) -> Path:
    """Write one annotation JSON per image and a datalist JSON at ``datalist_path``, split by patient.

    Labels use the ``AP`` layout (L1-L5) and go to ``labels_dir`` (default: ``<datalist stem>_labels/`` beside
    the datalist). Images with L1-L5 landmarks outside the image are left out and named in the datalist's
    description. The source copy is only read. Items: ``{"image", "label", "case", "layout", "aasce_order"}``, paths
    relative to the datalist's folder. ``order`` as in :func:`read_aasce` (``"file"`` reproduces the labels of models
    trained before the reader fixed the rows listed out of order); each item records it, so that readers of the same
    copy (auxiliary vertebrae in framed training) read it the same way. ``subset``: the folders read,
    ``images_<subset>/`` and ``labels_<subset>/`` or ``data/<subset>/`` and ``labels/<subset>/`` (:func:`read_aasce`'s
    ``split``); ``split``: put every image in this datalist split instead of splitting by patient
    (:func:`~lumbar_monai.io.datalist.write_datalist`); ``unreadable="skip"`` leaves out (and names in the description) images that are missing or whose header cannot be
    read, instead of failing (a batch brought for scoring); ``excluded`` receives every image left out with its
    reason (as :func:`read_aasce`'s). Returns ``datalist_path``.
    """
    dl = Path(datalist_path)
    labels = Path(labels_dir) if labels_dir is not None else dl.parent / f"{dl.stem}_labels"
    items: list[dict[str, Any]] = []
    left_out: list[tuple[Path, str]] = []
    for image, ann in read_aasce(root, lumbar_only=True, split=subset, outside="skip", excluded=left_out, order=order,
                                 unreadable=unreadable):
        label = labels / (Path(image.name).stem + ".json")
        ann.image = os.path.relpath(image.resolve(), label.resolve().parent)
        write_annotation_json(label, ann)
        items.append(
            {
                "image": str(image.resolve()),
                "label": str(label.resolve()),
                "case": ann.meta["case"],
                "layout": ann.layout.name,
                "aasce_order": order,
            }
        )
    description = "AASCE 2019 / SpineWeb-16 AP radiographs, L1-L5" + (
        "" if order == "anatomical" else f" (vertebrae in the files' order: order={order!r})"
    )
    bad = [p for p, why in left_out if why.startswith(UNREADABLE)]
    outside_image = [p for p, why in left_out if not why.startswith(UNREADABLE)]
    for group, why in ((outside_image, "with landmarks outside the image"), (bad, "missing or unreadable")):
        if group:
            description += f"; {len(group)} image(s) left out {why}: " + ", ".join(repr(p.name) for p in group)
    if excluded is not None:
        excluded.extend(left_out)
    return write_datalist(dl, items, description, fractions, split)


def build_aasce_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    order: str = "anatomical",
) -> Path:
    """:func:`write_aasce_datalist` into a folder: ``out_dir/datalist.json`` + ``out_dir/labels/*.json``."""
    out = Path(out_dir)
    return write_aasce_datalist(root, out / "datalist.json", out / "labels", fractions, order)


#: The label files a shrunk copy keeps: normalised coordinates and per-image values stay valid at any image size.
#: (The per-image ``.mat`` files hold whole pixels of the original size and are left out.)
_SIZE_FREE_LABELS = ("filenames.csv", "landmarks.csv", "angles.csv")


def shrink_aasce_copy(src: str | os.PathLike, dst: str | os.PathLike, long_side: int = 1024,
                      quality: int = 90, split: str = "training") -> dict[str, int]:
    """Write a copy of an AASCE copy whose images have their longer side at most ``long_side`` (greyscale JPEG,
    Lanczos resampling), with the label files that do not depend on the image size (``landmarks.csv`` is normalised
    by width and height, so :func:`read_aasce` gives the same points scaled). For moving the data set to a machine
    that cannot read ``src`` (a GPU lent for one run: ``scripts/gpu``). Images already small enough are re-encoded
    as they are. Every file is written atomically; ``dst`` may not be ``src``.

    Returns ``{"images": n, "bytes": total bytes written}``.

    Raises:
        InputError: a missing label file, an image listed but absent or unreadable, or ``dst`` equal to ``src``.
    """
    from PIL import Image, UnidentifiedImageError

    from .atomic import atomic_path

    root, out = Path(src), Path(dst)
    if out.resolve() == root.resolve():
        raise InputError(out, "the shrunk copy must not overwrite its source")
    labels_dir, images_dir = root / f"labels_{split}", root / f"images_{split}"
    out_labels, out_images = out / f"labels_{split}", out / f"images_{split}"
    out_labels.mkdir(parents=True, exist_ok=True)
    out_images.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in _SIZE_FREE_LABELS:
        f = labels_dir / name
        if not f.is_file():
            if name == "angles.csv":  # optional: not read by read_aasce
                continue
            raise InputError(f, "missing (an AASCE copy has filenames.csv and landmarks.csv)")
        data = f.read_bytes()
        with atomic_path(out_labels / name) as tmp:
            tmp.write_bytes(data)
        total += len(data)
    n = 0
    for line, row in _read_lines(labels_dir / "filenames.csv"):
        name = row[0].strip()
        image = images_dir / name
        if Path(name).name != name or not image.is_file():
            raise InputError(labels_dir / "filenames.csv", f"image {name!r} not found in {images_dir}", line=line)
        try:
            with Image.open(image) as im:
                grey = im.convert("L")
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(image, f"cannot read image ({type(e).__name__})") from None
        k = min(1.0, long_side / max(grey.size))
        if k < 1.0:
            grey = grey.resize((max(round(grey.width * k), 1), max(round(grey.height * k), 1)), Image.LANCZOS)
        with atomic_path(out_images / name) as tmp:
            grey.save(tmp, format="JPEG", quality=int(quality))
            total += tmp.stat().st_size
        n += 1
    return {"images": n, "bytes": total}
