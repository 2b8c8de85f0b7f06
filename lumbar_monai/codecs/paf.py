"""Part affinity field of one vertebra crop (Eq. 8-9): 1 on the end-plate segments, 0 elsewhere.

Unlike OpenPose's vector PAFs, the paper's PAF is a scalar map: the union of the end-plate segments drawn with a
line width (4 px at a 256 x 256 crop; the ablation compares 2 / 4 / 6 and no PAF). Drawing is a vectorised
distance-to-segment over the whole grid (no rasteriser loop). Shapes: points ``(..., K, 2)`` (x, y) in crop
pixels, maps ``(..., 1, H, W)``. The target is drawn inside each segment's widened bounding box only (the same
values, a fraction of the work).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Transform

from ..anatomy import Layout, get_layout
from .corner import vertebra_template
from .mapd import PointsToMapd

__all__ = ["PAFCodec", "segment_distance", "PAFMap", "PAFMapd", "PAFMapD", "PAFMapDict"]


def segment_distance(a: torch.Tensor, b: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Euclidean distance of every pixel centre to the segments ``a-b``.

    Args:
        a, b: ``(..., S, 2)`` (x, y) segment ends.
        height, width: grid size.

    Returns:
        ``(..., S, H, W)`` distances.
    """
    dtype = a.dtype if a.is_floating_point() else torch.float32
    ys = torch.arange(height, dtype=dtype, device=a.device)
    xs = torch.arange(width, dtype=dtype, device=a.device)
    return _distance_on(a.to(dtype), b.to(dtype), ys, xs)


