"""Datalists: BUU-LSPINE folders, MONAI decathlon lists, LoadLandmarkSampled, malformed annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_io_dicom import make_dicom  # tests/ is on sys.path (no __init__.py)

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.errors import InputError
from lumbar_monai.io.annotations import LandmarkAnnotation, write_annotation_json, write_buu_csv
from lumbar_monai.io.datalist import (
    LoadLandmarkSampled,
    assign_split,
    build_buu_datalist,
    load_landmark_datalist,
    parse_buu_name,
    write_buu_datalist,
    write_datalist,
)

pytestmark = pytest.mark.compat

H, W = 60, 40
KNOWN_SPLITS = {"0001": "training", "0002": "training", "0008": "test", "0012": "validation"}
CASES = tuple(KNOWN_SPLITS)


def _pts(layout, shift: float = 0.0) -> np.ndarray:
    k = np.arange(layout.num_points)
    return np.stack([5.0 + 3 * (k % 4) + shift, 4.0 + 2 * k], axis=1)


def _png(path: Path, h: int = H, w: int = W) -> Path:
    Image.fromarray((np.arange(h * w) % 251).astype(np.uint8).reshape(h, w)).save(path)
    return path


def _buu_folder(root: Path) -> None:
    (root / "LA").mkdir(parents=True)
    (root / "AP").mkdir()
    for case in CASES:
        _png(root / "LA" / f"{case}-F-050Y1.jpg")
        write_buu_csv(root / "LA" / f"{case}-F-050Y1.csv", _pts(LATERAL), LATERAL)
        _png(root / "AP" / f"{case}-F-050Y0.jpg")
        write_buu_csv(root / "AP" / f"{case}-F-050Y0.csv", _pts(AP), AP)
    _png(root / "LA" / "0005-M-061Y1.jpg")  # no CSV
    _png(root / "LA" / "notes.jpg")  # not a BUU name


def test_parse_buu_name():
    assert parse_buu_name("0001-F-037Y1.jpg") == {"case": "0001", "sex": "F", "age": "037", "view": "lateral"}
    assert parse_buu_name("0223-m-063y0.JPG")["view"] == "ap"
    assert parse_buu_name("sunhl-1th-02-Jan-2017-162 A AP.jpg") is None


def test_assign_split_is_fixed():
    # known answers: the split must never change silently (it would leak test cases into training)
    assert {c: assign_split(c) for c in CASES} == KNOWN_SPLITS
    assert assign_split("0001", (1.0, 0.0, 0.0)) == "training" and assign_split("0001", (0, 0, 1)) == "test"
    with pytest.raises(ValueError):
        assign_split("x", (0.5, 0.5, 0.5))


def test_buu_folder_to_datalist_and_samples(tmp_path):
    _buu_folder(tmp_path / "buu")
    out = tmp_path / "lists" / "buu.json"
    lists = build_buu_datalist(tmp_path / "buu", out)
    items = [i for s in lists.values() for i in s]
    assert len(items) == 8  # 4 cases x 2 views; the unlabelled and the non-BUU image are left out
    assert {i["view"] for i in items} == {"lateral", "ap"}
    assert {s: len(v) for s, v in lists.items()} == {"training": 4, "validation": 2, "test": 2}
    for split, its in lists.items():
        assert all(assign_split(i["case"]) == split for i in its)  # both views of a case in one split
    doc = json.loads(out.read_text())
    assert not Path(doc["training"][0]["image"]).is_absolute()  # relative to the datalist
    loaded = load_landmark_datalist(out, "training")
    assert len(loaded) == len(lists["training"]) and all(Path(i["image"]).is_absolute() for i in loaded)
    loader = LoadLandmarkSampled(keys=("image", "label"))
    for item in loaded:
        s = loader(item)
        layout = LATERAL if item["view"] == "lateral" else AP
        assert s["image"].shape == (1, H, W) and s["image"].dtype == np.float32
        assert s["points"].shape == (layout.num_points, 2) and s["points"].dtype == np.float64
        np.testing.assert_allclose(s["points"], _pts(layout), atol=1e-3)
        assert s["layout"] == layout.name and s["facing"] == "left" and s["case"] == item["case"]
        assert s["pixel_spacing"] is None and s["spacing_source"] is None
        assert s["image_path"] == item["image"] and "label" not in s
    unlabelled = build_buu_datalist(tmp_path / "buu", require_labels=False, views=("lateral",))
    assert sum(len(v) for v in unlabelled.values()) == 5
    lateral = write_buu_datalist(tmp_path / "buu", tmp_path / "lat.json", layout="lateral")
    items = [i for s in ("training", "validation", "test") for i in load_landmark_datalist(lateral, s)]
    assert len(items) == 4 and {i["layout"] for i in items} == {"lateral"}
    with pytest.raises(InputError, match="no BUU-LSPINE image"):
        write_buu_datalist(tmp_path / "lists", tmp_path / "none.json")


def test_spacing_priority(tmp_path):
    pts = _pts(AP)
    ann = LandmarkAnnotation(layout=AP, points=pts, pixel_spacing=(0.3, 0.3), image_size=(W, H))
    label = write_annotation_json(tmp_path / "a.json", ann)
    pix = (np.arange(H * W) % 1000).astype(np.uint16).reshape(H, W)
    dcm = make_dicom(tmp_path / "img.dcm", pix, ImagerPixelSpacing=[0.2, 0.1])
    png = _png(tmp_path / "img.png")
    t = LoadLandmarkSampled()
    s = t({"image": str(dcm), "label": str(label)})  # DICOM image: its header wins
    assert s["pixel_spacing"] == (0.1, 0.2) and s["spacing_source"] == "ImagerPixelSpacing"
    np.testing.assert_array_equal(s["image"][0], pix)
    s = t({"image": str(png), "label": str(label), "dicom": str(dcm)})  # PNG export + its DICOM header
    assert s["pixel_spacing"] == (0.1, 0.2) and s["spacing_source"] == "ImagerPixelSpacing"
    s = t({"image": str(png), "label": str(label)})  # only the annotation knows
    assert s["pixel_spacing"] == (0.3, 0.3) and s["spacing_source"] == "annotation"
    s = LoadLandmarkSampled(allow_missing_keys=True)({"image": str(png), "layout": "ap"})  # inference item
    assert "points" not in s and s["layout"] == "ap" and s["image"].shape == (1, H, W)
    other = make_dicom(tmp_path / "other.dcm", np.zeros((H + 1, W), np.uint16), PixelSpacing=[0.2, 0.2])
    with pytest.raises(InputError, match="other.dcm: DICOM is 40x61"):
        t({"image": str(png), "label": str(label), "dicom": str(other)})


def test_malformed_annotations_name_file_and_line(tmp_path):
    png = _png(tmp_path / "img.png")
    t = LoadLandmarkSampled()
    # wrong row count
    write_buu_csv(tmp_path / "a.csv", _pts(AP), AP)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    (tmp_path / "rows.csv").write_text("\n".join(lines[:7]) + "\n")
    with pytest.raises(InputError, match=r"rows.csv: BUU-LSPINE CSV needs 11 rows \(lateral\) or 10 \(AP\), found 7"):
        t({"image": str(png), "label": str(tmp_path / "rows.csv")})
    # NaN on line 4
    bad = lines.copy()
    bad[3] = "nan," + bad[3].split(",", 1)[1]
    (tmp_path / "nan.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(InputError, match=r"nan.csv:4: coordinate is NaN"):
        t({"image": str(png), "label": str(tmp_path / "nan.csv")})
    # a point outside the 40x60 image on line 6 (x_right of L3 superior end plate)
    bad = lines.copy()
    f = bad[5].split(",")
    f[2] = "75.0"
    bad[5] = ",".join(f)
    (tmp_path / "out.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(InputError, match=r"out.csv:6: point \d+ \(L3_\w+\) at \(75.0, [\d.]+\) lies outside the 40x60"):
        t({"image": str(png), "label": str(tmp_path / "out.csv")})
    # bad JSON, with its line
    (tmp_path / "bad.json").write_text('{\n  "format": "lumbar-monai/landmarks@1",\n  "layout": "ap",,\n}')
    with pytest.raises(InputError, match=r"bad.json:3: not valid JSON"):
        t({"image": str(png), "label": str(tmp_path / "bad.json")})
    # JSON for an image of another size
    ann = LandmarkAnnotation(layout=AP, points=_pts(AP), image_size=(W, H + 10))
    write_annotation_json(tmp_path / "size.json", ann)
    with pytest.raises(InputError, match=r"size.json: annotation is for a 40x70 image, .*img.png is 40x60"):
        t({"image": str(png), "label": str(tmp_path / "size.json")})
    # JSON point outside (no image_size in the file): named by landmark
    pts = _pts(AP)
    pts[19] = (10.0, 80.0)
    write_annotation_json(tmp_path / "pt.json", LandmarkAnnotation(layout=AP, points=pts))
    with pytest.raises(InputError, match=r"pt.json: point 20 \(L5_inferior_left\) at \(10.0, 80.0\) lies outside"):
        t({"image": str(png), "label": str(tmp_path / "pt.json")})
    with pytest.raises(InputError, match="empty annotation file"):
        (tmp_path / "empty.csv").write_text("")
        t({"image": str(png), "label": str(tmp_path / "empty.csv")})


def test_load_landmark_datalist_errors(tmp_path):
    with pytest.raises(InputError, match="datalist file not found"):
        load_landmark_datalist(tmp_path / "none.json")
    p = write_datalist(
        tmp_path / "d.json", [{"image": str(tmp_path / "x.png"), "case": "1", "dicom": str(tmp_path / "x.dcm")}], "t"
    )
    split = assign_split("1")
    items = load_landmark_datalist(p, split)
    assert items[0]["image"] == str(tmp_path / "x.png") and items[0]["dicom"] == str(tmp_path / "x.dcm")
    with pytest.raises(InputError, match="d.json: cannot read split 'nonsense'"):
        load_landmark_datalist(p, "nonsense")


def test_relative_datalist_path_gives_absolute_items(tmp_path, monkeypatch):
    """A datalist addressed by a relative path (the bundle's default output_dir is relative) resolves every path
    exactly once, "dicom" included."""
    from lumbar_monai.io.datalist import load_landmark_datalist as _load

    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "datalist.json").write_text(
        '{"training": [{"image": "images/a.png", "label": "annotations/a.json", "dicom": "dicom/a.dcm"}]}'
    )
    monkeypatch.chdir(tmp_path)
    item = _load("set/datalist.json", "training")[0]
    for key, rel in (("image", "images/a.png"), ("label", "annotations/a.json"), ("dicom", "dicom/a.dcm")):
        assert item[key] == str(tmp_path / "set" / rel)


def test_empty_split_reads_as_empty_list_and_bad_json_names_the_file(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.png", "label": "a.json"}], "test": []}))
    assert load_landmark_datalist(path, "test") == []
    assert len(load_landmark_datalist(path, "training")) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json.*not a JSON datalist"):
        load_landmark_datalist(bad, "training")
