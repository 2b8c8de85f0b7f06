"""Corner confidence maps of one vertebra crop: encode (Eq. 6-7) and decode, in one object (mmpose codec habit).

Shapes: points ``(..., K, 2)`` (x, y) in crop pixels (pixel centres at integers), maps ``(..., K, H, W)``;
``K`` is the vertebra kind's corner count read from the layout (4 for a lumbar vertebra, 2 for S1).
"""

from __future__ import annotations

import torch
from monai.config import KeysCollection
from monai.transforms import Transform

from ..anatomy import Layout, VertebraSpec, get_layout
from .gaussian import decode_peaks, gaussian_factors
from .mapd import PointsToMapd

__all__ = ["CornerCodec", "vertebra_template", "CornerHeatmap", "CornerHeatmapd", "CornerHeatmapD",
           "CornerHeatmapDict"]


def vertebra_template(layout: Layout | str, kind: str) -> VertebraSpec:
    """The first vertebra of ``kind`` (``"lumbar"`` / ``"sacrum"``) in the layout: corner count and end plates."""
    layout = get_layout(layout)
    for v in layout.vertebrae:
        if v.kind == kind:
            return v
    raise ValueError(f"layout {layout.name!r} has no {kind!r} vertebra")


class CornerCodec:
    """Encode corners as Gaussians (Eq. 6 lumbar, Eq. 7 sacrum) and decode them with sub-pixel peaks.

    Sigma rules (Section 3.3), per sample, in crop pixels:

    * a vertebra with two end plates (lumbar): ``sigma = lumbar_factor x`` the mean length of its two diagonals
      (superior end plate's first corner to the inferior end plate's second, and vice versa); paper: 1/10.
    * a vertebra with one end plate (S1): ``sigma = sacrum_factor x`` the end-plate length; paper: 1/6.

    Args:
        layout: landmark layout.
        kind: ``"lumbar"`` or ``"sacrum"``.
        size: map size ``(H, W)`` or an int for square maps (the crop size).
        lumbar_factor, sacrum_factor: the sigma fractions above.
        refine: sub-pixel refinement of :func:`~lumbar_monai.codecs.gaussian.decode_peaks`.
    """

    def __init__(
        self,
        layout: Layout | str,
        kind: str = "lumbar",
        size: int | tuple[int, int] = 256,
        lumbar_factor: float = 0.1,
        sacrum_factor: float = 1.0 / 6.0,
        refine: str = "quadratic",
    ) -> None:
        self.layout = get_layout(layout)
        self.kind = kind
        self.spec = vertebra_template(self.layout, kind)
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.lumbar_factor = float(lumbar_factor)
        self.sacrum_factor = float(sacrum_factor)
        self.refine = refine

    @property
    def num_corners(self) -> int:
        return self.spec.num_corners

    @property
    def end_plates(self) -> tuple[tuple[int, int], ...]:
        return self.spec.end_plates

    def sigma(self, points: torch.Tensor) -> torch.Tensor:
        """``(...,)`` sigma of each sample from its ``(..., K, 2)`` ground-truth corners."""
        p = torch.as_tensor(points)
        plates = self.spec.end_plates
        if len(plates) == 2:
            (a0, a1), (b0, b1) = plates
            d1 = torch.linalg.vector_norm(p[..., a0, :] - p[..., b1, :], dim=-1)
            d2 = torch.linalg.vector_norm(p[..., a1, :] - p[..., b0, :], dim=-1)
            return self.lumbar_factor * 0.5 * (d1 + d2)
        if len(plates) == 1:
            a, b = plates[0]
            return self.sacrum_factor * torch.linalg.vector_norm(p[..., a, :] - p[..., b, :], dim=-1)
        raise ValueError(f"no sigma rule for a vertebra with {len(plates)} end plates")

    def factors(self, points, sigma: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The separable factors ``(gy (..., K, H), gx (..., K, W))`` of :meth:`encode`'s maps (see
        :func:`~lumbar_monai.codecs.gaussian.gaussian_factors`)."""
        p = torch.as_tensor(points)
        if not p.is_floating_point():
            p = p.float()
        if p.shape[-2:] != (self.num_corners, 2):
            raise ValueError(f"expected (..., {self.num_corners}, 2) corners, got {tuple(p.shape)}")
        s = self.sigma(p) if sigma is None else torch.as_tensor(sigma, dtype=p.dtype)
        s = torch.as_tensor(s, dtype=p.dtype, device=p.device)
        if s.ndim == p.ndim - 2:  # one sigma per sample -> per corner
            s = s[..., None]
        return gaussian_factors(p, s, *self.size)

    def encode(self, points, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """``(..., K, 2)`` corners -> ``(..., K, H, W)`` Gaussian maps (peak 1 at each exact corner)."""
        gy, gx = self.factors(points, sigma)
        return gy[..., :, None] * gx[..., None, :]

    def decode(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., K, H, W)`` maps -> ``((..., K, 2)`` sub-pixel (x, y), ``(..., K)`` peak heights)``."""
        if maps.shape[-3] != self.num_corners:
            raise ValueError(f"expected {self.num_corners} corner channels, got {maps.shape[-3]}")
        return decode_peaks(maps, refine=self.refine)


class CornerHeatmap(Transform):
    """Array form of the corner target (Eq. 6-7): ``(K, 2)`` (x, y) corners in crop pixels -> ``(K, H, W)`` float32
    Gaussian maps. Arguments as :class:`CornerCodec`."""

    def __init__(self, layout: Layout | str, kind: str = "lumbar", size: int | tuple[int, int] = 256,
                 lumbar_factor: float = 0.1, sacrum_factor: float = 1.0 / 6.0) -> None:
        self.codec = CornerCodec(layout, kind, size=size, lumbar_factor=lumbar_factor, sacrum_factor=sacrum_factor)

    def __call__(self, points) -> torch.Tensor:
        return self.codec.encode(torch.as_tensor(points, dtype=torch.float64)).float()


class CornerHeatmapd(PointsToMapd):
    """Dictionary :class:`CornerHeatmap`: the corners under ``keys`` -> maps under ``output_key`` (for several keys
    ``<key>_<output_key>``)."""

    def __init__(self, keys: KeysCollection, layout: Layout | str, kind: str = "lumbar",
                 size: int | tuple[int, int] = 256, lumbar_factor: float = 0.1, sacrum_factor: float = 1.0 / 6.0,
                 output_key: str = "corner_heatmap", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, CornerHeatmap(layout, kind, size=size, lumbar_factor=lumbar_factor,
                                             sacrum_factor=sacrum_factor), output_key, allow_missing_keys)


CornerHeatmapD = CornerHeatmapDict = CornerHeatmapd
