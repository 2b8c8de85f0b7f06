"""Landmark annotation files: the project's own JSON format and the BUU-LSPINE CSV layout.

The project's JSON (``"format": "lumbar-monai/landmarks@1"``)::

    {
      "format": "lumbar-monai/landmarks@1",
      "layout": "lateral",                      # a key of lumbar_monai.anatomy.LAYOUTS
      "image": "case_0001.png",                 # path relative to the JSON file (optional)
      "image_size": [W, H],                     # pixels (optional, checked when present)
      "facing": "left",                         # lateral only: image side the patient faces
      "pixel_spacing": [sx, sy],                # mm per pixel along x (columns) and y (rows), or null
      "spacing_source": "PixelSpacing",         # PixelSpacing | ImagerPixelSpacing | synthetic | null
      "points": {"L1": {"superior_anterior": [x, y], ...}, ..., "S1": {"anterior": [x, y], ...}},
      "meta": {...}                             # free-form, never patient identifiers
    }

Points are in pixels of the original image, ``(x, y)``, pixel centres at integer coordinates.

Facing (lateral views): readers infer it from the points and say so when the file's claim contradicts them
(a ``logging`` warning naming the file, and ``meta["facing_note"]``). With anatomical corner names the points
themselves tell the side (every anterior corner lies on the side the patient faces,
:func:`~lumbar_monai.facing.facing_from_points`); with image-side names (``top_left``, ..., and every BUU-LSPINE
CSV) the *shape* tells it (:func:`~lumbar_monai.facing.facing_from_shape`: the S1 end plate slopes down anteriorly,
the lumbar column bulges anteriorly) and the names are resolved with the facing found.

BUU-LSPINE (see ``../shared/data/README.md``): one headerless CSV per image, rows
``x_left,y_left,x_right,y_right,label``; lateral files have 11 rows (L1 top end plate, L1 bottom, ..., L5 bottom,
S1 top), AP files the first 10. ``left``/``right`` are image sides.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import Layout, get_layout, image_side_aliases
from ..errors import InputError
from .atomic import atomic_write_json, atomic_write_text

__all__ = [
    "ANNOTATION_FORMAT",
    "LandmarkAnnotation",
    "read_text_file",
    "read_annotation_json",
    "write_annotation_json",
    "read_buu_csv",
    "write_buu_csv",
    "check_points_in_image",
    "read_landmark_file",
]

ANNOTATION_FORMAT = "lumbar-monai/landmarks@1"
#: how clearly the shape must show a facing (:func:`~lumbar_monai.facing.facing_from_shape` strength) before a
#: reader overrides a file's image-side naming with it (*ours*: 0.9 needs both cues, the S1 slope and the lordosis;
#: the weakest of 40 synthetic studies, 0.928, passes it)
SHAPE_FACING_STRENGTH = 0.9

logger = logging.getLogger(__name__)


@dataclass
class LandmarkAnnotation:
    """Landmarks of one image in the project's point convention (``(N, 2)`` x, y pixels)."""

    layout: Layout
    points: np.ndarray
    pixel_spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    image: str | None = None
    image_size: tuple[int, int] | None = None  # (W, H)
    facing: str = "left"
    meta: dict[str, Any] = field(default_factory=dict)
    #: 1-based line of each point in its source text file (CSV readers), for error messages; not serialised
    lines: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": ANNOTATION_FORMAT,
            "layout": self.layout.name,
            "image": self.image,
            "image_size": None if self.image_size is None else [int(v) for v in self.image_size],
            "facing": self.facing,
            "pixel_spacing": None if self.pixel_spacing is None else [float(v) for v in self.pixel_spacing],
            "spacing_source": self.spacing_source,
            "points": self.layout.to_named(self.points),
            "meta": self.meta,
        }


