"""Vector shapes for the synthetic radiograph: smooth closed curves, bands, rounded corners, inward offsets.

All functions are vectorised numpy on ``(K, 2)`` point arrays (x, y); none rasterises. Written by hand because
scikit-image draws polygons but has no Catmull-Rom splines or corner rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "closed_spline",
    "open_spline",
    "band",
    "sagged_side",
    "round_corners",
    "offset_inward",
    "polygon_area",
    "ellipse",
]


def _catmull_rom(p0, p1, p2, p3, t):
    t2, t3 = t * t, t * t * t
    return 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (3 * p1 - p0 - 3 * p2 + p3) * t3)


def closed_spline(ctrl: np.ndarray, n_per_segment: int = 8) -> np.ndarray:
    """Uniform Catmull-Rom curve through closed control polygon ``ctrl`` ``(K, 2)`` -> ``(K * n, 2)``."""
    c = np.asarray(ctrl, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n_per_segment, endpoint=False)[:, None, None]
    out = _catmull_rom(np.roll(c, 1, 0), c, np.roll(c, -1, 0), np.roll(c, -2, 0), t)  # (n, K, 2)
    return out.transpose(1, 0, 2).reshape(-1, 2)


def open_spline(ctrl: np.ndarray, n_per_segment: int = 8) -> np.ndarray:
    """Catmull-Rom curve through open control points ``(K, 2)`` (end points duplicated) -> ``((K-1)*n + 1, 2)``."""
    c = np.asarray(ctrl, dtype=np.float64)
    ext = np.concatenate([2 * c[:1] - c[1:2], c, 2 * c[-1:] - c[-2:-1]])
    t = np.linspace(0.0, 1.0, n_per_segment, endpoint=False)[:, None, None]
    out = _catmull_rom(ext[:-3], ext[1:-2], ext[2:-1], ext[3:], t).transpose(1, 0, 2).reshape(-1, 2)
    return np.concatenate([out, c[-1:]])


def _normals(line: np.ndarray) -> np.ndarray:
    """Unit normals (tangent rotated +90 degrees in (x, y)) of an open polyline."""
    tan = np.gradient(line, axis=0)
    tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-12)
    return np.stack([-tan[:, 1], tan[:, 0]], axis=1)


def band(centre: np.ndarray, width: np.ndarray | float) -> np.ndarray:
    """Closed outline of a band of (per-point) ``width`` around an open centre line ``(K, 2)``."""
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(centre),))[:, None] / 2
    nrm = _normals(centre)
    return np.concatenate([centre + w * nrm, (centre - w * nrm)[::-1]])


def sagged_side(a: np.ndarray, b: np.ndarray, sag: float, inward: np.ndarray, n: int = 12) -> np.ndarray:
    """Points from ``a`` to ``b`` (inclusive) bowed by ``sag`` * sin(pi u) along unit vector ``inward``."""
    u = np.linspace(0.0, 1.0, n)[:, None]
    return a + u * (b - a) + sag * np.sin(np.pi * u) * inward


def _point_at_arclength(line: np.ndarray, s: float) -> tuple[np.ndarray, int]:
    """Point at arc length ``s`` from ``line[0]`` and the index of the first vertex beyond it."""
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = float(np.clip(s, 0.0, cum[-1]))
    p = np.array([np.interp(s, cum, line[:, 0]), np.interp(s, cum, line[:, 1])])
    return p, int(np.searchsorted(cum, s, side="right"))


def round_corners(sides: list[np.ndarray], cut: float | list[float], n_arc: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Round the corners of a closed outline made of ``sides`` with quadratic Bezier arcs.

    ``sides[k]`` runs from corner ``k`` to corner ``k + 1`` (closed). Each corner is replaced by the Bezier curve
    from the point ``cut`` mm before it to the point ``cut`` mm after it, with the corner as control point.

    Returns:
        ``(outline (M, 2), corner_points (K, 2))`` where ``corner_points[k]`` is the arc's midpoint
        ``0.25 a + 0.5 c + 0.25 b``: the landmark lies exactly on the drawn (rounded) boundary.
    """
    k = len(sides)
    cuts = np.broadcast_to(np.asarray(cut, dtype=np.float64), (k,))
    starts, ends = [], []  # trimmed start point / index of each side, trimmed end point / index
    for i, s in enumerate(sides):
        p0, i0 = _point_at_arclength(s, cuts[i])
        rev = s[::-1]
        p1, j1 = _point_at_arclength(rev, cuts[(i + 1) % k])
        starts.append((p0, i0))
        ends.append((p1, len(s) - j1))
    t = np.linspace(0.0, 1.0, n_arc)[1:-1, None]
    pieces, marks = [], []
    for i, s in enumerate(sides):
        a = ends[i - 1][0]  # end of previous side, near corner i
        b = starts[i][0]
        c = s[0]
        marks.append(0.25 * a + 0.5 * c + 0.25 * b)
        arc = (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t * t * b
        (p0, i0), (p1, i1) = starts[i], ends[i]
        pieces.extend([a[None], arc, p0[None], s[i0:i1], p1[None]])
    return np.concatenate(pieces), np.asarray(marks)


def offset_inward(outline: np.ndarray, distance: np.ndarray | float) -> np.ndarray:
    """Move each vertex of a closed outline ``distance`` towards the inside along its vertex normal."""
    prev, nxt = np.roll(outline, 1, 0), np.roll(outline, -1, 0)
    tan = nxt - prev
    tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-12)
    nrm = np.stack([-tan[:, 1], tan[:, 0]], axis=1)
    # the +90 degree normal points inside for a polygon with positive signed area in (x, y)
    sign = 1.0 if polygon_area(outline) > 0 else -1.0
    d = np.broadcast_to(np.asarray(distance, dtype=np.float64), (len(outline),))[:, None]
    return outline + sign * d * nrm


