"""Random Spine Cutout (RSC) and the conventional-cutout baseline (An et al. 2022, Section 3.2, Figure 4, Tables 3-4).

RSC: pick one of the often-occluded vertebrae L1-L4 at random and set to zero a box centred on that vertebra whose
width and height are ``ratio`` times the vertebra's width and height (``ratio`` 0.6 in the paper; the ablation
compares 1.0/0.8/0.6/0.4). The box is oriented with the vertebra (*ours*: the paper's Figure 4 shows boxes aligned
with the vertebral body).

Vertebra frame (*ours*, used by both kinds): for a vertebra with end plates ``(a0, b0)`` (superior) and
``(a1, b1)`` (inferior) in :class:`~lumbar_monai.anatomy.Layout` order,

* width = mean length of the two end plates, width axis = mean direction of the two end plates;
* height = mean of the two side heights ``|a1 - a0|`` (anterior) and ``|b1 - b0|`` (posterior);
* centre = mean of the corners.

Conventional cutout (the baseline of Table 4): a box of the same size (from a randomly chosen L1-L4 vertebra) at a
uniformly random place in the image, axis-aligned, by MONAI's :class:`~monai.transforms.RandCoarseDropout`.

``kind`` is chosen by :func:`make_cutout`: ``"none"`` | ``"conventional"`` | ``"rsc"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandCoarseDropout, RandomizableTransform
from monai.utils import convert_to_dst_type

from ..anatomy import Layout, get_layout

__all__ = [
    "CUTOUT_KINDS",
    "vertebra_box",
    "oriented_box_mask",
    "RandSpineCutout",
    "RandSpineCutoutd",
    "RandSpineCutoutD",
    "RandSpineCutoutDict",
    "RandConventionalCutout",
    "RandConventionalCutoutd",
    "RandConventionalCutoutD",
    "RandConventionalCutoutDict",
    "make_cutout",
]

CUTOUT_KINDS = ("none", "conventional", "rsc")


def vertebra_box(points: np.ndarray, layout: Layout, vertebra: int) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Centre, width, height and unit width-axis ``(x, y)`` of one vertebra (see the module docstring).

    Args:
        points: ``(N, 2)`` landmarks of the whole layout.
        layout: the layout.
        vertebra: index into ``layout.vertebrae``; it must have two end plates (a lumbar vertebra).
    """
    spec = layout.vertebrae[vertebra]
    if len(spec.end_plates) < 2:
        raise ValueError(f"{spec.name} has {len(spec.end_plates)} end plate(s); a box needs two")
    p = np.asarray(points, dtype=np.float64)[layout.vertebra_slices[vertebra]]
    (a0, b0), (a1, b1) = spec.end_plates[:2]
    v_sup, v_inf = p[b0] - p[a0], p[b1] - p[a1]
    l_sup, l_inf = np.linalg.norm(v_sup), np.linalg.norm(v_inf)
    direction = v_sup / max(l_sup, 1e-12) + v_inf / max(l_inf, 1e-12)
    n = np.linalg.norm(direction)
    axis = direction / n if n > 1e-12 else np.array([1.0, 0.0])
    width = 0.5 * (l_sup + l_inf)
    height = 0.5 * (np.linalg.norm(p[a1] - p[a0]) + np.linalg.norm(p[b1] - p[b0]))
    return p.mean(axis=0), float(width), float(height), axis


