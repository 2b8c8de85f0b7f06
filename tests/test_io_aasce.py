"""AASCE / SpineWeb-16 reader: real files checked against the .mat annotations; malformed copies fail clearly."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from _paths import SHARED
from PIL import Image

from lumbar_monai.anatomy import AP
from lumbar_monai.errors import InputError
from lumbar_monai.io.aasce import (
    aasce_layout,
    aasce_patient,
    anatomical_order,
    build_aasce_datalist,
    read_aasce,
    write_aasce_datalist,
)
from lumbar_monai.io.annotations import read_annotation_json
from lumbar_monai.io.datalist import LoadLandmarkSampled, assign_split, load_landmark_datalist

pytestmark = pytest.mark.compat

AASCE = SHARED / "data" / "aasce16"


@pytest.fixture(scope="module")
def real():
    if not (AASCE / "labels_training" / "landmarks.csv").is_file():
        pytest.skip(f"AASCE copy not found at {AASCE}")
    excluded: list = []
    pairs = read_aasce(AASCE, outside="skip", excluded=excluded)
    return pairs, excluded


def test_real_matches_mat_files(real):
    scipy_io = pytest.importorskip("scipy.io")
    pairs, _ = real
    full = dict(read_aasce(AASCE, lumbar_only=False, outside="keep"))
    for image, ann in [pairs[i] for i in (0, 1, 100, 250, 400)]:
        p2 = scipy_io.loadmat(str(AASCE / "labels_training" / (image.name + ".mat")))["p2"].astype(np.float64)
        assert ann.layout is AP and ann.points.shape == (AP.num_points, 2)
        np.testing.assert_allclose(ann.points, p2[48:68], atol=1e-3)  # L1..L5 = rows 48..67
        np.testing.assert_allclose(full[image].points, p2, atol=1e-3)
        with Image.open(image) as im:
            assert ann.image_size == im.size
        # image-side order, per vertebra: left corners left of the right ones, top corners above the bottom ones
        for v in AP.vertebra_names:
            c = {a: ann.points[AP.index(v, a)] for a in ("top_left", "top_right", "bottom_left", "bottom_right")}
            assert c["top_left"][0] + c["bottom_left"][0] < c["top_right"][0] + c["bottom_right"][0]
            assert c["top_left"][1] + c["top_right"][1] < c["bottom_left"][1] + c["bottom_right"][1]


def test_real_outside_point_is_reported(real):
    pairs, excluded = real
    assert len(pairs) == 480 and len(excluded) == 1
    image, msg = excluded[0]
    assert image.name == "sunhl-1th-25-Jul-2016-49 A AP.jpg"
    assert "landmarks.csv:395: point 16 (L4_inferior_left)" in msg and "outside the 964x2325 image" in msg
    with pytest.raises(InputError, match=r"landmarks.csv:395: "):
        read_aasce(AASCE)


def test_real_split_by_patient_is_fixed(real):
    pairs, _ = real
    by_patient = collections.defaultdict(set)
    for image, ann in pairs:
        assert ann.meta["case"] == aasce_patient(image.name)
        by_patient[ann.meta["case"]].add(assign_split(ann.meta["case"]))
    assert all(len(s) == 1 for s in by_patient.values())  # every patient in one split
    counts = collections.Counter(assign_split(ann.meta["case"]) for _, ann in pairs)
    assert counts == {"training": 380, "validation": 62, "test": 38}  # the documented, fixed split


def test_patient_key():
    assert aasce_patient("sunhl-1th-02-Jan-2017-162 A AP.jpg") == "162"
    assert aasce_patient("sunhl-1th-04-Jan-2017-165 B AP.jpg") == aasce_patient("sunhl-1th-03-Jan-2017-165 A AP.jpg")
    assert aasce_patient("sunhl-1th-22-Nov-2016-142 A AP (2).jpg") == "142"
    assert aasce_patient("sunhl-1th-20-Jul-2016-coronal7.jpg") == "sunhl-1th-20-Jul-2016-coronal7"
    assert aasce_layout(False).num_points == 68 and aasce_layout(True) is AP


def _fake_copy(root: Path, edit=None, sizes=((40, 90), (50, 100))) -> list[np.ndarray]:
    """A small AASCE-shaped copy (``edit`` changes the 2nd landmarks row); returns each image's (68, 2) points."""
    (root / "images_training").mkdir(parents=True)
    (root / "labels_training").mkdir()
    names, rows, pts = [], [], []
    for k, (w, h) in enumerate(sizes):
        name = f"sunhl-1th-0{k + 1}-Jan-2017-{200 + k} A AP.jpg"
        Image.fromarray(np.full((h, w), 100, np.uint8)).save(root / "images_training" / name, format="JPEG")
        xy = np.stack([np.tile([10.0, 20.0, 11.0, 21.0], 17) + k, np.repeat(np.arange(17) * 5.0 + 2, 4)], axis=1)
        names.append(name)
        rows.append([f"{v:.5f}" for v in np.concatenate([xy[:, 0] / w, xy[:, 1] / h])])
        pts.append(xy)
    if edit is not None:
        rows[1] = edit(rows[1])
    (root / "labels_training" / "filenames.csv").write_text("\n".join(names) + "\n")
    (root / "labels_training" / "landmarks.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    return pts


def _set(row: list[str], i: int, value: str) -> list[str]:
    return row[:i] + [value] + row[i + 1 :]


def test_fake_copy_to_datalist_to_samples(tmp_path):
    pts = _fake_copy(tmp_path / "aasce")
    pairs = read_aasce(tmp_path / "aasce")
    np.testing.assert_allclose(pairs[1][1].points, pts[1][48:68], atol=1e-9)  # snapped to whole pixels
    dl = build_aasce_datalist(tmp_path / "aasce", tmp_path / "out")
    doc = json.loads(dl.read_text())
    assert "sha256" in doc["split_rule"]
    items = [i for s in ("training", "validation", "test") for i in load_landmark_datalist(dl, s)]
    assert len(items) == 2 and all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
    loader = LoadLandmarkSampled(keys=("image", "label"))
    for item in items:
        k = 0 if "-200 " in Path(item["image"]).name else 1
        s = loader(item)
        assert s["image"].shape == (1, (90, 100)[k], (40, 50)[k]) and s["image"].dtype == np.float32
        np.testing.assert_allclose(s["points"], pts[k][48:68], atol=1e-9)
        assert s["layout"] == "ap" and s["pixel_spacing"] is None and s["spacing_source"] is None
    other = write_aasce_datalist(tmp_path / "aasce", tmp_path / "runs" / "datalist_aasce.json")
    assert sorted(p.name for p in (tmp_path / "runs" / "datalist_aasce_labels").iterdir()) == [
        "sunhl-1th-01-Jan-2017-200 A AP.json",
        "sunhl-1th-02-Jan-2017-201 A AP.json",
    ]
    assert sum(len(load_landmark_datalist(other, s)) for s in ("training", "validation", "test")) == 2


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda r: r[:-1], r"landmarks.csv:2: expected 136 numbers \(68 x then 68 y\), found 135"),
        (lambda r: _set(r, 5, "nan"), r"landmarks.csv:2: value 6 is NaN"),
        (lambda r: _set(r, 3, "abc"), r"landmarks.csv:2: non-numeric value"),
        # y of file row 48 (L1 top-left = AP point 1) at 1.5 x height
        (
            lambda r: _set(r, 68 + 48, "1.5"),
            r"landmarks.csv:2: point 1 \(L1_superior_right\) at \(11.0, 150.0\) lies outside the 50x100 image",
        ),
    ],
)
def test_fake_copy_malformed_rows(tmp_path, edit, needle):
    _fake_copy(tmp_path / "bad", edit=edit)
    with pytest.raises(InputError, match=needle) as info:
        read_aasce(tmp_path / "bad")
    assert "\n" not in str(info.value)


