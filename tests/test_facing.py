"""Facing (issue 15, item 1): mirrors keep anatomical names, the facing is read from points, shape and image."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.facing import (
    UNCERTAIN_MARGIN,
    facing_from_points,
    facing_from_shape,
    facing_hint,
    mirror_image,
    mirror_points,
    predict_any_facing,
)
from lumbar_monai.io.annotations import LandmarkAnnotation, read_annotation_json, read_buu_csv, write_buu_csv
from lumbar_monai.predictor import order_violations

pytestmark = pytest.mark.compat

W, H = 400, 700


def _spine(facing: str = "left") -> np.ndarray:
    """An upright lateral spine (anatomical rows): lordotic bulge and S1 sloping down anteriorly (40 degrees)."""
    pts = np.zeros((LATERAL.num_points, 2))
    for vi, (v, sl) in enumerate(zip(LATERAL.vertebrae, LATERAL.vertebra_slices, strict=True)):
        cy = 80 + 100 * vi
        cx = 200 - 15 * np.sin(np.pi * vi / 5)  # bulges towards the anterior side (image-left)
        if v.kind == "lumbar":
            pts[sl] = [[cx - 40, cy - 30], [cx + 40, cy - 30], [cx - 40, cy + 30], [cx + 40, cy + 30]]
        else:
            pts[sl] = [[cx - 30, cy + 25], [cx + 30, cy - 25]]
    return pts if facing == "left" else mirror_points(pts, W)


def _image_side(points: np.ndarray) -> np.ndarray:
    """Anatomical rows -> image-side rows as a facing-left reader would store them (each end plate swapped)."""
    out = points.copy()
    for a, b in LATERAL.end_plate_segments:
        out[[a, b]] = out[[b, a]]
    return out


def test_mirror_keeps_names_and_round_trips():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(mirror_image(img)[:, 0], img[:, 3])
    pts = _spine("left")
    right = mirror_points(pts, W)
    np.testing.assert_allclose(mirror_points(right, W), pts)
    i = LATERAL.index("L3", "superior_anterior")
    j = LATERAL.index("L3", "superior_posterior")
    assert pts[i, 0] < pts[j, 0] and right[i, 0] > right[j, 0]  # anterior stays anterior, now on the image right
    assert facing_from_points(pts, LATERAL) == ("left", 1.0) and facing_from_points(right, LATERAL) == ("right", 1.0)
    assert facing_from_points(np.zeros((20, 2)), AP) == (None, 0.0)


@pytest.mark.parametrize("facing", ["left", "right"])
def test_shape_shows_facing_whatever_the_names(facing):
    pts = _spine(facing)
    for named in (pts, _image_side(pts) if facing == "right" else pts):
        found, strength = facing_from_shape(named, LATERAL)
        assert found == facing and strength > 0.9
    upside_down = pts.copy()
    upside_down[:, 1] = H - 1 - upside_down[:, 1]
    assert facing_from_shape(upside_down, LATERAL) == (None, 0.0)  # not an upright spine: no claim


def test_dicom_hint():
    assert facing_hint({"orientation": ["P", "F"]}) == "left"
    assert facing_hint({"orientation": "A\\F"}) == "right"
    assert facing_hint({"orientation": ["L", "F"]}) is None  # an AP view
    assert facing_hint({"orientation": ["AP"]}) is None and facing_hint(None) is None


def test_order_check_uses_facing():
    pts = _spine("right")
    c = LATERAL.centres(pts)
    assert order_violations(pts, c, LATERAL, "right") == []
    reasons = order_violations(pts, c, LATERAL, "left")
    assert len(reasons) == 11 and "L1 superior end plate" in reasons[0]
    assert order_violations(pts, c, LATERAL) == []  # facing unknown: y order only


class CanonicalModel:
    """Both stages of a perfect model trained on left-facing images only, as the predictor calls them.

    It finds the corners of the spine drawn in the image, and - like any network that never saw a mirrored
    study - names the image-left corner of each end plate ``anterior``. The image tells its orientation by a
    bright pixel in its top-left (original) or top-right (mirrored) corner."""

    layout = LATERAL

    def __init__(self, left_points: np.ndarray, conf_left: float = 0.9, conf_mirrored: float = 0.9):
        self.pts, self.conf = left_points, {True: conf_left, False: conf_mirrored}
        self.calls = 0

    def _read(self, image):
        canonical = bool(image[0, 0] > image[0, -1])
        pts = self.pts if canonical else _image_side(mirror_points(self.pts, image.shape[-1]))
        return pts, self.conf[canonical]

    def detect_centres(self, image, timings=None):
        pts, c = self._read(image)
        return LATERAL.centres(pts), np.full(6, c), False

    def detect_corners(self, image, centres, timings=None):
        self.calls += 1
        pts, c = self._read(image)
        return pts, np.full(22, c)


def _image(facing: str) -> np.ndarray:
    img = np.zeros((H, W), np.float32)
    img[0, 0] = 1.0
    return img if facing == "left" else mirror_image(img)


@pytest.mark.parametrize("facing", ["left", "right"])
def test_predict_any_facing_finds_the_facing_and_keeps_anatomy(facing):
    model = CanonicalModel(_spine("left"))
    out, decision = predict_any_facing(model, _image(facing))
    assert decision.facing == facing and decision.source == "image" and not decision.uncertain
    assert decision.scores[facing] - decision.scores["right" if facing == "left" else "left"] > UNCERTAIN_MARGIN
    np.testing.assert_allclose(out.points, _spine(facing), atol=1e-9)  # anatomical names on either facing
    assert model.calls == 2
    # a known facing: one pass; told the wrong one, the answer carries the canonical model's image-side names
    model = CanonicalModel(_spine("left"))
    out, decision = predict_any_facing(model, _image("right"), facing="left")
    assert decision.source == "given" and model.calls == 1
    np.testing.assert_allclose(out.points, _image_side(_spine("right")), atol=1e-9)
    assert order_violations(out.points, out.centres, LATERAL, "left") == []  # names agree with the wrong claim ...
    assert facing_from_shape(out.points, LATERAL)[0] == "right"  # ... the shape does not


def test_too_close_to_call_is_flagged_and_the_hint_decides():
    flat = _spine("left")
    flat[20:22, 1] = flat[20:22, 1].mean()  # flat S1 and a straight column: no shape cue
    flat[:, 0] = np.where(np.arange(22) % 2 == 0, 160.0, 240.0)
    model = CanonicalModel(flat)
    _, decision = predict_any_facing(model, _image("left"))
    assert decision.uncertain and decision.source == "image" and 0.5 <= decision.confidence < 0.8
    _, decision = predict_any_facing(model, _image("left"), hint="right")
    assert decision.uncertain and decision.source == "hint" and decision.facing == "right"
    assert decision.as_meta()["hint"] == "right"


def test_ap_has_no_facing():
    class Ap(CanonicalModel):
        layout = AP

        def detect_corners(self, image, centres, timings=None):
            return np.zeros((20, 2)), np.ones(20)

        def detect_centres(self, image, timings=None):
            return np.zeros((5, 2)), np.ones(5), False

    _, decision = predict_any_facing(Ap(_spine()), _image("left"))
    assert decision.facing is None and decision.source == "none"


def test_buu_reader_infers_facing_and_says_so(tmp_path, caplog):
    right = _spine("right")
    path = write_buu_csv(tmp_path / "case.csv", right, LATERAL)  # image-side columns
    first = path.read_text().splitlines()[0].split(",")
    assert float(first[0]) < float(first[2])  # x_left is the image-left corner: the posterior one here
    with caplog.at_level(logging.WARNING, logger="lumbar_monai.io.annotations"):
        ann = read_buu_csv(path)
    assert ann.facing == "right" and "facing right" in ann.meta["facing_note"]
    np.testing.assert_allclose(ann.points, right, atol=1e-3)  # anatomical names back
    assert any("case.csv" in r.getMessage() and "facing right" in r.getMessage() for r in caplog.records)
    caplog.clear()
    left = read_buu_csv(write_buu_csv(tmp_path / "l.csv", _spine("left"), LATERAL))
    assert left.facing == "left" and "facing_note" not in left.meta and not caplog.records


def test_json_reader_infers_facing_and_warns_on_a_contradicting_claim(tmp_path, caplog):
    right = _spine("right")
    doc = LandmarkAnnotation(LATERAL, right, image_size=(W, H), facing="left").to_json_dict()
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="lumbar_monai.io.annotations"):
        ann = read_annotation_json(p)
    assert ann.facing == "right" and "says facing left" in ann.meta["facing_note"]
    np.testing.assert_allclose(ann.points, right)  # anatomical names are kept as written
    assert any("a.json" in r.getMessage() for r in caplog.records)
    # image-side names with a wrong claim: the shape decides how they resolve
    # keys are image sides: with the patient facing right, top_left is the superior *posterior* corner
    keys = {v.name: ("top_left", "top_right", "bottom_left", "bottom_right") if v.kind == "lumbar"
            else ("left", "right") for v in LATERAL.vertebrae}
    side = {v: {k: right[LATERAL.index(v, k, facing="right")].tolist() for k in ks} for v, ks in keys.items()}
    doc.update(points=side, facing="left")
    p.write_text(json.dumps(doc))
    ann = read_annotation_json(p)
    assert ann.facing == "right" and "names resolved facing right" in ann.meta["facing_note"]
    np.testing.assert_allclose(ann.points, right)
    doc["facing"] = "right"
    p.write_text(json.dumps(doc))
    ann = read_annotation_json(p)
    assert ann.facing == "right" and "facing_note" not in ann.meta


def test_mirror_transforms_keep_names_and_record_geometry():
    import torch

    from lumbar_monai.facing import CanonicalFacingd
    from lumbar_monai.transforms.augment import RandMirrord, stage1_augmentation
    from lumbar_monai.transforms.geometry import get_geometry, transform_points

    img = torch.zeros(1, H, W)
    img[0, 5, 7] = 1.0
    pts = _spine("right")
    sample = {"image": img, "points": pts.copy(), "facing": "right", "layout": "lateral"}
    out = CanonicalFacingd("image")(sample)
    assert out["facing"] == "left" and out["image"][0, 5, W - 1 - 7] == 1.0
    np.testing.assert_allclose(out["points"], _spine("left"))  # the same patient facing left, names kept
    np.testing.assert_allclose(transform_points(pts, get_geometry(out)), out["points"])
    assert CanonicalFacingd("image")(out)["image"] is out["image"]  # canonical already: untouched
    ap = {"image": img, "points": np.zeros((20, 2)), "facing": "right", "layout": "ap"}
    assert CanonicalFacingd("image")(ap)["facing"] == "right"
    back = RandMirrord("image", prob=1.0)(out)
    assert back["facing"] == "right" and torch.equal(back["image"], img)
    np.testing.assert_allclose(back["points"], pts)
    assert RandMirrord("image", prob=0.0)(out)["facing"] == "left"
    assert not any(isinstance(t, RandMirrord) for t in stage1_augmentation())  # off unless asked for
    assert isinstance(stage1_augmentation(mirror_prob=0.5)[0], RandMirrord)


def test_sr_records_the_facing(tmp_path):
    pytest.importorskip("highdicom", reason="the SR writer needs highdicom (not in the MONAI Label environment)")
    import subprocess
    import sys
    from pathlib import Path
    from shutil import which

    import pydicom

    sys.path.insert(0, str(Path(__file__).parent))
    import _lm_helpers as helpers

    from lumbar_monai.io.report import read_sr_landmarks, write_sr

    pts = mirror_points(helpers.lateral_study_points(256, 320), 256)  # the patient faces right
    dx = helpers.write_dx(tmp_path / "dx.dcm", helpers.render_spine_image(pts, size_wh=(256, 320)))
    res = helpers.result_from_points(pts, size=(256, 320))
    res.meta["facing"] = {"facing": "right", "confidence": 0.6, "source": "image"}
    res.qc_flags.append("facing_uncertain")
    sr = write_sr(tmp_path / "sr.dcm", pydicom.dcmread(dx), res)
    back, info = read_sr_landmarks(sr)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    assert info["facing"] == "right uncertain"
    res.qc_flags.clear()
    res.meta.pop("facing")
    assert read_sr_landmarks(write_sr(tmp_path / "sr2.dcm", pydicom.dcmread(dx), res))[1]["facing"] is None
    if which("dsrdump"):
        out = subprocess.run(["dsrdump", str(sr)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and not [ln for ln in out.stderr.splitlines() if ln.startswith(("W:", "E:"))]


def test_dicom_patient_orientation_reaches_the_hint(tmp_path):
    import sys
    from pathlib import Path

    import pydicom

    sys.path.insert(0, str(Path(__file__).parent))
    import _lm_helpers as helpers

    from lumbar_monai.io.loader import load_radiograph

    path = helpers.write_dx(tmp_path / "dx.dcm", np.zeros((32, 24), np.uint16))
    ds = pydicom.dcmread(path)
    ds.PatientOrientation = ["A", "F"]
    ds.save_as(path)
    rg = load_radiograph(path)
    assert rg.meta["orientation"] == ["A", "F"] and facing_hint(rg.meta) == "right"


def test_predictor_reads_the_hint_from_a_file(tmp_path):
    import sys
    from pathlib import Path

    import pydicom
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import _lm_helpers as helpers

    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.predictor import LandmarkPredictor

    pts = helpers.lateral_study_points(256, 320)
    path = helpers.write_dx(tmp_path / "dx.dcm", helpers.render_spine_image(pts, size_wh=(256, 320)))
    ds = pydicom.dcmread(path)
    ds.PatientOrientation = ["A", "F"]
    ds.save_as(path)
    torch.manual_seed(0)
    p = LandmarkPredictor("lateral", MNet(out_channels=5, channels=(4, 8)), MNet(out_channels=3, channels=(4, 8)),
                          crop_size=32, device="cpu")
    res = p.predict(path, centres=LATERAL.centres(pts))
    assert res.meta["facing"]["hint"] == "right" and res.meta["facing"]["source"] in ("image", "hint")
