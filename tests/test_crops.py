from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.codecs.gaussian import decode_peaks, render_gaussians
from lumbar_monai.crops import (
    VertebraCropsd,
    antialias_sigma,
    crop_affines,
    crop_boxes_eq5,
    crop_to_image,
    extract_vertebra_crops,
    image_to_crop,
    resample_crops,
)

pytestmark = pytest.mark.compat


def _centres(ys, x=50.0):
    return np.stack([np.full(len(ys), x), np.asarray(ys, dtype=float)], axis=1)


def test_eq5_lateral_known_answer():
    ys = [100, 140, 190, 250, 300, 380]  # L1..L5, S1
    sides = crop_boxes_eq5(_centres(ys), LATERAL)
    expected = [1.5 * 40, 0.75 * (40 + 50), 0.75 * (50 + 60), 0.75 * (60 + 50), 1.5 * 50, 1.5 * 50]
    np.testing.assert_allclose(sides, expected)


def test_eq5_ap_has_no_sacrum_and_batches():
    ys = np.array([[10, 30, 60, 100, 120], [0, 10, 20, 30, 40]], dtype=float)
    c = np.stack([np.zeros_like(ys), ys], axis=-1)
    sides = crop_boxes_eq5(c, AP)
    assert sides.shape == (2, 5)
    k = AP.crop_scale  # the AP layout widens Eq. 5 (AP vertebrae are wider than the centre spacing)
    assert k > 1.0
    np.testing.assert_allclose(sides[0], k * np.array([30, 0.75 * 50, 0.75 * 70, 0.75 * 60, 30]))
    np.testing.assert_allclose(sides[1], k * np.array([15, 15, 15, 15, 15]))
    np.testing.assert_allclose(crop_boxes_eq5(c, dataclasses.replace(AP, crop_scale=1.0))[1], 15)
    with pytest.raises(ValueError):
        crop_boxes_eq5(c[:, :4], AP)


def test_affine_pixel_centre_convention():
    # side 8 image px -> 4 crop px: crop pixel u has its centre at c + (u - 1.5) * 2
    a = crop_affines([[10.0, 20.0]], 8.0, 4)
    got = crop_to_image(np.array([[[0, 0], [3, 3], [1.5, 1.5]]]), a)[0]
    np.testing.assert_allclose(got, [[7, 17], [13, 23], [10, 20]])


def test_resample_ramp_is_exact_and_zero_outside():
    h, w = 40, 60
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx, yy])  # channel 0 holds x, channel 1 holds y
    rng = np.random.default_rng(0)
    centres = np.array([[20.0, 15.0], [30.5, 20.25], [58.0, 2.0]])
    aff = crop_affines(centres, [10.0, 12.0, 16.0], 16, rotation=rng.uniform(-0.3, 0.3, 3))
    crops = resample_crops(img, aff, 16).numpy()
    uv = np.stack(np.meshgrid(np.arange(16.0), np.arange(16.0), indexing="xy"), -1).reshape(1, -1, 2)
    xy = crop_to_image(np.repeat(uv, 3, 0), aff).reshape(3, 16, 16, 2)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    np.testing.assert_allclose(crops[:, 0][inside], xy[..., 0][inside], atol=1e-3)
    np.testing.assert_allclose(crops[:, 1][inside], xy[..., 1][inside], atol=1e-3)
    far = (xy[..., 0] < -1) | (xy[..., 0] > w) | (xy[..., 1] < -1) | (xy[..., 1] > h)
    assert far[2].any()  # the third crop leaves the image
    assert np.all(crops[:, 0][far] == 0) and np.all(crops[:, 1][far] == 0)


@pytest.mark.parametrize("rotation", [0.0, 0.4])
def test_round_trip_through_pixels_including_outside_crops(rotation):
    # a Gaussian drawn in the image at p shows up in the crop at image_to_crop(p), and maps back to p
    h, w = 120, 100
    pts = torch.tensor([[30.3, 40.7], [95.2, 3.4]], dtype=torch.float64)  # the second is near a corner
    # crops coarser than the image (as in practice: crop side > 256 px of the original), so that bilinear
    # sampling of the finely drawn Gaussian does not move its peak
    img = render_gaussians(pts, 6.0, h, w)  # (2, H, W): one channel per point
    centres = np.array([[35.0, 45.0], [99.0, 0.0]])  # second crop half outside the image
    aff = crop_affines(centres, [40.0, 50.0], 16, rotation=[rotation, -rotation])
    crops = resample_crops(img, aff, 16)  # (2 crops, 2 channels, 16, 16)
    expect = image_to_crop(np.repeat(pts.numpy()[None], 2, 0), aff)  # (2 crops, 2 points, 2)
    for j in range(2):
        found, conf = decode_peaks(crops[j, j].double())
        np.testing.assert_allclose(found.numpy(), expect[j, j], atol=0.05)
        back = crop_to_image(found.numpy()[None, None], aff[j : j + 1])[0, 0]
        np.testing.assert_allclose(back, pts[j].numpy(), atol=0.05)
    np.testing.assert_allclose(crop_to_image(expect, aff), np.repeat(pts.numpy()[None], 2, 0), atol=1e-10)


