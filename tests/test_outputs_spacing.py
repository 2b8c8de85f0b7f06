"""Millimetres in the patient plane or labelled as detector-plane (issue 14 item 8).

``ImagerPixelSpacing`` measures at the detector face: divided by ``EstimatedRadiographicMagnificationFactor``
where the header has one, else the lengths are labelled ``detector`` in the JSON, the CSV and the SR.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom", minversion="3.0")
pytest.importorskip("highdicom")

from pydicom.dataset import Dataset  # noqa: E402

from lumbar_monai.batch import run_batch  # noqa: E402
from lumbar_monai.io.dicom import dicom_pixel_spacing  # noqa: E402
from lumbar_monai.io.report import read_sr_length_planes  # noqa: E402
from lumbar_monai.result import spacing_plane  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

ERMF = "EstimatedRadiographicMagnificationFactor"


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("attrs, spacing, source, plane", [
    ({"ImagerPixelSpacing": [0.2, 0.1]}, (0.1, 0.2), "ImagerPixelSpacing", "detector"),
    ({"ImagerPixelSpacing": [0.2, 0.1], ERMF: "1.25"}, (0.08, 0.16),
     "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor", "patient"),
    ({"ImagerPixelSpacing": [0.2, 0.1], ERMF: "0.5"}, (0.1, 0.2), "ImagerPixelSpacing", "detector"),  # < 1: unusable
    ({"PixelSpacing": [0.15, 0.15], "ImagerPixelSpacing": [0.2, 0.2], ERMF: "1.3"}, (0.15, 0.15), "PixelSpacing",
     "patient"),
    # PixelSpacing that merely repeats ImagerPixelSpacing, uncalibrated: the detector spacing copied
    ({"PixelSpacing": [0.2, 0.2], "ImagerPixelSpacing": [0.2, 0.2]}, (0.2, 0.2), "ImagerPixelSpacing", "detector"),
    ({"PixelSpacing": [0.2, 0.2], "ImagerPixelSpacing": [0.2, 0.2], ERMF: "1.25"}, (0.16, 0.16),
     "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor", "patient"),
    ({"PixelSpacing": [0.2, 0.2], "ImagerPixelSpacing": [0.2, 0.2], "PixelSpacingCalibrationType": "GEOMETRY"},
     (0.2, 0.2), "PixelSpacing", "patient"),
    ({"PixelSpacing": [0.2, 0.2]}, (0.2, 0.2), "PixelSpacing", "patient"),
    ({}, None, None, None),
])
def test_dicom_pixel_spacing_plane(attrs, spacing, source, plane):
    got, src = dicom_pixel_spacing(_ds(**attrs))
    assert src == source and spacing_plane(src) == plane
    if spacing is None:
        assert got is None
    else:
        assert got == pytest.approx(spacing)


def test_batch_outputs_say_which_plane(tmp_path):
    pts = H.lateral_study_points(64, 80)
    pixels = H.render_spine_image(pts, size_wh=(64, 80))
    (tmp_path / "in").mkdir()
    detector = H.write_dx(tmp_path / "in" / "detector.dcm", pixels, spacing=(0.2, 0.2),
                          spacing_attr="ImagerPixelSpacing")
    corrected = H.write_dx(tmp_path / "in" / "corrected.dcm", pixels, spacing=(0.2, 0.2),
                           spacing_attr="ImagerPixelSpacing")
    ds = pydicom.dcmread(corrected)
    ds.EstimatedRadiographicMagnificationFactor = "1.25"
    ds.save_as(corrected, enforce_file_format=True)

    class Fixed:
        def predict(self, r):
            return H.result_from_points(pts, "lateral", r.pixel_spacing, r.spacing_source, r.size_wh)

    out = tmp_path / "out"
    s = run_batch([detector, corrected], out, Fixed(), progress=False)
    assert s.ok == 2
    det, cor = s.items
    rows = {r["name"]: r for r in csv.DictReader((out / "measurements.csv").open())}
    assert rows[det.name]["spacing_plane"] == "detector" and rows[cor.name]["spacing_plane"] == "patient"
    assert rows[cor.name]["spacing_source"] == "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"
    # the magnification factor divides every length, and only lengths
    for key in ("L3.anterior_height", "L5-S1.disc_middle_height"):
        assert float(rows[det.name][key]) / float(rows[cor.name][key]) == pytest.approx(1.25, rel=1e-4)
    assert float(rows[det.name]["lumbar_lordosis"]) == pytest.approx(float(rows[cor.name]["lumbar_lordosis"]))
    for item, plane, code in ((det, "detector", "LM-PLANE-DET"), (cor, "patient", "LM-PLANE-PAT")):
        doc = json.loads((out / f"{item.name}.json").read_text())
        assert doc["result"]["spacing_plane"] == plane and doc["measurements"]["spacing_plane"] == plane
        assert read_sr_length_planes(out / f"{item.name}_sr.dcm") == {code}
