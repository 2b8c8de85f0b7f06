"""Stage-1 augmentations (An et al. 2022, Section 3.2 "Training procedures") and the stage-1 transform chains.

* :class:`RandAffinePointsd` - random rotation, scaling and translation in which the landmarks move with the
  image: the image is resampled by MONAI's :class:`~monai.transforms.Affine`, the points are moved by MONAI's
  point-aware :class:`~monai.transforms.ApplyTransformToPoints` with the inverse of the very matrix ``Affine``
  reports, and the step is composed into ``sample["geometry"]`` like every other geometric step.
* :class:`RandMirrord` - a random left-right mirror that keeps anatomical names (issue 15): the image flips, each
  landmark moves to ``x -> W - 1 - x`` under its own name (``anterior`` stays ``anterior``) and ``sample["facing"]``
  flips. Off in the bundle (``mirror_prob`` 0): the predictor brings every lateral image to the networks' trained
  facing (:mod:`lumbar_monai.facing`), and networks that learned both facings would lose the confidence gap its
  facing decision reads; it is for a facing-invariant model (or one with a learned facing output).
* :class:`~lumbar_monai.transforms.intensity.RandBrightnessContrastd` - random contrast about the image mean and
  brightness: MONAI's ``RandScaleIntensityFixedMeand`` + ``RandShiftIntensityd`` + a clip (imported here for the
  chains and for older imports).
* :func:`stage1_preprocessing` / :func:`stage1_transforms` - the chains used by training and inference.

The paper gives no augmentation ranges; the defaults here are *ours* (rotation +-10 degrees, zoom 0.9-1.1,
translation +-5 % of the side, brightness +-0.1, contrast 0.8-1.2 on [0, 1] images).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    Affine,
    ApplyTransformToPoints,
    Compose,
    EnsureTyped,
    InvertibleTransform,
    MapTransform,
    RandomizableTransform,
    ScaleIntensityd,
)
from monai.utils import TraceKeys, convert_to_dst_type

from ..codecs.centre import CentreHeatmapd
from ..points import monai_to_xy, xy_to_monai
from .blur import GaussianBlurd
from .cutout import make_cutout
from .geometry import (
    _SWAP,
    GEOMETRY_KEY,
    PadToSquared,
    ResizeSquared,
    _update_affine,
    compose_geometry,
    index_affine,
)
from .intensity import CLAHEd, RandBrightnessContrastd
from .resample import FitToSquared

__all__ = [
    "RandAffinePointsd",
    "RandAffinePointsD",
    "RandAffinePointsDict",
    "RandBrightnessContrastd",
    "RandMirrord",
    "RandMirrorD",
    "RandMirrorDict",
    "monai_affine_to_xy",
    "stage1_preprocessing",
    "stage1_input",
    "stage1_augmentation",
    "stage1_transforms",
]


def monai_affine_to_xy(affine_yx) -> np.ndarray:
    """Convert the matrix MONAI's ``Affine`` returns into the ``(x, y)`` point matrix of the same step.

    ``Affine(image_only=False)`` returns the 3x3 matrix taking *output* pixel indices ``(y, x)`` to *input* indices
    (the resampling grid). A point therefore moves by its inverse; in ``(x, y)`` order that is ``S A^-1 S``.
    """
    a = affine_yx.detach().cpu().numpy() if isinstance(affine_yx, torch.Tensor) else np.asarray(affine_yx)
    return _SWAP @ np.linalg.inv(np.asarray(a, dtype=np.float64)) @ _SWAP


class RandAffinePointsd(RandomizableTransform, MapTransform, InvertibleTransform):
    """Random rotation, zoom and translation of images with their landmarks (points move with the image).

    Args:
        keys: image keys (all resampled with the same matrix).
        point_keys: ``(N, 2)`` (x, y) point arrays moved with the image.
        prob: probability of applying the transform.
        rotate_range: maximum absolute rotation in radians.
        scale_range: zoom is drawn from ``[1 - scale_range, 1 + scale_range]`` (> 1 enlarges the content).
        translate_range: maximum absolute shift as a fraction of each side.
        mode: interpolation mode of the image.
        padding_mode: MONAI padding mode outside the image (``"zeros"``).
        geometry_key: where the ``original -> current`` matrix is composed.

    Invertible on MetaTensor images: each records its step (drawn or not), and ``inverse`` resamples the image
    back with MONAI's ``Affine`` and the inverse grid matrix and moves the points back exactly.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        point_keys: KeysCollection = ("points",),
        prob: float = 0.5,
        rotate_range: float = np.deg2rad(10.0),
        scale_range: float = 0.1,
        translate_range: float = 0.05,
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        geometry_key: str = GEOMETRY_KEY,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.point_keys = (point_keys,) if isinstance(point_keys, str) else tuple(point_keys)
        self.rotate_range = float(rotate_range)
        self.scale_range = float(scale_range)
        self.translate_range = float(translate_range)
        self.mode = mode
        self.padding_mode = padding_mode
        self.geometry_key = geometry_key
        self._params: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        angle = self.R.uniform(-self.rotate_range, self.rotate_range)
        zoom = self.R.uniform(1.0 - self.scale_range, 1.0 + self.scale_range)
        tx, ty = self.R.uniform(-self.translate_range, self.translate_range, size=2)
        self._params = (float(angle), float(zoom), float(tx), float(ty))

    def _record(self, img, extra: dict):
        if isinstance(img, MetaTensor) and get_track_meta():
            self.push_transform(img, extra_info=extra)
        return img

    def _move_points(self, d: dict, yx: np.ndarray, m_xy: np.ndarray) -> None:
        """Move the points by the ``(y, x)`` index matrix ``yx`` (MONAI's point transform), record ``m_xy``."""
        mover = ApplyTransformToPoints(dtype=torch.float64, affine=torch.as_tensor(yx), invert_affine=False)
        for pk in self.point_keys:
            if pk not in d or d[pk] is None:
                if not self.allow_missing_keys:
                    raise KeyError(f"point key {pk!r} not in the sample")
                continue
            pts = d[pk]
            # MONAI's point transform, in its (1, N, 2) (y, x) layout
            moved = monai_to_xy(mover(xy_to_monai(pts)))
            d[pk] = torch.as_tensor(moved, dtype=pts.dtype) if isinstance(pts, torch.Tensor) else moved
        compose_geometry(d, m_xy, self.geometry_key)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize()
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        if not self._do_transform:
            for k in keys:
                d[k] = self._record(d[k], {})
            return d
        angle, zoom, tx, ty = self._params
        h, w = d[keys[0]].shape[-2:]
        # MONAI's parameters act on the resampling grid (output -> input), hence the inverses:
        # content zoomed by `zoom` and shifted by (+tx*w, +ty*h).
        affine = Affine(
            rotate_params=angle,
            scale_params=(1.0 / zoom, 1.0 / zoom),
            translate_params=(-ty * h, -tx * w),
            mode=self.mode,
            padding_mode=self.padding_mode,
            image_only=False,
        )
        grid_affine = None
        for k in keys:
            img = d[k]
            t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(img))
            with affine.trace_transform(False):  # this transform records the step itself (one entry per image)
                out, grid_affine = affine(t.float() if not t.is_floating_point() else t)
            out = convert_to_dst_type(out, img, dtype=np.float32 if isinstance(img, np.ndarray) else out.dtype)[0]
            grid = np.asarray(grid_affine, dtype=np.float64)
            if isinstance(out, MetaTensor) and isinstance(img, MetaTensor):
                # the index affine of this step in the project's pixel convention, exactly as the other steps
                out.affine = torch.as_tensor(img.affine, dtype=torch.float64).clone()
                _update_affine(out, index_affine(monai_affine_to_xy(grid)))
            d[k] = self._record(out, {"grid_affine": grid.tolist()})
        grid = np.asarray(grid_affine, dtype=np.float64)
        self._move_points(d, np.linalg.inv(grid), monai_affine_to_xy(grid))
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        grid = None
        for k in self.key_iterator(d):
            if not isinstance(d[k], MetaTensor):
                raise TypeError(f"RandAffinePointsd.inverse needs MetaTensor images, got {type(d[k]).__name__}")
            op = self.pop_transform(d[k])
            if not op[TraceKeys.DO_TRANSFORM]:
                continue
            g = np.asarray(op[TraceKeys.EXTRA_INFO]["grid_affine"], dtype=np.float64)
            # g takes output to input indices; MONAI's Affine(affine=...) works in centred coordinates
            centre = np.eye(3)
            centre[:2, 2] = [(n - 1) / 2.0 for n in d[k].shape[-2:]]
            centred = np.linalg.inv(centre) @ g @ centre
            back = Affine(affine=torch.as_tensor(np.linalg.inv(centred)), mode=self.mode,
                          padding_mode=self.padding_mode, image_only=True)
            before = torch.as_tensor(d[k].affine, dtype=torch.float64).clone()
            with back.trace_transform(False):
                d[k] = back(d[k])
            d[k].affine = before
            _update_affine(d[k], _SWAP @ monai_affine_to_xy(g) @ _SWAP)
            grid = g
        if grid is not None:
            self._move_points(d, grid, np.linalg.inv(monai_affine_to_xy(grid)))
        return d


