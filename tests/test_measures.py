"""Clinical measurements on constructed geometry with known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lumbar_monai import measures as M
from lumbar_monai.anatomy import AP, LATERAL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

pytestmark = pytest.mark.compat


def _rotate(points, deg, centre=(0.0, 0.0)):
    """Rotate image points by ``deg`` (counter-clockwise as seen on screen, y down)."""
    t = np.radians(deg)
    r = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    c = np.asarray(centre)
    return (np.asarray(points) - c) @ r.T + c


@pytest.mark.parametrize("facing", ["left", "right"])
def test_lordosis_and_sacral_slope_known(facing):
    pts = H.spine_points(tilts={("L1", "superior"): 10.0, ("S1", "superior"): -35.0}, facing=facing)
    assert M.lumbar_lordosis(pts, LATERAL) == pytest.approx(45.0, abs=1e-9)
    assert M.sacral_slope(pts, LATERAL) == pytest.approx(35.0, abs=1e-9)


def test_mirrored_image_gives_same_numbers():
    rng = np.random.default_rng(0)
    tilts = {(v.name, w): float(rng.uniform(-15, 15)) for v in LATERAL.vertebrae for w in ("superior", "inferior")}
    left = H.spine_points(tilts=tilts, facing="left", shifts={"L4": 6.0})
    right = left.copy()
    right[:, 0] = 700.0 - right[:, 0]  # mirror the image, names stay anatomical
    a = M.compute_measurements(left, LATERAL, (0.2, 0.2), "PixelSpacing")
    b = M.compute_measurements(right, LATERAL, (0.2, 0.2), "PixelSpacing")
    assert (a.facing, b.facing) == ("left", "right")
    assert [m.key for m in a] == [m.key for m in b]
    np.testing.assert_allclose([m.value for m in a], [m.value for m in b], atol=1e-9)


def test_segmental_angles_sum_to_lordosis_and_split_into_wedge_plus_disc():
    rng = np.random.default_rng(1)
    tilts = {(v.name, w): float(rng.uniform(-20, 20)) for v in LATERAL.vertebrae for w in ("superior", "inferior")}
    pts = H.spine_points(tilts=tilts)
    seg = M.segmental_angles(pts, LATERAL)
    assert list(seg) == [("L1", "L2"), ("L2", "L3"), ("L3", "L4"), ("L4", "L5"), ("L5", "S1")]
    assert sum(seg.values()) == pytest.approx(M.lumbar_lordosis(pts, LATERAL), abs=1e-9)
    wedge, disc = M.wedge_angles(pts, LATERAL), M.disc_angles(pts, LATERAL)
    for (u, lo), v in seg.items():
        assert v == pytest.approx(wedge[u] + disc[(u, lo)], abs=1e-9)
    # known single values: L3 wedge = tilt(L3 sup) - tilt(L3 inf)
    assert wedge["L3"] == pytest.approx(tilts[("L3", "superior")] - tilts[("L3", "inferior")], abs=1e-9)


def test_rotation_changes_only_the_absolute_angle():
    pts = H.lateral_study_points()
    rot = _rotate(pts, 7.0, centre=(128, 160))  # counter-clockwise on screen
    assert M.lumbar_lordosis(rot) == pytest.approx(M.lumbar_lordosis(pts), abs=1e-9)
    np.testing.assert_allclose(list(M.segmental_angles(rot).values()), list(M.segmental_angles(pts).values()),
                               atol=1e-9)
    # facing left (anterior = image left): a counter-clockwise turn on screen lifts the right (posterior) end and
    # lowers the anterior end, so the sacral slope (anterior end lower) grows by 7 degrees
    assert M.sacral_slope(rot) == pytest.approx(M.sacral_slope(pts) + 7.0, abs=1e-9)


def test_heights_in_mm_with_anisotropic_spacing_and_source_recorded():
    pts = H.spine_points(width=40.0, height=30.0, disc=8.0)
    h = M.vertebral_heights(pts, LATERAL)
    assert h["L2"] == pytest.approx({"anterior": 30.0, "middle": 30.0, "posterior": 30.0})
    h_mm = M.vertebral_heights(pts, LATERAL, pixel_spacing=(0.5, 0.1))
    assert h_mm["L2"]["posterior"] == pytest.approx(3.0)  # vertical, scaled by sy
    d = M.disc_heights(pts, LATERAL, pixel_spacing=(0.5, 0.1))
    assert d[("L5", "S1")] == pytest.approx({"anterior": 0.8, "middle": 0.8, "posterior": 0.8})
    ms = M.compute_measurements(pts, LATERAL, (0.5, 0.1), "ImagerPixelSpacing")
    assert ms.spacing_source == "ImagerPixelSpacing" and ms.length_unit == "mm"
    assert ms.get("L2.posterior_height").unit == "mm"
    assert ms.value("L2.posterior_height") == pytest.approx(3.0)
    px = M.compute_measurements(pts, LATERAL)
    assert px.get("L2.posterior_height").unit == "{px}" and px.spacing_source is None
    assert px.value("L2.posterior_height") == pytest.approx(30.0)


def test_anterior_wedge_fracture_grade_2():
    pts = H.spine_points(width=40.0, height=30.0)
    i = LATERAL.index("L2", "superior_anterior")
    pts[i, 1] += 9.0  # anterior height 30 -> 21 (facing left: y down is inferior)
    h = M.vertebral_heights(pts, LATERAL)["L2"]
    assert h["anterior"] == pytest.approx(21.0) and h["posterior"] == pytest.approx(30.0)
    assert h["middle"] == pytest.approx(25.5)
    r = M.genant_height_loss(M.vertebral_heights(pts, LATERAL))["L2"]
    assert r["wedge_ratio"] == pytest.approx(0.7)
    assert r["biconcavity_ratio"] == pytest.approx(0.85)
    assert r["crush_ratio"] == pytest.approx(1.0)
    assert r["height_loss"] == pytest.approx(30.0)
    assert r["genant_grade"] == 2


def test_degenerate_vertebra_gives_nan_not_an_exception():
    """A (failed) prediction with all corners of a vertebra on one spot must not crash the measurements."""
    pts = H.spine_points(width=40.0, height=30.0)
    sl = LATERAL.vertebra_slices[LATERAL.vertebra_names.index("L3")]
    pts[sl] = pts[sl][0]
    r = M.genant_height_loss(M.vertebral_heights(pts, LATERAL))["L3"]
    assert np.isnan(r["wedge_ratio"]) and np.isnan(r["biconcavity_ratio"])
    row = M.compute_measurements(pts, LATERAL).as_row()
    assert row["L3.posterior_height"] == 0 and np.isnan(row["L3.genant_grade"])
    assert row["L5.genant_grade"] == 0  # the other vertebrae are still graded


def test_crush_fracture_detected_against_neighbours():
    pts = H.spine_points(width=40.0, height=30.0, scale_heights={"L3": 0.5})
    r = M.genant_height_loss(M.vertebral_heights(pts, LATERAL))
    assert r["L3"]["wedge_ratio"] == pytest.approx(1.0)
    assert r["L3"]["crush_ratio"] == pytest.approx(0.5)
    assert r["L3"]["height_loss"] == pytest.approx(50.0) and r["L3"]["genant_grade"] == 3
    # the neighbours compare their posterior height with (30 + 15) / 2 = 22.5 -> ratio > 1 -> no loss
    assert r["L2"]["height_loss"] == pytest.approx(0.0) and r["L2"]["genant_grade"] == 0
    # end vertebrae have one neighbour only
    assert r["L1"]["crush_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "loss, grade", [(0, 0), (19.99, 0), (20, 1), (24.9, 1), (25, 2), (40, 2), (40.01, 3), (80, 3)]
)
def test_genant_grade_boundaries(loss, grade):
    assert M.genant_grade(loss) == grade


@pytest.mark.parametrize(
    "slip, grade", [(0, 1), (24.9, 1), (25, 2), (49.9, 2), (50, 3), (74.9, 3), (75, 4), (100, 4), (100.1, 5),
                    (-30, 2)]
)
def test_meyerding_boundaries(slip, grade):
    assert M.meyerding_grade(slip) == grade


@pytest.mark.parametrize("facing", ["left", "right"])
def test_spondylolisthesis_slip_percent(facing):
    # L5 moved 12 px anteriorly over an S1 end plate 40 px long -> 30 % anterolisthesis, Meyerding II
    pts = H.spine_points(width=40.0, shifts={"L5": 12.0}, facing=facing)
    slips = M.slip_percentages(pts, LATERAL)
    assert slips[("L5", "S1")] == pytest.approx(30.0)
    assert slips[("L4", "L5")] == pytest.approx(-30.0)  # L4 stays: retrolisthesis relative to L5
    assert slips[("L1", "L2")] == pytest.approx(0.0)
    ms = M.compute_measurements(pts, LATERAL)
    assert ms.value("L5-S1.meyerding_grade") == 2
    assert ms.get("L5-S1.slip_percent").unit == "%"


def test_slip_measured_along_a_tilted_lower_end_plate():
    # S1 tilted by 40 degrees; an L5 shift of 10 px along the S1 plate direction is 25 % of 40 px
    pts = H.spine_points(width=40.0, tilts={("S1", "superior"): -40.0})
    s = LATERAL.vertebra_slices[LATERAL.vertebra_names.index("S1")]
    a, q = pts[s][0], pts[s][1]
    u = (a - q) / np.linalg.norm(a - q)
    l5 = LATERAL.vertebra_slices[LATERAL.vertebra_names.index("L5")]
    p_row = l5.start + LATERAL.vertebrae[4].corners.index("inferior_posterior")
    pts[p_row] = q + 10.0 * u + 3.0 * np.array([-u[1], u[0]])  # 10 px along, 3 px across the plate
    assert M.slip_percentages(pts, LATERAL)[("L5", "S1")] == pytest.approx(25.0)


@pytest.mark.parametrize("mirror", [False, True])
def test_ap_cobb_and_lateral_wedging(mirror):
    tilts = {("L1", "superior"): 12.0, ("L4", "inferior"): -8.0, ("L2", "inferior"): 3.0}
    pts = H.spine_points("ap", tilts=tilts, facing="right")
    if mirror:
        pts[:, 0] = 500.0 - pts[:, 0]
    val, up, lo = M.max_cobb_angle(pts, AP)
    assert val == pytest.approx(20.0) and (up, lo) == ("L1 superior", "L4 inferior")
    w = M.wedge_angles(pts, AP)
    assert w["L1"] == pytest.approx(12.0) and w["L2"] == pytest.approx(-3.0) and w["L4"] == pytest.approx(8.0)
    ms = M.compute_measurements(pts, AP, (0.1, 0.1), "PixelSpacing")
    keys = {m.key for m in ms}
    assert "max_cobb_angle" in keys and "L3.right_height" in keys and "L3-L4.disc_left_height" in keys
    assert not any(k.endswith(("slip_percent", "lumbar_lordosis", "sacral_slope", "genant_grade")) for k in keys)
    assert ms.value("L3.right_height") == pytest.approx(3.0)
    with pytest.raises(ValueError, match="sacrum"):
        M.lumbar_lordosis(pts, AP)


def test_measurement_set_json_and_row_follow_the_layout():
    pts = H.lateral_study_points()
    ms = M.compute_measurements(pts, LATERAL, (0.2, 0.2), "PixelSpacing")
    n_lumbar, n_levels = len(LATERAL.lumbar_indices), LATERAL.num_vertebrae - 1
    # 2 global + per level (segmental, disc angle, 3 disc heights, slip, grade) + per lumbar (wedge, 3 heights,
    # 3 ratios, loss, grade)
    assert len(ms) == 2 + n_levels * 7 + n_lumbar * 9
    row = ms.as_row()
    assert row["lumbar_lordosis"] == pytest.approx(50.0) and row["sacral_slope"] == pytest.approx(38.0)
    js = ms.to_json_dict()
    assert js["spacing_source"] == "PixelSpacing" and js["length_unit"] == "mm"
    assert {i["key"] for i in js["items"]} == set(row)
    units = {"angle": {"deg"}, "length": {"mm"}, "percent": {"%"}, "ratio": {"1"}, "grade": {"{grade}"}}
    for item in js["items"]:
        assert item["unit"] in units[M.QUANTITIES[item["quantity"]][1]], item


def test_degenerate_end_plate_gives_nan_not_crash():
    pts = H.spine_points()
    s = LATERAL.vertebra_slices[LATERAL.sacrum_index]
    pts[s.start + 1] = pts[s.start]  # zero-length S1 end plate
    slips = M.slip_percentages(pts, LATERAL)
    assert np.isnan(slips[("L5", "S1")])
    ms = M.compute_measurements(pts, LATERAL)
    assert "L5-S1.meyerding_grade" not in ms.as_row()
    assert ms.get("L5-S1.slip_percent").to_json_dict()["value"] is None


def test_measure_result_uses_the_result_spacing():
    pts = H.spine_points(width=40.0, height=30.0)
    res = H.result_from_points(pts, spacing=(0.2, 0.2), source="ImagerPixelSpacing")
    ms = M.measure_result(res)
    assert ms.spacing_source == "ImagerPixelSpacing"
    assert ms.value("L1.anterior_height") == pytest.approx(6.0)
