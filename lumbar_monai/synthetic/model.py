"""The anatomical model behind a synthetic lateral lumbar radiograph, in millimetres.

Patient frame (the patient faces image-left): ``x`` grows posteriorly, ``y`` grows caudally, origin at the
posterior corner of the S1 upper end plate. The column is built from the sacrum upwards: every end plate has an
angle ``phi`` (anterior end down = positive) and its posterior corner; a disc or a body of anterior/posterior
heights ``ha``/``hp`` over depth ``D`` turns the next end plate by ``atan((ha - hp) / D)``. The L1-S1 Cobb angle
is therefore exactly the sum of the disc and body wedges, and it is distributed over the levels with weights
that grow caudally (most lordosis in L4-S1).

Every bone is a :class:`Shape` (closed outline + attenuation of its fill and of its cortical rim); soft tissue,
lungs and the occluding shadows are smooth fields described by :class:`SoftTissue`. The renderer
(:mod:`lumbar_monai.synthetic.render`) turns both into a thickness map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..anatomy import LATERAL, Layout
from .config import SyntheticConfig
from .shapes import band, closed_spline, ellipse, open_spline, round_corners, sagged_side

__all__ = ["Shape", "SoftTissue", "SpineModel", "sample_spine"]

# The model draws the lumbar levels of the lateral layout (read from it, cranial to caudal) on a sacrum, with
# thoracic vertebrae above so that the column continues to the top edge. Per-level anatomical constants below
# are given for L1..L5 and checked against the layout.
LUMBAR = tuple(LATERAL.vertebrae[i].name for i in LATERAL.lumbar_indices)
THORACIC = ("T12", "T11", "T10", "T9")
# share of the lordosis carried by each body / each disc below it (An et al. do not model this; *ours*, after
# the usual clinical pattern: most lordosis at L4-S1)
BODY_WEDGE_WEIGHT = {"L1": 0.04, "L2": 0.12, "L3": 0.18, "L4": 0.26, "L5": 0.40}
DISC_WEDGE_WEIGHT = {"L1": 0.10, "L2": 0.14, "L3": 0.19, "L4": 0.24, "L5": 0.33}  # disc below the level
FRACTURE_SITE_WEIGHT = {"L1": 0.32, "L2": 0.26, "L3": 0.18, "L4": 0.14, "L5": 0.10}  # thoracolumbar first
assert set(BODY_WEDGE_WEIGHT) == set(LUMBAR), "the synthetic anatomy models L1-L5 of the lateral layout"


@dataclass
class Shape:
    """One closed outline in mm with its attenuation (``tau`` units, i.e. mu * lateral thickness).

    Args:
        outline: ``(M, 2)`` closed polygon (x, y) mm.
        fill: attenuation added inside.
        rim: extra attenuation of a cortical rim ``rim_width`` mm wide along the inside of the outline.
        textured: modulate the fill with the trabecular texture.
        label: 1-based vertebra index in the layout for vertebral bodies (body mask), else 0.
        kind: ``"bone"``, ``"gas"``, ``"soft"`` (bone without a sharp outline: the fill is blurred, e.g. the
            iliac wing seen obliquely), ``"line"`` (thin dark lines, e.g. fused sacral discs) or ``"metal"``
            (implants: far above the bone window, kept out of the window statistics).
    """

    outline: np.ndarray
    fill: float
    rim: float = 0.0
    rim_width: float = 0.0
    textured: bool = False
    label: int = 0
    kind: str = "bone"


@dataclass
class SoftTissue:
    """Smooth soft-tissue description: skin lines, lateral width, lungs above the diaphragm and shadows."""

    knots_y: np.ndarray  # (K,) y positions
    anterior_x: np.ndarray  # (K,) anterior skin x at knots_y
    posterior_x: np.ndarray  # (K,) posterior skin x
    lateral_width: float  # mm, left-right path length at the widest point
    pelvis_y: float  # y below which the pelvis widens the lateral path
    posterior_weight: float  # front-to-back gradient: path-length ramp from anterior to posterior skin
    mu: float  # soft tissue attenuation per mm of lateral path
    diaphragm: list[tuple[float, float, float, float]] = field(default_factory=list)  # (x_pc, y_pc, rise, run)
    lung_fraction: float = 0.4
    shadows: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # (x, y, r, bone_k, tau)


@dataclass
class SpineModel:
    """Everything needed to render one study, in mm (facing left)."""

    points: np.ndarray  # (N, 2) landmarks in layout order, mm
    shapes: list[Shape]
    soft: SoftTissue
    bone_density: float
    meta: dict


def _a(phi: float) -> np.ndarray:
    """Unit vector along an end plate from its posterior to its anterior corner."""
    return np.array([-np.cos(phi), np.sin(phi)])


def _n(phi: float) -> np.ndarray:
    """Cranial unit normal of an end plate."""
    return np.array([-np.sin(phi), -np.cos(phi)])


def _split(total: float, diff: float, minimum: float) -> tuple[float, float]:
    """Anterior/posterior heights with mean ``total`` and anterior - posterior = ``diff``, both >= minimum."""
    ha, hp = total + diff / 2, total - diff / 2
    low = min(ha, hp)
    if low < minimum:
        ha, hp = ha + minimum - low, hp + minimum - low
    return ha, hp


def _graded(rng: np.random.Generator, lo: float, hi: float, n: int, start=(0.0, 0.45), growth=(0.3, 0.8)) -> np.ndarray:
    """``n`` values in [lo, hi] growing from the first to the last (L1 -> L5)."""
    first = lo + rng.uniform(*start) * (hi - lo)
    last = first + rng.uniform(*growth) * (hi - first)
    vals = np.linspace(first, last, n) + rng.normal(0.0, 0.15, n)
    return np.clip(vals, lo, hi)


def _body_outline(corners: dict[str, np.ndarray], rng, sag_sup: float, sag_inf: float, cut: float):
    """Rounded quadrilateral with concave end plates; returns (outline, {corner: landmark})."""
    order = ("superior_anterior", "superior_posterior", "inferior_posterior", "inferior_anterior")
    c = [corners[k] for k in order]
    g = np.mean(c, axis=0)
    sags = (sag_sup, rng.uniform(0.2, 0.6), sag_inf, rng.uniform(0.5, 1.3))  # sup, posterior wall, inf, anterior wall
    sides = []
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        d = b - a
        nrm = np.array([-d[1], d[0]]) / np.linalg.norm(d)
        if np.dot(nrm, g - (a + b) / 2) < 0:
            nrm = -nrm
        sides.append(sagged_side(a, b, sags[i], nrm, n=14))
    outline, marks = round_corners(sides, cut)
    return outline, dict(zip(order, marks, strict=True))


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D profile (edges held), ``sigma`` in samples."""
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(values, sigma, mode="nearest")


