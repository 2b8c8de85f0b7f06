from __future__ import annotations

import numpy as np
import pytest

from lumbar_monai.anatomy import AP, LATERAL, get_layout, image_side_aliases
from lumbar_monai.facing import infer_facing

pytestmark = pytest.mark.compat


def _stack(layout, facing="left"):
    """A plausible upright spine: vertebrae 100 px apart, 80 px deep, 60 px tall, S1 sloping down anteriorly."""
    pts = np.zeros((layout.num_points, 2))
    sign = 1 if facing == "left" else -1  # anterior towards -x when facing left
    for vi, (v, sl) in enumerate(zip(layout.vertebrae, layout.vertebra_slices, strict=True)):
        cy = 100 + 100 * vi
        cx = 500 - sign * 15 * np.sin(np.pi * vi / max(1, layout.num_vertebrae - 1))  # lordotic bulge forward
        ant, post = cx - sign * 40, cx + sign * 40
        if v.kind == "lumbar":
            pts[sl] = [[ant, cy - 30], [post, cy - 30], [ant, cy + 30], [post, cy + 30]]
        else:
            pts[sl] = [[ant, cy + 20], [post, cy - 20]]
    return pts


def test_counts_and_names():
    assert (LATERAL.num_points, LATERAL.num_vertebrae) == (22, 6)
    assert (AP.num_points, AP.num_vertebrae) == (20, 5)
    assert LATERAL.point_names[0] == "L1_superior_anterior"
    assert LATERAL.point_names[-2:] == ("S1_anterior", "S1_posterior")
    assert LATERAL.sacrum_index == 5 and AP.sacrum_index is None
    assert LATERAL.lumbar_indices == (0, 1, 2, 3, 4)
    assert len(LATERAL.end_plate_segments) == 11 and len(AP.end_plate_segments) == 10
    assert LATERAL.end_plate_segments[-1] == (20, 21)
    assert get_layout("LATERAL") is LATERAL
    with pytest.raises(ValueError, match="unknown layout"):
        get_layout("sagittal-ish")


def test_centres_are_corner_means():
    pts = np.arange(44, dtype=float).reshape(22, 2)
    c = LATERAL.centres(pts)
    assert c.shape == (6, 2)
    np.testing.assert_allclose(c[0], pts[0:4].mean(0))
    np.testing.assert_allclose(c[5], pts[20:22].mean(0))
    batch = np.stack([pts, pts + 1])
    np.testing.assert_allclose(LATERAL.centres(batch)[1], c + 1)


def test_named_round_trip_and_aliases():
    pts = np.random.default_rng(0).random((22, 2)) * 100
    named = LATERAL.to_named(pts)
    np.testing.assert_array_equal(LATERAL.from_named(named), pts)
    # image-side names with the patient facing left: top-left is superior anterior
    assert image_side_aliases(LATERAL, LATERAL.vertebrae[0], "left")["top_left"] == "superior_anterior"
    assert image_side_aliases(LATERAL, LATERAL.vertebrae[0], "right")["top_left"] == "superior_posterior"
    assert image_side_aliases(LATERAL, LATERAL.vertebrae[5], "right")["left"] == "posterior"
    assert LATERAL.index("L2", "top_right") == 5 and LATERAL.index("L2", "top_right", facing="right") == 4
    side_named = {
        v.name: {k: named[v.name][c] for k, c in image_side_aliases(LATERAL, v, "right").items()}
        for v in LATERAL.vertebrae
    }
    np.testing.assert_array_equal(LATERAL.from_named(side_named, facing="right"), pts)
    with pytest.raises(KeyError):
        LATERAL.from_named({k: v for k, v in named.items() if k != "S1"})


@pytest.mark.parametrize("facing", ["left", "right"])
def test_infer_facing(facing):
    pts = _stack(LATERAL, facing)
    # infer_facing reads points stored in image-side order (as if facing left)
    if facing == "right":
        for v, sl in zip(LATERAL.vertebrae, LATERAL.vertebra_slices, strict=True):
            block = pts[sl].copy()
            for a, b in v.end_plates:
                block[[a, b]] = block[[b, a]]
            pts[sl] = block
    assert infer_facing(pts, LATERAL) == facing
    # without a sacrum the lordotic bulge decides
    ap_like = pts[:20]
    from lumbar_monai.anatomy import Layout

    lumbar_only = Layout("lumbar-lateral", "lateral", LATERAL.vertebrae[:5])
    assert infer_facing(ap_like, lumbar_only) == facing


def test_check_points_shape():
    with pytest.raises(ValueError, match=r"\(22, 2\)"):
        LATERAL.check_points(np.zeros((20, 2)))
