"""Algorithm 1 on constructed heatmaps: the paper's Figures 5-7 case is repaired; regular spines are left alone;
a genuinely large L5-S1 gap fires the paper's rule (default) and is held back by the documented guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.codecs.centre import CentreHeatmapCodec
from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.postprocess import postprocess_centres, repair_missing_centre

pytestmark = pytest.mark.compat

SIGMA = 1.6
SIZE = 64


def _maps(peaks_per_channel) -> torch.Tensor:
    """``peaks_per_channel``: for each channel a list of ((x, y), amplitude); maps are sums of Gaussians."""
    out = torch.zeros(len(peaks_per_channel), SIZE, SIZE, dtype=torch.float64)
    for c, peaks in enumerate(peaks_per_channel):
        for (x, y), a in peaks:
            out[c] += a * render_gaussians(torch.tensor([[x, y]], dtype=torch.float64), SIGMA, SIZE, SIZE)[0]
    return out


def _spine(n=7, x0=30.3, y0=6.4, step=7.0, dx=0.35):
    """True centres T12, L1..L5 then S1 (a little closer to L5, as an end-plate midpoint is)."""
    c = [(x0 + i * dx, y0 + i * step) for i in range(n - 1)]
    c.append((c[-1][0] + 1.0, c[-1][1] + 4.5))
    return np.array(c)  # rows: T12, L1, L2, L3, L4, L5, S1


@pytest.mark.parametrize("missing", [1, 2, 3, 4])  # L1..L4 skipped (1 = L1, ..., 4 = L4: the Figure 5 case)
def test_figures_5_to_7_missing_centre_is_recovered(missing):
    truth = _spine()  # index 0 = T12, 1..5 = L1..L5, 6 = S1
    # channels 1..missing found one vertebra too high (C_1 on T12); the rest are right
    found = [truth[k - 1] if k <= missing else truth[k] for k in range(1, 7)]
    chans = [[(tuple(p), 1.0)] for p in found]
    # the skipped vertebra still answers weakly in the channels around the gap (Figure 5)
    chans[missing - 1].append((tuple(truth[missing]), 0.45))
    chans[missing].append((tuple(truth[missing]), 0.35))
    r = repair_missing_centre(_maps(chans))
    assert r.detected and r.fired and r.reason == "repaired"
    assert r.gap == missing - 1
    np.testing.assert_allclose(r.new_centre, truth[missing], atol=0.1)
    np.testing.assert_allclose(r.centres, truth[1:], atol=0.1)  # L1..L5, S1; T12 dropped
    # the inserted centre's confidence is C_sum at its pixel
    c_sum = _maps(chans).sum(0)
    ix, iy = np.round(truth[missing]).astype(int)
    assert r.confidence[missing - 1] == pytest.approx(float(c_sum[iy, ix]), abs=1e-9)


def test_band_uses_the_y_distance_and_bounds():
    truth = _spine()
    found = [truth[k - 1] if k <= 4 else truth[k] for k in range(1, 7)]
    chans = [[(tuple(p), 1.0)] for p in found]
    # a decoy just above the lower bound y_L5 - 0.4 d_max (d_max = 14): it must be zeroed
    decoy = (truth[4][0] + 6.0, truth[5][1] - 0.4 * 14 + 1.0)
    chans[4].append((decoy, 0.9))
    chans[3].append((tuple(truth[4]), 0.5))
    r = repair_missing_centre(_maps(chans))
    assert r.fired
    np.testing.assert_allclose(r.new_centre, truth[4], atol=0.6)


@pytest.mark.parametrize("jitter", [0.0, 0.7])
def test_regular_spacing_does_not_fire(jitter):
    rng = np.random.default_rng(0)
    truth = _spine()[1:]
    truth = truth + rng.uniform(-jitter, jitter, truth.shape)
    r = repair_missing_centre(_maps([[(tuple(p), 1.0)] for p in truth]))
    assert not r.detected and not r.fired and r.reason == "regular"
    np.testing.assert_allclose(r.centres, truth, atol=0.05)
    assert r.distances.shape == (5,)


def _large_lumbosacral_gap():
    truth = _spine()[1:].copy()  # L1..L5, S1
    truth[5] = truth[4] + np.array([2.0, 12.5])  # S1 12.5 px below L5 (> 1.4 x 7)
    return truth


def test_large_l5_s1_gap_paper_rule_fires():
    """As written, Algorithm 1 treats a genuinely large L5-S1 gap as a missing centre: it drops the (correct) L1."""
    truth = _large_lumbosacral_gap()
    r = repair_missing_centre(_maps([[(tuple(p), 1.0)] for p in truth]))
    assert r.detected and r.fired and r.gap == 4
    np.testing.assert_allclose(r.centres[:4], truth[1:5], atol=0.05)  # every lumbar label shifted by one
    assert truth[4][1] < r.centres[4][1] < truth[5][1]


def test_large_l5_s1_gap_guards_hold_it_back():
    truth = _large_lumbosacral_gap()
    maps = _maps([[(tuple(p), 1.0)] for p in truth])
    r = repair_missing_centre(maps, layout="lateral", skip_lumbosacral=True)
    assert r.detected and not r.fired and r.reason == "guard_lumbosacral"
    np.testing.assert_allclose(r.centres, truth, atol=0.05)
    w = repair_missing_centre(maps, min_new_peak=0.2)  # only Gaussian tails in the band
    assert w.detected and not w.fired and w.reason == "guard_weak_peak"
    np.testing.assert_allclose(w.centres, truth, atol=0.05)


def test_guards_do_not_block_a_real_repair():
    truth = _spine()
    found = [truth[k - 1] if k <= 4 else truth[k] for k in range(1, 7)]
    chans = [[(tuple(p), 1.0)] for p in found]
    chans[3].append((tuple(truth[4]), 0.45))
    chans[4].append((tuple(truth[4]), 0.35))
    r = repair_missing_centre(_maps(chans), layout="lateral", skip_lumbosacral=True, min_new_peak=0.2)
    assert r.fired
    np.testing.assert_allclose(r.centres, truth[1:], atol=0.1)


def test_empty_band_changes_nothing():
    # d = (2, 2, 3, 2, 2): detected (3 > 1.4 x 2) but the band rows [14 + 1.2, 17 - 1.2] hold no integer row
    truth = np.column_stack([np.full(6, 30.0), [10.0, 12.0, 14.0, 17.0, 19.0, 21.0]])
    r = repair_missing_centre(_maps([[(tuple(p), 1.0)] for p in truth]))
    assert r.detected and not r.fired and r.reason == "empty_band"


def test_postprocess_batch_grids_and_flag():
    codec = CentreHeatmapCodec("lateral", input_size=512, heatmap_size=SIZE)
    truth = _spine()
    found = [truth[k - 1] if k <= 4 else truth[k] for k in range(1, 7)]
    chans = [[(tuple(p), 1.0)] for p in found]
    chans[3].append((tuple(truth[4]), 0.45))
    chans[4].append((tuple(truth[4]), 0.35))
    bad = _maps(chans)
    good = _maps([[(tuple(p), 1.0)] for p in truth[1:]])
    geometry = np.array([[0.5, 0, 10], [0, 0.5, -4], [0, 0, 1]])  # original -> input
    out = postprocess_centres(torch.stack([bad, good]).float(), codec, geometry=geometry)
    assert out["centre_repaired"].tolist() == [True, False]
    expect_in = codec.heatmap_to_input(truth[1:])
    np.testing.assert_allclose(out["input"][0].numpy(), expect_in, atol=0.8)
    np.testing.assert_allclose(out["input"][1].numpy(), expect_in, atol=0.4)
    np.testing.assert_allclose(out["original"][1].numpy(), (expect_in - [10, -4]) / 0.5, atol=0.8)
    plain = postprocess_centres(bad, codec, repair=False)
    assert not bool(plain["centre_repaired"]) and plain["input"].shape == (6, 2)
    np.testing.assert_allclose(plain["input"][0].numpy(), codec.heatmap_to_input(truth[0]), atol=0.4)  # T12


def test_rule_peaks_subpixel_avoids_quantisation_trips():
    """On a coarse map, integer argmax alone makes a regular spine look irregular; sub-pixel peaks do not."""
    # true gaps (1.7, 1.75, 2.1, 1.75, 1.4): 2.1 < 1.4 x 1.65; rounded rows (2, 4, 5, 8, 9, 11) give gaps
    # (2, 1, 3, 1, 2): 3 > 1.4 x 1.5
    y = np.array([2.0, 3.7, 5.45, 7.55, 9.3, 10.7])
    truth = np.column_stack([np.full(6, 8.0), y])
    maps = _maps([[(tuple(p), 1.0)] for p in truth])
    a = repair_missing_centre(maps)
    s = repair_missing_centre(maps, rule_peaks="subpixel")
    np.testing.assert_allclose(a.distances, np.abs(np.diff(np.round(y))))
    np.testing.assert_allclose(s.distances, np.abs(np.diff(y)), atol=0.05)
    assert a.detected and not s.detected
    with pytest.raises(ValueError):
        repair_missing_centre(maps, rule_peaks="mean")


def test_second_peak_ratio_of_constructed_maps():
    from lumbar_monai.postprocess import second_peak_ratio

    one = _maps([[((30.0, 20.0), 1.0)]])
    two = _maps([[((30.0, 20.0), 1.0), ((30.0, 40.0), 0.6)]])  # a second vertebra-like peak 20 map pixels away
    near = _maps([[((30.0, 20.0), 1.0), ((32.0, 20.0), 0.9)]])  # two blobs 2 px apart merge into one peak
    flat = torch.zeros(1, SIZE, SIZE, dtype=torch.float64)
    ratios = second_peak_ratio(torch.cat([one, two, near, flat]))
    assert ratios.shape == (4,)
    assert float(ratios[0]) == 0.0 and float(ratios[2]) == 0.0 and float(ratios[3]) == 0.0
    assert float(ratios[1]) == pytest.approx(0.6, abs=0.01)
    # the highest peak is the reference whichever channel order; batched (B, V, H, W) keeps (B, V)
    swapped = _maps([[((30.0, 20.0), 0.5), ((30.0, 40.0), 1.0)]])
    batch = second_peak_ratio(torch.stack([torch.cat([two, swapped]), torch.cat([one, one])]))
    assert batch.shape == (2, 2)
    np.testing.assert_allclose(batch.numpy(), [[0.6, 0.5], [0.0, 0.0]], atol=0.01)
    codec = CentreHeatmapCodec("lateral", input_size=512, heatmap_size=SIZE)
    maps = _maps([[(tuple(p), 1.0)] for p in _spine()[1:]])
    top = float(maps[2].max())  # below 1: the centre lies between grid points
    maps[2] += _maps([[((45.0, 55.0), 0.7)]])[0]  # one map also fires far from its vertebra
    out = postprocess_centres(maps, codec)
    assert out["second_peak"].shape == (6,) and float(out["second_peak"][2]) == pytest.approx(0.7 / top, abs=1e-3)
    assert float(out["second_peak"][0]) < 0.05
