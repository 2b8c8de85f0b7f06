"""Random Spine Cutout and the conventional cutout: the right box, the right size, seeded, selectable by config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_centre_codec import spine_points

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.transforms.cutout import (
    RandConventionalCutoutd,
    RandSpineCutoutd,
    make_cutout,
    oriented_box_mask,
    vertebra_box,
)

pytestmark = pytest.mark.compat


def test_vertebra_box_known_values():
    pts = spine_points("lateral", top=(100.0, 50.0), spacing=60.0, width=50.0, height=40.0)
    c, w, h, axis = vertebra_box(pts, LATERAL, 2)
    np.testing.assert_allclose(c, [100.0, 170.0])
    assert (w, h) == pytest.approx((50.0, 40.0))
    np.testing.assert_allclose(axis, [1.0, 0.0], atol=1e-12)
    # tilted by 30 degrees: same sizes, axis rotated (image y down: the width axis points to (cos, -sin))
    a = np.deg2rad(30)
    c, w, h, axis = vertebra_box(spine_points("lateral", angle=a), LATERAL, 0)
    assert (w, h) == pytest.approx((50.0, 40.0))
    np.testing.assert_allclose(axis, [np.cos(a), -np.sin(a)], atol=1e-12)
    with pytest.raises(ValueError):
        vertebra_box(pts, LATERAL, 5)  # S1 has one end plate


def test_oriented_mask_counts():
    m = oriented_box_mask((20, 30), (14.0, 9.0), 6.0, 4.0)
    assert m.sum() == 7 * 5  # pixel centres at 11..17 x 7..11 lie within +-3, +-2
    assert m[9, 14] and not m[9, 18]
    r = oriented_box_mask((101, 101), (50.0, 50.0), 40.0, 10.0, axis=(0.0, 1.0))  # rotated 90 degrees
    assert r[50 + 19, 50] and not r[50, 50 + 19] and abs(int(r.sum()) - 41 * 11) <= 0


@pytest.mark.parametrize("ratio", [1.0, 0.6, 0.4])
def test_rsc_zeroes_oriented_box_on_an_l1_l4_vertebra(ratio):
    a = np.deg2rad(20)
    pts = spine_points("lateral", top=(128.0, 40.0), spacing=50.0, width=44.0, height=36.0, angle=a)
    img = np.ones((2, 320, 256), np.float32)
    seen = set()
    for seed in range(12):
        t = RandSpineCutoutd("image", ratio=ratio, prob=1.0, box_key="box").set_random_state(seed)
        out = t({"image": img, "points": pts, "layout": "lateral"})
        vi = int(out["box"][6])
        seen.add(vi)
        c, w, h, axis = vertebra_box(pts, LATERAL, vi)
        expect = oriented_box_mask((320, 256), c, ratio * w, ratio * h, axis)
        zero = out["image"][0] == 0
        np.testing.assert_array_equal(zero, expect)
        np.testing.assert_array_equal(out["image"][1] == 0, expect)
        assert abs(zero.sum() - ratio**2 * w * h) < 2 * ratio * (w + h) + 4  # area, up to the boundary pixels
        assert zero[int(round(c[1])), int(round(c[0]))]
    assert seen == {0, 1, 2, 3}  # L1-L4 only, never L5 or S1


def test_rsc_seeded_torch_ap_and_missing_vertebra():
    pts = spine_points(AP, top=(64.0, 20.0), spacing=22.0, width=20.0, height=16.0)
    img = torch.ones(1, 128, 128)
    a = RandSpineCutoutd(prob=1.0, box_key="box").set_random_state(3)({"image": img, "points": pts, "layout": "ap"})
    b = RandSpineCutoutd(prob=1.0, box_key="box").set_random_state(3)({"image": img, "points": pts, "layout": "ap"})
    assert isinstance(a["image"], torch.Tensor) and torch.equal(a["image"], b["image"])
    assert int(a["box"][6]) in (0, 1, 2, 3)
    # L1-L3 not annotated: only L4 can be cut
    p2 = pts.copy()
    p2[: AP.vertebra_slices[3].start] = np.nan
    c = RandSpineCutoutd(prob=1.0, box_key="box").set_random_state(0)({"image": img, "points": p2, "layout": "ap"})
    assert int(c["box"][6]) == 3
    assert "box" not in RandSpineCutoutd(prob=0.0, box_key="box")({"image": img, "points": pts, "layout": "ap"})


def test_conventional_cutout_same_size_random_place():
    pts = spine_points("lateral", top=(128.0, 40.0), spacing=50.0, width=40.0, height=30.0)
    img = np.ones((1, 320, 256), np.float32)
    centres = []
    for seed in range(6):
        t = RandConventionalCutoutd(ratio=0.6, prob=1.0, box_key="box").set_random_state(seed)
        out = t({"image": img, "points": pts, "layout": "lateral"})
        zero = out["image"][0] == 0
        ys, xs = np.nonzero(zero)
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (18, 24)  # round(0.6*30), round(0.6*40)
        assert zero.sum() == 18 * 24
        np.testing.assert_allclose(out["box"][:2], [(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2])
        centres.append(tuple(out["box"][:2]))
    assert len(set(centres)) > 3  # it moves around


def test_make_cutout_kinds():
    assert make_cutout("none") is None
    assert isinstance(make_cutout("rsc", ratio=0.8), RandSpineCutoutd) and make_cutout("rsc", ratio=0.8).ratio == 0.8
    assert isinstance(make_cutout("conventional"), RandConventionalCutoutd)
    with pytest.raises(ValueError):
        make_cutout("random")


def test_inputs_are_not_modified_in_place():
    pts = spine_points("lateral", top=(128.0, 40.0), spacing=50.0, width=40.0, height=30.0)
    for cls in (RandConventionalCutoutd, RandSpineCutoutd):
        for img in (np.ones((1, 320, 256), np.float32), torch.ones(1, 320, 256)):
            out = cls(prob=1.0).set_random_state(0)({"image": img, "points": pts, "layout": "lateral"})
            assert float(img.min()) == 1.0 and float(out["image"].min()) == 0.0