def oriented_box_mask(
    shape: tuple[int, int], centre, width: float, height: float, axis=(1.0, 0.0)
) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose centres lie in a box (vectorised over the grid).

    Args:
        shape: ``(H, W)``.
        centre: ``(x, y)`` box centre.
        width, height: box sides along ``axis`` and its perpendicular.
        axis: unit ``(x, y)`` direction of the width side.
    """
    h, w = shape
    ax = np.asarray(axis, dtype=np.float64)
    ax = ax / np.linalg.norm(ax)
    dx = np.arange(w, dtype=np.float64)[None, :] - float(centre[0])
    dy = np.arange(h, dtype=np.float64)[:, None] - float(centre[1])
    u = dx * ax[0] + dy * ax[1]
    v = -dx * ax[1] + dy * ax[0]
    return (np.abs(u) <= width / 2.0) & (np.abs(v) <= height / 2.0)


def _candidates(layout: Layout, points: np.ndarray, candidates) -> list[int]:
    if candidates is None:
        # the paper's "L1-L4": every lumbar vertebra but the last (L5, the brightest, Table 1)
        candidates = layout.lumbar_indices[:-1]
    idx = [layout.vertebra_names.index(c) if isinstance(c, str) else int(c) for c in candidates]
    pts = np.asarray(points, dtype=np.float64)
    return [i for i in idx if np.isfinite(pts[layout.vertebra_slices[i]]).all()]


class _Cutout(RandomizableTransform):
    """Shared state of both array cutouts: which vertebra's size sets the box (arguments as
    :class:`RandSpineCutout`)."""

    def __init__(
        self,
        ratio: float = 0.6,
        prob: float = 0.5,
        candidates=None,
        layout: str | Layout | None = None,
        fill_value: float = 0.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if ratio <= 0:
            raise ValueError(f"ratio must be positive, got {ratio}")
        self.ratio = float(ratio)
        self.candidates = candidates
        self.layout = None if layout is None else get_layout(layout)
        self.fill_value = float(fill_value)
        self._vertebra: int | None = None
        #: the last box drawn, ``[cx, cy, width, height, axis_x, axis_y, vertebra]`` (``None``: no cutout)
        self.last_box: np.ndarray | None = None

    def resolve_layout(self, layout: str | Layout | None) -> Layout:
        if layout is not None:
            return get_layout(layout)
        if self.layout is None:
            raise KeyError("no layout: none was passed and none was given at construction")
        return self.layout

    def randomize(self, points=None, layout: str | Layout | None = None) -> None:
        super().randomize(None)
        self._vertebra = None
        self.last_box = None
        if not self._do_transform or points is None:
            return
        cands = _candidates(self.resolve_layout(layout), _as_numpy(points), self.candidates)
        if cands:
            self._vertebra = int(cands[self.R.randint(len(cands))])

    @staticmethod
    def _apply_mask(img, mask: np.ndarray, fill: float):
        m = convert_to_dst_type(mask, img, dtype=torch.bool if isinstance(img, torch.Tensor) else bool)[0]
        if isinstance(img, torch.Tensor):
            return torch.where(m[None], torch.as_tensor(fill, dtype=img.dtype, device=img.device), img)
        return np.where(m[None], np.asarray(fill, dtype=img.dtype), img)


def _as_numpy(points) -> np.ndarray:
    return points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, dtype=np.float64)


class RandSpineCutout(_Cutout):
    """Random Spine Cutout (Section 3.2) of one ``(C, H, W)`` image: zero an oriented box of ``ratio`` x a random
    L1-L4 vertebra's size; ``img, points, layout -> img``.

    Args:
        ratio: box side / vertebra side (0.6 in the paper).
        prob: probability of applying it (*ours*: 0.5; the paper does not say).
        candidates: vertebra names or indices to choose from (default: all lumbar but the last, i.e. L1-L4).
        layout: the layout when a call passes none.
        fill_value: value inside the box (0).
    """

    def __call__(self, img, points, layout: str | Layout | None = None, randomize: bool = True):
        """``points``: the ``(N, 2)`` (x, y) landmarks in the image's pixels. The box is in :attr:`last_box`."""
        lay = self.resolve_layout(layout)
        if randomize:
            self.randomize(points, lay)
        if self._vertebra is None:
            return img
        centre, width, height, axis = vertebra_box(_as_numpy(points), lay, self._vertebra)
        bw, bh = self.ratio * width, self.ratio * height
        self.last_box = np.array([centre[0], centre[1], bw, bh, axis[0], axis[1], self._vertebra])
        mask = oriented_box_mask(tuple(img.shape[-2:]), centre, bw, bh, axis)
        return self._apply_mask(img, mask, self.fill_value)