def test_extract_uses_eq5_and_selection():
    ys = [100, 140, 190, 250, 300, 380]
    centres = _centres(ys, x=80.0)
    img = np.zeros((400, 200), dtype=np.uint16)
    crops, aff = extract_vertebra_crops(img, centres, LATERAL, out_size=32, vertebrae="sacrum", blur_sigma=0)
    assert crops.shape == (1, 1, 32, 32) and crops.dtype == torch.float32
    np.testing.assert_allclose(aff[0, 0, 0] * 32, 1.5 * 50)  # sacrum side from the L4-L5 distance
    np.testing.assert_allclose(crop_to_image(np.array([[[15.5, 15.5]]]), aff)[0, 0], [80, 380])


def _toy_sample(layout=LATERAL):
    rng = np.random.default_rng(3)
    pts = []
    y = 40.0
    for v in layout.vertebrae:
        if v.kind == "lumbar":
            pts += [[60, y], [100, y + 2], [62, y + 30], [101, y + 31]]
            y += 45
        else:
            pts += [[62, y + 5], [100, y - 5]]
    pts = np.asarray(pts, float) + rng.normal(0, 0.5, (layout.num_points, 2))
    img = np.zeros((1, 320, 160), dtype=np.float32)
    img[0, ::4] = 1.0
    return {"image": img, "points": pts, "id": 7}


def test_vertebra_cropsd_points_follow_the_image():
    t = VertebraCropsd("image", LATERAL, vertebrae="lumbar", out_size=48, blur_sigma=0.0, translate=0.1, rotate=10,
                       scale=(0.9, 1.1))
    t.set_random_state(seed=5)
    sample = _toy_sample()
    out = t(sample)
    assert len(out) == len(LATERAL.lumbar_indices)
    for item in out:
        assert item["image"].shape == (1, 48, 48) and item["points"].shape == (4, 2) and item["id"] == 7
        back = crop_to_image(item["points"][None].astype(float), item["affine"][None])[0]
        sl = LATERAL.vertebra_slices[item["vertebra"]]
        np.testing.assert_allclose(back, sample["points"][sl], atol=1e-4)
    # same seed, same crops; no augmentation gives crops centred on the ground-truth centre
    t2 = VertebraCropsd("image", LATERAL, vertebrae="lumbar", out_size=48, blur_sigma=0.0, translate=0.1, rotate=10,
                        scale=(0.9, 1.1))
    t2.set_random_state(seed=5)
    np.testing.assert_allclose(t2(sample)[2]["affine"], out[2]["affine"])
    plain = VertebraCropsd("image", LATERAL, vertebrae="sacrum", out_size=48)(sample)
    assert len(plain) == 1 and plain[0]["points"].shape == (2, 2)
    centre = LATERAL.centres(sample["points"])[LATERAL.sacrum_index]
    np.testing.assert_allclose(crop_to_image(np.array([[[23.5, 23.5]]]), plain[0]["affine"][None])[0, 0], centre)


def test_centre_outlier_rule_on_eq5_crops():
    """The Section 4.2 rule (metrics.centre) with the crops made here: only the shifted vertebra is missed."""
    from lumbar_monai.metrics.centre import landmarks_outside_crops

    sample = _toy_sample()
    pts = sample["points"]
    centres = LATERAL.centres(pts)
    assert not landmarks_outside_crops(centres, pts, LATERAL).any()
    moved = centres.copy()
    moved[2, 0] += 40.0  # L3 crop (side 0.75 * (45 + 45) = 67.5 px) shifted off its corners
    outside = landmarks_outside_crops(moved, pts, LATERAL)
    assert outside.tolist() == [False, False, True, False, False, False]