class RandMirrord(RandomizableTransform, MapTransform, InvertibleTransform):
    """Random left-right mirror of images and their landmarks; point rows (anatomical names) are kept, or
    reordered by ``point_order``.

    Args:
        keys: ``(C, H, W)`` image keys (all mirrored together).
        point_keys: ``(N, 2)`` (x, y) point arrays: ``x -> W - 1 - x``.
        prob: probability of the mirror.
        point_order: rows of the mirrored points (``None``: names kept, the lateral rule). An AP layout's
            :attr:`~lumbar_monai.anatomy.Layout.mirror_order` swaps each left corner with its right twin: the
            patient's sides change places on a mirrored AP image.
        facing_key: a ``"left"``/``"right"`` entry flipped with the image (left alone when absent).
        geometry_key: where the ``original -> current`` matrix is composed.

    Invertible on MetaTensor images (``Compose.inverse`` mirrors back image, points, facing and geometry).
    """

    def __init__(self, keys: KeysCollection = "image", point_keys: KeysCollection = ("points",), prob: float = 0.5,
                 facing_key: str = "facing", geometry_key: str = GEOMETRY_KEY,
                 allow_missing_keys: bool = False, point_order: Sequence[int] | None = None) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.point_keys = (point_keys,) if isinstance(point_keys, str) else tuple(point_keys)
        self.point_order = None if point_order is None else list(point_order)
        if self.point_order is not None and [self.point_order[i] for i in self.point_order] != list(
                range(len(self.point_order))):  # the mirror is its own inverse, and so must the reordering be
            raise ValueError(f"point_order must swap rows in pairs (be its own inverse), got {self.point_order}")
        self.facing_key = facing_key
        self.geometry_key = geometry_key

    def _mirror(self, d: dict, keys: list) -> dict:
        from ..facing import mirror_sample

        d = mirror_sample(d, keys, self.point_keys, self.facing_key, self.geometry_key)
        if self.point_order is not None:
            for k in self.point_keys:
                if d.get(k) is not None:
                    d[k] = d[k][self.point_order]
        for k in keys:
            if isinstance(d[k], MetaTensor):
                w = int(d[k].shape[-1])
                _update_affine(d[k], index_affine(np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])))
        return d

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        keys = list(self.key_iterator(d))
        if self._do_transform:
            d = self._mirror(d, keys)
        elif keys and self.geometry_key not in d:  # every sample carries the matrix, so that batches collate
            d[self.geometry_key] = np.eye(3)
        for k in keys:  # MetaTensors record the step (drawn or not), so that Compose.inverse can undo it
            if isinstance(d[k], MetaTensor) and get_track_meta():
                self.push_transform(d[k])
        return d

    def inverse(self, data: Mapping[Hashable, object]) -> dict:
        """Undo the mirror (its own inverse) on MetaTensor images that it recorded, with points, facing, geometry."""
        d = dict(data)
        keys = list(self.key_iterator(d))
        done = []
        for k in keys:
            if not isinstance(d[k], MetaTensor):
                raise TypeError(f"RandMirrord.inverse needs MetaTensor images, got {type(d[k]).__name__}")
            done.append(bool(self.pop_transform(d[k])[TraceKeys.DO_TRANSFORM]))
        return self._mirror(d, keys) if any(done) else d


