"""Overlay pictures: landmarks, end-plate lines and labels drawn over a radiograph (PNG, secondary capture, docs).

Drawing goes through one description, :class:`Annotations` (points, circles, polylines, texts in the project's
point convention: ``(x, y)`` pixels, pixel centres at integer coordinates). :func:`annotations_from_result` builds
it from a :class:`~lumbar_monai.result.LandmarkResult`; the presentation-state reader
(:func:`lumbar_monai.io.gsps.annotations_from_presentation_state`) builds it from a DICOM GSPS, so the same
renderer shows both. Rendering uses matplotlib's Agg canvas (no pyplot state) at one figure pixel per image
pixel, with the image drawn so that pixel ``(i, j)`` has its centre at ``x = j, y = i``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..anatomy import get_layout
from .atomic import atomic_path

__all__ = [
    "Annotations",
    "to_display_uint8",
    "annotations_from_result",
    "draw_annotations",
    "render_overlay",
    "shrink_for_overlay",
    "OVERLAY_MAX_SIDE",
    "write_png",
    "write_overlay_png",
]

#: RGB colours (0..1) cycled over vertebrae (matplotlib's tab10, colour-blind friendlier than pure hues).
_PALETTE = (
    (0.122, 0.467, 0.706),
    (1.0, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
)


def vertebra_colour(index: int) -> tuple[float, float, float]:
    """Colour of the ``index``-th vertebra."""
    return _PALETTE[index % len(_PALETTE)]


@dataclass
class Annotations:
    """Things to draw, in ``(x, y)`` image pixels (pixel centres at integers).

    Attributes:
        points: ``[(xy (2,), colour)]`` small filled dots.
        circles: ``[(centre (2,), radius px, colour)]`` outlines.
        polylines: ``[(vertices (M, 2), colour)]`` open polylines (closed when first == last vertex).
        texts: ``[(anchor (2,), text, colour)]`` labels anchored at their left-centre.
    """

    points: list = field(default_factory=list)
    circles: list = field(default_factory=list)
    polylines: list = field(default_factory=list)
    texts: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points) + len(self.circles) + len(self.polylines) + len(self.texts)


def to_display_uint8(image, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Grey image for display: ``(H, W)`` / ``(1, H, W)`` / ``(H, W, 3)`` -> uint8, percentiles ``low``-``high``
    stretched to 0-255 (``skimage.exposure.rescale_intensity``). RGB input is returned as uint8 RGB."""
    from skimage.exposure import rescale_intensity

    arr = np.asarray(image)
    if hasattr(image, "detach"):  # torch tensor
        arr = image.detach().cpu().numpy()
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        return arr[..., :3]
    if arr.ndim != 2:
        raise ValueError(f"expected a (H, W) or (1, H, W) image, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max()) + 1e-12
    out = rescale_intensity(np.nan_to_num(arr, nan=lo), in_range=(lo, hi), out_range=(0.0, 255.0))
    return np.round(out).astype(np.uint8)


def annotations_from_result(result, measurements=None, radius: float | None = None) -> Annotations:
    """Landmark dots and circles, end-plate lines and vertebra labels of a ``LandmarkResult``.

    Args:
        result: the predictor's answer (``layout``, ``points``, ``image_size``).
        measurements: optional :class:`~lumbar_monai.measures.MeasurementSet`; lordosis and sacral slope (lateral)
            or the largest Cobb angle (AP) are written in the top-left corner.
        radius: circle radius in pixels; default 1 % of the larger image side (at least 3 px).
    """
    layout = get_layout(result.layout)
    pts = np.asarray(result.points, dtype=np.float64)
    if radius is None:
        size = max(result.image_size) if result.image_size else float(np.ptp(pts, axis=0).max()) * 1.5
        radius = max(3.0, 0.01 * float(size))
    ann = Annotations()
    centres = layout.centres(pts)
    for vi, (spec, sl) in enumerate(zip(layout.vertebrae, layout.vertebra_slices, strict=True)):
        col = vertebra_colour(vi)
        p = pts[sl]
        for a, b in spec.end_plates:
            ann.polylines.append((np.stack([p[a], p[b]]), col))
        for q in p:
            ann.circles.append((q, radius, col))
            ann.points.append((q, col))
        # label beside the body, on the side opposite to the first corners (posterior / patient's left)
        first = np.mean([p[a] for a, _ in spec.end_plates], axis=0)
        second = np.mean([p[b] for _, b in spec.end_plates], axis=0)
        away = second - first
        n = np.linalg.norm(away)
        anchor = centres[vi] + (away / n * (0.5 * n + 2.5 * radius) if n > 0 else 0.0)
        ann.texts.append((anchor, spec.name, col))
    if measurements is not None:
        lines = []
        for key, label in (("lumbar_lordosis", "LL"), ("sacral_slope", "SS"), ("max_cobb_angle", "Cobb")):
            try:
                v = measurements.value(key)
            except KeyError:
                continue
            if np.isfinite(v):
                lines.append(f"{label} {v:.1f} deg")
        if lines:
            ann.texts.append((np.array([4.0 * radius, 4.0 * radius]), "  ".join(lines), (1.0, 1.0, 0.3)))
    return ann


def draw_annotations(image, annotations: Annotations, line_width: float | None = None,
                     font_size: float | None = None) -> np.ndarray:
    """Render ``annotations`` over ``image`` and return ``(H, W, 3)`` uint8 RGB of the image's size.

    ``image`` is a grey ``(H, W)``/``(1, H, W)`` array (any dtype, stretched by :func:`to_display_uint8`) or an RGB
    uint8 ``(H, W, 3)``. Written by hand on matplotlib's Agg canvas because scikit-image draws no text.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    grey = to_display_uint8(image)
    h, w = grey.shape[:2]
    dpi = 100.0
    lw = line_width if line_width is not None else max(1.0, 0.0025 * max(h, w)) * 72.0 / dpi
    fs = font_size if font_size is not None else max(6.0, 0.018 * max(h, w)) * 72.0 / dpi
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(grey, cmap="gray" if grey.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest",
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    for verts, col in annotations.polylines:
        v = np.asarray(verts, dtype=np.float64)
        ax.plot(v[:, 0], v[:, 1], "-", color=col, linewidth=lw, solid_capstyle="round", snap=False, zorder=2)
    for centre, r, col in annotations.circles:
        ax.add_patch(Circle(tuple(np.asarray(centre, dtype=np.float64)), float(r), fill=False, edgecolor=col,
                            linewidth=lw, snap=False, zorder=3))
    dot = max(1.0, lw * dpi / 72.0)  # dot radius in pixels (filled patches: scatter markers snap off by a pixel)
    for p, col in annotations.points:
        ax.add_patch(Circle(tuple(np.asarray(p, dtype=np.float64)), dot, fill=True, facecolor=col, edgecolor="none",
                            snap=False, zorder=4))
    for anchor, text, col in annotations.texts:
        ax.text(float(anchor[0]), float(anchor[1]), text, color=col, fontsize=fs, ha="left", va="center",
                fontweight="bold", clip_on=True, zorder=5)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    if rgba.shape[:2] != (h, w):  # figure size rounding on odd sizes: crop/pad to the image's size
        out = np.zeros((h, w, 4), np.uint8)
        hh, ww = min(h, rgba.shape[0]), min(w, rgba.shape[1])
        out[:hh, :ww] = rgba[:hh, :ww]
        rgba = out
    return np.ascontiguousarray(rgba[..., :3])


#: Longest side (pixels) of the overlay PNG. The overlay is a preview: a larger radiograph is shrunk by an integer
#: factor first, so that drawing stays bounded in memory (a 10000x10000 image drawn at full size took 11.8 GB).
#: The landmarks themselves are always in original pixels (JSON, SR, GSPS).
OVERLAY_MAX_SIDE = 2048


def _grey_2d(image) -> np.ndarray:
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr


def shrink_for_overlay(image, result, max_side: int = OVERLAY_MAX_SIDE):
    """``(image, result)`` shrunk by the integer factor ``k`` that brings the longer side to ``<= max_side``.

    The image is block-averaged (``skimage.transform.downscale_local_mean``); points follow the pixel-centre
    convention of the project: original pixel ``x`` maps to ``(x - (k - 1) / 2) / k``. ``k == 1`` returns both
    unchanged.
    """
    from skimage.transform import downscale_local_mean

    grey = _grey_2d(image)
    k = int(np.ceil(max(grey.shape[:2]) / float(max_side))) if max_side > 0 else 1
    if k <= 1 or grey.ndim != 2:
        return image, result
    small = downscale_local_mean(grey.astype(np.float32, copy=False), (k, k)).astype(np.float32)
    shift = (k - 1) / 2.0
    size = None if result.image_size is None else (int(small.shape[1]), int(small.shape[0]))
    shrunk = replace(
        result,
        points=(np.asarray(result.points, dtype=np.float64) - shift) / k,
        centres=(np.asarray(result.centres, dtype=np.float64) - shift) / k,
        image_size=size,
    )
    return small, shrunk


def render_overlay(image, result, measurements=None, max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """``(h, w, 3)`` uint8 picture of ``result`` over ``image`` (see :func:`annotations_from_result`), shrunk by an
    integer factor when the image's longer side exceeds ``max_side`` (:func:`shrink_for_overlay`)."""
    image, result = shrink_for_overlay(image, result, max_side)
    return draw_annotations(image, annotations_from_result(result, measurements))


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` / ``(H, W)`` uint8 array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


def write_overlay_png(path: str | os.PathLike, image, result, measurements=None) -> Path:
    """Render ``result`` over ``image`` and write it as PNG, atomically."""
    return write_png(path, render_overlay(image, result, measurements))