def test_eq5_euclidean_spacing_follows_a_leaning_spine():
    """``crop_spacing="euclidean"``: Eq. 5's distances along the spine, so a leaning (scoliotic) lumbar spine keeps
    crops of its vertebrae's size; an upright one gets the paper's crops."""
    ys = np.array([0.0, 20.0, 40.0, 60.0, 80.0])
    leaning = np.stack([ys * 0.75, ys], axis=-1)  # 3-4-5: each step 25 px long, 20 px of it vertical
    euclidean = dataclasses.replace(AP, crop_spacing="euclidean")
    assert AP.crop_spacing == "vertical"  # the paper's rule stays the AP default (see anatomy.AP)
    np.testing.assert_allclose(crop_boxes_eq5(leaning, AP), AP.crop_scale * 30.0)
    np.testing.assert_allclose(crop_boxes_eq5(leaning, euclidean), AP.crop_scale * 37.5)
    upright = _centres(ys)
    np.testing.assert_allclose(crop_boxes_eq5(upright, AP), crop_boxes_eq5(upright, euclidean))
    with pytest.raises(ValueError, match="crop_spacing"):
        dataclasses.replace(AP, crop_spacing="diagonal")


@pytest.mark.parametrize("rotation", [0.0, 0.4])
def test_crop_aspect_covers_a_wider_box_on_the_same_pixels(rotation):
    """``aspect``: the N x N crop spans ``side * aspect`` by ``side`` image pixels; points still round-trip."""
    a = crop_affines([[100.0, 50.0]], 40.0, 8, rotation=[rotation], aspect=1.25)
    corners = crop_to_image(np.array([[[-0.5, -0.5], [7.5, -0.5], [-0.5, 7.5]]]), a)[0]  # the crop's outer edges
    np.testing.assert_allclose(np.linalg.norm(corners[1] - corners[0]), 50.0)  # width
    np.testing.assert_allclose(np.linalg.norm(corners[2] - corners[0]), 40.0)  # height
    np.testing.assert_allclose(crop_to_image(np.array([[[3.5, 3.5]]]), a)[0, 0], [100, 50])  # centred
    pts = np.random.default_rng(1).uniform(0, 200, (1, 5, 2))
    np.testing.assert_allclose(crop_to_image(image_to_crop(pts, a), a), pts)
    # the AP layout's crops take its aspect; the synthetic lateral layout keeps the paper's square
    c = np.stack([np.full(5, 80.0), [100.0, 140.0, 180.0, 220.0, 260.0]], axis=-1)
    _, aff = extract_vertebra_crops(np.zeros((400, 200)), c, AP, out_size=32, blur_sigma=0)
    np.testing.assert_allclose(aff[:, 0, 0] / aff[:, 1, 1], AP.crop_aspect)
    assert LATERAL.crop_aspect == 1.0


def test_centre_outlier_rule_reads_the_crop_aspect():
    """A corner 0.55 crop heights beside its centre is outside a square crop and inside a 1.25x wide one."""
    from lumbar_monai.metrics.centre import landmarks_outside_crops

    c = np.stack([np.full(5, 100.0), [100.0, 140.0, 180.0, 220.0, 260.0]], axis=-1)
    square = dataclasses.replace(AP, crop_aspect=1.0, crop_spacing="vertical")
    wide = dataclasses.replace(square, crop_aspect=1.25)
    side = crop_boxes_eq5(c, square)
    pts = np.repeat(c, 4, axis=0)  # every corner on its centre ...
    pts[8, 0] += 0.55 * side[2]  # ... but one corner of L3 off to the side
    assert landmarks_outside_crops(c, pts, square).tolist() == [False, False, True, False, False]
    assert not landmarks_outside_crops(c, pts, wide).any()
    pts[8, 1] += 0.55 * side[2]  # the height is the same in both: off vertically, outside both
    assert landmarks_outside_crops(c, pts, wide)[2]


def test_eq5_degenerate_centres_get_a_usable_crop():
    """Two centres at the same height (a broken annotation or prediction) must not give a zero-size crop."""
    import numpy as np

    from lumbar_monai.anatomy import AP
    from lumbar_monai.crops import crop_boxes_eq5

    k = AP.crop_scale
    c = np.array([[100.0, 100.0], [100.0, 200.0], [100.0, 200.0], [100.0, 300.0], [100.0, 400.0]])
    sides = crop_boxes_eq5(c, AP)
    # Eq. 5 as written (times the layout's scale): L1 150, L2 75, L3 75, L4 150, L5 150 (no floor needed here) ...
    np.testing.assert_allclose(sides, k * np.array([150.0, 75.0, 75.0, 150.0, 150.0]))
    c[1, 1] = c[0, 1]  # L1 and L2 at the same height: Eq. 5 gives L1 a zero side
    sides = crop_boxes_eq5(c, AP)
    assert sides[0] == pytest.approx(0.25 * k * np.median([0.0, 150.0, 75.0, 150.0, 150.0]))


