"""The shape prior (issue 15): a point-distribution model of the layout's corners, fitted robustly to a prediction;
one wrong corner is replaced and flagged, the others stay; the prior travels in the checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import get_layout
from lumbar_monai.shape_prior import ShapePrior, similarity_fit, vertebra_height

sys.path.insert(0, str(Path(__file__).parent))
from _lm_helpers import spine_points, tiny_untrained_model  # noqa: E402
from _paths import REPO  # noqa: E402


def _random_spine(rng: np.random.Generator, layout: str) -> np.ndarray:
    """A constructed spine with random end-plate tilts, lateral shifts, heights and pose, plus label noise."""
    lay = get_layout(layout)
    tilts = {(v, p): rng.normal(0, 6) for v in lay.vertebra_names for p in ("superior", "inferior")}
    shifts = {v: rng.normal(0, 3) for v in lay.vertebra_names}
    heights = {v: rng.uniform(0.85, 1.15) for v in lay.vertebra_names}
    pts = spine_points(lay, tilts=tilts, shifts=shifts, scale_heights=heights, width=rng.uniform(35, 45),
                       height=30.0, disc=rng.uniform(8, 12), origin=(0.0, 0.0))
    angle = np.radians(rng.normal(0, 8))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rng.uniform(0.8, 1.3) * pts @ rot.T + rng.uniform(100, 300, 2) + rng.normal(0, 0.5, pts.shape)


def _prior(layout: str = "ap", n: int = 120, modes: int = 8) -> ShapePrior:
    rng = np.random.default_rng(0)
    return ShapePrior.fit(np.stack([_random_spine(rng, layout) for _ in range(n)]), layout, modes=modes)


def test_similarity_fit_recovers_a_known_transform_with_or_without_reflection():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(12, 2))
    rot = np.array([[0.8, -0.6], [0.6, 0.8]])
    dst = 2.5 * src @ rot.T + [3.0, -1.0]
    s, r, t = similarity_fit(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [3.0, -1.0])
    mirrored = dst * [-1.0, 1.0]
    s, r, t = similarity_fit(src, mirrored, reflection=True)
    assert np.linalg.det(r) == pytest.approx(-1.0) and np.allclose(s * src @ r.T + t, mirrored)
    s, r, _ = similarity_fit(src, mirrored)  # without reflections the best proper rotation cannot reach it
    assert np.linalg.det(r) == pytest.approx(1.0)


@pytest.mark.parametrize("layout", ["ap", "lateral"])
def test_clean_shapes_barely_move_and_one_wrong_corner_is_replaced(layout):
    prior = _prior(layout)
    rng = np.random.default_rng(7)
    truth = _random_spine(rng, layout)
    h = vertebra_height(truth, get_layout(layout))
    clean = prior.correct(truth)
    assert not clean.outliers.any()
    assert np.abs(clean.points - truth).max() < 0.1 * h
    wrong = truth.copy()
    wrong[5] += [0.2 * h, 1.1 * h]  # a corner on the next vertebra's end plate
    fit = prior.correct(wrong)
    assert np.flatnonzero(fit.outliers).tolist() == [5]
    assert fit.weights[5] == 0.0 and fit.weights.max() <= 1.0  # a move towards the fit, never past the input
    assert np.linalg.norm(fit.points[5] - truth[5]) < 0.25 * h  # put back near where it belongs
    others = np.delete(np.arange(len(truth)), 5)
    assert np.abs(fit.points[others] - truth[others]).max() < 0.15 * h


def test_correction_follows_the_image_pose_mirrors_included():
    """The same prediction rotated, scaled, moved or mirrored (a patient facing the other way, an AP image shown
    mirrored) is corrected the same way."""
    prior = _prior("lateral")
    rng = np.random.default_rng(3)
    pts = _random_spine(rng, "lateral")
    pts[2] += [8.0, 25.0]
    base = prior.correct(pts).points
    for flip in (1.0, -1.0):
        a = np.radians(20)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * [flip, 1.0]
        moved = prior.correct(1.7 * pts @ rot.T + [40.0, 5.0]).points
        assert np.allclose(moved, 1.7 * base @ rot.T + [40.0, 5.0], atol=1e-6)


def test_non_finite_or_degenerate_points_come_back_unchanged():
    prior = _prior("ap", n=30, modes=4)
    pts = _random_spine(np.random.default_rng(2), "ap")
    pts[3] = np.nan
    fit = prior.correct(pts)
    assert np.array_equal(fit.points, pts, equal_nan=True) and not fit.outliers.any()
    one_spot = np.full((20, 2), 7.0)  # e.g. an untrained network's corners
    fit = prior.correct(one_spot)
    assert np.array_equal(fit.points, one_spot) and not fit.outliers.any()


def test_fit_and_record_reject_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="cannot give 8 modes"):
        ShapePrior.fit(np.stack([_random_spine(rng, "ap") for _ in range(5)]), "ap")
    with pytest.raises(ValueError, match="modes must be >= 0"):
        ShapePrior.fit(np.stack([_random_spine(rng, "ap") for _ in range(5)]), "ap", modes=-1)
    with pytest.raises(ValueError, match=r"\(M, 20, 2\)"):
        ShapePrior.fit(np.zeros((30, 22, 2)), "ap")
    with pytest.raises(ValueError, match="points must be"):
        _prior("ap", n=30, modes=4).correct(np.zeros((22, 2)))
    record = _prior("ap", n=30, modes=4).as_record()
    with pytest.raises(ValueError, match="does not fit layout"):
        ShapePrior.from_record({**record, "layout": "lateral"})
    with pytest.raises(ValueError, match="non-positive"):
        ShapePrior.from_record({**record, "cut": 0.0})
    with pytest.raises(ValueError, match="non-finite"):
        ShapePrior.from_record({**record, "mean": [[float("nan"), 0.0]] + record["mean"][1:]})


def test_the_prior_travels_in_the_checkpoint_and_corrects_the_predictor_output(tmp_path):
    """Saved with the model, read back with ``weights_only=True``; the predictor's points are the prior's
    correction of the corner network's, flagged when a corner was replaced; ``--no-shape-prior`` turns it off."""
    from lumbar_monai.errors import InputError
    from lumbar_monai.predictor import LandmarkPredictor

    path = tiny_untrained_model(tmp_path / "tiny.pt")
    plain = LandmarkPredictor.load(path, device="cpu")
    image = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    centres = np.array([[40.0, 12.0 + 14 * i] for i in range(6)])
    raw = plain.predict(image, centres=centres)
    prior = _prior("lateral", n=40, modes=4)
    plain.shape_prior = prior
    plain.save(tmp_path / "with_prior.pt")
    assert isinstance(torch.load(tmp_path / "with_prior.pt", weights_only=True)["shape_prior"], dict)
    loaded = LandmarkPredictor.load(tmp_path / "with_prior.pt", device="cpu")
    out = loaded.predict(image, centres=centres)
    expected = prior.correct(raw.points)
    assert expected.outliers.any()  # an untrained network's corners: the prior has something to replace
    assert np.allclose(out.points, expected.points) and not np.allclose(out.points, raw.points)
    assert ("shape_outlier" in out.qc_flags) is bool(expected.outliers.any())
    names = loaded.layout.point_names
    assert out.meta["shape_prior"]["outliers"] == [names[i] for i in np.flatnonzero(expected.outliers)]
    bad = torch.load(tmp_path / "with_prior.pt", weights_only=True)
    bad["shape_prior"] = {**bad["shape_prior"], "modes": [[1.0]]}
    torch.save(bad, tmp_path / "bad_prior.pt")
    with pytest.raises(InputError, match="bad_prior.pt: invalid checkpoint: shape prior record does not fit"):
        LandmarkPredictor.load(tmp_path / "bad_prior.pt", device="cpu")
    with pytest.raises(ValueError, match="shape prior is for layout"):
        LandmarkPredictor(layout="ap", lumbar_net=loaded.lumbar_net, shape_prior=prior)

    proc = subprocess.run([sys.executable, "-m", "lumbar_monai", "predict", "--help"], cwd=REPO,
                          capture_output=True, text=True)
    assert "--no-shape-prior" in proc.stdout


