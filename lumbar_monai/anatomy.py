"""Landmark layouts as data: the single source of truth for names, order, channel counts and end plates.

Two layouts ship:

* ``LATERAL`` - the paper's layout (An et al. 2022, Section 3.1): L1-L5 with four end-plate corners each and
  the two corners of the S1 upper end plate, 22 points, 6 centres.
* ``AP`` - antero-posterior view, L1-L5 with four corners each, 20 points, 5 centres (BUU-LSPINE AP and the
  AASCE/SpineWeb-16 real radiographs).

Everything downstream (targets, channel counts of the networks, metrics, measurements, writers) reads a
:class:`Layout`; no other module hard-codes 22, 20, 6 or 5.

Point convention used everywhere in the project: a float ``(N, 2)`` array of ``(x, y)`` in pixels of the
current image, pixel centres at integer coordinates, rows ordered as :attr:`Layout.point_names`.

Corner names are anatomical (*ours*, SPEC "Task"): lateral lumbar corners are ``superior_anterior``,
``superior_posterior``, ``inferior_anterior``, ``inferior_posterior``; S1 has ``anterior`` and ``posterior``.
The paper's image-side names (top-left, ...) are aliases that depend on which way the patient faces
(see :func:`image_side_aliases` and :func:`lumbar_monai.facing.infer_facing`). The centre of a vertebra is the
mean of its corners.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "VertebraSpec",
    "Layout",
    "LATERAL",
    "AP",
    "LAYOUTS",
    "get_layout",
    "image_side_aliases",
    "resolve_corner_name",
    "side_swap_order",
]

LUMBAR_LATERAL_CORNERS = ("superior_anterior", "superior_posterior", "inferior_anterior", "inferior_posterior")
SACRUM_CORNERS = ("anterior", "posterior")
# AP view: patient sides in the standard radiographic display (patient's right on the image left).
LUMBAR_AP_CORNERS = ("superior_right", "superior_left", "inferior_right", "inferior_left")


@dataclass(frozen=True)
class VertebraSpec:
    """One vertebra of a layout.

    Args:
        name: anatomical label, e.g. ``"L3"`` or ``"S1"``.
        corners: corner names in storage order.
        end_plates: pairs of corner indices (into ``corners``) joined by an end-plate segment, superior first.
        kind: ``"lumbar"`` (4 corners, 2 end plates) or ``"sacrum"`` (2 corners, 1 end plate).
    """

    name: str
    corners: tuple[str, ...]
    end_plates: tuple[tuple[int, int], ...]
    kind: str = "lumbar"

    @property
    def num_corners(self) -> int:
        return len(self.corners)


#: the neighbour distances Eq. 5's crop sides can be computed from (:attr:`Layout.crop_spacing`).
CROP_SPACINGS = ("vertical", "euclidean")


@dataclass(frozen=True)
class Layout:
    """An ordered set of vertebrae and their corner landmarks.

    Args:
        name: registry key (``"lateral"``, ``"ap"``).
        view: ``"lateral"`` or ``"ap"``.
        vertebrae: the vertebrae from cranial to caudal.
        description: one line for humans.
        crop_scale: factor on the Eq. 5 crop sides (:func:`lumbar_monai.crops.crop_boxes_eq5`); 1.0 is the paper's
            rule, made for lateral views.
        crop_aspect: width / height of each vertebra crop (1.0: Eq. 5's square). The crop's height is the Eq. 5 side;
            its width that times ``crop_aspect``, resampled to the same square network input.
        crop_spacing: the neighbour distance ``d(a, b)`` of Eq. 5: ``"vertical"`` (the paper: ``|c_a,y - c_b,y|``) or
            ``"euclidean"`` (``||c_a - c_b||``, the spacing along a spine that is not upright).
    """

    name: str
    view: str
    vertebrae: tuple[VertebraSpec, ...]
    description: str = ""
    crop_scale: float = 1.0
    crop_aspect: float = 1.0
    crop_spacing: str = "vertical"

    def __post_init__(self) -> None:
        if self.crop_spacing not in CROP_SPACINGS:
            raise ValueError(f"crop_spacing must be one of {CROP_SPACINGS}, got {self.crop_spacing!r}")
        if not self.crop_aspect > 0 or not self.crop_scale > 0:
            raise ValueError(f"crop_scale and crop_aspect must be positive, got {self.crop_scale}, {self.crop_aspect}")

    # ----- counts -----------------------------------------------------------------------------------------
    @property
    def num_vertebrae(self) -> int:
        """Number of vertebrae, i.e. of centres (Pose-Net output channels)."""
        return len(self.vertebrae)

    @property
    def num_centres(self) -> int:
        return self.num_vertebrae

    @cached_property
    def num_points(self) -> int:
        """Number of corner landmarks."""
        return sum(v.num_corners for v in self.vertebrae)

    @cached_property
    def vertebra_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.vertebrae)

    @cached_property
    def lumbar_indices(self) -> tuple[int, ...]:
        """Indices (into :attr:`vertebrae`) of lumbar vertebrae."""
        return tuple(i for i, v in enumerate(self.vertebrae) if v.kind == "lumbar")

    @cached_property
    def sacrum_index(self) -> int | None:
        """Index of the sacrum (S1) in :attr:`vertebrae`, or ``None`` when the layout has none."""
        idx = [i for i, v in enumerate(self.vertebrae) if v.kind == "sacrum"]
        return idx[0] if idx else None

    @property
    def has_sacrum(self) -> bool:
        return self.sacrum_index is not None

    # ----- index tables -----------------------------------------------------------------------------------
    @cached_property
    def vertebra_slices(self) -> tuple[slice, ...]:
        """For each vertebra, the slice of its corners in the ``(N, 2)`` point array."""
        out, start = [], 0
        for v in self.vertebrae:
            out.append(slice(start, start + v.num_corners))
            start += v.num_corners
        return tuple(out)

    @cached_property
    def point_names(self) -> tuple[str, ...]:
        """Qualified names ``"<vertebra>_<corner>"`` in storage order, e.g. ``"L1_superior_anterior"``."""
        return tuple(f"{v.name}_{c}" for v in self.vertebrae for c in v.corners)

    @cached_property
    def mirror_order(self) -> tuple[int, ...] | None:
        """Rows of the points of this layout's mirror image (:func:`side_swap_order` of :attr:`point_names`): an AP
        image mirrored left-right shows the patient's right corners where the left ones were. ``None`` for a layout
        without sided corners (lateral: a mirrored lateral image keeps its anatomical names, it faces the other
        way)."""
        if not any("left" in n or "right" in n for n in self.point_names):
            return None
        return tuple(side_swap_order(self.point_names))

    @cached_property
    def point_vertebra(self) -> np.ndarray:
        """``(N,)`` index of the vertebra each point belongs to."""
        return np.concatenate([np.full(v.num_corners, i) for i, v in enumerate(self.vertebrae)])

    def index(self, vertebra: str, corner: str, facing: str = "left") -> int:
        """Row of ``vertebra``'s ``corner`` in the point array; ``corner`` may be an image-side alias."""
        vi = self.vertebra_names.index(vertebra)
        spec = self.vertebrae[vi]
        name = resolve_corner_name(self, spec, corner, facing)
        return self.vertebra_slices[vi].start + spec.corners.index(name)

    @cached_property
    def end_plate_segments(self) -> tuple[tuple[int, int], ...]:
        """All end plates as pairs of global point indices, cranial to caudal (superior before inferior)."""
        segs = []
        for v, sl in zip(self.vertebrae, self.vertebra_slices, strict=True):
            segs.extend((sl.start + a, sl.start + b) for a, b in v.end_plates)
        return tuple(segs)

    # ----- geometry ---------------------------------------------------------------------------------------
    def check_points(self, points: np.ndarray) -> np.ndarray:
        """Return ``points`` as float ``(N, 2)`` or raise ``ValueError`` naming the mismatch."""
        arr = np.asarray(points, dtype=np.float64)
        if arr.shape != (self.num_points, 2):
            raise ValueError(f"layout {self.name!r} needs points of shape ({self.num_points}, 2), got {arr.shape}")
        return arr

    def centres(self, points: np.ndarray) -> np.ndarray:
        """``(V, 2)`` centre of each vertebra: the mean of its corners (SPEC "Task")."""
        arr = np.asarray(points, dtype=np.float64)
        lead = arr.shape[:-2]
        if arr.shape[-2:] != (self.num_points, 2):
            raise ValueError(f"layout {self.name!r} needs (..., {self.num_points}, 2) points, got {arr.shape}")
        return np.stack([arr[..., sl, :].mean(axis=-2) for sl in self.vertebra_slices], axis=-2).reshape(
            *lead, self.num_vertebrae, 2
        )

    def vertebra_points(self, points: np.ndarray, vertebra: int | str) -> np.ndarray:
        """The corners of one vertebra (by index or name)."""
        vi = self.vertebra_names.index(vertebra) if isinstance(vertebra, str) else vertebra
        return np.asarray(points)[..., self.vertebra_slices[vi], :]

    def to_named(self, points: np.ndarray) -> dict[str, dict[str, list[float]]]:
        """``(N, 2)`` array -> ``{"L1": {"superior_anterior": [x, y], ...}, ...}``."""
        arr = self.check_points(points)
        return {
            v.name: {c: [float(x), float(y)] for c, (x, y) in zip(v.corners, arr[sl], strict=True)}
            for v, sl in zip(self.vertebrae, self.vertebra_slices, strict=True)
        }

    def from_named(self, named: Mapping[str, Mapping[str, object]], facing: str = "left") -> np.ndarray:
        """Inverse of :meth:`to_named`; corner keys may be image-side aliases. Raises ``KeyError`` if one is missing."""
        out = np.full((self.num_points, 2), np.nan)
        for v, sl in zip(self.vertebrae, self.vertebra_slices, strict=True):
            if v.name not in named:
                raise KeyError(f"vertebra {v.name} missing")
            corners = {resolve_corner_name(self, v, k, facing): val for k, val in named[v.name].items()}
            for ci, c in enumerate(v.corners):
                if c not in corners:
                    raise KeyError(f"{v.name} corner {c} missing")
                out[sl.start + ci] = np.asarray(corners[c], dtype=np.float64)[:2]
        return out


# Image-side aliases in the reference orientation (lateral: patient faces image-left, so anterior = left;
# AP: standard display). They mirror left/right when a lateral image faces right.
_SIDE_ALIASES_LUMBAR = ("top_left", "top_right", "bottom_left", "bottom_right")
_SIDE_ALIASES_SACRUM = ("left", "right")


def _lumbar(name: str, corners: tuple[str, ...]) -> VertebraSpec:
    return VertebraSpec(name=name, corners=corners, end_plates=((0, 1), (2, 3)), kind="lumbar")


LATERAL = Layout(
    name="lateral",
    view="lateral",
    vertebrae=tuple(_lumbar(f"L{i}", LUMBAR_LATERAL_CORNERS) for i in range(1, 6))
    + (VertebraSpec(name="S1", corners=SACRUM_CORNERS, end_plates=((0, 1),), kind="sacrum"),),
    description="Lateral lumbar spine (An et al. 2022): L1-L5 x 4 end-plate corners + S1 upper end plate x 2.",
)

AP = Layout(
    name="ap",
    view="ap",
    vertebrae=tuple(_lumbar(f"L{i}", LUMBAR_AP_CORNERS) for i in range(1, 6)),
    description="Antero-posterior lumbar spine: L1-L5 x 4 end-plate corners (BUU-LSPINE AP, AASCE L1-L5).",
    # *ours*: an AP vertebra is wider than the lateral one is deep, so Eq. 5's square (1.5x the centre spacing)
    # misses corners: with ground-truth centres it left a corner outside the crop on 63 % of the AASCE test images;
    # the factor that contains every corner was 1.14 / 1.53 (median / 90th percentile) on the training split
    crop_scale=1.6,
    # *ours*: what the square still missed was width (AP vertebrae are wider than they are tall): on the AASCE
    # training split, with ground-truth centres, the 1.6 square left a corner outside on 7.1 % of the images, crops
    # 1.25x wider than tall leave 3.9 % (`benchmarks/crop_coverage.py --aspects --spacings`). The height is
    # unchanged, so a chain half a level off counts as an outlier as often as before (28.7 % against 30.3 % of the
    # training images); Eq. 5's distances along a leaning spine (`crop_spacing="euclidean"`, 1.8 % misses) would
    # let it pass on 89 % of them, so the paper's vertical spacing stays
    crop_aspect=1.25,
)

LAYOUTS: dict[str, Layout] = {LATERAL.name: LATERAL, AP.name: AP}


def crop_record(layout: Layout) -> dict[str, float | str]:
    """The Eq. 5 crop settings a checkpoint records beside the M-Nets trained on them."""
    return {"crop_scale": float(layout.crop_scale), "crop_aspect": float(layout.crop_aspect),
            "crop_spacing": str(layout.crop_spacing)}


def with_crop_record(layout: Layout, record: Mapping[str, Any], default_scale: float = 1.0) -> Layout:
    """``layout`` with the crop settings of a checkpoint's ``record`` (:func:`crop_record`). A record without a
    key predates that setting: ``default_scale`` (1.0, Eq. 5 as the paper has it, for a predictor checkpoint), a
    square, the vertical spacing - whatever the layout's defaults are now."""
    geometry = {"crop_scale": float(record.get("crop_scale", default_scale)),
                "crop_aspect": float(record.get("crop_aspect", 1.0)),
                "crop_spacing": str(record.get("crop_spacing", "vertical"))}
    if all(getattr(layout, k) == v for k, v in geometry.items()):
        return layout
    return dataclasses.replace(layout, **geometry)


def get_layout(layout: str | Layout) -> Layout:
    """Look a layout up by name (or pass one through)."""
    if isinstance(layout, Layout):
        return layout
    try:
        return LAYOUTS[str(layout).lower()]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}") from None


