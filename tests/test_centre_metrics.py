"""Centre metrics: distances (px, mm), Eq. 5 crop outliers with a known boundary, Inlier/All tables, Ignite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_centre_codec import spine_points

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.metrics.centre import (
    CentreErrorMetric,
    centre_distance,
    centre_outliers,
    landmarks_outside_crops,
)

pytestmark = pytest.mark.compat


def _truth():
    # spacing 60, corners +-25 in x and +-20 in y: the L3 crop (Eq. 5) is 0.75 * (60 + 60) = 90 wide
    return spine_points("lateral", top=(250.0, 90.0), spacing=60.0, width=50.0, height=40.0)


def test_centre_distance_px_and_mm():
    np.testing.assert_allclose(centre_distance([[0.0, 0.0], [1.0, 1.0]], [[3.0, 4.0], [1.0, 1.0]]), [5.0, 0.0])
    np.testing.assert_allclose(centre_distance([[0.0, 0.0]], [[3.0, 4.0]], spacing=(0.5, 0.25)), [np.hypot(1.5, 1.0)])


@pytest.mark.parametrize("shift,outside", [(19.9, False), (20.1, True), (-20.1, True)])
def test_outlier_boundary_is_the_eq5_crop(shift, outside):
    pts = _truth()
    c = LATERAL.centres(pts)
    c[2, 0] += shift  # L3's farthest corner is 25 + |shift| from the predicted centre; half-side 45
    miss = landmarks_outside_crops(c, pts, LATERAL)
    assert miss.tolist() == [False, False, outside, False, False, False]
    assert bool(centre_outliers(c, pts, LATERAL)) == outside


def test_outliers_batched_and_nan_corners_ignored():
    pts = _truth()
    c = LATERAL.centres(pts)
    far = c.copy()
    far[0, 1] -= 40.0  # L1 crop (1.5 * 60 = 90 from the predicted L1-L2 gap, now 100 -> 150) moves up by 40
    p2 = pts.copy()
    p2[LATERAL.vertebra_slices[0]] = np.nan
    res = centre_outliers(np.stack([c, far, far]), np.stack([pts, pts, p2]), LATERAL)
    # L1's crop side is now 1.5 * 100 = 150, half 75: the lower corners at 40 + 20 = 60 stay inside...
    # ...but the L2 crop is 0.75 * (100 + 60) = 120 and still inside too; so the shift of 40 is not an outlier
    assert res.tolist() == [False, False, False]
    far[0, 1] -= 60.0  # now 100 px off: L1's lower corners are 120 from its centre, half side 1.5 * 160 / 2 = 120
    far[0, 1] -= 0.5
    assert centre_outliers(far, pts, LATERAL)
    assert not centre_outliers(far, p2, LATERAL)  # L1 not annotated: nothing to miss


def test_metric_tables_inlier_all_and_mm():
    pts = _truth()
    c = LATERAL.centres(pts)
    good = c + np.array([3.0, 4.0])  # every centre 5 px off, inside every crop
    bad = c.copy()
    bad[5, 0] += 60.0  # S1 60 px off: its corners lie outside its crop
    metric = CentreErrorMetric("lateral")
    geometry = np.stack([np.diag([0.5, 0.5, 1.0])] * 2)  # 512-space = original / 2
    metric(torch.as_tensor(np.stack([good, bad])), torch.as_tensor(np.stack([pts, pts])), geometry=geometry,
           spacing=torch.tensor([[0.1, 0.1], [0.2, 0.2]]))
    assert metric.aggregate().item() == pytest.approx((6 * 5 + 60) / 12)
    s = metric.summary()
    assert s["images"] == 2 and s["outliers"] == 1
    assert s["outlier_pct"] == pytest.approx(50.0) and s["accuracy_pct"] == pytest.approx(50.0)
    assert s["px"]["inlier"]["total"] == pytest.approx((5.0, 0.0))
    assert s["px"]["all"]["S1"] == pytest.approx((32.5, 27.5))
    assert s["px"]["all"]["L1"] == pytest.approx((2.5, 2.5))
    # mm: original distance = 2 x 512-space distance, times the spacing
    assert s["mm"]["inlier"]["total"] == pytest.approx((1.0, 0.0))
    assert s["mm"]["all"]["S1"] == pytest.approx(((1.0 + 24.0) / 2, 11.5))
    metric.reset()
    with pytest.raises(ValueError):
        metric.aggregate()


def test_metric_without_spacing_and_with_ignite():
    from ignite.engine import Engine
    from monai.handlers import IgniteMetricHandler

    pts = _truth()
    c = LATERAL.centres(pts) + np.array([0.0, 2.0])
    batch = {"pred": torch.as_tensor(c[None]), "gt": torch.as_tensor(pts[None])}
    engine = Engine(lambda e, b: b)
    handler = IgniteMetricHandler(metric_fn=CentreErrorMetric(), output_transform=lambda o: (o["pred"], o["gt"]))
    handler.attach(engine, "centre_px")
    engine.run([batch, batch], max_epochs=1)
    assert engine.state.metrics["centre_px"] == pytest.approx(2.0)
    m = CentreErrorMetric()
    m(batch["pred"], batch["gt"])
    assert "mm" not in m.summary()
