"""Sub-pixel Gaussian heatmaps (encode) and sub-pixel peak reading (decode), shared by every stage.

Encode is Eq. 1 / 6 / 7 of An et al. 2022: ``C(x) = exp(-||x - c||^2 / (2 sigma^2))``, unnormalised (peak 1 at
``c`` itself, below 1 on the grid when ``c`` falls between pixels), drawn at the exact float position: nothing is
rounded. MONAI 1.6's ``GenerateHeatmap`` normalises each channel to [0, 1] (dividing by the on-grid maximum) and
truncates the support, which is not Eq. 1 for sub-pixel centres; with ``normalize=False`` it matches inside its
window but zeroes the tail, so this module draws the full separable Gaussian itself (two 1-D exponentials and an
outer product, vectorised over landmarks and batch).

Coordinates: ``(..., K, 2)`` (x, y) in heatmap pixels, pixel centres at integers. Maps: ``(..., K, H, W)``.
"""

from __future__ import annotations

import torch

__all__ = ["render_gaussians", "gaussian_factors", "decode_peaks"]


def gaussian_factors(
    points: torch.Tensor, sigma: torch.Tensor | float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable factors of :func:`render_gaussians`: ``(gy (..., K, H), gx (..., K, W))``, the map being
    ``gy[..., :, None] * gx[..., None, :]`` (``gx`` is zero for a non-finite point). Callers that write the maps
    into a buffer of their own (numpy, float32) form the outer product there."""
    pts = torch.as_tensor(points)
    if not pts.is_floating_point():
        pts = pts.float()
    sig = torch.as_tensor(sigma, dtype=pts.dtype, device=pts.device)
    sig = torch.broadcast_to(sig, pts.shape[:-1])
    valid = torch.isfinite(pts).all(dim=-1)
    px = torch.where(valid, pts[..., 0], torch.zeros_like(pts[..., 0]))
    py = torch.where(valid, pts[..., 1], torch.zeros_like(pts[..., 1]))
    xs = torch.arange(width, dtype=pts.dtype, device=pts.device)
    ys = torch.arange(height, dtype=pts.dtype, device=pts.device)
    inv = 1.0 / (2.0 * sig * sig)
    gx = torch.exp(-((xs - px[..., None]) ** 2) * inv[..., None])  # (..., K, W)
    gy = torch.exp(-((ys - py[..., None]) ** 2) * inv[..., None])  # (..., K, H)
    gx = gx * valid[..., None].to(gx.dtype)  # zero rows for invalid points (on the 1-D factor: exact, and cheap)
    return gy, gx


def render_gaussians(
    points: torch.Tensor, sigma: torch.Tensor | float, height: int, width: int
) -> torch.Tensor:
    """Draw one Gaussian per landmark.

    Args:
        points: ``(..., K, 2)`` float (x, y) in heatmap pixels; non-finite rows give an all-zero map.
        sigma: scalar, or a tensor broadcastable to ``(..., K)`` (one sigma per landmark or per sample).
        height, width: map size.

    Returns:
        ``(..., K, H, W)`` float maps with values in (0, 1].
    """
    gy, gx = gaussian_factors(points, sigma, height, width)
    return gy[..., :, None] * gx[..., None, :]


def decode_peaks(maps: torch.Tensor, refine: str = "quadratic") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel maximum with sub-pixel refinement.

    Args:
        maps: ``(..., K, H, W)`` heatmaps.
        refine: ``"quadratic"`` fits a parabola through the log of the peak and its two neighbours along each axis,
            which is exact for a Gaussian (log of a Gaussian is a parabola); ``"none"`` returns the integer argmax.

    Returns:
        ``(points, confidence)``: ``(..., K, 2)`` (x, y) in map pixels and ``(..., K)`` peak heights.
    """
    h, w = maps.shape[-2:]
    flat = maps.reshape(*maps.shape[:-2], h * w)
    conf, idx = flat.max(dim=-1)
    iy = torch.div(idx, w, rounding_mode="floor")
    ix = idx - iy * w
    x = ix.to(maps.dtype)
    y = iy.to(maps.dtype)
    if refine == "quadratic":
        eps = torch.finfo(maps.dtype).tiny

        def sample(dy: int, dx: int) -> torch.Tensor:
            yy = (iy + dy).clamp(0, h - 1)
            xx = (ix + dx).clamp(0, w - 1)
            return flat.gather(-1, (yy * w + xx).unsqueeze(-1)).squeeze(-1)

        def offset(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor, at_edge: torch.Tensor):
            lm, lc, lp = (torch.log(v.clamp_min(eps)) for v in (minus, centre, plus))
            denom = lm - 2 * lc + lp
            off = 0.5 * (lm - lp) / torch.where(denom < 0, denom, torch.full_like(denom, -1.0))
            off = torch.where((denom < 0) & ~at_edge & (centre > 0), off, torch.zeros_like(off))
            return off.clamp(-0.5, 0.5)

        c = conf
        x = x + offset(sample(0, -1), c, sample(0, 1), (ix == 0) | (ix == w - 1))
        y = y + offset(sample(-1, 0), c, sample(1, 0), (iy == 0) | (iy == h - 1))
    elif refine != "none":
        raise ValueError(f"refine must be 'quadratic' or 'none', got {refine!r}")
    return torch.stack([x, y], dim=-1), conf
