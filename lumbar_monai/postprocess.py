"""Stage-1 post-processing: centre maps -> centres, with the paper's Algorithm 1 repair (An et al. 2022, Section 3.2).

Decoding: each channel's maximum with quadratic-log sub-pixel refinement
(:func:`~lumbar_monai.codecs.gaussian.decode_peaks`), mapped to network-input (512-space) and original pixels by
:class:`~lumbar_monai.codecs.centre.CentreHeatmapCodec`.

Algorithm 1 (Figures 5-7). When channel ``C_1`` locks onto T12 instead of L1, ``C_2..C_j`` follow one vertebra up
and a vertebra is skipped: the distance between two consecutive maxima is then about twice the others. With
``m_i = argmax C_i`` and ``d_i = ||m_i - m_{i+1}||_2`` (``i = 1..V-1``):

1. if ``max(d) > 1.4 x mean(d without max(d))`` a centre is missing between ``C_j`` and ``C_{j+1}``,
   ``j = argmax d``;
2. ``C_sum = sum_i C_i``; ``d_max = |(m_{j+1})_y - (m_j)_y|`` (the *y*-distance of that pair); zero every pixel with
   ``p_y < (m_j)_y + 0.4 d_max`` and every pixel with ``p_y > (m_{j+1})_y - 0.4 d_max``;
3. ``m_new`` = maximum of what is left; drop ``m_1`` (the top-most, T12) and insert ``m_new`` between ``m_j`` and
   ``m_{j+1}``: ``{m_2, ..., m_j, m_new, m_{j+1}, ..., m_V}``.

The rule reads argmax positions (integer, as the paper; ``rule_peaks="subpixel"`` reads the refined ones); the
centres it returns are sub-pixel refined (the new one on ``C_sum``, whose confidence is ``C_sum``'s value there and
may exceed 1). The zeroing bounds compare pixel rows with the rule's peak ``y``.

**A genuinely large L5-S1 gap.** The rule as written does not know anatomy: if the L5-to-S1 distance is itself
more than 1.4 x the mean of the others (e.g. a high-grade L5-S1 spondylolisthesis, or a sacrum far posterior to
L5), it fires with ``j`` = the lumbosacral pair, inserts whatever the summed maps hold between L5 and S1 and drops
the correct L1, shifting every lumbar label by one. (Usually the S1 "centre" - the midpoint of its upper end plate -
is *closer* to L5's centre than lumbar centres are to each other, which also lowers ``mean(d without max)`` and
makes the rule fire more readily elsewhere.) The default here is the paper exactly; two documented guards
(*ours*) are off by default:

* ``skip_lumbosacral=True``: never repair a gap between the last lumbar vertebra and the sacrum (Algorithm 1
  exists for a skipped lumbar vertebra; T12 above L1 cannot make the lumbosacral gap large);
* ``min_new_peak > 0``: repair only if ``C_sum`` in the band peaks at least ``min_new_peak`` x the median channel
  peak height - a skipped vertebra leaves a response there, an empty gap only Gaussian tails.

If the band holds no pixel (``d_max`` too small or the pair out of order), nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .anatomy import Layout, get_layout
from .codecs.centre import CentreHeatmapCodec
from .codecs.gaussian import decode_peaks

__all__ = ["CentreRepair", "repair_missing_centre", "postprocess_centres", "second_peak_ratio", "SECOND_PEAK_FLAG"]

#: :func:`second_peak_ratio` at or above which an image's centres carry the QC flag ``centre_ambiguous`` (*ours*;
#: chosen on the AASCE validation split, README "Ambiguous centre maps").
SECOND_PEAK_FLAG = 0.5


@dataclass
class CentreRepair:
    """Result of Algorithm 1 on one image (coordinates in heatmap pixels).

    Attributes:
        centres: ``(V, 2)`` (x, y) centres after the repair (sub-pixel).
        confidence: ``(V,)`` peak heights (the inserted centre's is ``C_sum`` there).
        fired: the repair was applied (QC flag ``"centre_repaired"``).
        detected: the 1.4 x rule saw a missing centre (``fired`` may still be false because of a guard or an
            empty band; see ``reason``).
        gap: ``j`` (0-based): the centre was missing between channels ``j`` and ``j + 1``; ``None`` if not detected.
        new_centre: ``(2,)`` the inserted centre, or ``None``.
        distances: ``(V-1,)`` the ``d_i`` the rule used.
        reason: ``"regular"``, ``"repaired"``, ``"guard_lumbosacral"``, ``"guard_weak_peak"`` or ``"empty_band"``.
    """

    centres: np.ndarray
    confidence: np.ndarray
    fired: bool
    detected: bool
    gap: int | None = None
    new_centre: np.ndarray | None = None
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reason: str = "regular"


def _refine_at(m: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Sub-pixel (x, y) of a peak at ``(iy, ix)`` of ``m`` by the same quadratic-log fit as ``decode_peaks``.

    Written here because the peak is chosen on the masked sum map but refined on the unmasked one, which
    ``decode_peaks`` (global argmax) cannot express.
    """
    h, w = m.shape
    tiny = np.finfo(np.float64).tiny

    def off(a: float, c: float, b: float) -> float:
        la, lc, lb = (np.log(max(v, tiny)) for v in (a, c, b))
        den = la - 2 * lc + lb
        return float(np.clip(0.5 * (la - lb) / den, -0.5, 0.5)) if den < 0 and c > 0 else 0.0

    x = float(ix) + (off(m[iy, ix - 1], m[iy, ix], m[iy, ix + 1]) if 0 < ix < w - 1 else 0.0)
    y = float(iy) + (off(m[iy - 1, ix], m[iy, ix], m[iy + 1, ix]) if 0 < iy < h - 1 else 0.0)
    return x, y


def repair_missing_centre(
    maps,
    layout: str | Layout | None = None,
    ratio: float = 1.4,
    band: float = 0.4,
    skip_lumbosacral: bool = False,
    min_new_peak: float = 0.0,
    rule_peaks: str = "argmax",
) -> CentreRepair:
    """Algorithm 1 on one image's ``(V, H, W)`` centre maps (see the module docstring).

    Args:
        maps: ``(V, H, W)`` confidence maps, channels in layout order (L1..L5, S1).
        layout: needed only for ``skip_lumbosacral`` (which pair is lumbosacral).
        ratio: the 1.4 of the detection rule.
        band: the 0.4 of the zeroing bounds.
        skip_lumbosacral: guard, see the module docstring (off = the paper).
        min_new_peak: guard, see the module docstring (0 = the paper).
        rule_peaks: ``"argmax"`` (the paper: integer maxima) or ``"subpixel"`` (refined maxima; *ours*, for
            coarse maps such as 16x16 where integer quantisation alone can trip the 1.4 x rule).
    """
    t = torch.as_tensor(maps).detach().to(torch.float64).cpu()
    if t.ndim != 3:
        raise ValueError(f"expected (V, H, W) maps, got shape {tuple(t.shape)}")
    refined, conf = decode_peaks(t, refine="quadratic")
    argmax, _ = decode_peaks(t, refine="none")
    centres, confidence = refined.numpy().copy(), conf.numpy().copy()
    if rule_peaks not in ("argmax", "subpixel"):
        raise ValueError(f"rule_peaks must be 'argmax' or 'subpixel', got {rule_peaks!r}")
    m = argmax.numpy() if rule_peaks == "argmax" else refined.numpy()
    v = m.shape[0]
    if v < 3:
        return CentreRepair(centres, confidence, fired=False, detected=False)
    d = np.linalg.norm(np.diff(m, axis=0), axis=1)
    j = int(np.argmax(d))
    rest = np.delete(d, j)
    if not d[j] > ratio * rest.mean():
        return CentreRepair(centres, confidence, fired=False, detected=False, distances=d)

    def unchanged(reason: str) -> CentreRepair:
        return CentreRepair(centres, confidence, fired=False, detected=True, gap=j, distances=d, reason=reason)

    if skip_lumbosacral:
        lay = get_layout(layout if layout is not None else "lateral")
        if lay.sacrum_index is not None and j + 1 == lay.sacrum_index and j in lay.lumbar_indices:
            return unchanged("guard_lumbosacral")
    c_sum = t.sum(dim=0).numpy()
    y_top, y_bottom = m[j, 1], m[j + 1, 1]
    d_max = abs(y_bottom - y_top)
    rows = np.arange(c_sum.shape[0], dtype=np.float64)[:, None]
    keep = (rows >= y_top + band * d_max) & (rows <= y_bottom - band * d_max)
    masked = np.where(keep, c_sum, 0.0)
    if not keep.any() or not (masked > 0).any():
        return unchanged("empty_band")
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    new_value = float(c_sum[iy, ix])
    if min_new_peak > 0 and new_value < min_new_peak * float(np.median(confidence)):
        return unchanged("guard_weak_peak")
    new = np.array(_refine_at(c_sum, int(iy), int(ix)))
    out_c = np.concatenate([centres[1 : j + 1], new[None], centres[j + 1 :]])
    out_p = np.concatenate([confidence[1 : j + 1], [new_value], confidence[j + 1 :]])
    return CentreRepair(out_c, out_p, fired=True, detected=True, gap=j, new_centre=new, distances=d,
                        reason="repaired")


def postprocess_centres(
    maps: torch.Tensor,
    codec: CentreHeatmapCodec,
    geometry=None,
    repair: bool = True,
    **repair_kwargs,
) -> dict[str, object]:
    """Pose-Net maps -> centres in heatmap, input (512-space) and original pixels, with Algorithm 1.

    Args:
        maps: ``(B, V, H, W)`` or ``(V, H, W)``.
        codec: the codec the net was trained with (grids, layout).
        geometry: ``original -> input`` 3x3 or ``(B, 3, 3)`` (``sample["geometry"]``); gives ``"original"``.
        repair: run Algorithm 1 (else plain decoding).
        repair_kwargs: ``ratio``, ``band``, ``skip_lumbosacral``, ``min_new_peak``, ``rule_peaks``.

    Returns:
        dict with ``"heatmap"``, ``"input"``, ``"original"`` (or ``None``) ``(B, V, 2)`` float64 tensors,
        ``"confidence"`` ``(B, V)``, ``"centre_repaired"`` ``(B,)`` bool tensor, ``"repairs"`` (list of
        :class:`CentreRepair` or ``None``) and ``"second_peak"`` ``(B, V)`` (:func:`second_peak_ratio` of the maps
        as given, before any repair). Unbatched input gives unbatched outputs.
    """
    t = torch.as_tensor(maps).detach()
    single = t.ndim == 3
    if single:
        t = t[None]
    dec = codec.decode(t)
    hm = dec.heatmap.double().clone()
    conf = dec.confidence.double().clone()
    repairs: list[CentreRepair | None] = [None] * t.shape[0]
    fired = torch.zeros(t.shape[0], dtype=torch.bool)
    if repair:
        for b in range(t.shape[0]):
            r = repair_missing_centre(t[b], layout=codec.layout, **repair_kwargs)
            repairs[b] = r
            if r.fired:
                hm[b] = torch.as_tensor(r.centres)
                conf[b] = torch.as_tensor(r.confidence)
                fired[b] = True
    xy_in = codec.heatmap_to_input(hm)
    original = None
    if geometry is not None:
        g = torch.as_tensor(np.asarray(geometry, dtype=np.float64) if not isinstance(geometry, torch.Tensor)
                            else geometry.double())
        if g.ndim == 2:
            g = g.expand(t.shape[0], 3, 3)
        inv = torch.linalg.inv(g)
        original = torch.einsum("bij,bkj->bki", inv[:, :2, :2], xy_in) + inv[:, None, :2, 2]
    out = {"heatmap": hm, "input": xy_in, "original": original, "confidence": conf, "centre_repaired": fired,
           "repairs": repairs, "second_peak": second_peak_ratio(t)}
    if single:
        out = {k: (v[0] if isinstance(v, torch.Tensor) else (v[0] if isinstance(v, list) else v))
               for k, v in out.items()}
    return out


def second_peak_ratio(maps: torch.Tensor, exclusion: int = 2) -> torch.Tensor:
    """``(..., V)``: the height of each map's highest local maximum (3 x 3) more than ``exclusion`` map pixels from
    its highest point (in x or y), over that highest value; 0 where there is none or the map is not positive (*ours*).

    A map with two near-equal peaks names the vertebra on a coin toss: a change of the maps as small as 1e-6 moved
    a centre from one peak to the other (README "Ambiguous centre maps"), so a ratio of :data:`SECOND_PEAK_FLAG` or
    more sets the QC flag ``centre_ambiguous``. Computed here because the decoders read only the maximum;
    scikit-image's ``peak_local_max`` would do it one map at a time on the CPU.
    """
    t = torch.as_tensor(maps).detach().float()
    h, w = t.shape[-2:]
    flat = t.reshape(-1, 1, h, w)
    is_peak = (flat == F.max_pool2d(flat, 3, stride=1, padding=1)) & (flat > 0)
    top, idx = flat.reshape(len(flat), -1).max(dim=-1)
    iy, ix = (idx // w)[:, None, None, None], (idx % w)[:, None, None, None]
    yy = torch.arange(h, device=t.device)[None, None, :, None]
    xx = torch.arange(w, device=t.device)[None, None, None, :]
    near = ((yy - iy).abs() <= exclusion) & ((xx - ix).abs() <= exclusion)
    second = torch.where(is_peak & ~near, flat, torch.zeros_like(flat)).amax(dim=(-3, -2, -1))
    ratio = torch.where(top > 0, second / top.clamp_min(1e-12), torch.zeros_like(top))
    return ratio.reshape(t.shape[:-2])