def check_points_in_image(
    points: np.ndarray,
    size_wh: tuple[int, int],
    path,
    tolerance: float = 0.5,
    names: Sequence[str] | None = None,
    lines: Sequence[int | None] | None = None,
) -> None:
    """Raise :class:`InputError` if a point is non-finite or outside the image (by more than ``tolerance`` px).

    ``names`` (e.g. :attr:`Layout.point_names`) and ``lines`` (1-based line of each point in its file) make the
    message point at the offending landmark: ``"file.csv:7: point 13 (L4_superior_right) at (...) lies outside"``.
    """
    pts = np.asarray(points, dtype=np.float64)

    def where(i: int) -> tuple[str, int | None]:
        label = f"point {i + 1}" + (f" ({names[i]})" if names is not None and i < len(names) else "")
        line = lines[i] if lines is not None and i < len(lines) else None
        return label, line

    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        label, line = where(int(np.argmax(bad)))
        raise InputError(path, f"{label} is not a finite number", line=line)
    w, h = size_wh
    out = (pts[:, 0] < -tolerance) | (pts[:, 0] > w - 1 + tolerance) | (pts[:, 1] < -tolerance) | (
        pts[:, 1] > h - 1 + tolerance
    )
    if out.any():
        i = int(np.argmax(out))
        label, line = where(i)
        raise InputError(
            path, f"{label} at ({pts[i, 0]:.1f}, {pts[i, 1]:.1f}) lies outside the {w}x{h} image", line=line
        )


