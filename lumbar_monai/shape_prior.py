"""A statistical shape model of a layout's landmarks, fitted robustly to each prediction (*ours*, issue 15).

The paper decodes every corner from its own heat-map peak (Section 3.3); nothing checks that the 20 (AP) or 22
(lateral) corners together form a spine. This prior is the point-distribution model of Cootes et al. (1995,
"Active shape models"): the training labels are aligned by generalised Procrustes analysis (similarity transforms),
and their principal modes of variation kept. A prediction is fitted with Tukey-weighted iterations (a corner far
from the model's best fit loses its weight, so one wrong corner does not drag the others), a Gaussian prior on the
mode coefficients (a MAP fit), and each corner is then moved towards the fitted shape by one minus its weight:
corners that agree with the shape stay (almost) where the M-Net put them; a corner more than ``cut`` vertebra
heights from it is replaced by the model's position and reported as an outlier.

Alignments may include a reflection, so one prior serves a lateral image whichever way the patient faces and an AP
image shown mirrored; the points keep their anatomical names throughout.

Written here because none of MONAI, scikit-image or SimpleITK has a point-distribution model with a weighted MAP fit
(``skimage.transform.SimilarityTransform`` estimates unweighted similarities without reflections,
``scipy.spatial.procrustes`` unweighted ones without returning the transform).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .anatomy import Layout, get_layout
from .measures import vertebral_heights

__all__ = ["ShapePrior", "ShapeFit", "vertebra_height", "similarity_fit"]

#: Tukey cut-off: a corner this many vertebra heights from the fitted shape gets weight 0 (replaced, an outlier).
DEFAULT_CUT = 0.5
#: principal modes kept by default (8 of the AP layout's 36 non-similarity degrees of freedom).
DEFAULT_MODES = 8
_ITERATIONS = 10
_PROCRUSTES_ROUNDS = 10


def vertebra_height(points: np.ndarray, layout: Layout) -> float:
    """Median middle height (:func:`~lumbar_monai.measures.vertebral_heights`: between the end plates' midpoints) of
    the vertebrae with two end plates, in pixels: the unit of the prior's residuals."""
    return float(np.median([h["middle"] for h in vertebral_heights(points, layout).values()]))


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                   reflection: bool = False) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted least-squares similarity ``dst ~ s * src @ R.T + t`` (Umeyama 1991): ``(s, R (2, 2), t (2,))``.

    ``reflection`` allows ``det(R) = -1``."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd((w[:, None] * b).T @ a)
    sign = np.ones(2)
    if not reflection and np.linalg.det(u @ vt) < 0:
        sign[1] = -1.0
    rot = u @ np.diag(sign) @ vt
    s = float((sv * sign).sum() / max(float(w @ (a * a).sum(1)), 1e-12))
    return s, rot, md - s * rot @ ms