def test_cli_fits_on_the_labels_and_skips_an_unreadable_one(tmp_path):
    from lumbar_monai.io.annotations import LandmarkAnnotation, write_annotation_json
    from lumbar_monai.predictor import LandmarkPredictor

    model = LandmarkPredictor.load(tiny_untrained_model(tmp_path / "tiny.pt"), device="cpu").save(
        tmp_path / "tiny_half.pt", half=["lumbar"])
    rng = np.random.default_rng(5)
    items = []
    for i in range(12):
        label = write_annotation_json(tmp_path / "labels" / f"case{i}.json",
                                      LandmarkAnnotation(points=_random_spine(rng, "lateral"), layout=get_layout("lateral")))
        items.append({"image": str(tmp_path / "unused.png"), "label": str(label)})
    (tmp_path / "labels" / "secret_patient.json").write_text("{not json")
    items.append({"image": str(tmp_path / "unused.png"), "label": str(tmp_path / "labels" / "secret_patient.json")})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": items, "validation": [], "test": []}))
    out = tmp_path / "with_prior.pt"
    cmd = [sys.executable, "-m", "lumbar_monai.training.shape_prior", "--model", str(model), "--datalist",
           str(datalist), "--modes", "4"]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "12 training label sets, 4 modes" in proc.stdout
    assert "warning: training item 12 skipped" in proc.stderr and "secret" not in proc.stderr
    prior = LandmarkPredictor.load(out, device="cpu").shape_prior
    assert prior is not None and prior.n_shapes == 12 and prior.modes.shape == (44, 4)
    before, after = (torch.load(f, weights_only=True) for f in (model, out))
    for entry in ("stage1", "lumbar", "sacrum"):  # the networks are copied as they were, float16 ones included
        assert before[entry]["state_dict"].keys() == after[entry]["state_dict"].keys()
        assert all(torch.equal(v, after[entry]["state_dict"][k]) and v.dtype == after[entry]["state_dict"][k].dtype
                   for k, v in before[entry]["state_dict"].items())
    assert {v.dtype for v in after["lumbar"]["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    proc = subprocess.run([*cmd[:3], "--model", str(datalist), *cmd[5:], "--out", str(tmp_path / "y.pt")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")
    assert "datalist.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run([*cmd[:-1], "20", "--out", str(tmp_path / "x.pt")], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "datalist.json" in last and "cannot give 20 modes" in last
    assert not (tmp_path / "x.pt").exists()
