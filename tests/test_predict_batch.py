"""LandmarkPredictor.predict_batch / lumbar_monai.batched: the same landmarks as the single-image path, from batched
network calls and worker processes; bad files reported one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.batched import iter_predictions
from lumbar_monai.errors import InputError
from lumbar_monai.networks.mnet import MNet
from lumbar_monai.networks.posenet import PoseNet
from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs


def _predictor(layout=LATERAL) -> LandmarkPredictor:
    torch.manual_seed(0)
    pose = with_init_kwargs(PoseNet, layout=layout, width=4, kernel_size=3, pre_convs=1, stage_convs=1)
    lumbar = MNet.for_layout(layout, "lumbar", channels=(4, 8))
    sacrum = MNet.for_layout(layout, "sacrum", channels=(4, 8)) if layout.has_sacrum else None
    return LandmarkPredictor(layout, lumbar, sacrum, pose, crop_size=32, device="cpu", stage1={"input_size": 64})


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(90, 60), (70, 110), (64, 64), (50, 80)][:n]
    return [(rng.random(s) * 1000).astype(np.float32) for s in shapes]


def _no_single_image_calls(p: LandmarkPredictor) -> None:
    """Make the per-image network paths fail: a batch must answer everything from its batched calls."""

    def boom(*args, **kwargs):
        raise AssertionError("single-image network call inside a batch")

    p.detect_centres = boom
    p.detect_corners = boom


def _same(a, b) -> None:
    np.testing.assert_allclose(b.points, a.points, atol=1e-2)
    np.testing.assert_allclose(b.centres, a.centres, atol=1e-2)
    np.testing.assert_allclose(b.confidence, a.confidence, rtol=1e-3, atol=1e-4)
    assert b.qc_flags == a.qc_flags
    assert b.meta.get("facing", {}).get("facing") == a.meta.get("facing", {}).get("facing")
    assert b.image_size == a.image_size


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_equals_single_image_path_lateral_auto_facing(workers):
    p = _predictor()
    images = _images(3)
    single = [p.predict(im) for im in images]
    _no_single_image_calls(p)
    batch = p.predict_batch(images, batch_size=2, workers=workers)
    assert len(batch) == 3
    for a, b in zip(single, batch, strict=True):
        _same(a, b)
    assert batch[0].meta["batch_size"] == 2 and batch[2].meta["batch_size"] == 1
    assert {"stage1_network", "stage2_network"} <= set(batch[0].meta["timings_ms"])


def test_batch_equals_single_known_facing_given_centres_and_ap():
    p = _predictor()
    images = _images(2)
    single = [p.predict(im, facing="right") for im in images]
    centres = [r.centres for r in single]
    given = [p.predict(im, centres=c, facing="right") for im, c in zip(images, centres, strict=True)]
    _no_single_image_calls(p)
    for a, b in zip(single, p.predict_batch(images, facing="right", batch_size=4), strict=True):
        _same(a, b)
        assert b.meta["facing"]["facing"] == "right"
    for a, b in zip(given, p.predict_batch(images, centres=centres, facing="right"), strict=True):
        _same(a, b)
        assert b.meta["centres_from"] == "given"
    q = _predictor(AP)
    images = _images(4)
    single = [q.predict(im) for im in images]
    _no_single_image_calls(q)
    for a, b in zip(single, q.predict_batch(images, batch_size=3), strict=True):
        _same(a, b)


def test_bad_files_are_reported_in_order_and_the_batch_goes_on(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray((_images(1)[0] / 4).astype(np.uint8)).save(good)
    text = tmp_path / "text.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    sources = [str(text), str(good), str(tmp_path / "missing.png"), str(truncated), str(good)]
    p = _predictor()
    expected = p.predict(str(good))
    out = list(iter_predictions(p, sources, batch_size=2, workers=1, extra=lambda s: len(str(s))))
    assert [o.index for o in out] == [0, 1, 2, 3, 4]
    assert [o.error is None for o in out] == [False, True, False, False, True]
    for o in (out[0], out[2], out[3]):
        assert isinstance(o.error, InputError) and "\n" not in o.reason and o.result is None
    assert "missing.png" in str(out[2].error) and "not found" in out[2].reason
    for o in (out[1], out[4]):
        _same(expected, o.result)
        assert o.radiograph.image.shape == (90, 60) and o.radiograph.meta["format"] == "png"
        assert o.extra == len(str(good))
    with pytest.raises(InputError, match="text.png"):
        p.predict_batch(sources[:2])


def test_arguments_are_checked():
    p = _predictor()
    with pytest.raises(ValueError, match="batch_size"):
        p.predict_batch(_images(1), batch_size=0)
    with pytest.raises(ValueError, match="centre arrays"):
        p.predict_batch(_images(2), centres=[None])


def test_cli_batch_size_and_workers_write_the_same_outputs(tmp_path, capsys):
    """``lumbar-monai predict --batch-size 2 --workers 1`` against the one-at-a-time run: the same files, the same
    landmarks, the same failures (a bad file in the middle), the same summary rows; bad option values refused."""
    import json

    pytest.importorskip("highdicom")
    from lumbar_monai.cli import build_parser
    from lumbar_monai.synthetic import SyntheticConfig, write_study_set

    write_study_set(tmp_path / "studies", 3, seed=4, config=SyntheticConfig(max_side=200), progress=False)
    (tmp_path / "studies" / "dicom" / "bad.dcm").write_bytes(b"\0" * 300)
    model = _predictor().save(tmp_path / "model.pt")
    outs = {}
    for name, extra in (("single", []), ("batched", ["--batch-size", "2", "--workers", "1"])):
        outs[name] = tmp_path / name
        args = build_parser().parse_args(["predict", "--no-progress", str(tmp_path / "studies" / "dicom"), "--out",
                                          str(outs[name]), "--model", str(model), "--device", "cpu", *extra])
        assert args.func(args) == 0
        assert "3 ok, 1 failed" in capsys.readouterr().out
    a, b = outs["single"], outs["batched"]
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert (a / "failures.txt").read_text().replace(str(a), "") == (b / "failures.txt").read_text().replace(str(b), "")
    docs = sorted(a.glob("*.json"))
    assert len(docs) == 3
    for doc in docs:
        ra, rb = (json.loads((d / doc.name).read_text())["result"] for d in (a, b))
        np.testing.assert_allclose([[lm["x"], lm["y"]] for lm in rb["landmarks"]],
                                   [[lm["x"], lm["y"]] for lm in ra["landmarks"]], atol=1e-2)
    rows = [(d / "measurements.csv").read_text().splitlines() for d in (a, b)]
    assert rows[0][0] == rows[1][0] and len(rows[0]) == len(rows[1]) == 4
    for bad in (["--batch-size", "0"], ["--workers", "-1"], ["--workers", "two"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["predict", "x", "--out", str(tmp_path), *bad])
    assert "must be" in capsys.readouterr().err


def test_framed_stage1_runs_per_image_inside_a_batch():
    """A checkpoint with stage-1 framing (lumbar_monai.framing): its windows are found per image, the rest of the
    batch is the same as the single-image path."""
    p = _predictor()
    p.stage1["framing"] = {"passes": 2, "factor": 2.0}
    images = _images(2)
    single = [p.predict(im, facing="left") for im in images]
    for a, b in zip(single, p.predict_batch(images, facing="left", batch_size=2), strict=True):
        _same(a, b)