def stage1_preprocessing(
    keys: KeysCollection = "image",
    point_keys: Sequence[str] = ("points",),
    size: int = 512,
    pad_method: str = "symmetric",
    blur_sigma: float = 1.0,
    clahe_clip: float = 0.01,
    clahe: bool = True,
    allow_missing_keys: bool = True,
    resample: str = "fit",
    track_meta: bool = True,
) -> list:
    """Section 3.2 pre-processing: zero-pad to square, resize to ``size``, scale to [0, 1], Gaussian blur, CLAHE.

    ``blur_sigma`` is in output pixels (*ours*: 1.0 at 512; scaled with ``size``); 0 disables the blur. The geometry
    steps record ``sample["geometry"]`` so that :func:`~lumbar_monai.transforms.geometry.to_original` maps
    predictions back. ``resample="fit"`` (default) resizes first and pads at network resolution
    (:class:`~lumbar_monai.transforms.resample.FitToSquared`: time and memory independent of the original's size);
    ``"pad_resize"`` is the former path (pad and anti-alias filter at the original resolution, then resize).
    Everything after the geometry runs at ``size``. ``track_meta`` (default) keeps the image a MetaTensor with its
    metadata, so that the geometry steps record themselves and ``Compose.inverse`` undoes them; ``False`` gives
    plain tensors (nothing to invert; the points still map back through ``sample["geometry"]``).
    """
    chain: list = [
        EnsureTyped(keys, data_type="tensor", dtype=torch.float32, track_meta=track_meta, allow_missing_keys=True)]
    if resample == "fit":
        chain.append(FitToSquared(keys, point_keys=point_keys, size=size, method=pad_method,
                                  allow_missing_keys=allow_missing_keys))
    elif resample == "pad_resize":
        chain += [
            PadToSquared(keys, point_keys=point_keys, method=pad_method, allow_missing_keys=allow_missing_keys),
            ResizeSquared(keys, point_keys=point_keys, size=size, allow_missing_keys=allow_missing_keys),
        ]
    else:
        raise ValueError(f"resample must be 'fit' or 'pad_resize', got {resample!r}")
    chain.append(ScaleIntensityd(keys, minv=0.0, maxv=1.0, allow_missing_keys=True))
    sigma = blur_sigma * size / 512.0
    if sigma > 0:
        # MONAI's GaussianSmooth kernel and zero border, filtered by scipy in one thread (transforms/blur.py)
        chain.append(GaussianBlurd(keys, sigma=sigma, allow_missing_keys=True))
    if clahe:
        chain.append(CLAHEd(keys, clip_limit=clahe_clip, allow_missing_keys=True))
    return chain


