from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.metrics.landmark import (
    LandmarkErrorMetric,
    distance_error,
    edge_partners,
    landmark_outliers,
    relative_distance_components,
    relative_distance_error,
    relative_distance_error_vertebra,
    vertebra_mean,
)

pytestmark = pytest.mark.compat

RECT = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 30.0], [40.0, 30.0]])  # h = 40, v = 30


def _layout_points(layout=LATERAL):
    pts = []
    for i, v in enumerate(layout.vertebrae):
        if v.kind == "lumbar":
            pts.append(RECT + [100.0, 50.0 * i])
        else:
            pts.append(np.array([[100.0, 50.0 * i], [160.0, 50.0 * i]]))  # l = 60
    return np.concatenate(pts)


def test_edge_partners():
    h, v = edge_partners(LATERAL.vertebrae[0])
    assert h.tolist() == [1, 0, 3, 2] and v.tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError):
        edge_partners(LATERAL.vertebrae[-1])


def test_lumbar_rd_eq12_14_uses_horizontal_and_vertical_edges():
    pred = RECT.copy()
    pred[0] += [4.0, 3.0]  # r_x = 4/40, r_y = 3/30
    pred[3] += [0.0, -6.0]  # r_y = 6/30
    rd = relative_distance_error_vertebra(pred, RECT, LATERAL.vertebrae[0])
    np.testing.assert_allclose(rd, [100 * np.sqrt(0.02), 0, 0, 20.0])
    # h and v come from the gt edges through each corner: a trapezoid gives corner-specific lengths
    gt = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 30.0], [40.0, 40.0]])
    pred = gt + [[0, 0], [0, 0], [5.0, 0], [0, 8.0]]
    rd = relative_distance_error_vertebra(pred, gt, LATERAL.vertebrae[0])
    np.testing.assert_allclose(rd, [0, 0, 100 * 5 / np.hypot(40, 10), 100 * 8 / 40])


def test_rd_components_are_the_signed_parts_of_eq12_15():
    """Signed r_x over the end plate, r_y over the side edge (Eq. 12-13), both over l for S1 (Eq. 15); they
    recompose RD exactly (Eq. 14), for both layouts."""
    gt = _layout_points()
    pred = gt.copy()
    pred[0] += [4.0, 3.0]  # L1 superior corner: r_x = 4/40, r_y = 3/30
    pred[3] += [0.0, -6.0]  # r_y = -6/30
    pred[-2] += [-3.0, 4.0]  # S1 corner: over l = 60
    rx, ry = relative_distance_components(pred, gt, LATERAL)
    assert rx.shape == ry.shape == (LATERAL.num_points,)
    np.testing.assert_allclose([rx[0], ry[0], rx[3], ry[3], rx[-2], ry[-2]], [10.0, 10.0, 0.0, -20.0, -5.0, 20 / 3])
    assert not np.any(np.delete(np.abs(rx) + np.abs(ry), [0, 3, LATERAL.num_points - 2]))
    rng = np.random.default_rng(0)
    for layout in (LATERAL, AP):
        g = np.stack([_layout_points(layout)] * 3)
        p = g + rng.normal(0.0, 3.0, g.shape)
        rx, ry = relative_distance_components(p, g, layout)
        np.testing.assert_allclose(np.hypot(rx, ry), relative_distance_error(p, g, layout), rtol=1e-12)


def test_sacrum_rd_eq15():
    gt = np.array([[0.0, 0.0], [60.0, 0.0]])
    rd = relative_distance_error_vertebra(gt + [[3.0, 4.0], [0, 0]], gt, LATERAL.vertebrae[-1])
    np.testing.assert_allclose(rd, [500 / 60, 0])


def test_layout_rd_outliers_and_distances():
    gt = _layout_points()
    pred = gt.copy()
    pred[LATERAL.vertebra_slices[1]] += [0.0, 9.0]  # every L2 corner: r_y = 0.3 -> 30 %: outlier
    pred[LATERAL.vertebra_slices[5].start] += [6.0, 0.0]  # S1 anterior: 10 %
    rd = relative_distance_error(pred, gt, LATERAL)
    assert rd.shape == (22,)
    np.testing.assert_allclose(vertebra_mean(rd, LATERAL), [0, 30, 0, 0, 0, 5])
    assert landmark_outliers(rd, LATERAL).tolist() == [False, True, False, False, False, False]
    d = distance_error(pred, gt, spacing=(0.5, 0.25))
    assert d[4] == pytest.approx(9 * 0.25) and d[20] == pytest.approx(3.0)
    np.testing.assert_allclose(distance_error(pred, gt)[[4, 20]], [9, 6])
    assert relative_distance_error(_layout_points(AP), _layout_points(AP), AP).shape == (20,)