def _local(origin: np.ndarray, phi: float):
    """Map local (posterior, cranial) mm coordinates of a vertebra to the patient frame."""
    ep, en = -_a(phi), _n(phi)

    def f(pts):
        p = np.asarray(pts, dtype=np.float64)
        return origin + p[..., :1] * ep + p[..., 1:2] * en

    return f


def _posterior_elements(rng, vert: dict, d_above: float, d_below: float, thoracic: bool, dens: float) -> list[Shape]:
    """Pedicle, articular pillar with facets, lamina and spinous process of one vertebra (lateral projection)."""
    c = vert["corners"]
    phi = vert["phi"]
    o = (c["superior_posterior"] + c["inferior_posterior"]) / 2
    h = np.linalg.norm(c["superior_posterior"] - c["inferior_posterior"])
    depth = vert["depth"]
    f = _local(o, phi)
    lp = depth * rng.uniform(0.38, 0.48)  # pedicle length
    hh = h / 2
    ped = np.array(
        [
            (-4, 0.95 * hh),
            (lp * 0.5, 0.78 * hh),
            (lp, 0.92 * hh),
            (lp + 2, 0.15 * hh),
            (lp * 0.5, 0.22 * hh),
            (-4, 0.1 * hh),
        ]
    )
    lam = rng.uniform(11, 15)
    pil = np.array(
        [
            (lp - 3, 0.55 * hh),
            (lp - 1.5, hh + 0.85 * d_above),  # superior articular process tip
            (lp + 4, hh + 0.45 * d_above),
            (lp + 8, 0.75 * hh),
            (lp + lam, 0.35 * hh),
            (lp + lam + 1, -0.5 * hh),
            (lp + lam - 1, -hh - 0.75 * d_below),  # inferior articular process tip (behind the SAP below)
            (lp + 5, -hh - 0.2 * d_below),
            (lp + 2, -0.45 * hh),  # pars interarticularis
            (lp - 2, 0.0),
        ]
    )
    ls = rng.uniform(24, 32) * (0.75 if vert["name"] == "L5" else 1.0) * (1.15 if thoracic else 1.0)
    tilt = np.tan(np.radians(rng.uniform(35, 50) if thoracic else rng.uniform(5, 18)))
    x0 = lp + lam - 3
    sp = np.array(
        [
            (x0, 0.55 * hh),
            (x0 + 0.5 * ls, 0.3 * hh - 0.5 * ls * tilt),
            (x0 + ls, 0.38 * hh - ls * tilt),
            (x0 + ls + 3, -0.15 * hh - ls * tilt),
            (x0 + ls, -0.7 * hh - ls * tilt),
            (x0 + 0.5 * ls, -0.45 * hh - 0.5 * ls * tilt),
            (x0, -0.55 * hh),
        ]
    )
    tp = ellipse((lp + 3, 0.2 * hh), 9, 6.5, n=24)  # transverse processes, end-on
    out = [Shape(f(closed_spline(sp, 6)), 0.28 * dens, 0.22 * dens, 1.4)]  # midline: one spinous process
    # paired structures: left and right rarely superimpose exactly (rotation, divergence): two offset copies
    off = rng.normal(0.0, 1.8, 2) + np.array([rng.uniform(0.5, 3.0), 0.0])
    for sgn in (-0.5, 0.5):
        g = _local(o + sgn * off, phi)
        out += [
            Shape(g(closed_spline(ped, 6)), 0.2 * dens, 0.2 * dens, 1.5),
            Shape(g(closed_spline(pil, 6)), 0.24 * dens, 0.16 * dens, 1.6),
            Shape(g(tp), 0.07 * dens, kind="soft"),
        ]
    vert["spinous_tip"] = f(np.array([[x0 + ls + 3, -0.15 * hh - ls * tilt]]))[0]
    vert["costal"] = f(np.array([[lp + 2, 0.4 * hh]]))[0]
    return out


