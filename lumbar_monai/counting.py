"""Vertebra counting: name L1-L5 by counting the vertebrae from T1 down (issue 15; *ours*).

The AASCE annotation labels 17 vertebrae, T1 to L5, counted from the top of the spine; its L5 is the 17th vertebra,
whatever the lumbosacral junction looks like. A window Pose-Net judges the level from local cues (the sacrum below,
T12 and the last ribs above) and names the whole chain a level off where the junction is transitional or out of
view (the remaining AASCE validation failures). Naming each vertebra is the hard, local part; *finding* every
vertebra is easy. The *counter* is a small U-Net (``monai.networks.nets.BasicUNet``) on the whole image, letterboxed
to :data:`COUNT_INPUT` (aspect kept, zero padding), with two heatmaps: a class-agnostic one with a Gaussian at every
vertebra centre from T1 down, and one of T1 alone (the first rib-bearing vertebra: where the count starts; a film
often shows part of C7 above it, which the first map may also find). The peaks of the first map, from the one at
T1 down, are counted: the 13th to 17th are L1-L5 (:func:`counted_chain`). The chain is a *reference* for :func:`lumbar_monai.levels.anchor_chain`, which renames the
window Pose-Net's chain by whole levels only where the count disagrees by more than a margin; the window passes stay
the localisers (:class:`CountPass`, used by :func:`lumbar_monai.framing.detect_centres_framed`).

Contrast: the counter reads intensities scaled between their 1st and 99th percentiles, which leaves a film's tone
curve (gamma) in; a counter entry with a ``median_target`` (:func:`standardise_median`, *ours*) also raises each
image to the power that brings its median to the training images' median, so that a film processed with another
tone curve is counted as the training films were (README "Contrast of the count").

A count is only as good as its top: an image that does not show T1 (a lumbar-centred film), or shows it cut off,
gives no reference, and the window's names stand. :func:`counted_chain` returns ``None`` unless a T1 is found and
the peaks from it form one regular chain long enough to reach L5 (consecutive gaps within :data:`GAP_RANGE` of
each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .levels import DEFAULT_LEVEL_MARGIN

__all__ = [
    "COUNT_INPUT",
    "COUNT_FEATURES",
    "DEFAULT_AGREEMENT",
    "GAP_RANGE",
    "build_counter_net",
    "check_input_size",
    "check_median_target",
    "letterbox",
    "letterbox_box",
    "standardise_median",
    "median_target",
    "median_of_parts",
    "vertebra_peaks",
    "counted_chain",
    "t1_peak",
    "chain_from_maps",
    "count_reference",
    "CountPass",
]

#: counter input (height, width) by default: a 2.4:1 box, the shape of a whole-spine film (AASCE: 2.7:1 median);
#: a counter trained on another (``counter train --input-size``) carries its own in the checkpoint.
COUNT_INPUT = (384, 160)
#: BasicUNet features of the counter (0.49 M parameters).
COUNT_FEATURES = (8, 16, 32, 64, 128, 8)
#: the window's renamed chain must lie within this many centre spacings of the count (*ours*): half a level.
DEFAULT_AGREEMENT = 0.5
#: a chain is regular when every gap between consecutive peaks lies within this range of the gap above it (the
#: vertebrae grow slowly from T1 to L5; a missed vertebra doubles a gap, a spurious one halves it).
GAP_RANGE = (0.65, 1.55)


def check_input_size(size: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a counter input, checked: two positive multiples of 16 (the U-Net halves it four
    times); ``ValueError`` with one line otherwise."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"a counter input size is two integers (height, width), got {size!r}") from None
    if h <= 0 or w <= 0 or h % 16 or w % 16:
        raise ValueError(f"a counter input size needs two positive multiples of 16, got {h}x{w}")
    return h, w


def check_median_target(value: object) -> float | None:
    """A counter's ``median_target`` (:func:`letterbox`): ``None`` or a number strictly between 0 and 1;
    ``ValueError`` with one line otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"the counter's median_target must be a number between 0 and 1, got {value!r}")
    return float(value)