def read_text_file(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole text of ``path``, or an :class:`InputError` (missing file, unreadable, not text)."""
    p = Path(path)
    try:
        return p.read_text(encoding=encoding)
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot read as {encoding.upper().replace('-SIG', '')} text ({type(e).__name__})") from None


def read_annotation_json(path: str | os.PathLike) -> LandmarkAnnotation:
    """Read the project's JSON; every problem is an :class:`InputError` naming the file."""
    p = Path(path)
    text = read_text_file(p)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(p, f"not valid JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != ANNOTATION_FORMAT:
        raise InputError(p, f"not a landmark annotation (expected \"format\": \"{ANNOTATION_FORMAT}\")")
    try:
        layout = get_layout(doc.get("layout", ""))
    except ValueError as e:
        raise InputError(p, str(e)) from None
    claim = doc.get("facing")
    if claim is not None and claim not in ("left", "right"):
        raise InputError(p, f"facing must be 'left' or 'right', got {claim!r}")
    named = doc.get("points")
    if not isinstance(named, dict):
        raise InputError(p, "missing \"points\" object")
    try:
        points = layout.from_named(named, facing=claim or "left")
        facing, note = _json_facing(layout, named, points, claim)
        if note and facing != (claim or "left") and _uses_side_names(layout, named):
            points = layout.from_named(named, facing=facing)  # image-side names: resolve them with the facing found
    except KeyError as e:
        raise InputError(p, f"incomplete points: {e.args[0]}") from None
    except (TypeError, ValueError) as e:
        raise InputError(p, f"malformed point: {e}") from None
    spacing = doc.get("pixel_spacing")
    if spacing is not None:
        if not (isinstance(spacing, list) and len(spacing) == 2 and all(_positive_number(v) for v in spacing)):
            raise InputError(p, f"pixel_spacing must be two positive numbers [sx, sy] in mm, got {spacing!r}")
        spacing = (float(spacing[0]), float(spacing[1]))
    size = doc.get("image_size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise InputError(p, f"image_size must be [W, H] positive integers, got {size!r}")
        size = (int(size[0]), int(size[1]))
        check_points_in_image(points, size, p, names=layout.point_names)
    elif not np.isfinite(points).all():
        raise InputError(p, "a point is not a finite number")
    meta = dict(doc.get("meta") or {}) if isinstance(doc.get("meta"), dict) else {}
    if note:
        meta["facing_note"] = note
        logger.warning("%s: %s", p, note)
    return LandmarkAnnotation(
        layout=layout,
        points=points,
        pixel_spacing=spacing,
        spacing_source=doc.get("spacing_source"),
        image=doc.get("image"),
        image_size=size,
        facing=facing,
        meta=meta,
    )


def _uses_side_names(layout: Layout, named) -> bool:
    """Whether any corner key of ``named`` is an image-side alias rather than an anatomical name."""
    for v in layout.vertebrae:
        for k in (named.get(v.name) or {}):
            if str(k).lower().replace("-", "_").replace(" ", "_") not in v.corners:
                return True
    return False


def _json_facing(layout: Layout, named, points: np.ndarray, claim: str | None) -> tuple[str, str | None]:
    """``(facing, note)`` of a JSON annotation: the facing the points show, and a sentence when it contradicts
    the file's ``facing`` (``None`` when they agree or the layout is AP)."""
    from ..facing import CLEAR_AGREEMENT, facing_from_points, facing_from_shape

    if layout.view != "lateral":
        return claim or "left", None
    if not _uses_side_names(layout, named):
        found, agree = facing_from_points(points, layout)
        if found is None or agree < CLEAR_AGREEMENT:
            return claim or "left", None
        if found == (claim or found):
            return found, None
        return found, (f"the file says facing {claim}, but the anterior corners of {agree:.0%} of the end plates "
                       f"lie on the image {found}: using {found}")
    found, strength = facing_from_shape(points, layout)
    claimed = claim or "left"
    if found is None or found == claimed or strength < SHAPE_FACING_STRENGTH:
        return claimed, None
    return found, (f"image-side corner names with facing {claimed}{'' if claim else ' (default)'}, but the spine's "
                   f"shape (S1 slope, lordosis) shows the patient facing {found}: names resolved facing {found}")


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def write_annotation_json(path: str | os.PathLike, annotation: LandmarkAnnotation) -> Path:
    """Write the project's JSON atomically."""
    annotation.layout.check_points(annotation.points)
    return atomic_write_json(path, annotation.to_json_dict())


# ----- BUU-LSPINE ---------------------------------------------------------------------------------------------


def _buu_rows(layout: Layout) -> list[tuple[int, int, int]]:
    """For each CSV row: (vertebra index, point index of the image-left end, point index of the image-right end).

    Rows follow the layout's end plates cranial to caudal; left/right are image sides with the patient facing left
    (BUU-LSPINE lateral images are all left-lateral, facing image-left).
    """
    rows = []
    for vi, (v, sl) in enumerate(zip(layout.vertebrae, layout.vertebra_slices, strict=True)):
        aliases = image_side_aliases(layout, v, "left")
        for a, b in v.end_plates:
            left_name, right_name = v.corners[a], v.corners[b]
            # the alias table tells which of the two corners is on the image left
            left_alias = {c: s for s, c in aliases.items()}[left_name]
            if "right" in left_alias:
                left_name, right_name = right_name, left_name
            rows.append((vi, sl.start + v.corners.index(left_name), sl.start + v.corners.index(right_name)))
    return rows


def read_buu_csv(path: str | os.PathLike, layout: str | Layout | None = None) -> LandmarkAnnotation:
    """Read one BUU-LSPINE CSV; the layout follows from the row count (11 lateral, 10 AP) unless given.

    The format names corners by image side and its lateral images face left; the facing is inferred from the
    spine's shape instead (:func:`~lumbar_monai.facing.facing_from_shape`), and a file whose shape clearly faces
    right gets its left/right corners swapped into anatomical names, with a warning and ``meta["facing_note"]``.
    """
    p = Path(path)
    text = read_text_file(p, encoding="utf-8-sig")
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text))) if any(c.strip() for c in r)]
    if layout is None:
        counts = {len(_buu_rows(get_layout(n))): n for n in ("lateral", "ap")}
        if len(rows) not in counts:
            raise InputError(p, f"BUU-LSPINE CSV needs 11 rows (lateral) or 10 (AP), found {len(rows)}")
        layout = counts[len(rows)]
    lay = get_layout(layout)
    table = _buu_rows(lay)
    if len(rows) != len(table):
        raise InputError(p, f"layout {lay.name!r} needs {len(table)} rows, found {len(rows)}")
    points = np.full((lay.num_points, 2), np.nan)
    lines: list[int] = [0] * lay.num_points  # 1-based CSV line of each point, for error messages
    for (lineno, row), (_, li, ri) in zip(rows, table, strict=True):
        if len(row) < 4:
            raise InputError(p, f"expected x_left,y_left,x_right,y_right,label, got {len(row)} fields", line=lineno)
        try:
            xl, yl, xr, yr = (float(c) for c in row[:4])
        except ValueError:
            raise InputError(p, f"non-numeric coordinate in {row[:4]}", line=lineno) from None
        if not all(math.isfinite(v) for v in (xl, yl, xr, yr)):
            raise InputError(p, "coordinate is NaN or infinite", line=lineno)
        if min(xl, yl, xr, yr) < 0:
            raise InputError(p, "negative coordinate (outside the image)", line=lineno)
        points[li] = (xl, yl)
        points[ri] = (xr, yr)
        lines[li] = lines[ri] = lineno
    meta: dict[str, Any] = {"source_format": "buu-lspine"}
    facing = "left"
    if lay.view == "lateral":
        from ..facing import facing_from_shape

        found, strength = facing_from_shape(points, lay)
        if found == "right" and strength >= SHAPE_FACING_STRENGTH:
            facing = "right"
            for a, b in lay.end_plate_segments:  # image-left corner is posterior now
                points[[a, b]] = points[[b, a]]
            meta["facing_note"] = ("BUU-LSPINE lateral files face left, but the spine's shape (S1 slope, lordosis) "
                                   "shows the patient facing right: left/right corners read as posterior/anterior")
            logger.warning("%s: %s", p, meta["facing_note"])
    return LandmarkAnnotation(layout=lay, points=points, facing=facing, meta=meta, lines=tuple(lines))


