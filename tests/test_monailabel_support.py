"""lumbar_monai.monailabel_support: MONAI Label result JSON, disc label image, datastore labels, fine-tuning glue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.errors import InputError
from lumbar_monai.io.annotations import LandmarkAnnotation, read_annotation_json, write_annotation_json
from lumbar_monai.io.nifti import read_label_map_points, write_label_map_nifti
from lumbar_monai.io.result_json import write_result_json
from lumbar_monai.measures import compute_measurements
from lumbar_monai.monailabel_support import (
    centroids,
    finetune_overrides,
    init_from_predictor,
    label_values,
    monailabel_result,
    read_datastore_label,
    write_finetune_datalist,
    write_label_image,
)
from lumbar_monai.result import LandmarkResult

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"


@pytest.fixture(scope="module")
def study():
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    return generate_radiograph(3, SyntheticConfig(max_side=256))


def _result(study, flags=("low_confidence",)) -> LandmarkResult:
    lay = study.layout
    conf = np.linspace(0.2, 0.95, lay.num_points)
    return LandmarkResult(
        layout=lay, points=study.points.copy(), confidence=conf, centres=lay.centres(study.points),
        centre_confidence=np.full(lay.num_vertebrae, 0.8), qc_flags=list(flags), pixel_spacing=study.pixel_spacing,
        spacing_source="synthetic", image_size=(study.image.shape[1], study.image.shape[0]),
    )


def _png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray((image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image).save(path)
    return path


@pytest.mark.parametrize("layout", [LATERAL, AP])
def test_label_values_landmarks_then_centres(layout):
    v = label_values(layout)
    n, nv = layout.num_points, layout.num_vertebrae
    assert [v[p] for p in layout.point_names] == list(range(1, n + 1))
    assert [v[c] for c in layout.vertebra_names] == list(range(n + 1, n + nv + 1))
    assert len(v) == n + nv


def test_centroids_in_monailabel_form():
    lay = LATERAL
    n = lay.num_points
    c = np.array([[10.4, 20.6], [30.5, 40.49], [np.nan, 1.0], [-3.0, 5.0], [99.6, 10.0], [50.0, 60.0]])
    out = centroids(c, lay, image_size_wh=(100, 80))
    # BasicInferTask's serialisation of GetCentroidsd: {"label_<v>": ["<v>", "<i>", "<j>", "<k>"]}, i = x, j = y
    assert out == {
        f"label_{n + 1}": [str(n + 1), "10", "21", "0"],
        f"label_{n + 2}": [str(n + 2), "30", "40", "0"],  # round half to even: 30.5 -> 30
        f"label_{n + 6}": [str(n + 6), "50", "60", "0"],
    }  # NaN, negative and x = 100 (outside a 100-wide image) are left out
    assert len(centroids(c, lay)) == 5  # without a size only the non-finite one goes


def test_monailabel_result_document(study):
    res = _result(study)
    doc = monailabel_result(res)
    json.dumps(doc, allow_nan=False)  # strict JSON
    lms = doc["result"]["landmarks"]
    assert [lm["name"] for lm in lms] == list(LATERAL.point_names)
    np.testing.assert_array_equal([[lm["x"], lm["y"]] for lm in lms], study.points)
    np.testing.assert_allclose([lm["confidence"] for lm in lms], res.confidence)
    assert doc["result"]["qc_flags"] == ["low_confidence"]
    ms = compute_measurements(study.points, LATERAL, study.pixel_spacing, "synthetic")
    got = {(m["quantity"], tuple(m.get("sites", ()))): m["value"] for m in doc["measurements"]["items"]}
    assert got[("lumbar_lordosis", ())] == pytest.approx(ms.value("lumbar_lordosis"), abs=1e-9)
    assert doc["centroids"] == centroids(res.centres, LATERAL, res.image_size)
    assert len(doc["centroids"]) == LATERAL.num_vertebrae
    assert doc["label_names"]["S1"] == LATERAL.num_points + LATERAL.num_vertebrae


def test_label_image_has_one_disc_per_landmark(study, tmp_path):
    res = _result(study)
    path = write_label_image(tmp_path / "label.nii.gz", res, radius=2.5)
    import nibabel as nib

    data = np.asarray(nib.load(str(path)).dataobj)
    w, h = res.image_size
    assert data.shape == (w, h)  # MONAI's 2-D axis order: (x, y)
    assert set(np.unique(data)) == set(range(LATERAL.num_points + 1))
    pts, _ = read_label_map_points(path, LATERAL.num_points)
    np.testing.assert_allclose(pts, study.points, atol=0.5)  # centroid of the disc pixels
    # at most pi r^2 + perimeter pixels per disc: small discs
    assert np.bincount(data.ravel())[1:].max() <= np.pi * 2.5**2 + 2 * np.pi * 2.5


def test_read_datastore_label_formats(study, tmp_path):
    res = _result(study)
    size = res.image_size
    ann = LandmarkAnnotation(LATERAL, study.points, study.pixel_spacing, "synthetic", image_size=size)
    a = read_datastore_label(write_annotation_json(tmp_path / "a.json", ann), image_size_wh=size)
    np.testing.assert_array_equal(a.points, study.points)
    b = read_datastore_label(write_result_json(tmp_path / "b.json", res), image_size_wh=size)
    np.testing.assert_array_equal(b.points, study.points)
    assert b.pixel_spacing == pytest.approx(study.pixel_spacing)
    hw = (size[1], size[0])
    c = read_datastore_label(write_label_map_nifti(tmp_path / "c.nii.gz", study.points, hw, radius=3.0))
    np.testing.assert_allclose(c.points, study.points, atol=0.5)
    # problems name the file and, where it applies, the landmark
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match=r"other\.json: not a landmark label"):
        read_datastore_label(tmp_path / "other.json")
    missing = study.points.copy()
    missing[5] = np.nan
    write_label_map_nifti(tmp_path / "d.nii.gz", missing, hw)
    with pytest.raises(InputError, match=r"d\.nii\.gz: label map has no disc for 1 landmark\(s\): L2_superior_posterior"):
        read_datastore_label(tmp_path / "d.nii.gz")
    with pytest.raises(InputError, match=r"a\.json: point 1 \(L1_superior_anterior\)"):
        read_datastore_label(tmp_path / "a.json", image_size_wh=(5, 5))
    with pytest.raises(InputError, match="unsupported label file"):
        read_datastore_label(tmp_path / "x.png")


@pytest.mark.parametrize("n, n_val", [(3, 0), (6, 1)])
def test_write_finetune_datalist(study, tmp_path, n, n_val):
    from lumbar_monai.io.datalist import load_landmark_datalist

    size = (study.image.shape[1], study.image.shape[0])
    items = []
    for i in range(n):
        img = _png(tmp_path / f"case_{i}.png", study.image)
        pts = study.points + i  # a different (known) label per image
        lab = write_annotation_json(tmp_path / "labels" / f"case_{i}.json", LandmarkAnnotation(LATERAL, pts))
        items.append({"image": str(img), "label": str(lab)})
    path = write_finetune_datalist(items[::-1], tmp_path / "data", LATERAL)
    train = load_landmark_datalist(path, "training")
    val = load_landmark_datalist(path, "validation")
    assert len(train) == n - n_val
    names = sorted(Path(d["image"]).name for d in train + (val if n_val else []))
    assert names == [f"case_{i}.png" for i in range(n)]
    if n_val:
        assert [Path(d["image"]).name for d in val] == ["case_4.png"]  # every 5th by name
    else:
        assert val == train  # too few corrections: validation re-uses the training items
    for d in train:
        i = int(Path(d["image"]).stem.split("_")[1])
        a = read_annotation_json(d["label"])
        np.testing.assert_array_equal(a.points, study.points + i)
        assert a.image_size == size
    with pytest.raises(InputError, match="no labelled images"):
        write_finetune_datalist([], tmp_path / "empty")


def test_finetune_overrides_rebuild_the_bundles_networks(tmp_path):
    """The overrides make the bundle build networks of the checkpoint's shapes; the weights then load exactly."""
    from monai.bundle import ConfigParser

    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs

    torch.manual_seed(0)
    pose = with_init_kwargs(PoseNet, layout="lateral", width=4, kernel_size=5)
    lumbar = with_init_kwargs(MNet, in_channels=1, out_channels=5, channels=[4, 8], width=1.0, coordconv=1,
                              deep_supervision=True)
    sacrum = with_init_kwargs(MNet, in_channels=1, out_channels=2, channels=[4, 8], width=1.0, coordconv=1,
                              deep_supervision=True)  # no PAF channel: paf=False must come out
    pred = LandmarkPredictor(LATERAL, lumbar, sacrum, pose, crop_size=64, device="cpu",
                             stage1={"input_size": 128, "heatmap_size": 16})
    path = pred.save(tmp_path / "lumbar_landmarks.pt")
    ckpt = torch.load(path, weights_only=True)
    ov = finetune_overrides(ckpt)
    assert ov["posenet#width"] == 4 and ov["posenet#input_size"] == 128 and ov["posenet#heatmap_size"] == 16
    assert ov["posenet#pre_convs"] == 3 and ov["posenet#stage_convs"] == 5  # PoseNet's defaults: not in kwargs
    assert ov["posenet#stage_channels"] is None
    assert ov["mnet_lumbar#config#paf"] is True and ov["mnet_sacrum#config#paf"] is False
    assert ov["mnet_sacrum#config#crop_size"] == 64

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update(ov)
    nets = {k: parser.get_parsed_content(f"{k}#network_def") for k in ("posenet", "mnet_lumbar", "mnet_sacrum")}
    assert init_from_predictor(path, nets["posenet"], nets["mnet_lumbar"], nets["mnet_sacrum"]) == [
        "posenet", "lumbar", "sacrum"]
    for net, ref in ((nets["posenet"], pose), (nets["mnet_lumbar"], lumbar), (nets["mnet_sacrum"], sacrum)):
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)
    assert init_from_predictor("", nets["posenet"]) == []  # no model yet: train from scratch
    wrong = with_init_kwargs(PoseNet, layout="lateral", width=8, kernel_size=5)
    with pytest.raises(InputError, match="posenet network does not match"):
        init_from_predictor(path, wrong)
