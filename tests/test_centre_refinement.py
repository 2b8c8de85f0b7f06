"""Centre refinement from the M-Net corners (``LandmarkPredictor(centre_refinement=N)``, issue 15)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _lm_helpers as H  # noqa: E402

from lumbar_monai.predictor import LandmarkPredictor  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return H.tiny_untrained_model(tmp_path_factory.mktemp("refine") / "tiny.pt")


def test_refined_centres_are_corner_means_and_keep_the_sacrum(model_path):
    pred = LandmarkPredictor.load(model_path, device="cpu")
    lay = pred.layout
    pts = H.lateral_study_points()
    centres = lay.centres(pts) + 7.0  # every centre off by (7, 7)
    out = pred.refined_centres(centres, pts)
    lumbar = list(lay.lumbar_indices)
    np.testing.assert_allclose(out[lumbar], lay.centres(pts)[lumbar])
    np.testing.assert_allclose(out[lay.sacrum_index], centres[lay.sacrum_index])


def test_refinement_moves_detected_centres_only_and_round_trips(model_path, tmp_path):
    img = H.render_spine_image(H.lateral_study_points())
    plain = LandmarkPredictor.load(model_path, device="cpu")
    ckpt = plain.checkpoint()
    ckpt["centre_refinement"] = 2
    refined = LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    assert refined.centre_refinement == 2
    assert LandmarkPredictor.load(refined.save(tmp_path / "r.pt"), device="cpu").centre_refinement == 2
    a, b = plain.predict(img, facing="left"), refined.predict(img, facing="left")
    lumbar = list(plain.layout.lumbar_indices)
    # refined: the centres reported are those of the last crops, i.e. the corner means of the run before
    assert not np.allclose(a.centres[lumbar], b.centres[lumbar])
    np.testing.assert_allclose(a.centres[plain.layout.sacrum_index], b.centres[plain.layout.sacrum_index])
    given = plain.layout.centres(H.lateral_study_points())
    np.testing.assert_allclose(refined.predict(img, centres=given, facing="left").points,
                               plain.predict(img, centres=given, facing="left").points)


def test_negative_refinement_is_refused(model_path):
    ckpt = LandmarkPredictor.load(model_path, device="cpu").checkpoint()
    ckpt["centre_refinement"] = -1
    with pytest.raises(ValueError, match="centre_refinement"):
        LandmarkPredictor.from_checkpoint(ckpt, device="cpu")


def test_command_line_override(model_path, tmp_path):
    from PIL import Image

    from lumbar_monai.cli import main

    img = H.render_spine_image(H.lateral_study_points())
    Image.fromarray((img / 16).astype("uint8")).save(tmp_path / "study.png")
    rc = main(["predict", str(tmp_path / "study.png"), "--out", str(tmp_path / "out"), "--model", str(model_path),
               "--no-progress", "--facing", "left", "--centre-refinement", "1"])
    assert rc == 0
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "study.png"), "--out", str(tmp_path / "o2"), "--model", str(model_path),
              "--centre-refinement", "-1"])