def _distance_on(a: torch.Tensor, b: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`segment_distance` on the pixel centres ``ys`` x ``xs`` (1-D coordinate vectors)."""
    ys, xs = ys[:, None], xs[None, :]
    ab = b - a
    ax = xs - a[..., 0, None, None]  # (..., S, 1, W)
    ay = ys - a[..., 1, None, None]  # (..., S, H, 1)
    len2 = (ab * ab).sum(-1).clamp_min(torch.finfo(a.dtype).tiny)[..., None, None]
    t = ((ax * ab[..., 0, None, None] + ay * ab[..., 1, None, None]) / len2).clamp(0.0, 1.0)
    dx = ax - t * ab[..., 0, None, None]
    dy = ay - t * ab[..., 1, None, None]
    return torch.sqrt(dx * dx + dy * dy)


class PAFCodec:
    """Encode a vertebra's end plates as one PAF channel (Eq. 8 lumbar, Eq. 9 sacrum); score segments on a PAF.

    Args:
        layout: landmark layout.
        kind: ``"lumbar"`` (superior and inferior end plates) or ``"sacrum"`` (its one end plate).
        size: map size ``(H, W)`` or an int.
        width: line width in pixels *at* ``reference_size`` (paper: 4 at 256); the drawn width scales with the
            map, ``width * W / reference_size``, so a 64 px crop gets a 1 px line for the same anatomy.
        reference_size: the crop size ``width`` refers to.
        mode: ``"exact"`` (1 where the pixel centre is within half the width of a segment) or ``"antialiased"``
            (linear coverage ``clamp(width/2 + 1/2 - d, 0, 1)``, *ours*). "exact" is inclusive: a line through
            pixel centres covers ``width + 1`` rows, one between pixel centres ``width`` rows.
    """

    def __init__(
        self,
        layout: Layout | str,
        kind: str = "lumbar",
        size: int | tuple[int, int] = 256,
        width: float = 4.0,
        reference_size: int = 256,
        mode: str = "exact",
    ) -> None:
        if mode not in ("exact", "antialiased"):
            raise ValueError(f"mode must be 'exact' or 'antialiased', got {mode!r}")
        if width <= 0:
            raise ValueError("PAF width must be positive (switch the PAF off in the model config instead)")
        self.layout = get_layout(layout)
        self.spec = vertebra_template(self.layout, kind)
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.width = float(width)
        self.reference_size = int(reference_size)
        self.mode = mode

    @property
    def segments(self) -> tuple[tuple[int, int], ...]:
        return self.spec.end_plates

    @property
    def pixel_width(self) -> float:
        """Line width in pixels of this codec's maps."""
        return self.width * self.size[1] / self.reference_size

    def _value(self, d: torch.Tensor) -> torch.Tensor:
        half = 0.5 * self.pixel_width
        if self.mode == "exact":
            return (d <= half).to(d.dtype)
        return (half + 0.5 - d).clamp(0.0, 1.0)

    def encode(self, points) -> torch.Tensor:
        """``(..., K, 2)`` corners -> ``(..., 1, H, W)`` PAF target.

        Each segment is drawn inside its bounding box widened by the line's reach (every pixel outside is 0 in both
        modes), with the same arithmetic as the whole-grid :func:`segment_distance`, so the maps are identical; a
        sample with a non-finite corner is drawn on the whole grid."""
        p = torch.as_tensor(points)
        if not p.is_floating_point():
            p = p.float()
        h, w = self.size
        lead = p.shape[:-2]
        flat = p.reshape(-1, *p.shape[-2:])
        out = torch.zeros((flat.shape[0], 1, h, w), dtype=p.dtype, device=p.device)
        for i, q in enumerate(flat):
            self.draw(q, out[i, 0])
        return out.reshape(*lead, 1, h, w)

    def draw(self, points: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Draw one sample's ``(K, 2)`` corners into the zero ``(H, W)`` map ``out`` (in place, also returned):
        what :meth:`encode` does per sample, for callers with a buffer of their own (e.g. a numpy label through
        ``torch.from_numpy``; the values are computed in the points' dtype and stored in ``out``'s)."""
        q = torch.as_tensor(points)
        if not q.is_floating_point():
            q = q.float()
        ia = [s[0] for s in self.segments]
        ib = [s[1] for s in self.segments]
        h, w = self.size
        ends = q[ia + ib].detach().cpu().double().numpy()  # (2S, 2), window bounds only
        if not np.isfinite(ends).all():
            out.copy_(self._value(segment_distance(q[ia], q[ib], h, w).amin(dim=-3)))
            return out
        reach = 0.5 * self.pixel_width + 1.0
        for j in range(len(ia)):
            xa, ya = ends[j]
            xb, yb = ends[len(ia) + j]
            x0, x1 = max(0, math.floor(min(xa, xb) - reach)), min(w, math.ceil(max(xa, xb) + reach) + 1)
            y0, y1 = max(0, math.floor(min(ya, yb) - reach)), min(h, math.ceil(max(ya, yb) + reach) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            ys = torch.arange(y0, y1, dtype=q.dtype, device=q.device)
            xs = torch.arange(x0, x1, dtype=q.dtype, device=q.device)
            v = self._value(_distance_on(q[ia[j]], q[ib[j]], ys, xs)).to(out.dtype)
            win = out[y0:y1, x0:x1]
            torch.maximum(win, v, out=win)
        return out

    def segment_scores(self, paf: torch.Tensor, points: torch.Tensor, samples: int = 16) -> torch.Tensor:
        """Mean PAF value along each end plate between decoded corners (OpenPose's line integral), in [0, 1].

        A low score flags corners that do not sit at the ends of a predicted end plate.

        Args:
            paf: ``(..., 1, H, W)`` predicted PAF.
            points: ``(..., K, 2)`` decoded corners (crop pixels).
            samples: points sampled per segment.

        Returns:
            ``(..., S)`` scores, one per end plate.
        """
        h, w = paf.shape[-2:]
        lead = paf.shape[:-3]
        p = points.to(paf.dtype).reshape(-1, *points.shape[-2:])
        m = paf.reshape(-1, 1, h, w)
        t = torch.linspace(0, 1, samples, dtype=paf.dtype, device=paf.device)
        ia = [s[0] for s in self.segments]
        ib = [s[1] for s in self.segments]
        a, b = p[:, ia], p[:, ib]  # (B, S, 2)
        xy = a[:, :, None] + t[None, None, :, None] * (b - a)[:, :, None]  # (B, S, T, 2)
        grid = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], dim=-1)
        vals = torch.nn.functional.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return vals[:, 0].mean(-1).clamp(0, 1).reshape(*lead, len(self.segments))


class PAFMap(Transform):
    """Array form of the PAF target (Eq. 8-9): ``(K, 2)`` (x, y) corners in crop pixels -> ``(1, H, W)`` float32.
    Arguments as :class:`PAFCodec`."""

    def __init__(self, layout: Layout | str, kind: str = "lumbar", size: int | tuple[int, int] = 256,
                 width: float = 4.0, reference_size: int = 256, mode: str = "exact") -> None:
        self.codec = PAFCodec(layout, kind, size=size, width=width, reference_size=reference_size, mode=mode)

    def __call__(self, points) -> torch.Tensor:
        return self.codec.encode(torch.as_tensor(points, dtype=torch.float64)).float()


class PAFMapd(PointsToMapd):
    """Dictionary :class:`PAFMap`: the corners under ``keys`` -> the PAF under ``output_key`` (for several keys
    ``<key>_<output_key>``)."""

    def __init__(self, keys: KeysCollection, layout: Layout | str, kind: str = "lumbar",
                 size: int | tuple[int, int] = 256, width: float = 4.0, reference_size: int = 256,
                 mode: str = "exact", output_key: str = "paf", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, PAFMap(layout, kind, size=size, width=width, reference_size=reference_size,
                                      mode=mode), output_key, allow_missing_keys)


PAFMapD = PAFMapDict = PAFMapd