def _apply(s: float, rot: np.ndarray, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return s * x @ rot.T + t


@dataclass(frozen=True)
class ShapeFit:
    """One prediction fitted: ``points`` (N, 2) corrected, ``weights`` (N,) Tukey weights (1 kept, 0 replaced),
    ``residual`` (N,) distance of each input corner from the fitted shape in vertebra heights, ``outliers`` (N,)
    bool (``residual >= cut``)."""

    points: np.ndarray
    weights: np.ndarray
    residual: np.ndarray
    outliers: np.ndarray


@dataclass(frozen=True)
class ShapePrior:
    """Point-distribution model of a layout's landmarks (see the module docstring).

    Args:
        layout: the layout's name.
        mean: ``(N, 2)`` mean shape, centred, unit Frobenius norm.
        modes: ``(2N, K)`` orthonormal principal modes of the aligned shapes.
        variances: ``(K,)`` their variances.
        residual_variance: variance per coordinate left outside the modes (the prior's noise level).
        cut: Tukey cut-off in vertebra heights.
        n_shapes: how many label sets it was fitted on.
    """

    layout: str
    mean: np.ndarray
    modes: np.ndarray
    variances: np.ndarray
    residual_variance: float
    cut: float = DEFAULT_CUT
    n_shapes: int = 0

    @classmethod
    def fit(cls, shapes: np.ndarray, layout: Layout | str, modes: int = DEFAULT_MODES,
            cut: float = DEFAULT_CUT) -> ShapePrior:
        """Fit on ``(M, N, 2)`` label sets: generalised Procrustes alignment, then PCA."""
        lay = get_layout(layout)
        x = np.asarray(shapes, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (lay.num_points, 2):
            raise ValueError(f"shapes must be (M, {lay.num_points}, 2) for layout {lay.name!r}, got {x.shape}")
        x = x[np.isfinite(x).all(axis=(1, 2))]
        if modes < 0:
            raise ValueError(f"modes must be >= 0 (0: the mean shape alone), got {modes}")
        if len(x) <= modes:
            raise ValueError(f"{len(x)} complete label sets cannot give {modes} modes")
        if not 0 < cut:
            raise ValueError(f"cut must be > 0 vertebra heights, got {cut}")
        mean = x[0] - x[0].mean(0)
        mean /= np.linalg.norm(mean)
        for _ in range(_PROCRUSTES_ROUNDS):
            aligned = np.stack([_apply(*similarity_fit(s, mean, reflection=True), s) for s in x])
            new = aligned.mean(0)
            new -= new.mean(0)
            new /= np.linalg.norm(new)
            mean = _apply(*similarity_fit(new, mean), new)  # keep the reference orientation
        dev = (aligned - mean).reshape(len(x), -1)
        _, sv, vt = np.linalg.svd(dev, full_matrices=False)
        var = sv**2 / (len(x) - 1)
        return cls(layout=lay.name, mean=mean, modes=vt[:modes].T.copy(), variances=var[:modes].copy(),
                   residual_variance=float(var[modes:].sum() / dev.shape[1]), cut=float(cut), n_shapes=len(x))

    def correct(self, points: np.ndarray) -> ShapeFit:
        """Fit the prior to ``(N, 2)`` predicted points and move each towards the fit by one minus its weight.

        Non-finite input, or points without a vertebra height (all on one spot), come back unchanged with all
        weights 1 and no outliers (nothing to fit)."""
        y = np.asarray(points, dtype=np.float64)
        lay = get_layout(self.layout)
        if y.shape != self.mean.shape:
            raise ValueError(f"points must be {self.mean.shape} for layout {self.layout!r}, got {y.shape}")
        n = len(y)
        height = vertebra_height(y, lay) if np.isfinite(y).all() else float("nan")
        if not height > 1e-6:
            return ShapeFit(y.copy(), np.ones(n), np.zeros(n), np.zeros(n, dtype=bool))
        w = np.ones(n)
        b = np.zeros(self.modes.shape[1])
        # MAP: (P^T W P + sigma^2 diag(1 / lambda)) b = P^T W r  (Gaussian prior on the mode coefficients)
        ridge = np.diag(self.residual_variance / self.variances)
        for _ in range(_ITERATIONS):
            model = self.mean + (self.modes @ b).reshape(n, 2)
            s, rot, t = similarity_fit(model, y, w, reflection=True)
            local = ((y - t) @ rot) / s  # the prediction in the model's frame
            w2 = np.repeat(w, 2)
            r = (local - self.mean).reshape(-1)
            b = np.linalg.solve(self.modes.T @ (w2[:, None] * self.modes) + ridge, self.modes.T @ (w2 * r))
            fitted = _apply(s, rot, t, self.mean + (self.modes @ b).reshape(n, 2))
            residual = np.linalg.norm(fitted - y, axis=1) / height
            u = residual / self.cut
            w = np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0) + 1e-3  # Tukey's biweight; a floor keeps W invertible
        weight = np.where(residual >= self.cut, 0.0, np.minimum(w, 1.0))
        out = weight[:, None] * y + (1.0 - weight[:, None]) * fitted
        return ShapeFit(out, weight, residual, residual >= self.cut)

    def as_record(self) -> dict[str, Any]:
        """Plain lists and numbers, for a checkpoint read with ``torch.load(weights_only=True)``."""
        return {"layout": self.layout, "mean": self.mean.tolist(), "modes": self.modes.tolist(),
                "variances": self.variances.tolist(), "residual_variance": self.residual_variance,
                "cut": self.cut, "n_shapes": self.n_shapes}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ShapePrior:
        """Inverse of :meth:`as_record`; a ``ValueError`` for an inconsistent record."""
        lay = get_layout(str(record["layout"]))
        mean = np.asarray(record["mean"], dtype=np.float64)
        modes = np.asarray(record["modes"], dtype=np.float64)
        var = np.asarray(record["variances"], dtype=np.float64)
        if mean.shape != (lay.num_points, 2) or modes.ndim != 2 or modes.shape != (2 * lay.num_points, len(var)):
            raise ValueError(f"shape prior record does not fit layout {lay.name!r}")
        if not all(np.isfinite(a).all() for a in (mean, modes, var)):
            raise ValueError("shape prior record holds non-finite numbers")
        if not (np.all(var > 0) and float(record["residual_variance"]) > 0 and float(record["cut"]) > 0):
            raise ValueError("shape prior record has non-positive variances or cut")
        return cls(layout=lay.name, mean=mean, modes=modes, variances=var,
                   residual_variance=float(record["residual_variance"]), cut=float(record["cut"]),
                   n_shapes=int(record.get("n_shapes", 0)))