def _vertebra_record(name: str, sup_ant, sup_post, inf_ant, inf_post, phi: float, depth: float,
                     disc_below: float) -> dict:
    """One vertebra of the model: its four corners (mm), mean end-plate angle, depth and the disc height below."""
    corners = dict(superior_anterior=sup_ant, superior_posterior=sup_post, inferior_anterior=inf_ant,
                   inferior_posterior=inf_post)
    return dict(name=name, corners=corners, phi=phi, depth=depth, disc_below=disc_below)


def sample_spine(rng: np.random.Generator, config: SyntheticConfig, layout: Layout = LATERAL) -> SpineModel:
    """Draw one patient: column geometry, pathology, bones, soft tissue; all in mm, facing left."""
    cfg = config
    meta: dict = {}
    dens = rng.uniform(0.65, 1.25)  # bone mineral density factor (osteoporotic .. dense)

    # ---- global alignment ----------------------------------------------------------------------------------
    ll_mean, ll_sd, ll_lo, ll_hi = cfg.lordosis_deg
    lordosis = float(np.clip(rng.normal(ll_mean, ll_sd), ll_lo, ll_hi))
    ss_lo, ss_hi = cfg.sacral_slope_deg
    slope = float(np.clip(0.55 * lordosis + 12.5 + rng.normal(0, 4.0), ss_lo, ss_hi))

    # ---- per-level dimensions (L1..L5) --------------------------------------------------------------------
    nl = len(LUMBAR)
    depth = _graded(rng, *cfg.body_depth_mm, nl)
    height = _graded(rng, *cfg.body_height_mm, nl)
    disc = _graded(rng, *cfg.disc_height_mm, nl, start=(0.0, 0.5), growth=(0.0, 0.6))  # below each level
    body_share = rng.uniform(0.2, 0.4)
    wb = np.array([BODY_WEDGE_WEIGHT[n] for n in LUMBAR]) * rng.uniform(0.7, 1.3, nl)
    wd = np.array([DISC_WEDGE_WEIGHT[n] for n in LUMBAR]) * rng.uniform(0.75, 1.25, nl)
    beta0 = np.radians(lordosis * body_share * wb / wb.sum())

    fractured: dict[str, float] = {}
    if rng.random() < cfg.fracture_prob:
        k = 1 + int(rng.random() < 0.25)
        p_site = np.array([FRACTURE_SITE_WEIGHT[n] for n in LUMBAR])
        names = rng.choice(nl, size=k, replace=False, p=p_site / p_site.sum())
        for i in sorted(names):
            fractured[LUMBAR[i]] = float(rng.uniform(*cfg.fracture_loss))
    beta = beta0.copy()
    hts = []
    for i, name in enumerate(LUMBAR):
        ha, hp = _split(height[i], depth[i] * np.tan(beta0[i]), 15.0)
        if name in fractured:
            ha *= 1.0 - fractured[name]
            beta[i] = np.arctan((ha - hp) / depth[i])
        hts.append((ha, hp))
    disc_total = np.radians(lordosis) - beta.sum()
    delta = disc_total * wd / wd.sum()

    # degenerative spine: narrowed lower discs (L3-4 .. L5-S1) with sclerotic end plates, anterior osteophytes
    degenerative = bool(rng.random() < cfg.degeneration_prob)
    narrowed: list[str] = []
    for i in range(max(0, nl - 3), nl):
        factor = rng.uniform(0.55, 0.9)
        if degenerative and rng.random() < 0.5:
            disc[i] = max(cfg.degenerated_disc_mm, disc[i] * factor)
            narrowed.append(LUMBAR[i])
    vacuum = degenerative and bool(narrowed) and rng.random() < 0.3

    slipped, slip_mm = None, 0.0
    if rng.random() < cfg.slip_prob:
        slipped = "L5" if rng.random() < 0.55 else "L4"
        slip_frac = float(rng.uniform(*cfg.slip_fraction))

    # ---- build the column from S1 upwards ------------------------------------------------------------------
    d_s1 = float(np.clip(depth[-1] * rng.uniform(0.92, 1.02), *cfg.body_depth_mm))
    phi = np.radians(slope)
    p_below = np.zeros(2)
    s1 = {"posterior": p_below.copy(), "anterior": p_below + d_s1 * _a(phi)}
    verts: list[dict] = []
    depth_below = d_s1
    for i in range(nl - 1, -1, -1):
        name = LUMBAR[i]
        dd = depth[i]
        da, dp = _split(disc[i], dd * np.tan(delta[i]), 2.5)
        phi_inf = phi - delta[i]
        shift = np.zeros(2)
        if name == slipped:
            slip_mm = slip_frac * depth_below
            shift = slip_mm * _a(phi)
            dp = max(2.5, dp * 0.7)  # the slipped disc is narrowed
        pi_ = p_below + dp * _n((phi + phi_inf) / 2) + shift
        ai = pi_ + dd * _a(phi_inf)
        ha, hp = hts[i]
        phi_sup = phi_inf - beta[i]
        ps = pi_ + hp * _n((phi_inf + phi_sup) / 2)
        as_ = ps + dd * _a(phi_sup)
        verts.append(_vertebra_record(name, as_, ps, ai, pi_, (phi_inf + phi_sup) / 2, dd, (da + dp) / 2))
        phi, p_below, depth_below = phi_sup, ps, dd
    # thoracic vertebrae continue the column with a mild kyphosis
    t_depth, t_height = depth[0] - rng.uniform(0.5, 2.5), height[0] - rng.uniform(0.5, 2.0)
    for j, name in enumerate(THORACIC):
        dd, hm = t_depth - 1.2 * j, t_height - 0.8 * j
        dwedge = np.radians(rng.normal(-1.0, 1.5))
        dmean = rng.uniform(6, 8.5) - 0.4 * j
        da, dp = _split(dmean, dd * np.tan(dwedge), 2.5)
        phi_inf = phi - dwedge
        pi_ = p_below + dp * _n((phi + phi_inf) / 2)
        ai = pi_ + dd * _a(phi_inf)
        bw = -np.radians(rng.uniform(1.5, 5.0))
        ha, hp = _split(hm, dd * np.tan(bw), 12.0)
        phi_sup = phi_inf - bw
        ps = pi_ + hp * _n((phi_inf + phi_sup) / 2)
        as_ = ps + dd * _a(phi_sup)
        verts.append(_vertebra_record(name, as_, ps, ai, pi_, (phi_inf + phi_sup) / 2, dd, (da + dp) / 2))
        phi, p_below = phi_sup, ps
    verts = verts[::-1]  # cranial to caudal: T9 .. L5
    by_name = {v["name"]: v for v in verts}

    # ---- bones ---------------------------------------------------------------------------------------------
    shapes: list[Shape] = []
    marks: dict[str, dict[str, np.ndarray]] = {}
    vert_label = {v.name: i + 1 for i, v in enumerate(layout.vertebrae)}
    spurs: list[str] = []
    # beam divergence: end plates away from the central ray (about L3) project as thin ellipses - a double
    # contour whose opening grows with the distance (source-image distance ~1 m, end plate ~40 mm wide)
    y_central = by_name[LUMBAR[len(LUMBAR) // 2]]["corners"]["superior_posterior"][1] + rng.normal(0, 25)
    tilt = rng.normal(0, 0.015)  # detector / patient tilt (rad)
    for idx, v in enumerate(verts):
        frac = fractured.get(v["name"])
        sag_sup = rng.uniform(0.6, 1.6) + (rng.uniform(1.0, 2.5) if frac else 0.0)
        sag_inf = rng.uniform(0.6, 1.6)
        outline, mk = _body_outline(v["corners"], rng, sag_sup, sag_inf, cut=rng.uniform(1.2, 2.2))
        marks[v["name"]] = mk
        trab = 0.5 * dens * rng.uniform(0.9, 1.1) * (1.25 if frac else 1.0)
        shapes.append(Shape(outline, trab, 0.35 * dens, rng.uniform(0.7, 1.1), True, vert_label.get(v["name"], 0)))
        for side, into in (("superior", -1.0), ("inferior", 1.0)):
            plate = np.stack([mk[f"{side}_anterior"], mk[f"{side}_posterior"]])
            w_ep = rng.uniform(1.0, 1.8)
            inward = into * _n(v["phi"])  # superior plate: caudal; inferior plate: cranial
            line = open_spline(plate, 8) + (0.5 * w_ep + 0.3) * inward
            # follow the concave end plate: sag towards the body centre
            u = np.linspace(0, 1, len(line))[:, None]
            sag = sag_sup if side == "superior" else sag_inf
            sclerosis = 1.0
            if side == "inferior" and v["name"] in narrowed:
                sclerosis = rng.uniform(1.4, 2.0)
            if side == "superior" and idx > 0 and verts[idx - 1]["name"] in narrowed:
                sclerosis = rng.uniform(1.4, 2.0)
            plate_line = line + sag * np.sin(np.pi * u) * inward
            shapes.append(Shape(band(plate_line, w_ep * sclerosis), 0.3 * dens * min(sclerosis, 1.5)))
            y_plate = float(plate_line[:, 1].mean())
            opening = abs(40.0 * ((y_plate - y_central) / 1000.0 + tilt))
            if opening > 0.6:  # far rim of the plate: an arc meeting the near rim at the corners
                away = -np.sign(y_plate - y_central) * _n(v["phi"])  # caudal below the central ray
                arc = plate_line + opening * np.sin(np.pi * u) * away
                shapes.append(Shape(band(arc, 0.8 * w_ep), 0.16 * dens))
        rot_mm = abs(rng.normal(0.0, 1.2))  # axial rotation: the two halves of the posterior wall separate
        if rot_mm > 0.7:
            wall = np.stack([mk["superior_posterior"], mk["inferior_posterior"]])
            wall = open_spline(wall, 6) + (rot_mm - 0.5) * (-_a(v["phi"]))
            shapes.append(Shape(band(wall, 0.9), 0.12 * dens))
        if frac:  # sclerotic band of impacted trabeculae under the collapsed end plate
            c = v["corners"]
            top = sagged_side(c["superior_anterior"], c["superior_posterior"], sag_sup, -_n(v["phi"]), n=12)
            shapes.append(Shape(band(top - 3.0 * _n(v["phi"]), 3.5), 0.25 * dens))
        if degenerative and v["name"] in LUMBAR:  # anterior osteophytes growing towards the disc
            c = v["corners"]
            for corner, other, toward in (
                ("superior_anterior", "inferior_anterior", _n(v["phi"])),
                ("inferior_anterior", "superior_anterior", -_n(v["phi"])),
            ):
                if rng.random() < 0.35:
                    wall = (c[other] - c[corner]) / np.linalg.norm(c[other] - c[corner])
                    size = rng.uniform(1.5, 5.0)
                    tri = np.array(
                        [
                            c[corner] + wall * size * rng.uniform(1.2, 2.0),
                            c[corner] + _a(v["phi"]) * size * 0.5 + toward * size * rng.uniform(0.6, 1.0),
                            c[corner] - _a(v["phi"]) * size * 0.8,
                        ]
                    )
                    shapes.append(Shape(closed_spline(tri, 6), 0.3 * dens, 0.2 * dens, 0.8))
                    spurs.append(f"{v['name']}_{corner}")
        if vacuum and v["name"] == narrowed[-1]:  # vacuum phenomenon: gas in the degenerated disc below
            c = v["corners"]
            mid_disc = 0.5 * (c["inferior_anterior"] + c["inferior_posterior"]) - 0.5 * v["disc_below"] * _n(v["phi"])
            gas_line = np.stack(
                [mid_disc + 0.3 * v["depth"] * _a(v["phi"]), mid_disc - 0.2 * v["depth"] * _a(v["phi"])]
            )
            shapes.append(Shape(band(open_spline(gas_line, 4), rng.uniform(1.0, 2.0)), -0.3, kind="gas"))
        d_above = verts[idx - 1]["disc_below"] if idx > 0 else 7.0
        shapes.extend(_posterior_elements(rng, v, d_above, v["disc_below"], v["name"].startswith("T"), dens))

    # sacrum: S1 body with its upper end plate (landmarks), tapering curved body, dorsal wall, fused discs
    a_s, c_s = _a(np.radians(slope)), -_n(np.radians(slope))
    mid = (s1["anterior"] + s1["posterior"]) / 2
    length = rng.uniform(95, 120)
    curl = rng.uniform(0.18, 0.38)
    t = np.linspace(0, 1, 24)[:, None]
    centre = mid + length * (t * c_s + curl * t * t * a_s)
    tang = np.gradient(centre, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    perp = np.stack([-tang[:, 1], tang[:, 0]], axis=1)  # points anteriorly (a = rot90(c))
    half = d_s1 / 2 * (1 - 0.8 * np.clip((t[:, 0] - 0.12) / 0.88, 0, 1) ** 0.8)[:, None]  # S1 body, then taper
    front, back = centre + half * perp, centre - half * perp
    tip = centre[-1] + 0.6 * half[-1] * tang[-1]
    sacral_side = np.concatenate([front, tip[None], back[::-1]])
    sag = rng.uniform(0.4, 1.2)
    top = sagged_side(s1["posterior"], s1["anterior"], sag, c_s, n=14)
    outline, mk = round_corners([top, sacral_side], rng.uniform(1.2, 2.0))
    marks["S1"] = {"posterior": mk[0], "anterior": mk[1]}
    shapes.append(Shape(outline, 0.38 * dens, 0.35 * dens, 1.2, True, vert_label.get("S1", 0)))
    canal = d_s1 * (0.28 - 0.2 * t[:, 0])[:, None]
    wall = rng.uniform(7, 11) * (1 - 0.6 * t[:, 0])
    dorsal_c = centre - (half + canal + wall[:, None] / 2) * perp
    shapes.append(Shape(band(dorsal_c[:20], wall[:20]), 0.35 * dens, 0.25 * dens, 1.2))
    sap = dorsal_c[0] + np.array([[0, 0], [-4, -12], [2, -17], [7, -8]])
    shapes.append(Shape(closed_spline(sap, 6), 0.4 * dens, 0.2 * dens, 1.0))
    for tt in (0.24, 0.43, 0.6, 0.74):  # remnants of the fused sacral discs
        k = int(round(tt * 23))
        line = np.stack([back[k] + 1.0 * perp[k], front[k] - 1.0 * perp[k]])
        shapes.append(Shape(band(open_spline(line, 4), 1.2), -0.18 * dens, kind="line"))
    # sacral ala superimposed on S1
    shapes.append(
        Shape(ellipse(mid + 0.35 * length * c_s - 4 * a_s, 0.45 * d_s1, 0.3 * length, 0.3), 0.12 * dens, kind="soft")
    )

    # iliac wings (left and right, slightly misaligned), crests over L4-L5, femoral heads below
    crest_y = by_name["L5"]["corners"]["superior_posterior"][1] + rng.uniform(-12, 12)
    psis = mid + np.array([rng.uniform(45, 65), rng.uniform(10, 30)])
    asis = mid + np.array([-rng.uniform(55, 85), rng.uniform(15, 40)])
    top_pt = np.array([mid[0] + rng.uniform(-15, 15), crest_y])
    acet = mid + np.array([-rng.uniform(10, 35), rng.uniform(95, 130)])
    for side in range(2):
        off = rng.normal(0, 7, 2) if side else np.zeros(2)
        ctrl = (
            np.array(
                [
                    psis,
                    (psis + top_pt) / 2 + np.array([8, -12]),
                    top_pt,
                    (top_pt + asis) / 2 + np.array([-10, -8]),
                    asis,
                    asis + np.array([8, 25]),
                    acet + np.array([-12, -20]),
                    acet + np.array([15, -18]),
                    (psis + acet) / 2 + np.array([18, 0]),
                ]
            )
            + off
        )
        shapes.append(Shape(closed_spline(ctrl, 8), 0.2 * dens, kind="soft"))
        crest = open_spline(ctrl[:5], 6)  # PSIS -> top -> ASIS
        cw = rng.uniform(5, 9)
        crest_in = crest + 0.5 * cw * np.array([0.0, 1.0])
        shapes.append(Shape(band(crest_in, cw * np.sin(np.linspace(0.15, np.pi - 0.15, len(crest)))), 0.25 * dens))
        # arcuate (iliopectineal) line: the thick iliac body from the sacroiliac joint to the acetabulum
        arc = open_spline(np.array([psis + np.array([-20, 8]), (psis + acet) / 2 + np.array([-22, -5]), acet]) + off, 6)
        shapes.append(Shape(band(arc, rng.uniform(4, 7)), 0.22 * dens))
        r = rng.uniform(22, 26)
        shapes.append(Shape(ellipse(acet + off + np.array([0, 8]), r, r, n=40), 0.4 * dens, 0.3 * dens, 2.5, True))

    # 12th and 11th ribs (lateral projection): from the costovertebral joint a short run backwards to the rib
    # angle, then the shaft sweeps down and forwards around the flank; left and right ribs do not superimpose
    for name, scale_rng in (("T12", (0.55, 0.8)), ("T11", (0.95, 1.3))):
        if name not in by_name:
            continue
        base = by_name[name]["costal"]
        for _side in range(2):
            k = rng.uniform(*scale_rng)
            ctrl = (
                base
                + rng.normal(0, 3, 2)
                + k
                * np.array(
                    [
                        [0.0, 0.0],
                        [rng.uniform(15, 35), rng.uniform(8, 20)],
                        [rng.uniform(5, 25), rng.uniform(45, 70)],
                        [-rng.uniform(10, 60), rng.uniform(80, 120)],
                    ]
                )
            )
            line = open_spline(ctrl, 6)
            w = rng.uniform(7, 10) * (1 - 0.45 * np.linspace(0, 1, len(line)))
            shapes.append(Shape(band(line, w), 0.1 * dens, 0.22 * dens, 1.5))

    # ---- distractors: aortic wall calcification, spinal fixation hardware ---------------------------------
    lum_y = np.array([by_name[n]["corners"][c][1] for n in LUMBAR for c in ("superior_anterior", "inferior_anterior")])
    lum_x = np.array([by_name[n]["corners"][c][0] for n in LUMBAR for c in ("superior_anterior", "inferior_anterior")])
    calcified = 0
    if rng.random() < cfg.aortic_calcification_prob:
        gap, diameter = rng.uniform(3, 12), rng.uniform(18, 28)
        y0, y1 = by_name["L1"]["corners"]["superior_anterior"][1], by_name["L4"]["corners"]["inferior_anterior"][1]
        for _ in range(int(rng.integers(4, 21))):
            y = y0 + (y1 - y0) * rng.uniform(0.2, 1.0) ** 0.6  # plaques gather low, near the bifurcation
            wall_x = np.interp(y, lum_y, lum_x) - gap - (diameter if rng.random() < 0.45 else 0.0)
            ln = rng.uniform(3, 12)
            seg = np.array([[wall_x, y - ln / 2], [wall_x + rng.normal(0, 1.0), y + ln / 2]])
            shapes.append(Shape(band(open_spline(seg, 4), rng.uniform(1.0, 2.5)), rng.uniform(0.15, 0.4) * dens))
            calcified += 1
    hardware: list[str] = []
    if rng.random() < cfg.hardware_prob:
        first = int(rng.integers(max(0, len(LUMBAR) - 3), len(LUMBAR)))  # fusion of L3/L4/L5 .. S1
        heads = []
        for name in [*LUMBAR[first:], "S1"]:
            if name == "S1":
                entry = dorsal_c[2]
                aim = s1["anterior"] + 9.0 * c_s + 4.0 * a_s  # towards the promontory
            else:
                v = by_name[name]
                c = v["corners"]
                entry = v["costal"] + 6.0 * (-_a(v["phi"]))
                aim = 0.5 * (c["superior_anterior"] + c["inferior_anterior"]) + 0.1 * (
                    c["inferior_posterior"] - c["superior_posterior"]
                )
            direction = (aim - entry) / np.linalg.norm(aim - entry)
            screw_len = 0.8 * np.linalg.norm(aim - entry)
            for side in (-1.0, 1.0):  # left and right screws, slightly apart in projection
                e = entry + side * rng.uniform(0.5, 2.5) * np.array([0.3, 1.0])
                shaft = open_spline(np.stack([e, e + screw_len * direction]), 4)
                shapes.append(Shape(band(shaft, np.linspace(6.5, 4.0, len(shaft))), 2.0, kind="metal"))
                shapes.append(
                    Shape(
                        ellipse(e - 4.0 * direction, 6.5, 5.0, float(np.arctan2(direction[1], direction[0]))),
                        2.5,
                        kind="metal",
                    )
                )
            heads.append(entry - 4.0 * direction)
            hardware.append(name)
        rod = open_spline(np.array(heads), 6)
        for side in (-1.0, 1.0):
            shapes.append(Shape(band(rod + side * np.array([1.0, 0.0]), 5.5), 2.0, kind="metal"))

    # ---- soft tissue ---------------------------------------------------------------------------------------
    ys = np.array([v["corners"]["superior_anterior"][1] for v in verts] + [s1["anterior"][1], tip[1]])
    ant = np.array([v["corners"]["superior_anterior"][0] for v in verts] + [s1["anterior"][0], tip[0]])
    spin = np.array([v["spinous_tip"][0] for v in verts] + [dorsal_c[0, 0] + 15, tip[0] + 20])
    order = np.argsort(ys)
    ys, ant, spin = ys[order], ant[order], spin[order]
    l3 = by_name["L3"]["corners"]["superior_anterior"][1]
    belly = rng.uniform(80, 170) + rng.uniform(0, 70) * np.exp(-(((ys - l3) / 120) ** 2))
    back_t = rng.uniform(25, 55) + rng.uniform(10, 50) * np.clip((ys - mid[1]) / 80, 0, 1)  # buttocks
    # skin lines on a fine grid, smoothed (the knots sit at the vertebral levels only)
    fine_y = np.arange(ys[0] - 200.0, ys[-1] + 200.0, 2.0)
    front = _smooth(np.interp(fine_y, ys, ant - belly), 12)
    back = _smooth(np.interp(fine_y, ys, spin + back_t), 12)
    soft = SoftTissue(
        knots_y=fine_y,
        anterior_x=front,
        posterior_x=back,
        lateral_width=rng.uniform(250, 360),
        pelvis_y=crest_y + 20,
        posterior_weight=rng.uniform(0.35, 0.8),
        mu=rng.uniform(0.017, 0.022),
    )
    # lungs: two posterior costophrenic recesses reaching down to about L1-L2
    l1 = by_name["L1"]["corners"]
    for _ in range(2):
        x_pc = by_name["L1"]["spinous_tip"][0] + rng.uniform(-25, 10)
        y_pc = (l1["inferior_posterior"][1] + l1["superior_posterior"][1]) / 2 + rng.uniform(-35, 25)
        soft.diaphragm.append((x_pc, y_pc, rng.uniform(70, 130), rng.uniform(120, 200)))
    soft.lung_fraction = rng.uniform(0.25, 0.45)

    occluded: list[str] = []
    if rng.random() < cfg.occlusion_prob:
        targets = [["L1"], ["L2"], ["L1", "L2"]][rng.integers(3)]
        for nm in targets:
            c = np.mean(list(marks[nm].values()), axis=0) + rng.normal(0, 6, 2)
            soft.shadows.append((c[0], c[1], rng.uniform(22, 40), rng.uniform(0.45, 0.85), rng.uniform(0.4, 1.2)))
        occluded = targets

    # bowel gas: dark blobs in front of (and partly over) the column
    gas_shapes = []
    n_gas = int(rng.integers(cfg.bowel_gas[0], cfg.bowel_gas[1] + 1))
    y_top, y_bot = by_name["L1"]["corners"]["superior_anterior"][1], tip[1]
    clusters = rng.uniform(0, 1, (int(rng.integers(1, 5)), 2))  # loops of bowel: blobs gather in clusters
    for _ in range(n_gas):
        cu, cv = clusters[rng.integers(len(clusters))]
        yy = y_top + (y_bot - y_top) * float(np.clip(cv + rng.normal(0, 0.12), 0, 1))
        x_front = np.interp(yy, soft.knots_y, soft.anterior_x)
        x_spine = np.interp(yy, ys, ant)
        xx = x_front + 15 + (x_spine + 20 - x_front - 15) * float(np.clip(cu + rng.normal(0, 0.12), 0, 1))
        r = rng.uniform(3, 9) if rng.random() < 0.4 else rng.uniform(8, 26)
        rx, ry = r, r * rng.uniform(0.5, 1.0)
        knots = rng.uniform(0.7, 1.3, 8)
        wob = np.interp(np.arange(32), np.arange(0, 33, 4), np.r_[knots, knots[0]])
        blob = ellipse((xx, yy), rx, ry, rng.uniform(0, np.pi), n=32, wobble=wob)
        gas_shapes.append(Shape(blob, -soft.mu * rng.uniform(8, 35), kind="gas"))
    shapes.extend(gas_shapes)

    # ---- landmarks in layout order ------------------------------------------------------------------------
    pts = np.zeros((layout.num_points, 2))
    for v, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=True):
        pts[sl] = np.stack([marks[v.name][c] for c in v.corners])

    meta.update(
        lordosis_target_deg=lordosis,
        sacral_slope_patient_deg=slope,
        fractured=sorted(fractured),
        fracture_loss={k: round(v, 4) for k, v in fractured.items()},
        slipped=slipped,
        slip_mm=round(float(slip_mm), 3),
        occluded=occluded,
        bowel_gas_blobs=n_gas,
        degenerated_discs=[f"{n}-{(LUMBAR + ('S1',))[LUMBAR.index(n) + 1]}" for n in narrowed],
        vacuum_disc=bool(vacuum),
        osteophytes=spurs,
        aortic_calcifications=calcified,
        hardware=hardware,
        bone_density=round(float(dens), 3),
        body_height_mm={n: round(float((a + p) / 2), 2) for n, (a, p) in zip(LUMBAR, hts, strict=True)},
        body_depth_mm={n: round(float(d), 2) for n, d in zip(LUMBAR, depth, strict=True)},
    )
    return SpineModel(points=pts, shapes=shapes, soft=soft, bone_density=dens, meta=meta)
