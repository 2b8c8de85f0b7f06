"""Stage-1 framing (lumbar_monai.framing): windows map points exactly, random framings keep the landmarks on their
image features, and the shipped AP model (framed stage 1) loads and predicts sensibly on a real AASCE test image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import REPO, SHARED

from lumbar_monai.anatomy import AP
from lumbar_monai.framing import (
    RandFramed,
    detect_centres_framed,
    lumbar_window,
    resample_window,
    whole_image_window,
    window_affine,
)
from lumbar_monai.transforms.geometry import PadToSquare, ResizeSquare, transform_points

MODEL = REPO / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"
AASCE = SHARED / "data" / "aasce16"


def _dots(shape, points, radius=2):
    img = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in points:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 1.0
    return img


def _centroid(win: torch.Tensor) -> np.ndarray:
    w = win[0].numpy().astype(np.float64)
    yy, xx = np.mgrid[: w.shape[0], : w.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


@pytest.mark.parametrize("rotation,aspect", [(0.0, 1.0), (0.3, 1.0), (-0.2, 1.2)])
def test_window_moves_a_dot_where_its_geometry_says(rotation, aspect):
    pt = np.array([[70.0, 150.0]])
    img = _dots((240, 100), pt, radius=3)
    a = window_affine((50.0, 140.0), 80.0, 64, rotation=rotation, aspect=aspect)
    win = resample_window(img, a, 64)
    expected = transform_points(pt, np.linalg.inv(a))[0]
    assert np.abs(_centroid(win) - expected).max() <= 0.25


def test_whole_image_window_is_pad_to_square_and_resize():
    shape = (300, 120)
    centre, side = whole_image_window(shape)
    a = window_affine(centre, side, 60)
    ref = ResizeSquare(60).matrix((300, 300)) @ PadToSquare().matrix(shape)
    pts = np.array([[0.0, 0.0], [119.0, 299.0], [33.3, 150.0]])
    np.testing.assert_allclose(transform_points(pts, np.linalg.inv(a)), transform_points(pts, ref), atol=1e-9)


def test_window_outside_the_image_is_zero():
    win = resample_window(np.ones((50, 50), np.float32), window_affine((500.0, 500.0), 40.0, 16), 16)
    assert win.shape == (1, 16, 16) and float(win.abs().max()) == 0.0


def test_lumbar_window_ignores_one_misplaced_centre():
    c = np.array([[100.0, 100.0], [100.0, 130.0], [100.0, 160.0], [100.0, 190.0], [100.0, 220.0]])
    centre, side = lumbar_window(c, factor=2.0)
    np.testing.assert_allclose(centre, [100.0, 160.0])
    assert side == pytest.approx(2.0 * 30.0 * 4)
    bad = c.copy()
    bad[4] = [100.0, 600.0]
    assert lumbar_window(bad, factor=2.0)[1] == pytest.approx(240.0)
    with pytest.raises(ValueError, match="two finite"):
        lumbar_window(np.full((5, 2), np.nan))


def _spine(h=600, w=240):
    """AP corners of five stacked vertebrae in the lower half of an (h, w) image."""
    pts = []
    for i in range(5):
        top, bottom = 300 + 45 * i, 330 + 45 * i
        pts += [[90.0, top], [150.0, top], [90.0, bottom], [150.0, bottom]]
    return np.array(pts), (h, w)


@pytest.mark.parametrize("seed", range(4))
def test_random_framing_keeps_landmarks_on_their_features(seed):
    pts, shape = _spine()
    img = _dots(shape, pts, radius=8)[None]
    t = RandFramed("image", "points", layout="ap", size=96, fov_crop_prob=1.0)
    t.set_random_state(seed)
    out = t({"image": img, "points": pts, "layout": "ap"})
    win, moved = out["image"][0].numpy(), out["points"]
    assert out["image"].shape == (1, 96, 96) and out["framing"] in ("whole", "lumbar")
    inside = (moved >= 1).all(1) & (moved <= 94).all(1)
    assert inside.sum() >= 10
    ix, iy = np.rint(moved[inside]).astype(int).T
    assert (win[iy, ix] > 0.2).all()  # every landmark still sits on its dot (the FOV crop kept them)
    np.testing.assert_allclose(transform_points(pts, out["geometry"]), moved)


def test_plain_lumbar_window_frames_the_span():
    pts, shape = _spine()
    t = RandFramed("image", "points", layout="ap", size=128, factor=2.0, jitter=False)
    out = t({"image": np.zeros((1, *shape), np.float32), "points": pts, "layout": "ap", "framing": "lumbar"})
    c = AP.centres(out["points"])
    assert c[-1, 1] - c[0, 1] == pytest.approx(64.0)  # the L1-L5 span is half the side
    assert c[:, 1].mean() == pytest.approx(63.5)


@pytest.fixture(scope="module")
def shipped():
    if not MODEL.is_file():
        pytest.skip(f"shipped model not found at {MODEL}")
    from lumbar_monai.predictor import LandmarkPredictor

    return LandmarkPredictor.load(MODEL, device="cpu")


def test_shipped_model_is_small_and_self_describing(shipped):
    assert MODEL.stat().st_size <= 10 * 2**20
    assert shipped.layout.name == "ap"
    assert shipped.stage1["framing"]["passes"] >= 2
    assert "AASCE" in str(shipped.meta.get("trained_on"))
    # Algorithm 1 on sub-pixel peaks: integer peaks of its 24x24 maps trip the 1.4x rule on complete spines
    assert shipped.stage1["repair"].get("rule_peaks") == "subpixel"
    assert shipped.tta == "mirror"  # the corner M-Net averaged with its mirror (chosen on the validation split)
    # Pose-Net trained with auxiliary T11/T12 maps after L1-L5; inference reads the layout's five channels
    assert shipped.meta.get("stage1_aux_vertebrae") == ["T11", "T12"]
    assert shipped.centre_net.out_channels == shipped.layout.num_vertebrae + 2


def test_shipped_model_on_a_real_aasce_test_image(shipped):
    if not (AASCE / "labels_training" / "landmarks.csv").is_file():
        pytest.skip(f"AASCE copy not found at {AASCE}")
    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.datalist import assign_split

    image, ann = next((p, a) for p, a in read_aasce(AASCE, outside="skip") if assign_split(a.meta["case"]) == "test")
    res = shipped.predict(Path(image))
    w, h = ann.image_size
    assert res.points.shape == (AP.num_points, 2) and np.isfinite(res.points).all()
    assert ((res.centres >= 0) & (res.centres < [w, h])).all()
    assert (np.diff(res.centres[:, 1]) > 0).all()  # L1 .. L5 top to bottom
    gt = AP.centres(ann.points)
    spacing = np.median(np.diff(gt[:, 1]))
    assert np.linalg.norm(res.centres - gt, axis=1).max() < 2 * spacing  # the lumbar spine, not somewhere else


def test_framed_detection_reads_every_pass(shipped):
    img = np.zeros((400, 160), np.float32)
    out = detect_centres_framed(shipped.centre_net, img, shipped._centre_decoder(), passes=3)
    assert len(out["windows"]) == 3 and out["original"].shape == (5, 2)
    assert out["windows"][0] == ([79.5, 199.5], 400.0)
    assert isinstance(out["second_peak"], float) and 0.0 <= out["second_peak"] <= 1.0  # of the last pass's maps
    # a given first window (e.g. around the ground-truth centres) replaces the whole image as pass 1
    one = detect_centres_framed(shipped.centre_net, img, shipped._centre_decoder(), passes=1,
                                first_window=([80.0, 150.0], 120.0))
    assert one["windows"] == [([80.0, 150.0], 120.0)] and one["original"].shape == (5, 2)


def test_below_cut_ends_the_image_under_l5():
    """``below_cut_prob``: zero below a random image row 0.6-3 centre spacings under L5, the same window otherwise."""
    pts, _ = _spine()
    img = np.random.default_rng(0).uniform(0.2, 1.0, (800, 240))  # image content well below L5
    c = AP.centres(pts)
    spacing = float(np.median(np.diff(c[:, 1])))
    data = {"image": torch.as_tensor(img, dtype=torch.float32)[None], "points": pts, "layout": "ap",
            "framing": "whole"}
    kw = dict(layout="ap", size=128, factor=2.0, fov_crop_prob=0.0)
    plain = RandFramed("image", "points", **kw)
    cut = RandFramed("image", "points", below_cut_prob=1.0, **kw)
    plain.set_random_state(3), cut.set_random_state(3)
    a, b = plain(data), cut(data)
    np.testing.assert_allclose(a["geometry"], b["geometry"])  # the same window
    inv = np.linalg.inv(a["geometry"])
    u = np.arange(128, dtype=np.float64)
    xx, yy = np.meshgrid(u, u)
    y = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]  # image row of each window pixel
    kept = y < c[-1, 1] + 0.6 * spacing
    gone = y > c[-1, 1] + 3.0 * spacing
    assert kept.any() and gone.any()
    torch.testing.assert_close(b["image"][0][torch.as_tensor(kept)], a["image"][0][torch.as_tensor(kept)])
    assert float(b["image"][0][torch.as_tensor(gone)].abs().max()) == 0.0
    assert float(a["image"][0][torch.as_tensor(gone)].abs().max()) > 0.0  # there was image to cut