def write_buu_csv(path: str | os.PathLike, points: np.ndarray, layout: str | Layout) -> Path:
    """Write points in the BUU-LSPINE CSV layout (label column = ``<vertebra>_<superior|inferior>``).

    The columns are image sides: anatomically named points of a patient facing right (anterior corners on the
    image right, :func:`~lumbar_monai.facing.facing_from_points`) are written with their corners swapped."""
    from ..facing import facing_from_points

    lay = get_layout(layout)
    pts = lay.check_points(points).copy()
    if facing_from_points(pts, lay)[0] == "right":
        for a, b in lay.end_plate_segments:
            pts[[a, b]] = pts[[b, a]]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    counters: dict[int, int] = {}
    for vi, li, ri in _buu_rows(lay):
        k = counters.get(vi, 0)
        counters[vi] = k + 1
        label = f"{lay.vertebrae[vi].name}_{'superior' if k == 0 else 'inferior'}"
        w.writerow([f"{pts[li, 0]:.3f}", f"{pts[li, 1]:.3f}", f"{pts[ri, 0]:.3f}", f"{pts[ri, 1]:.3f}", label])
    return atomic_write_text(path, out.getvalue())


def read_landmark_file(path: str | os.PathLike, layout: str | Layout | None = None) -> LandmarkAnnotation:
    """Read an annotation by content: the project's JSON (starts with ``{``) or a BUU-LSPINE CSV.

    ``layout`` applies to CSVs (where the row count decides otherwise); a JSON file names its own layout and
    must agree with ``layout`` when both are given.
    """
    p = Path(path)
    try:
        head = p.read_bytes()[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except IsADirectoryError:
        raise InputError(p, "is a directory, expected an annotation file") from None
    except OSError as e:
        raise InputError(p, f"cannot read ({e.strerror or type(e).__name__})") from None
    if not head:
        raise InputError(p, "empty annotation file")
    if head.startswith((b"{", b"[")) or p.suffix.lower() == ".json":
        ann = read_annotation_json(p)
        if layout is not None and get_layout(layout).name != ann.layout.name:
            raise InputError(p, f"layout {ann.layout.name!r} in the file, {get_layout(layout).name!r} expected")
        return ann
    return read_buu_csv(p, layout)