def stage1_input(chain, image, device: str | torch.device | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``chain`` (the stage-1 pre-processing ``Compose``) on one ``(H, W)`` image: ``((1, S, S) float32 tensor,
    original -> input 3x3 geometry)``; a plain function so that worker processes need no predictor. The tensor is
    plain (the MetaTensor's record stays in the chain's output, not in the network's input)."""
    t = torch.as_tensor(image, dtype=torch.float32, device=device)
    sample = chain({"image": t[None]})
    x = sample["image"]
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return x.to(torch.float32), np.asarray(sample["geometry"], np.float64)


def stage1_augmentation(
    keys: KeysCollection = "image",
    point_keys: Sequence[str] = ("points",),
    cutout: str = "rsc",
    cutout_ratio: float = 0.6,
    cutout_prob: float = 0.5,
    affine_prob: float = 0.5,
    intensity_prob: float = 0.5,
    layout_key: str = "layout",
    mirror_prob: float = 0.0,
) -> list:
    """Section 3.2 training augmentation: brightness/contrast, rotation/zoom/translation, then cutout.

    ``mirror_prob`` > 0 starts the chain with :class:`RandMirrord` (names kept; off by default, see the module
    docstring).

    ``cutout`` is ``"none"``, ``"conventional"`` or ``"rsc"`` (Random Spine Cutout); see
    :mod:`lumbar_monai.transforms.cutout`.
    """
    chain: list = [RandMirrord(keys, point_keys=point_keys, prob=mirror_prob)] if mirror_prob > 0 else []
    chain += [
        RandBrightnessContrastd(keys, prob=intensity_prob),
        RandAffinePointsd(keys, point_keys=point_keys, prob=affine_prob),
    ]
    cut = make_cutout(cutout, keys=keys, point_key=point_keys[0], ratio=cutout_ratio, prob=cutout_prob,
                      layout_key=layout_key)
    if cut is not None:
        chain.append(cut)
    return chain


def stage1_transforms(
    train: bool,
    size: int = 512,
    heatmap_size: int | None = None,
    layout_key: str = "layout",
    cutout: str = "rsc",
    cutout_ratio: float = 0.6,
    preprocessing: Mapping | None = None,
    augmentation: Mapping | None = None,
    with_target: bool = True,
) -> Compose:
    """The whole stage-1 chain: pre-processing, augmentation when ``train``, and the centre-map target.

    Args:
        train: add the random augmentations.
        size: network input side (512 default; tests use 128).
        heatmap_size: target side (default ``size // 8``).
        with_target: append :class:`~lumbar_monai.codecs.centre.CentreHeatmapd` (needs ``"points"``).
    """
    chain = stage1_preprocessing(size=size, **dict(preprocessing or {}))
    if train:
        chain += stage1_augmentation(cutout=cutout, cutout_ratio=cutout_ratio, layout_key=layout_key,
                                     **dict(augmentation or {}))
    if with_target:
        chain.append(CentreHeatmapd(input_size=size, heatmap_size=heatmap_size or size // 8, layout_key=layout_key))
    return Compose(chain)


RandAffinePointsD = RandAffinePointsDict = RandAffinePointsd
RandMirrorD = RandMirrorDict = RandMirrord
