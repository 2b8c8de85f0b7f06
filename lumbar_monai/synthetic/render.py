"""Image formation for the synthetic radiograph: placement on the detector, thickness map, physics, noise.

Cheap physics (*ours*, after the usual projection radiography model): the attenuation line integral ``tau``
(mu x lateral path length, summed over soft tissue and bones) is rasterised at reduced resolution (vectorised
scanline fills, area anti-aliased) and upsampled; the detected quanta are ``I = I0 exp(-tau)`` with ``I0`` set
by the exposure control (``photons`` quanta behind the spine). The processed image is the log signal
``-log(I / I0)`` with quantum noise - Poisson, to first order (delta method) a Gaussian of standard deviation
``1 / sqrt(I)`` in the log domain - blurred by the detector, then clinical-style processing: large-kernel
dynamic range compression, mild unsharp masking, a window over the body and a gamma, stored in ``BitsStored``
bits. Lead markers and metal implants are added after the window statistics, so they saturate (white) without
squashing the bone contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special
from skimage.draw import polygon as draw_polygon

from .config import SyntheticConfig
from .model import SpineModel
from .shapes import ScanlineCanvas, offset_inward

__all__ = [
    "Placement",
    "ImagingParams",
    "Rendered",
    "sample_imaging",
    "place_on_detector",
    "render_density",
    "form_image",
    "rasterise_labels",
    "upsample",
]


@dataclass
class Placement:
    """Where the patient lies on the detector: ``px = R @ mm / spacing + offset`` (facing left)."""

    height: int
    width: int
    spacing: float  # mm per px (isotropic)
    rotation_deg: float
    offset: np.ndarray  # (2,) px

    @property
    def matrix(self) -> np.ndarray:
        """2x3 affine mapping patient mm (x, y, 1) to image px (x, y)."""
        r = math.radians(self.rotation_deg)
        rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]) / self.spacing
        return np.concatenate([rot, self.offset[:, None]], axis=1)

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        m = self.matrix
        return np.asarray(pts_mm) @ m[:, :2].T + m[:, 2]


@dataclass
class ImagingParams:
    """Exposure, detector and processing settings of one study, drawn before the image size is known."""

    drc: float  # strength of the large-kernel dynamic range compression
    sharpen: float  # unsharp-mask strength
    photons: float  # detected quanta per pixel behind the spine
    blur_px: float  # detector blur sigma
    bits: int  # BitsStored
    gamma: float  # display gamma
    collimate: bool
    collimation_cut: np.ndarray  # (4,) fraction of the free room cut on the left, top, right, bottom (0 = none)
    marker: str | None  # lead side marker letter
    marker_mm: float
    marker_inset: float  # distance from the field corner in marker sizes
    marker_tau: float

    def as_meta(self) -> dict:
        return dict(
            photons=round(self.photons, 1),
            blur_px=round(self.blur_px, 3),
            drc=round(self.drc, 3),
            sharpen=round(self.sharpen, 3),
            gamma=round(self.gamma, 3),
            bits_stored=self.bits,
            marker=self.marker,
        )


def sample_imaging(rng: np.random.Generator, cfg: SyntheticConfig) -> ImagingParams:
    """Draw every imaging setting (a fixed number of draws, so the settings do not depend on the image size)."""
    vals = dict(
        drc=float(rng.uniform(0.55, 0.85)),
        sharpen=float(rng.uniform(0.0, 0.8)),
        photons=float(np.exp(rng.uniform(np.log(cfg.photons[0]), np.log(cfg.photons[1])))),
        blur_px=float(rng.uniform(*cfg.blur_px)),
        bits=int(rng.integers(cfg.bits_stored[0], cfg.bits_stored[1] + 1)),
        gamma=float(rng.uniform(0.8, 1.25)),
    )
    collimate = bool(rng.random() < cfg.collimation_prob)
    cut = rng.uniform(0.0, 0.6, 4) * (rng.random(4) < 0.7)
    has_marker = bool(rng.random() < cfg.marker_prob)
    letter = "L" if rng.random() < 0.7 else "R"
    return ImagingParams(
        **vals,
        collimate=collimate,
        collimation_cut=cut if collimate else np.zeros(4),
        marker=letter if has_marker else None,
        marker_mm=float(rng.uniform(12, 20)),
        marker_inset=float(rng.uniform(0.5, 2.0)),
        marker_tau=float(rng.uniform(3.0, 5.0)),
    )


def _draw_size(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[int, int]:
    rng_h = cfg.large_size_px if rng.random() < cfg.large_fraction else cfg.size_px
    h = rng.uniform(*rng_h)
    w = h * rng.uniform(*cfg.aspect)
    return int(round(h)), int(round(w))


def place_on_detector(rng: np.random.Generator, model: SpineModel, cfg: SyntheticConfig) -> Placement:
    """Random size, spacing, rotation and translation that keep every landmark inside with a margin."""
    rot = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    h, w = _draw_size(rng, cfg)
    # the field of view of a lateral lumbar film (T11/T12 to the coccyx) decides the spacing, within its range
    s = float(np.clip(rng.uniform(*cfg.fov_mm) / h, *cfg.spacing_mm))
    r = math.radians(rot)
    rmat = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    pts = model.points @ rmat.T
    lo, hi = pts.min(0), pts.max(0)
    margin = np.array([25.0, 18.0])  # mm around the landmarks
    need = hi - lo + 2 * margin + np.array([80.0, 0.0])  # room for posterior elements / soft tissue in x
    s = max(s, need[1] / h, need[0] / w)
    if s > cfg.spacing_mm[1]:
        s = cfg.spacing_mm[1]
        h = max(h, math.ceil(need[1] / s))
        w = max(w, math.ceil(need[0] / s))
    if cfg.max_side is not None and max(h, w) > cfg.max_side:
        f = cfg.max_side / max(h, w)
        h2, w2 = max(8, int(math.floor(h * f))), max(8, int(math.floor(w * f)))
        s = s * max(h / h2, w / w2)
        h, w = h2, w2
    # translation: landmark box placed at a random position (centre-weighted) with the margin kept
    box_lo, box_hi = lo / s, hi / s
    room_lo = margin / s - box_lo
    room_hi = np.array([w - 1, h - 1]) - margin / s - box_hi
    t = rng.beta(2.5, 2.5, 2)
    offset = room_lo + t * np.maximum(room_hi - room_lo, 0.0)
    offset = np.where(room_hi < room_lo, (room_lo + room_hi) / 2, offset)
    return Placement(height=int(h), width=int(w), spacing=s, rotation_deg=rot, offset=offset)


def _low_res(placement: Placement, max_side: int) -> tuple[int, int, int, np.ndarray, float]:
    """Render grid: its shape, the integer factor ``f``, the 2x3 mm -> low-res px affine, its spacing in mm.

    Low-res pixel ``i`` covers full-res pixels ``f*i .. f*i + f - 1``: ``p_full = f * (p_low + 0.5) - 0.5``.
    """
    f = max(1, math.ceil(max(placement.height, placement.width) / max_side))
    hl, wl = math.ceil(placement.height / f), math.ceil(placement.width / f)
    lowm = placement.matrix / f
    lowm[:, 2] += 0.5 / f - 0.5
    return hl, wl, f, lowm, placement.spacing * f


def _coarser(m: np.ndarray, k: int) -> np.ndarray:
    """Affine to a ``k`` times coarser grid, pixel-area aligned with :func:`upsample`: ``q = (p + 0.5) / k - 0.5``."""
    out = m / k
    out[:, 2] += 0.5 / k - 0.5
    return out


def upsample(image: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor with pixel-area alignment, cropped to ``shape``.

    Same sampling as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` (edges clamped);
    written with numpy slices because scipy's ``zoom`` is several times slower on 5-9 Mpx images.
    """
    if f == 1:
        return image[: shape[0], : shape[1]].copy()

    def along_rows(a: np.ndarray) -> np.ndarray:  # upsample axis 0 of a (n, m) array
        n, m = a.shape
        pad = np.concatenate([a[:1], a, a[-1:]], axis=0)
        diff = np.diff(pad, axis=0)  # (n + 1, m): pad[i + 1] - pad[i]
        out = np.empty((n, f, m), dtype=a.dtype)
        for k in range(f):
            t = (k + 0.5) / f - 0.5  # offset of output phase k from its input pixel, in input pixels
            if t < 0:  # between input pixels i - 1 and i: pad[i] + (1 + t) * (pad[i + 1] - pad[i])
                np.multiply(diff[:n], 1.0 + t, out=out[:, k])
                out[:, k] += pad[:n]
            else:  # between i and i + 1
                np.multiply(diff[1:], t, out=out[:, k])
                out[:, k] += pad[1 : n + 1]
        return out.reshape(n * f, m)

    return along_rows(np.ascontiguousarray(along_rows(image.T).T))[: shape[0], : shape[1]]


