"""Overlay rendering and the per-image result JSON (core modules: numpy 1.26 / pydicom 2.4 compatible)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.errors import InputError
from lumbar_monai.io.overlay import (
    Annotations,
    annotations_from_result,
    draw_annotations,
    render_overlay,
    to_display_uint8,
    write_overlay_png,
)
from lumbar_monai.io.result_json import RESULT_FORMAT, read_result_json, write_result_json
from lumbar_monai.measures import compute_measurements

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

pytestmark = pytest.mark.compat


def test_to_display_uint8_stretches_and_accepts_channel_first():
    img = np.linspace(0, 1000, 64 * 48).reshape(1, 64, 48)
    out = to_display_uint8(img, low=0, high=100)
    assert out.shape == (64, 48) and out.dtype == np.uint8
    assert out[0, 0] == 0 and out[-1, -1] == 255
    with pytest.raises(ValueError, match="image"):
        to_display_uint8(np.zeros((2, 3, 4, 5)))


def test_drawing_lands_on_the_right_pixels():
    """x is the column, y the row, pixel centres at integers: a red dot at (10, 20) colours pixel [20, 10]."""
    img = np.zeros((40, 60))
    ann = Annotations(points=[(np.array([10.0, 20.0]), (1.0, 0.0, 0.0))],
                      polylines=[(np.array([[30.0, 5.0], [50.0, 5.0]]), (0.0, 1.0, 0.0))])
    rgb = draw_annotations(img, ann, line_width=1.0)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    r, g, b = (int(v) for v in rgb[20, 10])
    assert r > 200 and g < 60 and b < 60
    assert rgb[5, 40, 1] > 150 and rgb[5, 40, 0] < 60  # on the green line
    # centred exactly: the anti-aliased neighbours on either side are equal, the centre is the brightest
    red = rgb[18:23, 10, 0].astype(int)
    assert red.argmax() == 2 and abs(red[1] - red[3]) <= 2
    green = rgb[3:8, 40, 1].astype(int)
    assert green.argmax() == 2 and abs(green[1] - green[3]) <= 2
    assert rgb[30, 40].max() == 0  # untouched background stays black
    assert rgb[20, 30].max() == 0


def test_render_overlay_of_a_result():
    pts = H.lateral_study_points(128, 160)
    img = H.render_spine_image(pts, size_wh=(128, 160))
    res = H.result_from_points(pts, size=(128, 160))
    ms = compute_measurements(pts, LATERAL)
    ann = annotations_from_result(res, ms)
    n = LATERAL.num_points
    assert len(ann.points) == n and len(ann.circles) == n
    assert len(ann.polylines) == len(LATERAL.end_plate_segments)
    assert [t[1] for t in ann.texts[: LATERAL.num_vertebrae]] == list(LATERAL.vertebra_names)
    assert ann.texts[-1][1].startswith("LL 50.0 deg")
    rgb = render_overlay(img, res, ms)
    grey = to_display_uint8(img)
    assert rgb.shape == (160, 128, 3)
    # every landmark pixel is coloured (channels differ), the image far from the spine is the plain grey image
    for x, y in np.round(pts).astype(int):
        assert np.ptp(rgb[y, x].astype(int)) > 40, (x, y)
    assert np.array_equal(rgb[150, 2], np.repeat(grey[150, 2], 3))


def test_ap_overlay_has_no_sacrum_and_writes_png(tmp_path):
    pts = H.spine_points("ap", facing="right", origin=(60, 20), width=30, height=20, disc=6)
    res = H.result_from_points(pts, "ap", size=(120, 170))
    out = write_overlay_png(tmp_path / "ap.png", np.zeros((170, 120)), res, compute_measurements(pts, AP))
    from PIL import Image

    arr = np.asarray(Image.open(out))
    assert arr.shape == (170, 120, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind


def test_result_json_round_trip_and_strict(tmp_path):
    pts = H.lateral_study_points()
    res = H.result_from_points(pts, spacing=(0.2, 0.3), source="ImagerPixelSpacing", size=(256, 320))
    res.confidence[3] = np.nan
    ms = compute_measurements(pts, LATERAL, res.pixel_spacing, res.spacing_source)
    src = {"sop_instance_uid": "1.2.3", "patient_name": "Doe^Jane", "path": "/home/doe/x.dcm"}
    p = write_result_json(tmp_path / "r.json", res, ms, source=src)
    text = p.read_text()
    assert "NaN" not in text and "Doe" not in text and "/home" not in text
    doc = json.loads(text)
    assert doc["format"] == RESULT_FORMAT and doc["source"] == {"sop_instance_uid": "1.2.3"}
    assert doc["measurements"]["spacing_source"] == "ImagerPixelSpacing"
    back, doc2 = read_result_json(p)
    np.testing.assert_allclose(back.points, pts, atol=0)
    assert np.isnan(back.confidence[3]) and back.confidence[0] == 1.0
    assert back.pixel_spacing == (0.2, 0.3) and back.spacing_source == "ImagerPixelSpacing"
    assert doc2["measurements"]["items"][0]["key"] == "lumbar_lordosis"
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a result file"):
        read_result_json(bad)


def test_dots_are_drawn_over_lines_and_circles():
    """Stacking order: polylines < circles < dots < text, whatever the matplotlib artist type."""
    ann = Annotations(points=[(np.array([20.0, 10.0]), (1.0, 0.0, 0.0))],
                      circles=[(np.array([20.0, 10.0]), 4.0, (0.0, 0.0, 1.0))],
                      polylines=[(np.array([[5.0, 10.0], [35.0, 10.0]]), (0.0, 1.0, 0.0))])
    rgb = draw_annotations(np.zeros((20, 40)), ann, line_width=2.0)
    assert tuple(int(v) > 200 for v in rgb[10, 20]) == (True, False, False)  # red dot on top of the green line
    assert rgb[10, 24, 2] > 200 and rgb[10, 24, 1] < 100  # blue circle over the green line
    assert rgb[10, 30, 1] > 200  # the line elsewhere


def test_overlay_of_a_large_image_is_shrunk_and_points_follow():
    """A radiograph larger than the preview cap is block-averaged by an integer factor; landmarks land on the same
    anatomy in the shrunk picture (bounded memory for 100-megapixel inputs)."""
    from lumbar_monai.io.overlay import shrink_for_overlay

    pts = H.lateral_study_points(128, 160)
    img = H.render_spine_image(pts, size_wh=(128, 160))
    res = H.result_from_points(pts, size=(128, 160))
    rgb = render_overlay(img, res, max_side=64)  # factor 3: 160 -> 54, 128 -> 43
    assert rgb.shape == (54, 43, 3)
    small, shrunk = shrink_for_overlay(img, res, max_side=64)
    assert small.shape == (54, 43) and shrunk.image_size == (43, 54)
    # pixel centres: original pixels 0,1,2 average into shrunk pixel 0, whose centre is original x = 1
    np.testing.assert_allclose(shrunk.points * 3 + 1, res.points)
    for x, y in np.round(shrunk.points).astype(int):
        assert np.ptp(rgb[y, x].astype(int)) > 40, (x, y)
    same_img, same_res = shrink_for_overlay(img, res, max_side=160)
    assert same_img is img and same_res is res
