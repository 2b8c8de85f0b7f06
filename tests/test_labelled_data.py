"""Labelled data a user brings (``lumbar-monai evaluate``): datalists, AASCE-format and BUU-LSPINE folders become
the datalist the evaluate workflow scores, and anything else fails with one line naming it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_helpers as H  # noqa: E402

from lumbar_monai.errors import InputError  # noqa: E402
from lumbar_monai.io.aasce import aasce_copy_of, aasce_subsets, read_aasce  # noqa: E402
from lumbar_monai.io.annotations import read_annotation_json  # noqa: E402
from lumbar_monai.io.datalist import load_landmark_datalist, write_datalist  # noqa: E402
from lumbar_monai.io.labelled_data import scoring_datalist  # noqa: E402

pytestmark = pytest.mark.compat


def test_an_aasce_folder_is_scored_whole_in_one_split(tmp_path):
    lumbar = H.aasce_format_folder(tmp_path / "batch")
    assert aasce_subsets(tmp_path / "batch") == ["batch2"]
    data = scoring_datalist(tmp_path / "batch", tmp_path / "out", "ap")
    assert (data.kind, data.split) == ("aasce", "test")
    assert data.description == "AASCE-format folder, subset batch2, 3 images"
    assert "case0" not in data.description  # the console line names no file
    assert load_landmark_datalist(data.datalist, "training") == []
    items = load_landmark_datalist(data.datalist, "test")
    assert len(items) == 3
    for item, pts in zip(items, lumbar, strict=True):
        got = np.asarray(read_annotation_json(item["label"]).points)
        # the same 20 corners (the AP layout names them by the patient's side, so compare as sets of points)
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(pts, axis=0), atol=0.01)
    assert not any((tmp_path / "batch").rglob("*.json"))  # the source folder is only read


def test_the_challenge_releases_own_layout_is_read_too(tmp_path):
    """``boostnet_labeldata``: ``data/<subset>/`` and ``labels/<subset>/`` (training 481, test 128 images)."""
    lumbar = H.aasce_format_folder(tmp_path / "boostnet_labeldata", "test", n=2, release_layout=True)
    H.aasce_format_folder(tmp_path / "boostnet_labeldata", "training", n=1, release_layout=True)
    assert aasce_subsets(tmp_path / "boostnet_labeldata") == ["test", "training"]
    with pytest.raises(InputError, match=r"several AASCE subsets \(test, training\)"):
        scoring_datalist(tmp_path / "boostnet_labeldata", tmp_path / "out", "ap")
    data = scoring_datalist(tmp_path / "boostnet_labeldata", tmp_path / "out", "ap", subset="test")
    assert data.description == "AASCE-format folder, subset test, 2 images"
    items = load_landmark_datalist(data.datalist, "test")
    for item, pts in zip(items, lumbar, strict=True):
        assert Path(item["image"]).parent == tmp_path / "boostnet_labeldata" / "data" / "test"
        got = np.asarray(read_annotation_json(item["label"]).points)
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(pts, axis=0), atol=0.01)


def test_an_aasce_folder_with_several_subsets_needs_a_choice(tmp_path):
    H.aasce_format_folder(tmp_path / "two", "a", n=1)
    H.aasce_format_folder(tmp_path / "two", "b", n=2)
    with pytest.raises(InputError, match=r"several AASCE subsets \(a, b\)"):
        scoring_datalist(tmp_path / "two", tmp_path / "out", "ap")
    with pytest.raises(InputError, match="no AASCE subset 'c'"):
        scoring_datalist(tmp_path / "two", tmp_path / "out", "ap", subset="c")
    data = scoring_datalist(tmp_path / "two", tmp_path / "out", "ap", subset="b")
    assert len(load_landmark_datalist(data.datalist, "test")) == 2


def test_aasce_labels_need_an_ap_model(tmp_path):
    H.aasce_format_folder(tmp_path / "batch", n=1)
    with pytest.raises(InputError, match="AASCE labels are AP") as e:
        scoring_datalist(tmp_path / "batch", tmp_path / "out", "lateral")
    assert "\n" not in str(e.value) and str(tmp_path / "batch") in str(e.value)


def _datalist(tmp_path: Path) -> Path:
    H.aasce_format_folder(tmp_path / "src", n=1)
    one = load_landmark_datalist(scoring_datalist(tmp_path / "src", tmp_path / "one", "ap").datalist, "test")[0]
    items = [dict(one, case=f"patient{k}") for k in range(12)]
    return write_datalist(tmp_path / "datalist.json", items, "twelve cases")


def test_a_datalist_split_or_all_of_it(tmp_path):
    dl = _datalist(tmp_path)
    doc = json.loads(dl.read_text())
    sizes = {s: len(doc[s]) for s in ("training", "validation", "test")}
    assert sum(sizes.values()) == 12
    for split, n in sizes.items():
        if n:
            data = scoring_datalist(dl, tmp_path / "out", "ap", split=split)
            assert (data.datalist, data.split, data.description) == (dl, split, f"datalist, split {split}, {n} images")
        else:
            with pytest.raises(InputError, match=f"split '{split}' is empty"):
                scoring_datalist(dl, tmp_path / "out", "ap", split=split)
    every = scoring_datalist(dl, tmp_path / "out", "ap", split="all")
    assert every.split == "test" and every.datalist != dl
    assert len(load_landmark_datalist(every.datalist, "test")) == 12
    assert json.loads(every.datalist.read_text())["split_rule"] == "every item in test"
    with pytest.raises(ValueError, match="split must be one of"):
        write_datalist(tmp_path / "x.json", [], "none", split="holdout")
    with pytest.raises(InputError, match="unknown split 'nope'"):
        scoring_datalist(dl, tmp_path / "out", "ap", split="nope")


def _buu_csv(path: Path, rows: int) -> None:
    lines = [f"{40 + r},{20 + 15 * r},{80 + r},{21 + 15 * r},L{r // 2 + 1}" for r in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def test_a_buu_lspine_folder_is_read_for_the_models_view(tmp_path):
    folder = tmp_path / "buu"
    folder.mkdir()
    for name, rows in (("0001-F-037Y0", 10), ("0002-M-050Y0", 10), ("0003-F-041Y1", 11)):
        Image.fromarray(np.full((200, 120), 90, np.uint8)).save(folder / f"{name}.jpg")
        _buu_csv(folder / f"{name}.csv", rows)
    Image.fromarray(np.full((200, 120), 90, np.uint8)).save(folder / "0004-F-060Y0.jpg")  # no labels: left out
    ap = scoring_datalist(folder, tmp_path / "out_ap", "ap")
    assert (ap.kind, ap.split, ap.description) == ("buu-lspine", "test", "BUU-LSPINE folder, 2 labelled ap images")
    assert {Path(i["image"]).stem for i in load_landmark_datalist(ap.datalist, "test")} == {"0001-F-037Y0",
                                                                                            "0002-M-050Y0"}
    lateral = scoring_datalist(folder, tmp_path / "out_lat", "lateral")
    assert lateral.description == "BUU-LSPINE folder, 1 labelled lateral images"


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not a datalist JSON, an AASCE-format folder"),
])
def test_anything_else_fails_with_one_line_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as e:
        scoring_datalist(path, tmp_path / "out", "ap")
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_a_missing_or_unreadable_image_is_left_out_and_counted(tmp_path):
    H.aasce_format_folder(tmp_path / "batch", n=3)
    images = sorted((tmp_path / "batch" / "images_batch2").iterdir())
    images[0].unlink()
    images[1].write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="not found"):  # the reader alone still refuses the folder
        read_aasce(tmp_path / "batch", split="batch2")
    data = scoring_datalist(tmp_path / "batch", tmp_path / "out", "ap")
    assert data.description == "AASCE-format folder, subset batch2, 1 images, 2 left out missing or unreadable"
    assert len(load_landmark_datalist(data.datalist, "test")) == 1
    doc = json.loads(data.datalist.read_text())
    assert "'case0 A AP.jpg'" in doc["description"] and "'case1 A AP.jpg'" in doc["description"]


def test_an_image_knows_its_aasce_copy_in_either_layout(tmp_path):
    H.aasce_format_folder(tmp_path / "ours", "training", n=1)
    H.aasce_format_folder(tmp_path / "boostnet_labeldata", "test", n=1, release_layout=True)
    ours = next((tmp_path / "ours" / "images_training").iterdir())
    release = next((tmp_path / "boostnet_labeldata" / "data" / "test").iterdir())
    assert aasce_copy_of(ours) == (tmp_path / "ours", "training")
    assert aasce_copy_of(release) == (tmp_path / "boostnet_labeldata", "test")
    (tmp_path / "loose").mkdir()
    assert aasce_copy_of(tmp_path / "loose" / "x.jpg") is None
    (tmp_path / "ours" / "labels_training" / "landmarks.csv").unlink()  # images without their labels
    assert aasce_copy_of(ours) is None