_GAUSS_LUT = special.ndtri((np.arange(256) + 0.5) / 256).astype(np.float32)
_GAUSS_LUT /= _GAUSS_LUT.std()


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White Gaussian noise blurred by the detector: repeated [1, 2, 1] / 4 passes (each adds 0.5 px^2 of variance).

    Binomial passes instead of ``ndimage.gaussian_filter`` because two slice-adds per axis are ~3x cheaper on a
    full-resolution image; one pass (a Gaussian of ~0.7 px) at most, to keep the full-resolution work small.
    """
    passes = min(1, max(0, int(round(2 * sigma * sigma))))
    h, w = shape
    # 8-bit uniform draws through the Gaussian inverse CDF (256 levels, unit variance): ~4x cheaper than
    # ``standard_normal`` on 5-9 Mpx, and the binomial pass makes the sum Gaussian for all practical purposes
    a = _GAUSS_LUT[rng.integers(0, 256, (h + 2 * passes, w + 2 * passes), dtype=np.uint8)]
    for _ in range(passes):
        a = a[:-2] + 2 * a[1:-1] + a[2:]
        a = a[:, :-2] + 2 * a[:, 1:-1] + a[:, 2:]
        a *= 1.0 / 16.0
    return a


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


_GLYPHS = {  # block letters in a unit box (x right, y down); pieces are summed then clipped (overlaps stay single)
    "L": [np.array([[0, 0], [0.32, 0], [0.32, 0.72], [0.85, 0.72], [0.85, 1], [0, 1]])],
    "R": [
        np.array([[0, 0], [0.3, 0], [0.3, 1], [0, 1]]),
        np.array([[0.3, 0], [0.88, 0], [0.88, 0.58], [0.3, 0.58]]),
        np.array([[0.55, 0.58], [0.85, 0.58], [1.0, 1.0], [0.7, 1.0]]),
    ],
}
_GLYPH_HOLES = {"L": [], "R": [np.array([[0.3, 0.17], [0.6, 0.17], [0.6, 0.41], [0.3, 0.41]])]}


def _marker_and_collimation(model: SpineModel, placement: Placement, imaging: ImagingParams, facing: str, f: int):
    """Lead side marker and collimator edges on the render grid: ``(marker tau, exposed mask, info)``."""
    h, w = placement.height, placement.width
    hl, wl = math.ceil(h / f), math.ceil(w / f)
    pts = placement.to_px(model.points)
    lo, hi = pts.min(0), pts.max(0)
    marker = np.zeros((hl, wl), np.float32)
    # collimation: the exposed field is a rectangle inside the image that keeps the landmarks well inside
    full_field = np.array([0.0, 0.0, w - 1.0, h - 1.0])  # x0, y0, x1, y1 (full px)
    keep = 30.0 / placement.spacing  # >= 30 mm around the landmarks
    room = np.clip(np.array([lo[0] - keep, lo[1] - keep, w - 1 - hi[0] - keep, h - 1 - hi[1] - keep]), 0, None)
    cut = room * imaging.collimation_cut
    field = full_field + np.array([cut[0], cut[1], -cut[2], -cut[3]])
    info: dict = {"collimated": bool((cut > 0.5).any()), "exposed_field_px": [round(float(v), 2) for v in field]}
    # render-grid coordinates of pixel centres in full px
    xs = f * (np.arange(wl, dtype=np.float32) + 0.5) - 0.5
    ys = f * (np.arange(hl, dtype=np.float32) + 0.5) - 0.5
    pen = 1.0 / placement.spacing  # ~1 mm penumbra
    # sides the collimator does not cut lie far outside the image (no border there)
    edge = np.where(cut > 0.5, field, np.array([-1e9, -1e9, 1e9, 1e9]))
    inside_x = _sigmoid((xs - edge[0]) / pen) * _sigmoid((edge[2] - xs) / pen)
    inside_y = _sigmoid((ys - edge[1]) / pen) * _sigmoid((edge[3] - ys) / pen)
    exposed = inside_y[:, None] * inside_x[None, :]
    if imaging.marker is not None:
        size = imaging.marker_mm / placement.spacing  # px
        corners = [
            (field[0], field[1]),
            (field[2] - size, field[1]),
            (field[0], field[3] - size),
            (field[2] - size, field[3] - size),
        ]
        # the corner farthest from the landmarks, moved inwards a little
        d = [abs(cx + size / 2 - (lo[0] + hi[0]) / 2) + abs(cy + size / 2 - (lo[1] + hi[1]) / 2) for cx, cy in corners]
        ci = int(np.argmax(d))
        cx, cy = corners[ci]
        inset = imaging.marker_inset * size
        ox = cx + (inset if ci in (0, 2) else -inset)
        oy = cy + (inset if ci in (0, 1) else -inset)
        canvas = ScanlineCanvas((hl, wl), subrows=4, antialias=True)
        holes = ScanlineCanvas((hl, wl), subrows=4, antialias=True)
        for pieces, cv in ((_GLYPHS[imaging.marker], canvas), (_GLYPH_HOLES[imaging.marker], holes)):
            for piece in pieces:
                g = piece.astype(np.float64).copy()
                if facing == "right":  # drawn mirrored so that it reads correctly after the image is flipped
                    g[:, 0] = 1.0 - g[:, 0]
                full = np.array([ox, oy]) + g * np.array([0.8 * size, size])
                cv.add((full + 0.5) / f - 0.5, 1.0)
        marker += imaging.marker_tau * np.clip(canvas.image() - 4.0 * holes.image(), 0.0, 1.0)
    return marker, exposed.astype(np.float32), info


@dataclass
class Rendered:
    """The render-grid maps of one study."""

    tau: np.ndarray  # (hl, wl) attenuation line integrals of the patient
    metal: np.ndarray  # (hl, wl) attenuation of the lead marker and implants (kept out of the window statistics)
    exposed: np.ndarray  # (hl, wl) 1 inside the collimated field, 0 outside
    lowm: np.ndarray  # 2x3 patient mm -> render px
    spacing: float  # render px size in mm
    factor: int  # full px per render px
    info: dict


def render_density(
    rng: np.random.Generator,
    model: SpineModel,
    placement: Placement,
    cfg: SyntheticConfig,
    imaging: ImagingParams,
    facing: str = "left",
) -> Rendered:
    """Thickness (attenuation) map ``tau`` on the reduced render grid; ``rng`` draws the noise fields only."""
    hl, wl, f, lowm, lsp = _low_res(placement, cfg.render_max_side)
    soft = model.soft
    # smooth fields (soft tissue, lungs, shadows, blurred plates, gas) live on a 2x coarser grid, upsampled once
    k2 = 2
    h2, w2, m2 = math.ceil(hl / k2), math.ceil(wl / k2), _coarser(lowm, k2)
    inv = np.linalg.inv(np.vstack([m2, [0, 0, 1]]))[:2]
    yy, xx = np.mgrid[0:h2, 0:w2].astype(np.float32)
    X = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    Y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]

    # soft tissue: elliptic lateral chord between the skin lines, heavier posteriorly, wider in the pelvis
    xa = np.interp(Y, soft.knots_y, soft.anterior_x).astype(np.float32)
    xp = np.interp(Y, soft.knots_y, soft.posterior_x).astype(np.float32)
    t = (X - xa) / np.maximum(xp - xa, 1.0)
    chord = np.sqrt(np.clip(1.0 - (2.0 * t - 1.0) ** 2, 0.0, 1.0))
    ramp = 1.0 + soft.posterior_weight * (2.0 * np.clip(t, 0, 1) - 1.0)
    width = soft.lateral_width * (1.0 + 0.25 * _sigmoid((Y - soft.pelvis_y) / 15.0))
    # organ / fat-plane inhomogeneity: smooth noise (Gaussian-filtered on a 4x coarser grid, then bilinear)
    lf = ndimage.gaussian_filter(rng.standard_normal((math.ceil(h2 / 4), math.ceil(w2 / 4)), dtype=np.float32), 3.0)
    lf = upsample(lf, 4, (h2, w2))
    tau_soft = soft.mu * width * chord * ramp * (1.0 + 0.05 * lf / max(float(lf.std()), 1e-6))
    for x_pc, y_pc, rise, run in soft.diaphragm:
        front = np.clip((x_pc - X) / run, 0.0, 1.0) ** 0.8
        behind = np.clip((X - x_pc) / run, 0.0, 1.0) ** 1.5
        y_d = y_pc - rise * front - 0.5 * rise * behind
        lung = _sigmoid((y_d - Y) / 3.0)
        tau_soft *= 1.0 - 0.5 * soft.lung_fraction * lung
    bone_keep = np.ones((h2, w2), np.float32)
    for x, y, r, bone_k, extra in soft.shadows:
        m = np.exp(-((X - x) ** 2 + (Y - y) ** 2) / (2 * r * r)).astype(np.float32)
        bone_keep *= 1.0 - bone_k * m
        tau_soft += extra * m

    # bones and gas, summed with scanline fills
    bone_c, trab_c = (ScanlineCanvas((hl, wl), subrows=4, antialias=True) for _ in range(2))
    gas_c, soft_c = (ScanlineCanvas((h2, w2), subrows=2, antialias=True) for _ in range(2))
    metal_c = ScanlineCanvas((hl, wl), subrows=4, antialias=True)
    for sh in model.shapes:
        if sh.kind == "metal":
            metal_c.add(sh.outline @ lowm[:, :2].T + lowm[:, 2], sh.fill)
            continue
        if sh.kind in ("gas", "soft"):
            (gas_c if sh.kind == "gas" else soft_c).add(sh.outline @ m2[:, :2].T + m2[:, 2], sh.fill)
            continue
        px = sh.outline @ lowm[:, :2].T + lowm[:, 2]
        (trab_c if sh.textured else bone_c).add(px, sh.fill)
        if sh.rim and sh.rim_width:
            bone_c.add(px, sh.rim)
            bone_c.add(offset_inward(px, sh.rim_width / lsp), -sh.rim)
    bone, trab = bone_c.image(), trab_c.image()
    smooth = tau_soft
    if not gas_c.empty:
        gas = ndimage.gaussian_filter(gas_c.image(), 1.5 / (k2 * lsp))
        smooth += np.maximum(gas, -0.6 * tau_soft)
    if not soft_c.empty:  # bones without a sharp outline (thin plates seen obliquely): blurred fills
        plates = ndimage.gaussian_filter(soft_c.image(), 3.0 / (k2 * lsp))
        smooth += plates * bone_keep
    # trabecular texture (*ours*): ridges of band-passed noise form a cellular network of thin bright lines,
    # vertically elongated like the principal (vertical) trabeculae with horizontal struts; computed only on
    # the rows/columns where textured bone is
    rows, cols = np.nonzero(trab.any(axis=1))[0], np.nonzero(trab.any(axis=0))[0]
    if rows.size:
        pad = int(math.ceil(6.0 / lsp))
        r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, hl)
        c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, wl)
        white = rng.standard_normal((r1 - r0, c1 - c0), dtype=np.float32)
        bp = ndimage.gaussian_filter(white, (1.1 / lsp, 0.42 / lsp))
        bp -= ndimage.gaussian_filter(bp, 2.0 / lsp)
        bp /= max(float(bp.std()), 1e-6)
        ridges = np.exp(-6.0 * bp * bp)
        tex = 0.6 * (ridges - ridges.mean()) / max(float(ridges.std()), 1e-6) + 0.4 * bp  # network + grain
        trab[r0:r1, c0:c1] *= 1.0 + 0.15 * tex
    bone += trab
    bone *= upsample(bone_keep, k2, (hl, wl))
    tau = upsample(smooth, k2, (hl, wl)) + bone
    metal, exposed, info = _marker_and_collimation(model, placement, imaging, facing, f)
    if not metal_c.empty:
        metal += np.minimum(metal_c.image(), 3.0)  # overlapping implants: one layer of metal is opaque already
    # the fills are area-antialiased; blur by the detector's point spread (in render px) plus a little
    sigma = math.hypot(0.3, imaging.blur_px * placement.spacing / lsp)
    tau = ndimage.gaussian_filter(tau.astype(np.float32), sigma)
    if metal.any():
        metal = ndimage.gaussian_filter(metal, sigma)
    return Rendered(tau, metal, exposed, lowm, lsp, f, info)


def form_image(
    rng: np.random.Generator, rendered: Rendered, placement: Placement, imaging: ImagingParams, bone_ref: float
) -> np.ndarray:
    """Detector physics and processing: render-grid maps -> ``(H, W)`` uint16 within ``imaging.bits`` bits.

    ``rng`` draws the quantum noise only; ``bone_ref`` is the attenuation behind the spine, where the exposure
    control puts ``imaging.photons`` quanta per pixel.
    """
    h, w = placement.height, placement.width
    tau, lsp, exposed = rendered.tau, rendered.spacing, rendered.exposed
    hl, wl = tau.shape
    # dynamic range compression on a coarse copy (large Gaussian; cheap at 1/4 resolution)
    step = 4
    ph, pw = -hl % step, -wl % step
    blocks = np.pad(tau, ((0, ph), (0, pw)), mode="edge").reshape((hl + ph) // step, step, (wl + pw) // step, step)
    big = upsample(ndimage.gaussian_filter(blocks.mean(axis=(1, 3)), 25.0 / (lsp * step)), step, (hl, wl))
    display = tau - imaging.drc * big
    # edge enhancement (unsharp mask of ~1.5 mm), as clinical processing does, of random strength
    if imaging.sharpen > 0.05:
        display += imaging.sharpen * (tau - ndimage.gaussian_filter(tau, 1.5 / lsp))
    # window: the body from its thinnest tissue to the densest bone; air outside the skin goes (near) black
    sub, sub_tau = display[::2, ::2], tau[::2, ::2]
    field = exposed[::2, ::2] > 0.99
    sub, sub_tau = sub[field], sub_tau[field]
    body = sub[sub_tau > 0.2 * float(np.percentile(sub_tau, 99.9))]
    lo = float(np.percentile(body if body.size > 100 else sub, 0.5))
    hi = float(np.percentile(sub, 99.95))
    lo -= 0.06 * (hi - lo)
    hi += 0.05 * (hi - lo)
    display += rendered.metal  # lead and steel: far above the window, white
    if float(exposed.min()) < 0.99:
        # outside the collimated field the processing shows unexposed detector as white (MONOCHROME2)
        display = display * exposed + (1.0 - exposed) * (hi + 0.5 * (hi - lo))
    # log-domain noise std: 1 / sqrt(I), I = photons * exp(-(tau - bone_ref)); computed on the render grid
    sd_low = (np.exp(0.5 * (tau - bone_ref)) / math.sqrt(imaging.photons)).astype(np.float32)
    np.minimum(sd_low, 3.0 * float(np.median(sd_low)), out=sd_low)  # scatter floor in the thickest parts
    f = rendered.factor
    disp = upsample(display.astype(np.float32), f, (h, w))
    sd = np.repeat(np.repeat(sd_low, f, 0), f, 1)[:h, :w] if f > 1 else sd_low
    noise = _correlated_noise(rng, (h, w), imaging.blur_px)
    noise *= sd
    disp += noise
    del noise
    # window to BitsStored; gamma through a look-up table
    maxval = 2**imaging.bits - 1
    lut = np.round((np.linspace(0.0, 1.0, 65536) ** imaging.gamma) * maxval).astype(np.uint16)
    disp -= lo
    disp *= 65535.0 / (hi - lo)
    np.clip(disp, 0, 65535, out=disp)
    return lut[disp.astype(np.uint16)]


def rasterise_labels(model: SpineModel, placement: Placement) -> np.ndarray:
    """Full-resolution vertebral-body label mask (0 background, 1..V in layout order), facing left."""
    mask = np.zeros((placement.height, placement.width), np.uint8)
    for sh in model.shapes:
        if sh.label:
            px = placement.to_px(sh.outline)
            rr, cc = draw_polygon(px[:, 1], px[:, 0], mask.shape)
            mask[rr, cc] = sh.label
    return mask