def test_cumulative_metric_summary_and_ignite_handler():
    gt = torch.as_tensor(_layout_points())
    pred = gt.clone()
    pred[LATERAL.vertebra_slices[0]] += torch.tensor([8.0, 0.0])  # L1: 20 % each, not an outlier (> 20 needed)
    pred2 = gt.clone()
    pred2[LATERAL.vertebra_slices[0]] += torch.tensor([12.0, 0.0])  # 30 %: outlier
    metric = LandmarkErrorMetric(LATERAL)
    metric(torch.stack([pred, pred2]), torch.stack([gt, gt]), spacing=torch.tensor([[0.1, 0.1], [0.2, 0.2]]))
    assert metric.aggregate().item() == pytest.approx((20 * 4 + 30 * 4) / 44)  # 2 images x 22 points
    s = metric.summary()
    assert s["images"] == 2
    assert s["rd"]["L1"][0] == pytest.approx(25.0) and s["rd"]["L1"][1] == pytest.approx(5.0)
    assert s["rd"]["sacrum"] == (0.0, 0.0)
    assert s["rd"]["lumbar"][0] == pytest.approx((20 * 4 + 30 * 4) / 40)
    assert s["d_mm"]["L1"][0] == pytest.approx((0.8 + 2.4) / 2)
    assert s["outlier_pct"]["L1"] == 50.0 and s["outlier_pct"]["L2"] == 0.0

    engine = Engine(lambda e, batch: batch)
    handler = IgniteMetricHandler(metric_fn=LandmarkErrorMetric(LATERAL, metric="d"))
    handler.attach(engine, "landmark_d")
    state = engine.run([(pred[None], gt[None]), (pred2[None], gt[None])], max_epochs=1)
    assert state.metrics["landmark_d"] == pytest.approx((8 * 4 + 12 * 4) / 44)


# An et al. 2022, Table 7, "w (CC, PAFs)": per-vertebra RD mean (sd) of L1-L5 and the sacrum, and its Total
PAPER_RD = [(6.1385, 5.8977), (4.7145, 2.1368), (4.4771, 2.2258), (4.9122, 2.1481), (6.1483, 3.4313),
            (8.8486, 7.2449)]
PAPER_TOTAL = (5.8732, 4.5841)


def _paper_values() -> np.ndarray:
    """Two images whose corners of each vertebra are mean -/+ sd: per-vertebra mean and (population) sd as in
    the paper's Table 7."""
    x = np.empty((2, LATERAL.num_points))
    for (m, s), sl in zip(PAPER_RD, LATERAL.vertebra_slices, strict=True):
        x[0, sl], x[1, sl] = m - s, m + s
    return x


def test_total_is_the_mean_of_vertebra_means_as_in_the_paper():
    from lumbar_monai.metrics.landmark import vertebra_total

    x = _paper_values()
    total, sd = vertebra_total(x, LATERAL)
    assert round(total, 2) == 5.87 and abs(total - PAPER_TOTAL[0]) < 1e-4
    assert abs(sd - PAPER_TOTAL[1]) < 0.02  # the paper's sd is that of all values, every vertebra weighing the same
    assert round(float(x.mean()), 2) == 5.60  # the landmark mean, what the table printed as "Total" before
    # NaN values are left out, a vertebra without any value drops out of the mean
    y = x.copy()
    y[:, LATERAL.vertebra_slices[5]] = np.nan
    assert abs(vertebra_total(y, LATERAL)[0] - np.mean([m for m, _ in PAPER_RD[:5]])) < 1e-9


def test_evaluate_table_total_and_landmark_mean_rows():
    from lumbar_monai.workflows.evaluate import landmark_table

    x = _paper_values()
    rows = {r["vertebra"]: r for r in landmark_table(LATERAL, x, None, x)}
    assert rows["Total"]["RD_pct"].startswith("5.87 (") and rows["All landmarks"]["RD_pct"].startswith("5.60 (")
    assert rows["L1"]["RD_pct"] == "6.14 (5.90)" and rows["All landmarks"]["outlier_pct"] == "-"


def test_cumulative_metric_reports_paper_total_beside_landmark_mean():
    m = LandmarkErrorMetric(LATERAL, "rd")
    gt = np.stack([_layout_points()] * 2)
    # move every corner along x so that its RD is the paper's per-vertebra value (RECT: h = 40; S1: l = 60)
    pred = gt.copy()
    x = _paper_values()
    for v, sl in zip(LATERAL.vertebrae, LATERAL.vertebra_slices, strict=True):
        pred[:, sl, 0] += x[:, sl] / 100.0 * (40.0 if v.kind == "lumbar" else 60.0)
    m(torch.as_tensor(pred), torch.as_tensor(gt))
    s = m.summary()["rd"]
    assert round(s["total"][0], 2) == 5.87 and round(s["all"][0], 2) == 5.60
    assert abs(s["lumbar"][0] - np.mean([v for v, _ in PAPER_RD[:5]])) < 1e-6
