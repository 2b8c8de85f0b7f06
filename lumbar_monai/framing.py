"""Stage-1 framing: which square of the radiograph Pose-Net sees (issue 15, item 2).

Padding a tall AP radiograph (AASCE: about 2.5:1) to a square and resizing it to the network input spends most of
the input on padding and leaves L1-L5 a small part of it. Framing replaces the fixed pad-and-resize by a *window*, a
square of the original image (any centre, side, rotation, aspect) resampled to the ``size`` x ``size`` input:

* pass 1, the coarse region step: the whole image (the square pad-to-square would make, :func:`whole_image_window`);
* pass 2 (and further passes): a window around the centres of the pass before, ``factor`` x the L1-L5 span on a
  side (:func:`lumbar_window`), so that the lumbar region fills the input whatever the field of view, image aspect
  or pixel size. ``factor`` 2.0 (*ours*) leaves two centre spacings beyond L1 and L5.
* with a level network (:class:`LevelPass`), pass 1 is that network's on the whole image at its own input size and
  every window pass's chain is renamed by the level it names (:mod:`lumbar_monai.levels`).

Training draws both kinds with random framing (:class:`RandFramed`): whole-image framings with zoom, shift, rotation
and aspect change; lumbar windows with side, centre, rotation and aspect jitter (what a coarse pass gets wrong); and
crops of the field of view (zero outside a random box that keeps L1-L5), so that a model trained on one
acquisition's framing holds on another.

A window is a crop -> image matrix in the convention of :func:`~lumbar_monai.crops.crop_affines`; the stage-1
``geometry`` (original -> input) is its inverse, so centres decode to original pixels through
:meth:`~lumbar_monai.codecs.centre.CentreHeatmapCodec.decode` exactly as with pad-and-resize.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, GaussianSmooth, MapTransform, RandomizableTransform, ScaleIntensity
from scipy import ndimage

from .anatomy import Layout, get_layout
from .codecs.gaussian import decode_peaks
from .counting import CountPass
from .crops import crop_affines, resample_crops
from .levels import DEFAULT_LEVEL_MARGIN, anchor_chain, centre_spacing
from .transforms.geometry import GEOMETRY_KEY, transform_points
from .transforms.intensity import CLAHE, minmax_scale

__all__ = [
    "DEFAULT_FACTOR",
    "window_affine",
    "whole_image_window",
    "lumbar_window",
    "resample_window",
    "window_preprocessing",
    "LevelPass",
    "detect_centres_framed",
    "RandFramed",
]

#: window side / L1-L5 centre span (*ours*).
DEFAULT_FACTOR = 2.0


def window_affine(centre: Sequence[float], side: float, size: int, rotation: float = 0.0,
                  aspect: float = 1.0) -> np.ndarray:
    """``(3, 3)`` input pixel -> image pixel matrix of a window centred on ``centre`` covering ``side`` image pixels.

    ``rotation`` in radians; ``aspect`` stretches the window's x side by ``sqrt(aspect)`` and shrinks its y side by
    the same factor about the centre (area kept).
    """
    a = crop_affines(np.asarray(centre, dtype=np.float64)[None], float(side), int(size), rotation=[rotation])[0]
    if aspect != 1.0:
        h = (size - 1) / 2.0
        sx, sy = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
        a = a @ np.array([[sx, 0.0, h * (1 - sx)], [0.0, sy, h * (1 - sy)], [0.0, 0.0, 1.0]])
    return a


def whole_image_window(shape: Sequence[int]) -> tuple[np.ndarray, float]:
    """``(centre, side)`` of the square that pad-to-square makes of an ``(H, W)`` image."""
    h, w = int(shape[-2]), int(shape[-1])
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(h, w))


def lumbar_window(centres, factor: float = DEFAULT_FACTOR) -> tuple[np.ndarray, float]:
    """``(centre, side)`` of the window around ``(V, 2)`` vertebra centres: centred on their mean, ``factor`` x
    ``(V - 1)`` x the centre spacing on a side. The spacing is the median over all pairs ``i < j`` of
    ``|c_j - c_i| / (j - i)``: the long baselines make it precise on a coarse pass, the median robust to one
    misplaced centre."""
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    keep = np.isfinite(c).all(1)
    if keep.sum() < 2:
        raise ValueError("a lumbar window needs at least two finite centres")
    return c[keep].mean(0), factor * centre_spacing(c) * (len(c) - 1)


def _pixel_size(affine: np.ndarray) -> float:
    """Image pixels per input pixel (the longer of the two window axes)."""
    return float(max(np.hypot(affine[0, 0], affine[1, 0]), np.hypot(affine[0, 1], affine[1, 1])))


def resample_window(image, affine: np.ndarray, size: int) -> torch.Tensor:
    """``(1, size, size)`` float32 window of an ``(H, W)`` / ``(1, H, W)`` image (zeros outside the image).

    Shrinking is anti-aliased with a Gaussian of sigma ``(k - 1) / 2`` image pixels, ``k`` image pixels per input
    pixel (MONAI's / scikit-image's rule), applied only to the part of the image the window covers.
    """
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    img = img[0] if img.ndim == 3 else img
    h, w = img.shape
    sigma = max((_pixel_size(affine) - 1.0) / 2.0, 0.0)
    corners = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0], [-0.5, size - 0.5, 1.0],
                        [size - 0.5, size - 0.5, 1.0]]) @ affine.T
    pad = 4.0 * sigma + 2.0
    x0, y0 = (max(int(np.floor(corners[:, i].min() - pad)), 0) for i in (0, 1))
    x1 = min(int(np.ceil(corners[:, 0].max() + pad)) + 1, w)
    y1 = min(int(np.ceil(corners[:, 1].max() + pad)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return torch.zeros((1, size, size), dtype=torch.float32)
    sub = np.asarray(img[y0:y1, x0:x1], dtype=np.float32)
    if sigma > 0:
        sub = ndimage.gaussian_filter(sub, sigma=sigma, mode="nearest", truncate=4.0)
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    return resample_crops(sub, (shift @ affine)[None], size)[0]


def window_preprocessing(size: int, blur_sigma: float = 1.0, clahe: bool = True, clahe_clip: float = 0.01,
                         **_: Any) -> Compose:
    """Section 3.2's intensity steps on a ``(1, size, size)`` window: scale to [0, 1], blur (``blur_sigma`` at 512,
    scaled with ``size``), CLAHE. Extra keys (the pad-and-resize chain's ``pad_method``) are ignored."""
    chain: list = [ScaleIntensity(minv=0.0, maxv=1.0)]
    sigma = blur_sigma * size / 512.0
    if sigma > 0:
        chain.append(GaussianSmooth(sigma=sigma))
    if clahe:
        chain.append(CLAHE(clip_limit=clahe_clip))
    return Compose(chain)


@dataclass
class LevelPass:
    """The level network's first pass (:mod:`lumbar_monai.levels`) of :func:`detect_centres_framed`.

    Attributes:
        net: a Pose-Net trained on whole-image framings (its first ``V`` channels are L1-L5).
        codec: its centre codec (``input_size``: the whole-image input side, e.g. 384).
        above_channels: the *window* network's output channels of the vertebrae directly over L1, top to bottom
            (e.g. T11, T12 of its auxiliary maps); empty: the level pass only frames, nothing is renamed.
        margin: :func:`~lumbar_monai.levels.anchor_chain`'s margin (centre spacings).
        agreement: its ``agreement`` (``None``: not checked, as round 8 was measured).
    """

    net: torch.nn.Module
    codec: Any
    above_channels: tuple[int, ...] = ()
    margin: float = DEFAULT_LEVEL_MARGIN
    agreement: float | None = None


def _run_pass(net: torch.nn.Module, img: np.ndarray, codec, centre, side: float, preprocessing, repair,
              device) -> tuple[dict[str, Any], torch.Tensor, np.ndarray]:
    """One framing: ``(post-processed centres, all output maps (C, h, w), window matrix)``."""
    from .postprocess import postprocess_centres

    size = int(codec.input_size)
    a = window_affine(centre, side, size)
    prep = window_preprocessing(size, **dict(preprocessing or {}))
    x = torch.as_tensor(prep(resample_window(img, a, size)), dtype=torch.float32)[None].to(device)
    maps = net(x)
    maps = (maps[0] if isinstance(maps, (tuple, list)) else maps)[0].detach().float().cpu()
    do_repair = repair is not False  # None: Algorithm 1 with its defaults
    # channels beyond the layout's are auxiliary training targets
    out = postprocess_centres(maps[: codec.num_channels], codec, geometry=np.linalg.inv(a), repair=do_repair,
                              **(dict(repair) if do_repair and isinstance(repair, Mapping) else {}))
    return out, maps, a


def _decode_channels(maps: torch.Tensor, channels: Sequence[int], codec, a: np.ndarray):
    """``((K, 2) image pixels, (K,) peak heights)`` of the given output channels of one framing."""
    xy, conf = decode_peaks(maps[list(channels)].float(), refine=codec.refine)
    xy_in = codec.heatmap_to_input(xy.double()).numpy()
    return xy_in @ a[:2, :2].T + a[:2, 2], conf.numpy()


@torch.inference_mode()
def detect_centres_framed(
    net: torch.nn.Module,
    image: np.ndarray,
    codec,
    passes: int = 2,
    factor: float = DEFAULT_FACTOR,
    preprocessing: Mapping[str, Any] | None = None,
    repair: Mapping[str, Any] | bool | None = None,
    device: torch.device | str = "cpu",
    first_window: tuple[Sequence[float], float] | None = None,
    level: LevelPass | CountPass | None = None,
) -> dict[str, Any]:
    """Pose-Net centres of an ``(H, W)`` image through ``passes`` framings (whole image, then lumbar windows).

    Returns ``{"original": (V, 2), "confidence": (V,), "centre_repaired": bool, "windows": [(centre, side)],
    "level_shift": int, "level_check": {"source", "status", "shift"} | None, "second_peak": float}``; Algorithm 1
    (``repair``: its kwargs, or ``False``) runs on the last pass only; ``second_peak`` is the largest
    :func:`~lumbar_monai.postprocess.second_peak_ratio` of the last pass's maps.
    ``first_window`` (``(centre, side)`` in image pixels) replaces the whole image as the first framing: e.g. the
    window around the ground-truth centres, which separates what framing gets wrong from what the network gets
    wrong (``benchmarks/stage1_failures.py``). ``level``: the first pass is the level network's on the whole image
    and every window pass's chain is renamed by the level it names (:func:`~lumbar_monai.levels.anchor_chain`),
    so that the next window frames the renamed chain (``level_shift``: the last pass's shift, positive: down);
    ignored with ``first_window``. A :class:`~lumbar_monai.counting.CountPass` instead counts the vertebrae on the
    whole image first, and its L1-L5 renames every pass (none when it finds no regular chain). ``level_check``
    (``None`` without ``level``) says what the reference made of the last pass's names
    (:data:`~lumbar_monai.levels.LEVEL_STATUSES`; ``"not_counted"``: no reference).
    """
    n = max(int(passes), 1)
    img = minmax_scale(np.asarray(image)).astype(np.float32)
    centre, side = whole_image_window(img.shape)
    full = side
    if first_window is not None:
        centre, side = np.asarray(first_window[0], dtype=np.float64), float(first_window[1])
        level = None
    windows, reference, shift, status = [], None, 0, "not_counted"
    counted = isinstance(level, CountPass)
    if counted:  # the counter's reference comes first; every pass, the whole image's included, is renamed by it
        reference = level.reference(img, device=device)
    out: dict[str, Any] = {}
    for p in range(n):
        windows.append((np.asarray(centre).tolist(), float(side)))
        last = p == n - 1
        use_level = level is not None and not counted and p == 0
        out, maps, a = _run_pass(level.net if use_level else net, img, level.codec if use_level else codec, centre,
                                 side, preprocessing, repair if last else False, device)
        original, confidence = out["original"].numpy(), out["confidence"].numpy()
        if use_level:
            reference = original
        elif reference is not None and (level.above_channels or counted):  # every window pass: the next one frames
            # the renamed chain (without vertebrae above L1 a count can still move the chain down)
            above_xy, above_conf = (_decode_channels(maps, level.above_channels, codec, a) if level.above_channels
                                    else (np.zeros((0, 2)), np.zeros(0)))
            original, confidence, shift, status = anchor_chain(
                reference, np.concatenate([above_xy, original]), np.concatenate([above_conf, confidence]),
                above=len(level.above_channels), margin=level.margin, agreement=level.agreement)
        if not last:
            centre, side = lumbar_window(original, factor)
            side = float(np.clip(side, 0.05 * full, 1.5 * full))
    check = None
    if counted or (level is not None and level.above_channels):  # a reference that can rename the chain
        check = {"source": "vertebra_counter" if counted else "level_network", "status": status, "shift": int(shift)}
    return {"original": original, "confidence": confidence, "centre_repaired": bool(out["centre_repaired"]),
            "windows": windows, "level_shift": int(shift), "level_check": check,
            "second_peak": float(out["second_peak"].max())}


class RandFramed(RandomizableTransform, MapTransform):
    """Random stage-1 framing of a training sample (see the module docstring): image -> ``(1, size, size)`` window,
    points -> input pixels, ``geometry`` -> the window's original -> input matrix.

    A sample's ``framing_key`` entry (``"whole"`` / ``"lumbar"``) forces the kind; with ``jitter=False`` the
    framing is the plain one (validation).

    Args:
        keys: image key (``(1, H, W)`` or ``(H, W)``, intensities in [0, 1]; zeros fill outside the image).
        point_key: ``(N, 2)`` (x, y) landmarks in image pixels.
        layout: their layout (centres are the means of each vertebra's corners).
        size: network input side.
        factor: lumbar window side / L1-L5 span.
        whole_prob: probability of a whole-image framing.
        whole_zoom: side factor range of whole-image framings.
        whole_shift: max centre shift of whole-image framings (fraction of the side).
        side_range: side factor range of lumbar windows.
        shift: max centre shift of lumbar windows (fraction of the side).
        rotate: max rotation (degrees).
        aspect: aspect factor range.
        fov_crop_prob: probability of zeroing outside a random box that keeps every landmark.
        below_cut_prob: probability of zeroing the image below a random row ``below_cut`` centre spacings under the
            last centre (L5): a radiograph that ends there, sacrum or not (*ours*; 0 by default), so that the level
            must be named from the anatomy above as well as below L5.
        below_cut: range of that row's distance under L5's centre, in centre spacings.
        jitter: draw the random parts (``False``: plain framing).
        aux_keys: further ``(K, 2)`` point arrays moved with the window (e.g. auxiliary centres).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        point_key: str = "points",
        layout: Layout | str = "ap",
        size: int = 256,
        factor: float = DEFAULT_FACTOR,
        whole_prob: float = 0.3,
        whole_zoom: tuple[float, float] = (0.85, 1.3),
        whole_shift: float = 0.1,
        side_range: tuple[float, float] = (0.75, 1.3),
        shift: float = 0.12,
        rotate: float = 10.0,
        aspect: tuple[float, float] = (0.85, 1.15),
        fov_crop_prob: float = 0.25,
        below_cut_prob: float = 0.0,
        below_cut: tuple[float, float] = (0.6, 3.0),
        jitter: bool = True,
        framing_key: str = "framing",
        geometry_key: str = GEOMETRY_KEY,
        aux_keys: Sequence[str] = (),
    ) -> None:
        MapTransform.__init__(self, keys)
        self.aux_keys = tuple(aux_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.point_key = point_key
        self.layout = get_layout(layout)
        self.size = int(size)
        self.factor = float(factor)
        self.whole_prob = float(whole_prob)
        self.whole_zoom = tuple(float(v) for v in whole_zoom)
        self.whole_shift = float(whole_shift)
        self.side_range = tuple(float(v) for v in side_range)
        self.shift = float(shift)
        self.rotate = float(rotate)
        self.aspect = tuple(float(v) for v in aspect)
        self.fov_crop_prob = float(fov_crop_prob)
        self.below_cut_prob = float(below_cut_prob)
        self.below_cut = tuple(float(v) for v in below_cut)
        self.jitter = bool(jitter)
        self.framing_key = framing_key
        self.geometry_key = geometry_key

    def _window(self, shape, pts: np.ndarray, kind: str) -> tuple[np.ndarray, float, float, float]:
        r = self.R
        if kind == "whole":
            centre, side = whole_image_window(shape)
            if self.jitter:
                side *= r.uniform(*self.whole_zoom)
                centre = centre + r.uniform(-self.whole_shift, self.whole_shift, 2) * side
        else:
            centre, side = lumbar_window(self.layout.centres(pts), self.factor)
            if self.jitter:
                side *= r.uniform(*self.side_range)
                centre = centre + r.uniform(-self.shift, self.shift, 2) * side
        if not self.jitter:
            return centre, side, 0.0, 1.0
        return centre, side, np.deg2rad(r.uniform(-self.rotate, self.rotate)), r.uniform(*self.aspect)

    def _image_coords(self, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(x, y)`` of every window pixel, each ``(size, size)``: where the masks below are drawn."""
        u = np.arange(self.size, dtype=np.float64)
        xx, yy = np.meshgrid(u, u)
        return (affine[0, 0] * xx + affine[0, 1] * yy + affine[0, 2],
                affine[1, 0] * xx + affine[1, 1] * yy + affine[1, 2])

    def _fov_mask(self, pts: np.ndarray, affine: np.ndarray) -> torch.Tensor:
        """``(1, size, size)`` mask: 1 inside a random box (image pixels) that holds every landmark."""
        lo, hi = np.nanmin(pts, 0), np.nanmax(pts, 0)
        ext = hi - lo
        box_lo = lo - self.R.uniform(0.05, 1.0, 2) * ext
        box_hi = hi + self.R.uniform(0.05, 1.0, 2) * ext
        x, y = self._image_coords(affine)
        inside = (x >= box_lo[0]) & (x <= box_hi[0]) & (y >= box_lo[1]) & (y <= box_hi[1])
        return torch.as_tensor(inside[None], dtype=torch.float32)

    def _below_mask(self, pts: np.ndarray, affine: np.ndarray) -> torch.Tensor:
        """``(1, size, size)`` mask: 1 above a random image row ``below_cut`` centre spacings under the last centre."""
        c = self.layout.centres(pts)
        row = c[-1, 1] + self.R.uniform(*self.below_cut) * centre_spacing(c)
        _, y = self._image_coords(affine)
        return torch.as_tensor((y <= row)[None], dtype=torch.float32)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        key = self.keys[0]
        img = d[key]
        pts = np.asarray(d[self.point_key], dtype=np.float64)
        kind = d.get(self.framing_key)
        if kind not in ("whole", "lumbar"):
            kind = "whole" if self.R.random_sample() < self.whole_prob else "lumbar"
        centre, side, rot, aspect = self._window(np.shape(img), pts, kind)
        a = window_affine(centre, side, self.size, rotation=rot, aspect=aspect)
        out = resample_window(img, a, self.size)
        if self.jitter and self.R.random_sample() < self.fov_crop_prob:
            out = out * self._fov_mask(pts, a)
        if self.jitter and self.below_cut_prob > 0 and self.R.random_sample() < self.below_cut_prob:
            out = out * self._below_mask(pts, a)
        geometry = np.linalg.inv(a)
        d[key] = out
        d[self.point_key] = transform_points(pts, geometry)
        for k in self.aux_keys:
            d[k] = transform_points(np.asarray(d[k], dtype=np.float64), geometry)
        d[self.geometry_key] = geometry
        d[self.framing_key] = kind
        return d