def polygon_area(poly: np.ndarray) -> float:
    """Signed area (shoelace) of a closed polygon in (x, y)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def ellipse(centre, rx: float, ry: float, angle: float = 0.0, n: int = 48, wobble: np.ndarray | None = None):
    """Closed ellipse outline ``(n, 2)``; ``wobble`` (n,) multiplies the radius for irregular blobs."""
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = 1.0 if wobble is None else wobble
    pts = np.stack([rx * r * np.cos(th), ry * r * np.sin(th)], axis=1)
    ca, sa = np.cos(angle), np.sin(angle)
    return pts @ np.array([[ca, sa], [-sa, ca]]) + np.asarray(centre, dtype=np.float64)


class ScanlineCanvas:
    """Accumulate filled polygons into an image with a row-wise difference array (scanline fill).

    With ``subrows=1, antialias=False`` a pixel ``(r, c)`` is inside when its centre ``(x=c, y=r)`` is inside the
    polygon (even-odd rule), exactly as :func:`skimage.draw.polygon`. With anti-aliasing each row is sampled by
    ``subrows`` scanlines and every span adds its exact horizontal overlap with each pixel ``[c - 0.5, c + 0.5)``,
    i.e. the fill is (close to) the polygon's area coverage of each pixel. Each polygon costs
    ``O(rows x edges)`` (vectorised), not ``O(area x edges)``; one cumulative sum per canvas turns the spans into
    the image. Written by hand because scikit-image and PIL rasterise one binary polygon at a time, which is the
    slow part when ~150 shapes are summed.
    """

    def __init__(self, shape: tuple[int, int], subrows: int = 1, antialias: bool = False):
        self.shape = (int(shape[0]), int(shape[1]))
        self.subrows = int(subrows)
        self.antialias = bool(antialias)
        self._idx: list[np.ndarray] = []  # flat indices into the (H, W + 1) difference array
        self._val: list[np.ndarray] = []
        self._direct_idx: list[np.ndarray] = []  # flat indices into (H, W): partial pixels added directly
        self._direct_val: list[np.ndarray] = []

    @property
    def empty(self) -> bool:
        return not (self._idx or self._direct_idx)

    def add(self, poly: np.ndarray, value: float) -> None:
        """Add ``value`` inside the closed polygon ``poly`` ``(K, 2)`` given as (x, y) pixel coordinates."""
        h, w = self.shape
        p = np.asarray(poly, dtype=np.float64)
        x0, y0 = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        r_lo = max(int(np.floor(y0.min() + 0.5)), 0)
        r_hi = min(int(np.ceil(y0.max() - 0.5)), h - 1)
        if r_hi < r_lo or value == 0:
            return
        k = self.subrows
        offs = (np.arange(k) + 0.5) / k - 0.5 if k > 1 else np.zeros(1)
        rows_i = np.repeat(np.arange(r_lo, r_hi + 1), k)
        ys = (rows_i + np.tile(offs, r_hi - r_lo + 1)).astype(np.float64)[:, None]  # (R*k, 1)
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        cross = (ys >= lo) & (ys < hi)  # half-open: each vertex counted once
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        xs = np.where(cross, xs, np.inf)
        xs.sort(axis=1)
        n_pairs = int(cross.sum(axis=1).max()) // 2
        if n_pairs == 0:
            return
        starts, ends = xs[:, 0 : 2 * n_pairs : 2], xs[:, 1 : 2 * n_pairs : 2]
        ok = np.isfinite(ends)
        rows = np.broadcast_to(rows_i[:, None], starts.shape)[ok]
        a, b = starts[ok], ends[ok]
        v = value / k
        if not self.antialias:
            c0 = np.clip(np.ceil(a), 0, w).astype(np.int64)
            c1 = np.clip(np.ceil(b), 0, w).astype(np.int64)
            keep = c1 > c0
            self._push(rows[keep], c0[keep], c1[keep], v)
            return
        # exact horizontal coverage: pixel c spans [c - 0.5, c + 0.5) -> shift by 0.5 so it spans [c, c + 1)
        a = np.clip(a + 0.5, 0, w)
        b = np.clip(b + 0.5, 0, w)
        keep = b > a
        rows, a, b = rows[keep], a[keep], b[keep]
        ia, ib = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
        same = ia == ib
        # spans inside one pixel
        self._direct(rows[same], ia[same], (b - a)[same] * v)
        d = ~same
        rows, a, b, ia, ib = rows[d], a[d], b[d], ia[d], ib[d]
        self._direct(rows, ia, (ia + 1 - a) * v)  # partial first pixel
        tail = ib < w
        self._direct(rows[tail], ib[tail], (b - ib)[tail] * v)  # partial last pixel
        full = ib > ia + 1
        self._push(rows[full], ia[full] + 1, ib[full], v)  # fully covered pixels ia+1 .. ib-1

    def _push(self, rows, c0, c1, v: float) -> None:
        w1 = self.shape[1] + 1
        self._idx += [rows * w1 + c0, rows * w1 + c1]
        self._val += [np.full(len(rows), v), np.full(len(rows), -v)]

    def _direct(self, rows, cols, vals) -> None:
        self._direct_idx.append(rows * self.shape[1] + cols)
        self._direct_val.append(np.asarray(vals, dtype=np.float64))

    def image(self, dtype=np.float32) -> np.ndarray:
        """The accumulated ``(H, W)`` image."""
        h, w = self.shape
        out = np.zeros((h, w), np.float64)
        if self._idx:
            diff = np.bincount(np.concatenate(self._idx), weights=np.concatenate(self._val), minlength=h * (w + 1))
            out += np.cumsum(diff.reshape(h, w + 1)[:, :w], axis=1)
        if self._direct_idx:
            out += np.bincount(
                np.concatenate(self._direct_idx), weights=np.concatenate(self._direct_val), minlength=h * w
            ).reshape(h, w)
        return out.astype(dtype)
