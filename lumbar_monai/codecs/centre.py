"""Centre confidence maps of Pose-Net: encode landmarks -> maps (Eq. 1) and decode maps -> centres.

One object knows the whole stage-1 target convention (mmpose-style codec):

* centres: the mean of each vertebra's corners (:meth:`~lumbar_monai.anatomy.Layout.centres`), ``V`` per image
  (6 lateral: L1-L5 and S1; 5 AP), one map channel each, in layout order.
* grids: points live in *input* pixels (the ``input_size`` x ``input_size`` network input, 512 in the paper);
  maps are ``heatmap_size`` x ``heatmap_size`` (64), stride ``s = input_size / heatmap_size`` (8). Map pixel ``j``
  covers input pixels ``[s*j - 0.5, s*(j+1) - 0.5)``, i.e. ``x_map = (x_in + 0.5) / s - 0.5`` (the same
  ``align_corners=False`` cell convention as :mod:`lumbar_monai.transforms.geometry`).
* Eq. 1: ``C_i(x) = exp(-||x - c_i||^2 / (2 sigma^2))`` drawn at the exact sub-pixel centre by
  :func:`~lumbar_monai.codecs.gaussian.render_gaussians` (MONAI's ``GenerateHeatmap`` normalises and truncates, see
  that module).
* sigma = ``sigma_scale`` (1/2 in the paper) x the L5 height, in map pixels, one sigma per image for all channels.
  **L5 height** (*ours*, the paper does not define it): the mean of L5's anterior height
  ``|inferior_anterior - superior_anterior|`` and posterior height ``|inferior_posterior - superior_posterior|``;
  "L5" is the last lumbar vertebra of the layout. When L5 is not annotated the mean height of the annotated lumbar
  vertebrae stands in. ``min_sigma`` (0.5 map px, *ours*) keeps degenerate annotations drawable.
* decode: per-channel maximum with quadratic-log sub-pixel refinement
  (:func:`~lumbar_monai.codecs.gaussian.decode_peaks`), reported in map pixels, input pixels and, given the sample's
  ``geometry`` (original -> input 3x3), original pixels.

Shapes: points ``(..., N, 2)`` (x, y); centres ``(..., V, 2)``; maps ``(..., V, H, W)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from ..anatomy import Layout, get_layout
from .gaussian import decode_peaks, render_gaussians

__all__ = ["CentreHeatmapCodec", "CentreDecoding", "CentreHeatmap", "CentreHeatmapd", "CentreHeatmapD",
           "CentreHeatmapDict", "AppendCentreMapsd"]


@dataclass
class CentreDecoding:
    """Decoded centres.

    Attributes:
        heatmap: ``(..., V, 2)`` (x, y) in map pixels.
        input: ``(..., V, 2)`` in network-input pixels (512-space).
        confidence: ``(..., V)`` peak heights.
        original: ``(..., V, 2)`` in original pixels, when a geometry was given, else ``None``.
    """

    heatmap: torch.Tensor
    input: torch.Tensor
    confidence: torch.Tensor
    original: torch.Tensor | None = None


class CentreHeatmapCodec:
    """Encode/decode the Pose-Net centre maps (Eq. 1, Section 3.2).

    Args:
        layout: landmark layout (name or :class:`Layout`); the channel count is ``layout.num_vertebrae``.
        input_size: network input side in pixels (512).
        heatmap_size: map side (64).
        sigma_scale: sigma = ``sigma_scale`` x L5 height (1/2 in the paper).
        min_sigma: lower bound of sigma in map pixels.
        refine: sub-pixel refinement of :func:`decode_peaks` (``"quadratic"`` or ``"none"``).
    """

    def __init__(
        self,
        layout: str | Layout = "lateral",
        input_size: int = 512,
        heatmap_size: int = 64,
        sigma_scale: float = 0.5,
        min_sigma: float = 0.5,
        refine: str = "quadratic",
    ) -> None:
        self.layout = get_layout(layout)
        self.input_size = int(input_size)
        self.heatmap_size = int(heatmap_size)
        self.stride = self.input_size / self.heatmap_size
        self.sigma_scale = float(sigma_scale)
        self.min_sigma = float(min_sigma)
        self.refine = refine
        lumbar = self.layout.lumbar_indices
        if not lumbar:
            raise ValueError(f"layout {self.layout.name!r} has no lumbar vertebra to take the L5 height from")
        self.l5_index = lumbar[-1]

    @property
    def num_channels(self) -> int:
        return self.layout.num_vertebrae

    # ----- coordinate maps --------------------------------------------------------------------------------
    def input_to_heatmap(self, xy):
        """Input pixels -> map pixels: ``(x + 0.5) / s - 0.5``."""
        return (xy + 0.5) / self.stride - 0.5

    def heatmap_to_input(self, xy):
        """Map pixels -> input pixels: ``(x + 0.5) * s - 0.5``."""
        return (xy + 0.5) * self.stride - 0.5

    # ----- sigma rule ---------------------------------------------------------------------------------------
    def vertebra_heights(self, points) -> np.ndarray:
        """``(..., L)`` mean of anterior and posterior heights of each lumbar vertebra, in the points' pixels."""
        p = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
        out = []
        for vi in self.layout.lumbar_indices:
            spec = self.layout.vertebrae[vi]
            (a0, b0), (a1, b1) = spec.end_plates[:2]
            q = p[..., self.layout.vertebra_slices[vi], :]
            ant = np.linalg.norm(q[..., a1, :] - q[..., a0, :], axis=-1)
            post = np.linalg.norm(q[..., b1, :] - q[..., b0, :], axis=-1)
            out.append(0.5 * (ant + post))
        return np.stack(out, axis=-1)

    def l5_height(self, points) -> np.ndarray:
        """``(...)`` L5 height (see the module docstring) in the points' pixels, with the documented fallback."""
        heights = self.vertebra_heights(points)
        l5 = heights[..., self.layout.lumbar_indices.index(self.l5_index)]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are handled just below
            fallback = np.nanmean(heights, axis=-1)
        out = np.where(np.isfinite(l5), l5, fallback)
        if not np.isfinite(out).all():
            raise ValueError("no annotated lumbar vertebra to derive the centre-map sigma from")
        return out

    def sigma(self, points) -> np.ndarray:
        """``(...)`` Eq. 1 sigma in map pixels: ``sigma_scale * L5 height / stride``, at least ``min_sigma``."""
        return np.maximum(self.sigma_scale * self.l5_height(points) / self.stride, self.min_sigma)

    # ----- encode / decode ------------------------------------------------------------------------------------
    def centres(self, points) -> np.ndarray:
        """``(..., V, 2)`` centres (mean of corners) of ``(..., N, 2)`` points, same pixels."""
        p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points
        return self.layout.centres(np.asarray(p, dtype=np.float64))

    def encode(self, points, sigma=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Landmarks in input pixels -> ``(..., V, H, W)`` centre maps (Eq. 1).

        Args:
            points: ``(..., N, 2)`` corners (x, y) in input pixels (N = ``layout.num_points``).
            sigma: override sigma in map pixels (scalar or ``(...)``); default: the L5 rule.
        """
        centres = self.centres(points)
        sig = self.sigma(points) if sigma is None else np.asarray(sigma, dtype=np.float64)
        c_map = torch.as_tensor(self.input_to_heatmap(centres), dtype=torch.float64)
        sig_t = torch.as_tensor(sig, dtype=torch.float64)[..., None]  # broadcast over channels
        maps = render_gaussians(c_map, sig_t, self.heatmap_size, self.heatmap_size)
        return maps.to(dtype)

    def decode(self, maps: torch.Tensor, geometry=None) -> CentreDecoding:
        """``(..., V, H, W)`` maps -> centres in map, input and (with ``geometry``) original pixels.

        Args:
            maps: network output.
            geometry: ``original -> input`` 3x3 matrix, or ``(B, 3, 3)`` for a batch (``sample["geometry"]``).
        """
        maps = torch.as_tensor(maps)
        if maps.shape[-3] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels, got maps of shape {tuple(maps.shape)}")
        xy, conf = decode_peaks(maps.detach().float(), refine=self.refine)
        xy_in = self.heatmap_to_input(xy.double())
        original = None
        if geometry is not None:
            g = torch.as_tensor(np.asarray(geometry, dtype=np.float64) if not isinstance(geometry, torch.Tensor)
                                else geometry.double(), device=xy_in.device)
            inv = torch.linalg.inv(g)  # (..., 3, 3)
            original = torch.einsum("...ij,...kj->...ki", inv[..., :2, :2], xy_in) + inv[..., None, :2, 2]
        return CentreDecoding(heatmap=xy, input=xy_in, confidence=conf, original=original)


class CentreHeatmap(Transform):
    """Array form of the centre-map target: ``(N, 2)`` (x, y) landmarks in input pixels -> ``(V, H, W)`` float32
    maps (Eq. 1). Arguments as :class:`CentreHeatmapCodec`; ``layout`` may also be given per call."""

    def __init__(self, layout: str | Layout = "lateral", input_size: int = 512, heatmap_size: int = 64,
                 sigma_scale: float = 0.5, min_sigma: float = 0.5) -> None:
        self.default_layout = get_layout(layout)
        self.params = dict(input_size=input_size, heatmap_size=heatmap_size, sigma_scale=sigma_scale,
                           min_sigma=min_sigma)
        self._codecs: dict[str, CentreHeatmapCodec] = {}

    def codec_for(self, layout: str | Layout | None) -> CentreHeatmapCodec:
        lay = self.default_layout if layout is None else get_layout(layout)
        if lay.name not in self._codecs:
            self._codecs[lay.name] = CentreHeatmapCodec(lay, **self.params)
        return self._codecs[lay.name]

    def __call__(self, points, layout: str | Layout | None = None) -> torch.Tensor:
        return self.codec_for(layout).encode(points)


class CentreHeatmapd(MapTransform):
    """Add the centre-map target (and the centres) to a sample (Eq. 1).

    Args:
        keys: the landmark key(s), ``(N, 2)`` (x, y) in input pixels.
        output_key: where the ``(V, H, W)`` float32 maps go (for one key; with several keys ``<key>_<output_key>``).
        centres_key: where the ``(V, 2)`` centres (input pixels) go, or ``None``.
        layout_key: sample key with the layout name (falls back to ``layout``).
        input_size, heatmap_size, sigma_scale, min_sigma: as :class:`CentreHeatmapCodec`.
    """

    def __init__(
        self,
        keys: KeysCollection = "points",
        output_key: str = "centre_heatmap",
        centres_key: str | None = "centres",
        layout_key: str = "layout",
        layout: str | Layout = "lateral",
        input_size: int = 512,
        heatmap_size: int = 64,
        sigma_scale: float = 0.5,
        min_sigma: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.centres_key = centres_key
        self.layout_key = layout_key
        self.heatmap = CentreHeatmap(layout, input_size=input_size, heatmap_size=heatmap_size,
                                     sigma_scale=sigma_scale, min_sigma=min_sigma)
        self.default_layout = self.heatmap.default_layout
        self.params = self.heatmap.params

    def codec_for(self, layout: str | Layout | None) -> CentreHeatmapCodec:
        return self.heatmap.codec_for(layout)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        codec = self.codec_for(d.get(self.layout_key))
        keys = list(self.key_iterator(d))
        for k in keys:
            suffix = "" if len(keys) == 1 else f"{k}_"
            d[f"{suffix}{self.output_key}"] = codec.encode(d[k])
            if self.centres_key is not None:
                d[f"{suffix}{self.centres_key}"] = torch.as_tensor(codec.centres(d[k]), dtype=torch.float32)
        return d


CentreHeatmapD = CentreHeatmapDict = CentreHeatmapd


class AppendCentreMapsd(MapTransform):
    """Append auxiliary centre maps to a sample's stage-1 target: one Eq. 1 Gaussian per row of ``keys`` (``(K, 2)``
    centres in input pixels, e.g. T11 and T12 of an AASCE spine), the image's sigma (the L5 rule of ``codec``, from
    ``point_key``). The maps follow the layout's channels (L5 keeps its index, so Eq. 2's pre-prediction target is
    unchanged); a network trained on them has ``V + K`` outputs of which inference reads the first ``V``.

    Why by hand: MONAI's ``GenerateHeatmap`` normalises and truncates its Gaussians; these must match Eq. 1 maps of
    :class:`CentreHeatmapCodec` exactly (same renderer, same sigma).
    """

    def __init__(self, keys: KeysCollection = "aux_points", point_key: str = "points",
                 output_key: str = "centre_heatmap", layout: str | Layout = "ap", input_size: int = 512,
                 heatmap_size: int = 64, sigma_scale: float = 0.5, min_sigma: float = 0.5) -> None:
        super().__init__(keys)
        self.point_key = point_key
        self.output_key = output_key
        self.codec = CentreHeatmapCodec(layout, input_size=input_size, heatmap_size=heatmap_size,
                                        sigma_scale=sigma_scale, min_sigma=min_sigma)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        maps = torch.as_tensor(d[self.output_key])
        sigma = torch.as_tensor(self.codec.sigma(np.asarray(d[self.point_key], dtype=np.float64)), dtype=torch.float64)
        extra = []
        for k in self.key_iterator(d):
            c = np.asarray(d[k], dtype=np.float64).reshape(-1, 2)
            xy = torch.as_tensor(self.codec.input_to_heatmap(c), dtype=torch.float64)
            extra.append(render_gaussians(xy, sigma, self.codec.heatmap_size, self.codec.heatmap_size).to(maps.dtype))
        d[self.output_key] = torch.cat([maps, *extra], dim=0)
        return d