def test_antialias_sigma_follows_the_shrink_per_axis():
    shrink3 = crop_affines(np.array([[100.0, 200.0]]), np.array([240.0]), 80)  # 3 image px per crop px
    assert antialias_sigma(shrink3) == pytest.approx((1.0, 1.0))
    wide = crop_affines(np.array([[100.0, 200.0]]), np.array([240.0]), 80, aspect=1.5)
    sy, sx = antialias_sigma(wide)
    assert sy == pytest.approx(1.0) and sx == pytest.approx((4.5 - 1.0) / 2.0)
    assert antialias_sigma(crop_affines(np.array([[10.0, 10.0]]), np.array([40.0]), 80)) == (0.0, 0.0)  # enlarges
    assert antialias_sigma(np.zeros((0, 3, 3))) == (0.0, 0.0)


def test_antialiased_crops_remove_the_alias_and_keep_positions():
    """Pixel noise shrunk about 3x survives plain bilinear sampling (the alias: fine detail read as coarse);
    anti-aliased crops keep much less of it, around the same mean. A blob keeps its position, constant images
    their value, and crops that do not shrink are untouched."""
    yy, xx = np.mgrid[0:600, 0:500]
    board = np.random.default_rng(0).random((600, 500)).astype(np.float32)
    aff = crop_affines(np.array([[250.0, 300.0], [240.0, 200.0]]), np.array([250.0, 250.0]), 80)
    plain = resample_crops(board, aff, 80)
    smooth = resample_crops(board, aff, 80, antialias=True)
    assert float(plain.std()) > 0.15 and float(smooth.std()) < 0.4 * float(plain.std())
    assert float(smooth.mean()) == pytest.approx(float(plain.mean()), abs=0.02)
    flat = resample_crops(np.full((600, 500), 7.0, np.float32), aff, 80, antialias=True)
    assert torch.allclose(flat, torch.full_like(flat, 7.0), rtol=1e-3)  # edges replicated, not zero-padded
    blob = np.exp(-((xx - 251.3) ** 2 + (yy - 298.6) ** 2) / (2 * 12.0 ** 2)).astype(np.float32)
    peaks = [decode_peaks(resample_crops(blob, aff[:1], 80, antialias=a)[:, 0])[0][0].numpy() for a in (False, True)]
    np.testing.assert_allclose(peaks[0], peaks[1], atol=0.05)
    missing = crop_affines(np.array([[250.0, 300.0], [np.nan, np.nan]]), np.array([250.0, 250.0]), 80)
    both = resample_crops(board, missing, 80, antialias=True)  # a crop around a missing centre changes nothing
    one = resample_crops(board, missing[:1], 80, antialias=True)
    assert antialias_sigma(missing) == antialias_sigma(missing[:1]) and torch.allclose(both[0], one[0], atol=1e-5)
    assert antialias_sigma(missing[1:]) == (0.0, 0.0)
    enlarge = crop_affines(np.array([[250.0, 300.0]]), np.array([40.0]), 80)
    assert torch.equal(resample_crops(board, enlarge, 80, antialias=True), resample_crops(board, enlarge, 80))


def test_antialias_reaches_the_predictor_crops_and_its_checkpoint(tmp_path):
    """(The training crops: tests/test_stage2_training.py.)"""
    from lumbar_monai.predictor import LandmarkPredictor

    pred = LandmarkPredictor.load("bundles/lumbar_landmarks/models/aasce_ap.pt", device="cpu")
    assert pred.crop_antialias is False  # a checkpoint that predates the setting samples as it was trained
    image = np.random.default_rng(0).random((1200, 500)).astype(np.float32)
    centres = np.stack([np.full(5, 250.0), 500.0 + 80.0 * np.arange(5)], axis=1)  # crops ~3x the 80 px input
    plain = pred.corners_batch([image], [centres])[0][0]
    pred.crop_antialias = True
    assert not np.allclose(pred.corners_batch([image], [centres])[0][0], plain)
    assert LandmarkPredictor.load(pred.save(tmp_path / "m.pt"), device="cpu").crop_antialias is True
