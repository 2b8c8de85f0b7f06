from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.errors import InputError
from lumbar_monai.io.annotations import (
    LandmarkAnnotation,
    read_annotation_json,
    read_buu_csv,
    write_annotation_json,
    write_buu_csv,
)
from lumbar_monai.points import apply_affine_2d, monai_to_xy, xy_to_monai

pytestmark = pytest.mark.compat


def test_monai_point_convention_round_trip():
    pts = np.array([[3.5, 10.25], [7.0, 1.0]])
    m = xy_to_monai(pts)
    assert m.shape == (1, 2, 2)
    assert torch.equal(m[0, 0], torch.tensor([10.25, 3.5], dtype=torch.float64))  # (y, x): array-axis order
    np.testing.assert_array_equal(monai_to_xy(m), pts)


def test_monai_convention_matches_array_axes():
    """MONAI's ApplyTransformToPoints with a flip of the first spatial axis (rows) must move y, not x."""
    from monai.transforms import ApplyTransformToPoints

    h = 10
    flip_rows = torch.tensor([[-1.0, 0, h - 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    out = ApplyTransformToPoints(affine=flip_rows, invert_affine=False)(xy_to_monai([[2.0, 3.0]]))
    np.testing.assert_allclose(monai_to_xy(out), [[2.0, h - 1 - 3.0]])


def test_apply_affine_2d():
    m = np.array([[2.0, 0, 1], [0, 3, -1], [0, 0, 1]])
    np.testing.assert_allclose(apply_affine_2d(m, [[1.0, 1.0]]), [[3.0, 2.0]])


def test_json_round_trip(tmp_path):
    pts = np.random.default_rng(1).random((22, 2)) * 90
    ann = LandmarkAnnotation(LATERAL, pts, (0.15, 0.15), "synthetic", "img.png", (100, 100), meta={"k": 1})
    p = write_annotation_json(tmp_path / "a.json", ann)
    back = read_annotation_json(p)
    np.testing.assert_array_equal(back.points, pts)
    assert back.pixel_spacing == (0.15, 0.15) and back.layout is LATERAL and back.meta == {"k": 1}
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


@pytest.mark.parametrize("layout,rows", [(LATERAL, 11), (AP, 10)])
def test_buu_round_trip(tmp_path, layout, rows):
    pts = np.random.default_rng(2).random((layout.num_points, 2)) * 1000
    p = write_buu_csv(tmp_path / "x.csv", pts, layout)
    assert len(p.read_text().strip().splitlines()) == rows
    back = read_buu_csv(p)
    assert back.layout is layout
    np.testing.assert_allclose(back.points, pts, atol=5e-4)


def test_buu_row_order_is_image_left_then_right(tmp_path):
    # L1 top end plate row: x_left,y_left = superior_anterior (patient faces left), x_right = superior_posterior
    lines = ["10,20,90,22,L1"] + [f"{i},{i},{i + 50},{i},x" for i in range(30, 30 + 10 * 9, 10)] + ["5,5,6,6,S1"]
    p = tmp_path / "c.csv"
    p.write_text("\n".join(lines) + "\n")
    ann = read_buu_csv(p)
    assert tuple(ann.points[LATERAL.index("L1", "superior_anterior")]) == (10, 20)
    assert tuple(ann.points[LATERAL.index("L1", "superior_posterior")]) == (90, 22)


@pytest.mark.parametrize(
    "content,needle",
    [
        ("1,2,3,4,a\n" * 9, "needs 11 rows"),
        ("1,2,3,4,a\n" * 10 + "1,nan,3,4,b\n", ":11: coordinate is NaN"),
        ("1,2,3,4,a\n" * 4 + "1,x,3,4,a\n" + "1,2,3,4,a\n" * 6, ":5: non-numeric"),
        ("1,2,3\n" + "1,2,3,4,a\n" * 10, ":1: expected"),
    ],
)
def test_buu_errors_name_file_and_line(tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as e:
        read_buu_csv(p)
    assert str(p) in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: d.update(points={"L1": {}}), "incomplete points"),
        (lambda d: d.update(layout="oblique"), "unknown layout"),
        (lambda d: d["points"]["L3"].update(inferior_anterior=[500.0, 5.0]), "outside the 100x100 image"),
        (lambda d: d.update(pixel_spacing=[0, 1]), "pixel_spacing"),
        (lambda d: d.pop("format"), "not a landmark annotation"),
    ],
)
def test_json_errors(tmp_path, mutate, needle):
    pts = np.full((22, 2), 50.0)
    doc = LandmarkAnnotation(LATERAL, pts, image_size=(100, 100)).to_json_dict()
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=needle):
        read_annotation_json(p)


def test_json_syntax_error_names_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{\n "format": \n}')
    with pytest.raises(InputError, match=r"broken.json:3: not valid JSON"):
        read_annotation_json(p)
    with pytest.raises(InputError, match="file not found"):
        read_annotation_json(tmp_path / "missing.json")


def test_atomic_write_leaves_no_temporary_and_normal_permissions(tmp_path):
    import os
    import stat

    from lumbar_monai.io.atomic import atomic_path, atomic_write_text

    p = atomic_write_text(tmp_path / "out.txt", "hello")
    assert p.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "half.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer crashed")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.txt"]
