"""Stage-2 vertebra crops (An et al. 2022, Section 3.3, Eq. 5): box sizes, batched resampling, exact back-mapping.

Pixel-centre convention (the project's, see :mod:`lumbar_monai.points`): pixel ``(i, j)`` of an image has its
centre at ``x = j, y = i`` and covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``.

A crop of side ``S`` (image pixels) centred on ``c`` and resampled to ``N x N`` covers the continuous square
``[c - S/2, c + S/2]^2`` edge to edge; crop pixel ``u`` has its centre at image coordinate
``c + (u - (N - 1) / 2) * S / N``. This is the "half-pixel" (``align_corners=False``) convention of
``torch.nn.functional.grid_sample``, which does the resampling: one call for all vertebrae of an image.
Each crop is described by one 3x3 homogeneous matrix ``A`` mapping crop pixel coordinates ``(u, v, 1)`` to image
pixel coordinates ``(x, y, 1)``; rotation / scale / translation augmentation is folded into the same matrix, so
points map back exactly with :func:`crop_to_image` (and forward with :func:`image_to_crop`).

Samples outside the image read 0: this *is* the paper's "crop from the zero-padded original image" (padding to a
square with zeros and then cropping gives the same pixels), without materialising the padded image.

Interpolation is bilinear (*ours*; the paper names no method), by default without anti-aliasing: Eq. 5 sides are
typically one to three times the 256 px output, and the Gaussian blur that follows (Section 3.3; sigma 1 crop pixel
by default, *ours*, the paper gives none) smooths the result. It cannot undo aliasing, which happens at sampling: an
80 px AP crop of a 2,200 px AASCE film shrinks about 3x, and bilinear sampling then reads 4 of every 9 pixels.
``antialias=True`` (:func:`resample_crops`, :func:`extract_vertebra_crops`, :class:`VertebraCropsd`; the
predictor's ``crop_antialias``) first smooths the part of the image the crops read with a Gaussian of sigma
``(k - 1) / 2`` image pixels per axis, ``k`` image pixels per crop pixel (:func:`antialias_sigma`; the rule of
MONAI's and scikit-image's resize, and of the stage-1 windows, :func:`lumbar_monai.framing.resample_window`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.networks.layers import GaussianFilter
from monai.transforms import MapTransform, RandomizableTransform

from .anatomy import Layout, get_layout

__all__ = [
    "crop_boxes_eq5",
    "crop_affines",
    "resample_crops",
    "antialias_sigma",
    "blur_crops",
    "crop_to_image",
    "image_to_crop",
    "select_vertebrae",
    "extract_vertebra_crops",
    "VertebraCropsd",
]


def crop_boxes_eq5(centres, layout: Layout | str) -> np.ndarray:
    """Side length ``H = W`` of each vertebra's square crop, Eq. 5 (in the centres' pixel units).

    Generalised over the layout's lumbar vertebrae (cranial to caudal, ``n`` of them, ``d(a, b) = |c_a,y - c_b,y|``):
    first ``3/2 d(1, 2)``; middle ``3/4 (d(i-1, i) + d(i, i+1))``; last ``3/2 d(n-1, n)``; the sacrum, when the
    layout has one, ``3/2 d(n-1, n)`` (the L4-L5 distance: the L5-S1 distance varies too much, Section 3.3).
    Every side is then multiplied by ``layout.crop_scale`` (1.0, the paper's rule, for the lateral layout; wider for
    AP, see :data:`lumbar_monai.anatomy.AP`). With ``layout.crop_spacing == "euclidean"`` ``d(a, b)`` is the
    distance between the centres, not its vertical part. The side is the crop's *height*; its width is
    ``layout.crop_aspect`` times that (:func:`crop_affines`' ``aspect``).

    Args:
        centres: ``(..., V, 2)`` (x, y) centres in layout order.
        layout: the landmark layout (or its name).

    Returns:
        ``(..., V)`` float64 side lengths.
    """
    layout = get_layout(layout)
    c = np.asarray(centres, dtype=np.float64)
    if c.shape[-2:] != (layout.num_vertebrae, 2):
        raise ValueError(f"centres must be (..., {layout.num_vertebrae}, 2) for layout {layout.name!r}, got {c.shape}")
    lum = list(layout.lumbar_indices)
    if len(lum) < 2:
        raise ValueError("Eq. 5 needs at least two lumbar vertebrae")
    if layout.crop_spacing == "euclidean":
        d = np.linalg.norm(np.diff(c[..., lum, :], axis=-2), axis=-1)  # (..., n-1) distances between neighbours
    else:
        d = np.abs(np.diff(c[..., lum, 1], axis=-1))
    sides = np.empty(c.shape[:-1], dtype=np.float64)
    lum_sides = np.empty(c.shape[:-2] + (len(lum),), dtype=np.float64)
    lum_sides[..., 0] = 1.5 * d[..., 0]
    lum_sides[..., -1] = 1.5 * d[..., -1]
    if len(lum) > 2:
        lum_sides[..., 1:-1] = 0.75 * (d[..., :-1] + d[..., 1:])
    sides[..., lum] = lum_sides
    if layout.sacrum_index is not None:
        sides[..., layout.sacrum_index] = 1.5 * d[..., -1]
    sides = sides * float(layout.crop_scale)
    # *ours*: a degenerate annotation or prediction (two centres at the same height) would give a zero-size,
    # non-invertible crop; no side is allowed below a quarter of the image's median side (never binding for
    # plausible anatomy, where neighbouring sides differ by far less than 4x)
    floor = 0.25 * np.median(sides, axis=-1, keepdims=True)
    return np.maximum(sides, np.maximum(floor, 1e-3))


def crop_affines(
    centres,
    sides,
    out_size: int,
    rotation=None,
    scale=None,
    translation=None,
    aspect: float = 1.0,
) -> np.ndarray:
    """3x3 matrices mapping crop pixel coordinates to image pixel coordinates (see the module docstring).

    ``A = T(c + t) R(theta) S(side * scale * (aspect, 1) / N) T(-(N - 1) / 2)``: the crop is centred on ``c + t``,
    rotated by ``theta`` about its centre and covers ``side * scale * aspect`` by ``side * scale`` image pixels
    (width by height) on its ``N x N`` pixels.

    Args:
        centres: ``(V, 2)`` crop centres (x, y) in image pixels.
        sides: ``(V,)`` or scalar side lengths in image pixels (e.g. from :func:`crop_boxes_eq5`).
        out_size: ``N``, the crop's pixels per side.
        rotation: ``(V,)`` angles in radians (positive turns the crop's x axis towards +y), default 0.
        scale: ``(V,)`` multiplicative side factors, default 1.
        translation: ``(V, 2)`` shifts of the centre in image pixels, default 0.
        aspect: crop width / height (``Layout.crop_aspect``), default 1 (square).

    Returns:
        ``(V, 3, 3)`` float64.
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    v = len(c)
    s = np.broadcast_to(np.asarray(sides, dtype=np.float64), (v,))
    th = np.zeros(v) if rotation is None else np.broadcast_to(np.asarray(rotation, dtype=np.float64), (v,))
    sc = np.ones(v) if scale is None else np.broadcast_to(np.asarray(scale, dtype=np.float64), (v,))
    t = np.zeros((v, 2)) if translation is None else np.broadcast_to(np.asarray(translation, np.float64), (v, 2))
    k = s * sc / float(out_size)  # image pixels per crop pixel (vertically)
    kx = k * float(aspect)
    cos, sin = np.cos(th), np.sin(th)
    half = (out_size - 1) / 2.0
    a = np.zeros((v, 3, 3))
    a[:, 0, 0], a[:, 0, 1] = cos * kx, -sin * k
    a[:, 1, 0], a[:, 1, 1] = sin * kx, cos * k
    a[:, 0, 2] = c[:, 0] + t[:, 0] - half * (a[:, 0, 0] + a[:, 0, 1])
    a[:, 1, 2] = c[:, 1] + t[:, 1] - half * (a[:, 1, 0] + a[:, 1, 1])
    a[:, 2, 2] = 1.0
    return a


def crop_to_image(points, affines) -> np.ndarray:
    """Map ``(V, K, 2)`` crop-pixel points through ``(V, 3, 3)`` crop->image matrices; returns image pixels."""
    p = _as_numpy(points)
    a = _as_numpy(affines)
    return np.einsum("vij,vkj->vki", a[:, :2, :2], p) + a[:, None, :2, 2]


def image_to_crop(points, affines) -> np.ndarray:
    """Inverse of :func:`crop_to_image`: ``(V, K, 2)`` image-pixel points -> crop pixels of each crop."""
    a = np.linalg.inv(_as_numpy(affines))
    p = _as_numpy(points)
    return np.einsum("vij,vkj->vki", a[:, :2, :2], p) + a[:, None, :2, 2]


def antialias_sigma(affines) -> tuple[float, float]:
    """``(sigma_y, sigma_x)`` in image pixels of the Gaussian that anti-aliases crops sampled with ``(V, 3, 3)``
    crop->image ``affines``: ``(k - 1) / 2`` with ``k`` the image pixels per crop pixel along each crop axis (the
    median over the crops), 0 where crops do not shrink the image. Crop axes are taken as image axes (the
    augmentation's rotations are a few degrees)."""
    a = np.asarray(_as_numpy(affines), dtype=np.float64).reshape(-1, 3, 3)
    a = a[np.isfinite(a).all(axis=(1, 2))]  # a crop around a missing (NaN) centre says nothing
    if len(a) == 0:
        return 0.0, 0.0
    kx = float(np.median(np.hypot(a[:, 0, 0], a[:, 1, 0])))
    ky = float(np.median(np.hypot(a[:, 0, 1], a[:, 1, 1])))
    return max((ky - 1.0) / 2.0, 0.0), max((kx - 1.0) / 2.0, 0.0)


def _prefiltered_region(img: torch.Tensor, a: torch.Tensor, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of ``(C, H, W)`` ``img`` that crops ``a`` read, smoothed by :func:`antialias_sigma` (edges
    replicated, MONAI's ``GaussianFilter``), and the affines moved into it; only that part is filtered, not the
    whole film."""
    sy, sx = antialias_sigma(a.cpu().numpy())
    if max(sy, sx) <= 0:
        return img, a
    _, h, w = img.shape
    n = float(out_size)
    box = torch.tensor([[-0.5, -0.5, 1.0], [n - 0.5, -0.5, 1.0], [-0.5, n - 0.5, 1.0], [n - 0.5, n - 0.5, 1.0]],
                       dtype=a.dtype, device=a.device)
    xy = torch.einsum("vij,kj->vki", a[:, :2], box).reshape(-1, 2)
    xy = xy[torch.isfinite(xy).all(dim=1)]
    pad = 4.0 * max(sy, sx) + 2.0
    x0 = min(max(int(np.floor(float(xy[:, 0].min()) - pad)), 0), w - 1)
    y0 = min(max(int(np.floor(float(xy[:, 1].min()) - pad)), 0), h - 1)
    x1 = max(min(int(np.ceil(float(xy[:, 0].max()) + pad)) + 1, w), x0 + 1)
    y1 = max(min(int(np.ceil(float(xy[:, 1].max()) + pad)) + 1, h), y0 + 1)
    sub = img[:, y0:y1, x0:x1]
    r = int(np.ceil(4.0 * max(sy, sx)))
    # replicate the edges first: GaussianFilter pads with zeros, which would darken a film's borders; an axis the
    # crops do not shrink gets a near-delta kernel (sigma 1e-3)
    sub = F.pad(sub[None], (r, r, r, r), mode="replicate")
    sub = GaussianFilter(spatial_dims=2, sigma=[max(sy, 1e-3), max(sx, 1e-3)]).to(img.device)(sub)[0, :, r:-r, r:-r]
    shift = torch.tensor([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]], dtype=a.dtype, device=a.device)
    return sub, shift @ a


def resample_crops(image, affines, out_size: int, mode: str = "bilinear", antialias: bool = False) -> torch.Tensor:
    """All crops of one image in one :func:`torch.nn.functional.grid_sample` call (zeros outside the image).

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` array/tensor (any real dtype; sampled as float32 on its device).
        affines: ``(V, 3, 3)`` crop->image matrices (:func:`crop_affines`).
        out_size: ``N``.
        mode: ``"bilinear"`` (default) or ``"nearest"`` / ``"bicubic"``.
        antialias: smooth the image first by :func:`antialias_sigma` where the crops shrink it (*ours*).

    Returns:
        ``(V, C, N, N)`` float32 tensor on the image's device.
    """
    img = torch.as_tensor(_as_float_array(image))
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"image must be (C, H, W) or (H, W), got shape {tuple(img.shape)}")
    img = img.float()
    a = torch.as_tensor(_as_numpy(affines), dtype=torch.float64, device=img.device)
    if antialias and len(a):
        img, a = _prefiltered_region(img, a, out_size)
    _, h, w = img.shape
    v = a.shape[0]
    u = torch.arange(out_size, dtype=torch.float64, device=img.device)
    # crop pixel (u, v) -> image (x, y); then to grid_sample's normalised coordinates (align_corners=False):
    # pixel centre x = j lies at (2 j + 1) / W - 1.
    x = a[:, 0, 0, None, None] * u[None, None, :] + a[:, 0, 1, None, None] * u[None, :, None] + a[:, 0, 2, None, None]
    y = a[:, 1, 0, None, None] * u[None, None, :] + a[:, 1, 1, None, None] * u[None, :, None] + a[:, 1, 2, None, None]
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1).float()  # (V, N, N, 2)
    return F.grid_sample(
        img[None].expand(v, -1, -1, -1), grid, mode=mode, padding_mode="zeros", align_corners=False
    )


def blur_crops(crops: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(V, C, N, N)`` crops (Section 3.3, after resizing) with MONAI's ``GaussianFilter``."""
    if sigma is None or sigma <= 0:
        return crops
    return GaussianFilter(spatial_dims=2, sigma=float(sigma)).to(crops.device)(crops)


def select_vertebrae(layout: Layout | str, which: str | Sequence[int]) -> list[int]:
    """Vertebra indices for ``"lumbar"``, ``"sacrum"``, ``"all"`` or an explicit index list."""
    layout = get_layout(layout)
    if isinstance(which, str):
        if which == "lumbar":
            return list(layout.lumbar_indices)
        if which == "sacrum":
            return [] if layout.sacrum_index is None else [layout.sacrum_index]
        if which == "all":
            return list(range(layout.num_vertebrae))
        raise ValueError(f"which must be 'lumbar', 'sacrum', 'all' or indices, got {which!r}")
    return [int(i) for i in which]


def extract_vertebra_crops(
    image,
    centres,
    layout: Layout | str,
    out_size: int = 256,
    vertebrae: str | Sequence[int] = "all",
    blur_sigma: float = 1.0,
    rotation=None,
    scale=None,
    translation=None,
    antialias: bool = False,
) -> tuple[torch.Tensor, np.ndarray]:
    """Eq. 5 crops of the chosen vertebrae of one image, resized to ``out_size`` and blurred (Section 3.3).

    The one crop path shared by training (:class:`VertebraCropsd`) and inference (the predictor). Box sides come
    from *all* ``centres`` (Eq. 5 needs the neighbours); crops are made only for ``vertebrae``.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` image, intensities already normalised by the caller.
        centres: ``(V, 2)`` centres of all vertebrae of the layout (ground truth or Pose-Net's).
        layout: landmark layout.
        out_size: crop pixels per side (256 in the paper).
        vertebrae: which vertebrae to crop (see :func:`select_vertebrae`).
        blur_sigma: Gaussian blur sigma in crop pixels after resizing (0 disables).
        rotation, scale, translation: optional per-crop augmentation (see :func:`crop_affines`), one row per
            cropped vertebra.
        antialias: smooth the image before sampling where the crops shrink it (:func:`resample_crops`).

    Returns:
        ``(crops (M, C, N, N) float32 tensor, affines (M, 3, 3) float64 crop->image)``.
    """
    layout = get_layout(layout)
    idx = select_vertebrae(layout, vertebrae)
    c = np.asarray(centres, dtype=np.float64)
    sides = crop_boxes_eq5(c, layout)
    aff = crop_affines(c[idx], sides[idx], out_size, rotation=rotation, scale=scale, translation=translation,
                       aspect=layout.crop_aspect)
    crops = blur_crops(resample_crops(image, aff, out_size, antialias=antialias), blur_sigma)
    return crops, aff


class VertebraCropsd(RandomizableTransform, MapTransform):
    """Dictionary transform: one sample -> a list of per-vertebra crop samples (Section 3.3 training crops).

    Each output dict has ``image`` ``(C, N, N)`` float32 crop, ``points`` ``(K, 2)`` the vertebra's corners in crop
    pixels, ``affine`` ``(3, 3)`` crop->image matrix, ``vertebra`` its index in the layout; other keys of the input
    are copied (shallow). Crops are centred on the ground-truth centres (``layout.centres(points)``) or on
    ``centres_key`` when given, with random translation (fraction of the crop side, uniform per axis), rotation
    (degrees) and scale (the augmentations of Section 3.3), each drawn per crop with probability ``prob``.
    Returning a list lets MONAI datasets flatten the crops (as ``RandCropByPosNegLabeld`` does).

    Args:
        keys: image key(s) to crop (the first one is the image the shape comes from).
        layout: landmark layout.
        points_key: key of the ``(N, 2)`` ground-truth points in image pixels.
        vertebrae: ``"lumbar"``, ``"sacrum"``, ``"all"`` or indices.
        out_size: crop size.
        blur_sigma: Gaussian blur after resizing (crop pixels).
        translate: max |shift| as a fraction of the crop side.
        rotate: max |angle| in degrees.
        scale: ``(low, high)`` range of the side factor.
        prob: probability of augmenting a crop.
        centres_key: optional key of ``(V, 2)`` centres to crop around instead of the ground truth.
        antialias: smooth the image before sampling where the crops shrink it (:func:`resample_crops`).
        allow_missing_keys: MONAI's flag.
    """

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(
        self,
        keys: KeysCollection,
        layout: Layout | str,
        points_key: str = "points",
        vertebrae: str | Sequence[int] = "lumbar",
        out_size: int = 256,
        blur_sigma: float = 1.0,
        translate: float = 0.0,
        rotate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        prob: float = 1.0,
        centres_key: str | None = None,
        antialias: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.layout = get_layout(layout)
        self.points_key = points_key
        self.vertebrae = select_vertebrae(self.layout, vertebrae)
        self.out_size = int(out_size)
        self.blur_sigma = float(blur_sigma)
        self.translate = float(translate)
        self.rotate = float(rotate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.centres_key = centres_key
        self.antialias = bool(antialias)
        self._params: dict[str, np.ndarray] | None = None

    def randomize(self, data: Any = None) -> None:
        m = len(self.vertebrae)
        do = self.R.random_sample(m) < self.prob
        self._params = {
            "translation_frac": self.R.uniform(-self.translate, self.translate, (m, 2)) * do[:, None],
            "rotation": np.deg2rad(self.R.uniform(-self.rotate, self.rotate, m)) * do,
            "scale": np.where(do, self.R.uniform(self.scale[0], self.scale[1], m), 1.0),
        }

    def __call__(self, data: Mapping[Hashable, Any], randomize: bool = True) -> list[dict[Hashable, Any]]:
        d = dict(data)
        pts = self.layout.check_points(_as_numpy(d[self.points_key]))
        centres = self.layout.centres(pts) if self.centres_key is None else _as_numpy(d[self.centres_key])
        if randomize:
            self.randomize()
        if self._params is None:
            raise RuntimeError("call randomize() first or use randomize=True")
        sides = crop_boxes_eq5(centres, self.layout)[self.vertebrae]
        p = self._params
        aff = crop_affines(
            centres[self.vertebrae],
            sides,
            self.out_size,
            rotation=p["rotation"],
            scale=p["scale"],
            translation=p["translation_frac"] * sides[:, None] * np.array([self.layout.crop_aspect, 1.0]),
            aspect=self.layout.crop_aspect,
        )
        crops = {}
        for key in self.key_iterator(d):
            crops[key] = blur_crops(resample_crops(d[key], aff, self.out_size, antialias=self.antialias),
                                    self.blur_sigma)
        vert_pts = [pts[self.layout.vertebra_slices[i]] for i in self.vertebrae]
        out = []
        for j, vi in enumerate(self.vertebrae):
            item = {k: v for k, v in d.items() if k not in crops}
            for key, batch in crops.items():
                item[key] = batch[j]
            item[self.points_key] = image_to_crop(vert_pts[j][None], aff[j : j + 1])[0].astype(np.float32)
            item["affine"] = aff[j]
            item["vertebra"] = vi
            out.append(item)
        return out


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _as_float_array(x):
    """Tensors pass through; numpy arrays of any dtype (uint16 included) become float32."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    arr = np.asarray(x)
    return np.ascontiguousarray(arr, dtype=np.float32)