class RandConventionalCutout(_Cutout):
    """Conventional cutout baseline (DeVries and Taylor 2017; Table 4) of one ``(C, H, W)`` image: the RSC box size
    at a random place; ``img, points, layout -> img``.

    The box is ``ratio`` x the size of a randomly chosen L1-L4 vertebra, axis-aligned, placed uniformly inside the
    image by MONAI's :class:`~monai.transforms.RandCoarseDropout` (one hole, fixed size), sharing this transform's
    random state. Arguments as :class:`RandSpineCutout`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._dropout: RandCoarseDropout | None = None

    def randomize(self, points=None, layout: str | Layout | None = None, spatial_shape=None) -> None:
        """Draw the vertebra and, given the image's ``(H, W)``, the hole's place."""
        super().randomize(points, layout)
        self._dropout = None
        if self._vertebra is None or spatial_shape is None:
            return
        _, width, height, _ = vertebra_box(_as_numpy(points), self.resolve_layout(layout), self._vertebra)
        hh, ww = (int(v) for v in spatial_shape)
        size = (min(max(1, round(self.ratio * height)), hh), min(max(1, round(self.ratio * width)), ww))
        dropout = RandCoarseDropout(holes=1, spatial_size=size, fill_value=self.fill_value, prob=1.0)
        dropout.set_random_state(state=self.R)
        dropout.randomize(tuple(spatial_shape))
        self._dropout = dropout
        (sy, sx) = dropout.hole_coords[0][1:]
        self.last_box = np.array(
            [(sx.start + sx.stop - 1) / 2, (sy.start + sy.stop - 1) / 2, size[1], size[0], 1.0, 0.0, self._vertebra])

    def __call__(self, img, points, layout: str | Layout | None = None, randomize: bool = True):
        if randomize:
            self.randomize(points, layout, tuple(img.shape[-2:]))
        if self._dropout is None:
            return img
        # RandCoarseDropout fills in place through shared memory: hand it a copy, keep the input intact
        src = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        return convert_to_dst_type(self._dropout(src, randomize=False), img)[0]


class _Cutoutd(RandomizableTransform, MapTransform):
    """Dictionary form of a cutout: one draw shared by all ``keys`` (the inner array transform's random state)."""

    cutout: RandSpineCutout | RandConventionalCutout
    array_class: type = RandSpineCutout

    def __init__(
        self,
        keys: KeysCollection = "image",
        point_key: str = "points",
        layout_key: str = "layout",
        ratio: float = 0.6,
        prob: float = 0.5,
        candidates=None,
        layout: str | Layout | None = None,
        fill_value: float = 0.0,
        box_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.cutout = self.array_class(ratio=ratio, prob=prob, candidates=candidates, layout=layout,
                                       fill_value=fill_value)
        self.point_key = point_key
        self.layout_key = layout_key
        self.box_key = box_key

    # the array transform's settings, readable here as before
    ratio = property(lambda self: self.cutout.ratio)
    candidates = property(lambda self: self.cutout.candidates)
    layout = property(lambda self: self.cutout.layout)
    fill_value = property(lambda self: self.cutout.fill_value)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _Cutoutd:
        super().set_random_state(seed, state)
        self.cutout.set_random_state(seed, state)
        return self

    def _layout(self, d: Mapping) -> Layout:
        if self.layout_key in d and d[self.layout_key] is not None:
            return get_layout(d[self.layout_key])
        if self.cutout.layout is None:
            raise KeyError(f"no layout: sample has no {self.layout_key!r} and none was given")
        return self.cutout.layout

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        lay = self._layout(d)
        pts = d[self.point_key]
        if isinstance(self.cutout, RandConventionalCutout):
            self.cutout.randomize(pts, lay, tuple(d[keys[0]].shape[-2:]) if keys else None)
        else:
            self.cutout.randomize(pts, lay)
        self._do_transform = self.cutout._do_transform
        if self.cutout._vertebra is None:
            return d
        for k in keys:
            d[k] = self.cutout(d[k], pts, lay, randomize=False)
        if self.box_key is not None and self.cutout.last_box is not None:
            d[self.box_key] = self.cutout.last_box.copy()
        return d


class RandSpineCutoutd(_Cutoutd):
    """Dictionary :class:`RandSpineCutout`: zero an oriented box of ``ratio`` x a random L1-L4 vertebra's size.

    Args:
        keys: image keys (``(C, H, W)``; all get the same box).
        point_key: the ``(N, 2)`` (x, y) landmarks in the images' pixels.
        layout_key: sample key holding the layout (name or :class:`Layout`); ``layout`` is the fallback.
        ratio: box side / vertebra side (0.6 in the paper).
        prob: probability of applying it (*ours*: 0.5; the paper does not say).
        candidates: vertebra names or indices to choose from (default: all lumbar but the last, i.e. L1-L4).
        fill_value: value inside the box (0).
        box_key: if set, the box is stored there as ``[cx, cy, width, height, axis_x, axis_y, vertebra]``.
    """

    array_class = RandSpineCutout


class RandConventionalCutoutd(_Cutoutd):
    """Dictionary :class:`RandConventionalCutout` (the RSC box size at a uniformly random place); arguments as
    :class:`RandSpineCutoutd`."""

    array_class = RandConventionalCutout


RandSpineCutoutD = RandSpineCutoutDict = RandSpineCutoutd
RandConventionalCutoutD = RandConventionalCutoutDict = RandConventionalCutoutd


def make_cutout(
    kind: str,
    keys: KeysCollection = "image",
    point_key: str = "points",
    ratio: float = 0.6,
    prob: float = 0.5,
    layout_key: str = "layout",
    **kwargs,
) -> RandSpineCutoutd | RandConventionalCutoutd | None:
    """The cutout selected by config: ``"none"`` (returns ``None``), ``"conventional"`` or ``"rsc"``."""
    kind = str(kind).lower()
    if kind == "none":
        return None
    if kind == "rsc":
        return RandSpineCutoutd(keys, point_key=point_key, layout_key=layout_key, ratio=ratio, prob=prob, **kwargs)
    if kind == "conventional":
        return RandConventionalCutoutd(keys, point_key=point_key, layout_key=layout_key, ratio=ratio, prob=prob,
                                       **kwargs)
    raise ValueError(f"cutout kind must be one of {CUTOUT_KINDS}, got {kind!r}")