def letterbox_box(shape: Sequence[int], size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """``(scale, height, width, x0, y0)`` of an ``(H, W)`` image's part of the :func:`letterbox` canvas."""
    h, w = int(shape[-2]), int(shape[-1])
    scale = min(size[0] / h, size[1] / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return scale, nh, nw, (size[1] - nw) // 2, (size[0] - nh) // 2


def build_counter_net(features: Sequence[int] = COUNT_FEATURES) -> torch.nn.Module:
    """The counter: ``BasicUNet`` (2-D, one input channel; two output channels: the logits of every vertebra
    centre and of T1's), kwargs kept for checkpoints."""
    from monai.networks.nets import BasicUNet

    kwargs = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "features": [int(f) for f in features]}
    net = BasicUNet(**kwargs)
    net.init_kwargs = dict(kwargs)
    return net


def standardise_median(x: torch.Tensor, target: float, powers: tuple[float, float] = (0.4, 2.5)) -> torch.Tensor:
    """``x`` (intensities in [0, 1]) raised to the power ``g`` that brings its median to ``target``:
    ``g = log(target) / log(median)``, clipped to ``powers`` (a tone curve undone, e.g. a film shown with gamma 0.6;
    unchanged when the median is 0 or 1). *Ours*; histogram equalisation would also remove the tone curve but
    flattens the film's own contrast, which the counter was trained on."""
    med = float(x.median())
    if not 0.0 < med < 1.0:
        return x
    g = float(np.clip(np.log(target) / np.log(med), *powers))
    return x.clamp(0.0, 1.0) ** g


def letterbox(image: np.ndarray, size: tuple[int, int] = COUNT_INPUT,
              median_target: float | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """``(input (H, W) float32, scale, offset (x, y))`` of an ``(H0, W0)`` image: resampled (antialiased) with its
    aspect kept to fit ``size``, centred on a zero canvas, intensities mapped from their 1st-99th percentiles to
    [0, 1] (and with ``median_target``, :func:`standardise_median` of the image part). An image pixel ``p`` lands at
    ``p * scale + offset`` (pixel centres; ``x`` first)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"letterbox needs an (H, W) image, got shape {img.shape}")
    scale, nh, nw, ox, oy = letterbox_box(img.shape, size)
    x = torch.nn.functional.interpolate(torch.as_tensor(np.ascontiguousarray(img))[None, None], size=(nh, nw),
                                        mode="bilinear", align_corners=False, antialias=True)[0, 0]
    lo, hi = torch.quantile(x.flatten()[:: max(1, x.numel() // 200_000)], torch.tensor([0.01, 0.99]))
    x = ((x - lo) / torch.clamp(hi - lo, min=1e-6)).clamp(0.0, 1.0)
    if median_target is not None:
        x = standardise_median(x, median_target)
    canvas = np.zeros(size, dtype=np.float32)
    canvas[oy:oy + nh, ox:ox + nw] = x.numpy()
    # resampling maps pixel centres, p -> (p + 0.5) * n / n0 - 0.5 = p * scale + 0.5 * (scale - 1) with n / n0 =
    # scale up to the rounding of n (under half an input pixel over the whole image)
    return canvas, float(scale), np.array([ox, oy], dtype=np.float64) + 0.5 * (scale - 1.0)


def vertebra_peaks(heatmap: torch.Tensor | np.ndarray, threshold: float = 0.5,
                   min_distance: float = 8.0) -> np.ndarray:
    """``(K, 3)`` rows ``(x, y, height)`` of the local maxima of an ``(H, W)`` probability map above ``threshold``,
    the stronger of any two closer than ``min_distance`` pixels kept, sorted top to bottom."""
    h = torch.as_tensor(heatmap, dtype=torch.float32)
    m = torch.nn.functional.max_pool2d(h[None, None], 5, 1, 2)[0, 0]
    yx = ((h == m) & (h > float(threshold))).nonzero().numpy()
    height = h[yx[:, 0], yx[:, 1]].numpy() if len(yx) else np.zeros(0, np.float32)
    kept: list[tuple[float, float, float]] = []
    for i in np.argsort(-height, kind="stable"):
        x, y = float(yx[i, 1]), float(yx[i, 0])
        if all((x - kx) ** 2 + (y - ky) ** 2 > float(min_distance) ** 2 for kx, ky, _ in kept):
            kept.append((x, y, float(height[i])))
    out = np.array(kept, dtype=np.float64).reshape(-1, 3)
    return out[np.argsort(out[:, 1], kind="stable")]


def counted_chain(peaks: np.ndarray, t1: Sequence[float] | None, first: int = 12, count: int = 5,
                  gap_range: tuple[float, float] = GAP_RANGE) -> np.ndarray | None:
    """``(count, 2)`` centres of vertebrae ``first .. first + count - 1`` counted down from the peak at ``t1``
    (0: T1; the defaults give L1-L5), or ``None``: no ``t1``, no peak within half a gap of it, or the peaks from it
    down to the last vertebra asked for do not form one regular chain."""
    p = np.asarray(peaks, dtype=np.float64).reshape(-1, 3)[:, :2]
    if t1 is None or len(p) < 2:
        return None
    d = np.linalg.norm(p - np.asarray(t1, dtype=np.float64).reshape(1, 2), axis=1)
    start = int(np.argmin(d))
    need = start + int(first) + int(count)
    if len(p) < need:
        return None
    gaps = np.linalg.norm(np.diff(p[start:need], axis=0), axis=1)
    if d[start] > 0.5 * gaps[0] or gaps.min() <= 0:
        return None
    ratios = gaps[1:] / gaps[:-1]
    if ratios.min() < gap_range[0] or ratios.max() > gap_range[1]:
        return None
    return p[start + int(first):need].copy()


def t1_peak(prob: torch.Tensor | np.ndarray, threshold: float = 0.3) -> np.ndarray | None:
    """``(x, y)`` of the maximum of a T1 probability map, or ``None`` when it is below ``threshold``."""
    h = torch.as_tensor(prob, dtype=torch.float32)
    k = int(torch.argmax(h))
    y, x = divmod(k, h.shape[-1])
    return None if float(h.flatten()[k]) < float(threshold) else np.array([float(x), float(y)])


def chain_from_maps(prob: torch.Tensor | np.ndarray, threshold: float = 0.5, min_distance: float = 8.0,
                    first: int = 12, count: int = 5) -> np.ndarray | None:
    """:func:`counted_chain` of the counter's two probability maps ``(2, H, W)`` (input pixels)."""
    prob = torch.as_tensor(prob, dtype=torch.float32)
    return counted_chain(vertebra_peaks(prob[0], threshold, min_distance), t1_peak(prob[1]), first, count)


@torch.inference_mode()
def count_reference(net: torch.nn.Module, image: np.ndarray, threshold: float = 0.5, min_distance: float = 8.0,
                    size: tuple[int, int] = COUNT_INPUT, device: torch.device | str = "cpu",
                    first: int = 12, count: int = 5, mirror_check: bool = False,
                    median_target: float | None = None) -> np.ndarray | None:
    """The counted L1-L5 chain of an ``(H, W)`` image in its pixels (:func:`counted_chain`), or ``None``.
    ``median_target``: :func:`letterbox`'s.

    ``mirror_check``: count the image's left-right mirror too (one batch of two; the counter has no left or right)
    and keep the count only when both exist and agree within half a spacing: a count that a mirror changes is a
    count the network was unsure of.
    """
    x, scale, offset = letterbox(image, size, median_target)
    t = torch.as_tensor(x)[None, None]
    views = torch.cat([t, t.flip(-1)]) if mirror_check else t
    prob = torch.sigmoid(net(views.to(device))).float().cpu()
    chain = chain_from_maps(prob[0], threshold, min_distance, first, count)
    if chain is not None and mirror_check:
        other = chain_from_maps(prob[1].flip(-1), threshold, min_distance, first, count)  # maps flipped back
        if other is None:
            return None
        spacing = float(np.median(np.linalg.norm(np.diff(chain, axis=0), axis=1)))
        if float(np.median(np.linalg.norm(chain - other, axis=1))) >= 0.5 * spacing:
            return None
    return None if chain is None else (chain - offset) / scale


@dataclass
class CountPass:
    """The counter's reference for :func:`~lumbar_monai.framing.detect_centres_framed`.

    Attributes:
        net: the counter (:func:`build_counter_net`).
        above_channels: the window Pose-Net's output channels of the vertebrae directly over L1, top to bottom
            (e.g. T11, T12 of its auxiliary maps), so that its chain can be renamed upwards.
        margin: :func:`~lumbar_monai.levels.anchor_chain`'s margin (centre spacings).
        agreement: its ``agreement``: the renamed chain must lie within this many centre spacings of the count
            (median distance), or nothing is renamed.
        threshold: peak height (probability) a vertebra needs.
        min_distance: closest two peaks (counter input pixels).
        mirror_check: keep only counts that the image's mirror repeats (:func:`count_reference`).
        input_size: the letterbox ``(height, width)`` the counter was trained on (multiples of 16).
        median_target: :func:`letterbox`'s (``None``: off, as the counter was trained).
    """

    net: torch.nn.Module
    above_channels: tuple[int, ...] = ()
    margin: float = DEFAULT_LEVEL_MARGIN
    agreement: float = DEFAULT_AGREEMENT
    threshold: float = 0.5
    min_distance: float = 8.0
    mirror_check: bool = False
    input_size: tuple[int, int] = COUNT_INPUT
    median_target: float | None = None

    def reference(self, image: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray | None:
        """The counted L1-L5 of ``image`` (``None``: no regular chain, the window's names stand)."""
        return count_reference(self.net, image, self.threshold, self.min_distance, size=tuple(self.input_size),
                               device=device, mirror_check=self.mirror_check, median_target=self.median_target)


def median_of_parts(canvases: Iterable[tuple[np.ndarray, Sequence[int]]]) -> float:
    """The median over letterbox canvases of the median of each one's image part (``box``: ``(x0, y0, width,
    height)``)."""
    meds = []
    for canvas, box in canvases:
        x0, y0, w, h = (int(v) for v in box)
        meds.append(float(np.median(np.asarray(canvas)[y0:y0 + h, x0:x0 + w])))
    return float(np.median(meds))


def median_target(images: Sequence[np.ndarray], size: tuple[int, int] = COUNT_INPUT) -> float:
    """The median over ``images`` (``(H, W)`` each, e.g. a training split's) of each one's median intensity as
    :func:`letterbox` scales it (:func:`median_of_parts`): the ``median_target`` that leaves a typical training film
    as it is."""
    if not len(images):
        raise ValueError("median_target needs at least one image")

    def parts():
        for img in images:
            _, nh, nw, ox, oy = letterbox_box(np.shape(img), size)
            yield letterbox(img, size)[0], (ox, oy, nw, nh)

    return median_of_parts(parts())