def image_side_aliases(layout: Layout, vertebra: VertebraSpec, facing: str = "left") -> dict[str, str]:
    """Map image-side alias -> anatomical corner name for one vertebra.

    ``facing`` is the image side the patient's front points to (lateral views). ``"left"`` is the usual display
    and the paper's convention (top-left = superior anterior). AP layouts ignore ``facing``.
    """
    if facing not in ("left", "right"):
        raise ValueError(f"facing must be 'left' or 'right', got {facing!r}")
    sides = _SIDE_ALIASES_LUMBAR if vertebra.kind == "lumbar" else _SIDE_ALIASES_SACRUM
    corners = list(vertebra.corners)
    if facing == "right" and layout.view == "lateral":
        # mirror: swap the anterior/posterior corner of each end plate
        for a, b in vertebra.end_plates:
            corners[a], corners[b] = corners[b], corners[a]
    return dict(zip(sides, corners, strict=True))


def resolve_corner_name(layout: Layout, vertebra: VertebraSpec, corner: str, facing: str = "left") -> str:
    """Anatomical name for ``corner``, which may already be anatomical or an image-side alias."""
    key = corner.lower().replace("-", "_").replace(" ", "_")
    if key in vertebra.corners:
        return key
    aliases = image_side_aliases(layout, vertebra, facing)
    if key in aliases:
        return aliases[key]
    raise KeyError(f"{vertebra.name}: unknown corner name {corner!r}; expected one of {vertebra.corners} or {tuple(aliases)}")


def side_swap_order(names) -> list[int]:
    """Order of ``names`` with sides swapped: item ``i`` is the index of ``names[i]`` with ``left`` and ``right``
    exchanged (itself when it has neither). Raises ``ValueError`` when a sided name has no partner."""
    names = list(names)
    order = []
    for n in names:
        twin = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        if twin not in names:
            raise ValueError(f"{n!r} has no mirror partner {twin!r}")
        order.append(names.index(twin))
    return order