def test_fake_copy_missing_image(tmp_path):
    _fake_copy(tmp_path / "a")
    (tmp_path / "a" / "images_training" / "sunhl-1th-02-Jan-2017-201 A AP.jpg").unlink()
    with pytest.raises(InputError, match=r"filenames.csv:2: image .* not found"):
        read_aasce(tmp_path / "a")


def test_real_rows_out_of_order_are_put_in_anatomical_order(real):
    """Row 'sunhl-...-237 B' lists T1 last: read as filed, its "L5" is the topmost vertebra."""
    name = "sunhl-1th-10-Jan-2017-237 B AP.jpg"
    filed = {p.name: a for p, a in read_aasce(AASCE, lumbar_only=False, outside="keep", order="file")}[name]
    fixed = {p.name: a for p, a in read_aasce(AASCE, lumbar_only=False, outside="keep")}[name]
    spine = aasce_layout(False)
    filed_y, fixed_y = spine.centres(filed.points)[:, 1], spine.centres(fixed.points)[:, 1]
    assert filed_y[16] < filed_y[0]  # the file's 17th group is above its first
    assert np.all(np.diff(fixed_y) > 0) and fixed.meta["reordered"] is True
    np.testing.assert_allclose(fixed.points[:4], filed.points[64:68])  # T1
    np.testing.assert_allclose(fixed.points[4:], filed.points[:64])
    lumbar = {p.name: a for p, a in real[0]}[name]
    np.testing.assert_allclose(lumbar.points, filed.points[44:64])  # L1-L5 are the file's groups 12-16
    # rows in order are left alone
    pairs, _ = real
    assert sum(bool(a.meta.get("reordered")) for _, a in pairs) == 25  # 26 rows, one left out (outside)
    assert "reordered" not in pairs[0][1].meta


def test_anatomical_order_fixes_groups_plates_and_sides():
    spine = np.stack([np.tile([10.0, 20.0, 11.0, 21.0], 3), np.repeat([0.0, 10.0, 20.0], 4) + [0, 0, 5, 5] * 3], 1)
    ordered, moved = anatomical_order(spine)
    assert not moved and np.array_equal(ordered, spine)
    shuffled = spine.reshape(3, 4, 2)[[2, 0, 1]].copy()
    shuffled[1] = shuffled[1][[2, 3, 0, 1]]  # lower end plate listed first
    shuffled[2] = shuffled[2][[1, 0, 2, 3]]  # right corner first
    ordered, moved = anatomical_order(shuffled.reshape(-1, 2))
    assert moved and np.array_equal(ordered, spine)
    # a tilted vertebra (upper plate's right corner below the lower plate's left corner) keeps its plates
    tilted = np.array([[0.0, 0.0], [10.0, 8.0], [-3.0, 6.0], [7.0, 14.0]])
    assert np.array_equal(anatomical_order(tilted)[0], tilted)


def test_fake_copy_row_listing_t1_last(tmp_path):
    """A row whose 17th group sits above the others: read in anatomical order unless order='file' (datalists too)."""

    def t1_last(row):
        for j in range(64, 68):
            row = _set(row, 68 + j, "0.00000")
        return row

    pts = _fake_copy(tmp_path / "aasce", edit=t1_last)
    fixed = read_aasce(tmp_path / "aasce")[1][1]
    filed = read_aasce(tmp_path / "aasce", order="file")[1][1]
    np.testing.assert_allclose(fixed.points, pts[1][44:64], atol=1e-9)  # L1-L5 = the file's groups 12-16 (1-based)
    assert fixed.meta["reordered"] is True and "reordered" not in filed.meta
    assert filed.points[-1][1] == 0.0
    for order, first_y in (("anatomical", pts[1][44][1]), ("file", pts[1][48][1])):
        dl = write_aasce_datalist(tmp_path / "aasce", tmp_path / order / "datalist.json", order=order)
        items = [i for s in ("training", "validation", "test") for i in load_landmark_datalist(dl, s)]
        label = next(i["label"] for i in items if "-201 " in Path(i["image"]).name)
        assert read_annotation_json(label).points[0][1] == first_y
        assert {i["aasce_order"] for i in items} == {order}  # for readers of the same copy (attach_aux_centres)
        assert ("files' order" in json.loads(dl.read_text())["description"]) == (order == "file")
    with pytest.raises(ValueError, match="order must be"):
        read_aasce(tmp_path / "aasce", order="sorted")
