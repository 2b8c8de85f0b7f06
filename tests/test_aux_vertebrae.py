"""Auxiliary stage-1 targets (issue 15): Pose-Net trained with extra centre maps of vertebrae the layout does not
have (T11, T12 of an AASCE spine). The maps follow the layout's channels, move with the framing, come from the
AASCE copy in the sample's pixels; inference reads only the layout's channels; a 5-channel checkpoint grows into
the wider network."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _lm_helpers as H  # noqa: E402
from _paths import SHARED  # noqa: E402

from lumbar_monai.codecs.centre import AppendCentreMapsd, CentreHeatmapCodec, CentreHeatmapd  # noqa: E402
from lumbar_monai.codecs.gaussian import decode_peaks  # noqa: E402
from lumbar_monai.errors import InputError  # noqa: E402
from lumbar_monai.framing import RandFramed, detect_centres_framed  # noqa: E402
from lumbar_monai.networks.posenet import PoseNet  # noqa: E402
from lumbar_monai.training.framed import (  # noqa: E402
    attach_aux_centres,
    check_schedule,
    load_init,
    posenet_kwargs,
    posenet_transforms,
    train_posenet,
)
from lumbar_monai.transforms.geometry import transform_points  # noqa: E402

AASCE = SHARED / "data" / "aasce16"


def _spine():
    pts = H.spine_points("ap", width=44.0, height=26.0, disc=9.0, origin=(100.0, 120.0))
    img = H.render_spine_image(pts, layout="ap", size_wh=(240, 400))
    return pts, (img / img.max() * 255).astype(np.uint8)


def test_appended_maps_follow_the_layout_channels_with_its_sigma():
    pts, _ = _spine()
    aux = np.array([[100.0, 40.0], [104.0, 80.0]])  # above L1, in input pixels
    d = CentreHeatmapd(layout="ap", input_size=256, heatmap_size=32)({"points": pts, "layout": "ap"})
    out = AppendCentreMapsd("aux_points", layout="ap", input_size=256, heatmap_size=32)({**d, "aux_points": aux})
    maps = out["centre_heatmap"]
    assert maps.shape == (7, 32, 32)
    torch.testing.assert_close(maps[:5], d["centre_heatmap"])  # L1-L5 untouched, L5 keeps its index
    codec = CentreHeatmapCodec("ap", input_size=256, heatmap_size=32)
    xy, height = decode_peaks(maps[None, 5:])
    np.testing.assert_allclose(codec.heatmap_to_input(xy[0].double().numpy()), aux, atol=0.05)
    # same Eq. 1 sigma as the layout's maps: an aux map drawn at L1's centre equals L1's map
    same = AppendCentreMapsd("aux_points", layout="ap", input_size=256, heatmap_size=32)(
        {**d, "aux_points": codec.centres(pts)[:1]})
    torch.testing.assert_close(same["centre_heatmap"][5], d["centre_heatmap"][0])


def test_framing_moves_aux_points_with_the_window():
    pts, img = _spine()
    aux = np.array([[100.0, 50.0], [102.0, 90.0]])
    tf = RandFramed("image", "points", layout="ap", size=64, aux_keys=("aux_points",))
    tf.set_random_state(3)
    out = tf({"image": torch.as_tensor(img[None] / 255.0, dtype=torch.float32), "points": pts, "aux_points": aux})
    np.testing.assert_allclose(out["aux_points"], transform_points(aux, out["geometry"]))
    np.testing.assert_allclose(out["points"], transform_points(pts, out["geometry"]))


def test_posenet_chain_with_aux_and_its_refusals():
    pts, img = _spine()
    cfg = {"input_size": 64, "cutout_prob": 0.0, "aux_vertebrae": ["T11", "T12"]}
    assert posenet_kwargs(cfg, "ap")["out_channels"] == 7 and "out_channels" not in posenet_kwargs({}, "ap")
    out = posenet_transforms(cfg, "ap", 2.0, train=True)(
        {"image": img, "points": pts, "layout": "ap", "aux_points": np.array([[100.0, 60.0], [101.0, 95.0]])})
    assert out["centre_heatmap"].shape == (7, 8, 8)
    with pytest.raises(ValueError, match="mirror_prob"):
        check_schedule({"posenet": {**cfg, "mirror_prob": 0.5}})
    with pytest.raises(ValueError, match="aux_points"):  # samples without their auxiliary centres
        train_posenet([{"image": img, "points": pts, "layout": "ap"}], [], {"posenet": cfg}, "ap")


def test_a_checkpoint_grows_into_more_output_channels_and_inference_reads_the_layout_channels():
    torch.manual_seed(0)
    small = PoseNet("ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1)
    wide = PoseNet("ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1, out_channels=7)
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    load_init(wide, small.state_dict())
    grown = [k for k, v in small.state_dict().items() if v.shape != fresh[k].shape]
    assert grown  # the last layer's weight and bias
    for k, v in wide.state_dict().items():
        if k in grown:
            torch.testing.assert_close(v[: small.state_dict()[k].shape[0]], small.state_dict()[k])
            torch.testing.assert_close(v[small.state_dict()[k].shape[0]:], fresh[k][small.state_dict()[k].shape[0]:])
        else:
            torch.testing.assert_close(v, small.state_dict()[k])
    small.eval(), wide.eval()
    img = np.random.default_rng(0).random((200, 90)).astype(np.float32)
    codec = CentreHeatmapCodec("ap", input_size=64, heatmap_size=8)
    a = detect_centres_framed(small, img, codec, passes=2)
    b = detect_centres_framed(wide, img, codec, passes=2)
    np.testing.assert_allclose(a["original"], b["original"])  # the two extra maps are not read
    other = PoseNet("ap", width=8, kernel_size=5, pre_convs=1, stage_convs=1)
    with pytest.raises(ValueError, match="does not fit"):
        load_init(wide, other.state_dict())


@pytest.mark.skipif(not (AASCE / "labels_training" / "landmarks.csv").is_file(), reason="no AASCE copy")
def test_aux_centres_come_from_the_aasce_copy_in_the_sample_pixels(tmp_path):
    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json

    pairs = read_aasce(AASCE, outside="skip")[:2]
    items, samples = [], []
    for i, (image, ann) in enumerate(pairs):
        label = write_annotation_json(tmp_path / f"{i}.json", ann)
        items.append({"image": str(image), "label": str(label)})
        w, h = ann.image_size
        k = 0.5  # a sample cached at half size
        samples.append({"image": np.zeros((round(h * k), round(w * k)), np.uint8),
                        "points": (np.asarray(ann.points) + 0.5) * k - 0.5})
    dl = tmp_path / "datalist.json"
    dl.write_text(json.dumps({"training": items}))
    out = attach_aux_centres(samples, dl, "training", ["T11", "T12"])
    for s in out:
        from lumbar_monai.anatomy import AP

        c = AP.centres(s["points"])
        gap = np.median(np.diff(c[:, 1]))
        t11, t12 = s["aux_points"]
        assert t11[1] < t12[1] < c[0, 1]  # T11 above T12 above L1, in the sample's pixels
        assert 0.5 * gap < c[0, 1] - t12[1] < 1.6 * gap and abs(c[0, 0] - t12[0]) < 2 * gap
    with pytest.raises(InputError, match="not AASCE vertebrae"):
        attach_aux_centres(samples, dl, "training", ["C7"])
    outside = tmp_path / "elsewhere" / "images_training"
    outside.mkdir(parents=True)
    (outside / "x.jpg").write_bytes(b"")
    dl.write_text(json.dumps({"training": [{"image": str(outside / "x.jpg"), "label": items[0]["label"]}]}))
    with pytest.raises(InputError, match="AASCE copy"):
        attach_aux_centres(samples[:1], dl, "training", ["T12"])


def test_export_names_the_auxiliary_channels(tmp_path):
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs
    from lumbar_monai.training.framed import _save_stage, export

    pose = with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1, out_channels=7)
    _save_stage(tmp_path / "posenet.pt", pose, {"aux_vertebrae": ["T11", "T12"]})
    mnet = with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2)
    _save_stage(tmp_path / "mnet_lumbar.pt", mnet, {"crop_size": 32, "crop_blur_sigma": 0.0})
    schedule = {"framing": {"factor": 2.0, "passes": 2}, "posenet": {"input_size": 64}}
    path = export(tmp_path, schedule, "ap", tmp_path / "model.pt", {"trained_on": "test"})
    pred = LandmarkPredictor.load(path, device="cpu")
    assert pred.meta["stage1_aux_vertebrae"] == ["T11", "T12"] and pred.centre_net.out_channels == 7
    res = pred.predict(np.random.default_rng(1).random((300, 120)).astype(np.float32))
    assert res.centres.shape == (5, 2)  # the layout's centres, whatever the network's channel count


def test_export_takes_the_crop_geometry_the_mnet_was_trained_on(tmp_path):
    """The M-Net stage checkpoint records its crops (``anatomy.crop_record``); one without the record predates the AP
    crop aspect and spacing settings and exports as the square, vertical-spacing crops it was trained on."""
    from lumbar_monai.anatomy import AP, crop_record
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs
    from lumbar_monai.training.framed import _save_stage, export

    pose = with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=5, pre_convs=1, stage_convs=1)
    _save_stage(tmp_path / "posenet.pt", pose, {})
    mnet = with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2)
    schedule = {"framing": {"factor": 2.0, "passes": 2}, "posenet": {"input_size": 64}}
    layouts = []
    for extra in (crop_record(AP), {}):
        _save_stage(tmp_path / "mnet_lumbar.pt", mnet, {"crop_size": 32, "crop_blur_sigma": 0.0, **extra})
        path = export(tmp_path, schedule, "ap", tmp_path / "model.pt", {"trained_on": "test"})
        layouts.append(LandmarkPredictor.load(path, device="cpu").layout)
    assert [(lay.crop_scale, lay.crop_aspect, lay.crop_spacing) for lay in layouts] == [
        (AP.crop_scale, 1.25, "vertical"), (AP.crop_scale, 1.0, "vertical")]


@pytest.mark.parametrize("override, words", [
    ({"aux_vertebrae": ["T12"], "mirror_prob": 0.5}, "cannot be combined"),
    ({"aux_vertebrae": ["C7"]}, "not AASCE vertebrae"),
])
def test_cli_refuses_a_contradictory_schedule_with_one_line(tmp_path, capsys, override, words):
    from lumbar_monai.training.framed import main

    sched = tmp_path / "s.json"
    sched.write_text(json.dumps({"framing": {"factor": 2.0, "passes": 2},
                                 "posenet": {"input_size": 64, **override}}))
    rc = main(["posenet", "--datalist", str(tmp_path / "none.json"), "--schedule", str(sched),
               "--out", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and words in err[0] and "s.json" in err[0]


def test_bundle_centre_decoder_reads_the_layout_channels():
    from lumbar_monai.workflows.inference import CentresFromMapsd

    codec = CentreHeatmapCodec("ap", input_size=64, heatmap_size=8)
    pts, _ = _spine()
    maps = codec.encode(pts * 64 / 400)
    extra = torch.rand(2, 8, 8)
    dec = CentresFromMapsd(layout="ap", input_size=64, heatmap_size=8, repair=False)
    a = dec({"pred": maps, "geometry": np.eye(3)})
    b = dec({"pred": torch.cat([maps, extra]), "geometry": np.eye(3)})
    torch.testing.assert_close(a["points"], b["points"])
    assert a["points"].shape == (5, 2)


def test_aux_centres_follow_the_vertebra_order_of_the_datalist(tmp_path):
    """A row listing T1 last: its T12 is the file's group 11 read in the files' order, group 10 in anatomical order
    (T1 moves to the front), so the auxiliary maps always sit above the datalist's own L1."""
    from lumbar_monai.io.aasce import aasce_layout, read_aasce

    name = "sunhl-1th-10-Jan-2017-237 B AP.jpg"
    filed = {p.name: (p, a) for p, a in read_aasce(AASCE, lumbar_only=False, outside="keep", order="file")}[name]
    image, ann = filed
    centres = aasce_layout(False).centres(np.asarray(ann.points, dtype=np.float64))
    w, h = ann.image_size
    sample = {"image": np.zeros((h, w), np.uint8), "points": np.zeros((20, 2))}
    dl = tmp_path / "datalist.json"
    for order, group in (("file", 11), ("anatomical", 10), (None, 10)):
        item = {"image": str(image), "label": "x.json", **({"aasce_order": order} if order else {})}
        dl.write_text(json.dumps({"training": [item]}))
        (out,) = attach_aux_centres([sample], dl, "training", ["T12"])
        np.testing.assert_allclose(out["aux_points"][0], centres[group], atol=1e-9)
    dl.write_text(json.dumps({"training": [{"image": str(image), "label": "x.json", "aasce_order": "sorted"}]}))
    with pytest.raises(InputError, match="order must be"):
        attach_aux_centres([sample], dl, "training", ["T12"])


def test_extra_windows_add_thoracic_runs_in_the_lumbar_corner_order(tmp_path):
    """``mnet_lumbar.extra_windows``: each name adds a copy of the sample whose five vertebrae are that run of the
    AASCE spine (T8: T8-T12) in the sample's pixels, corners in the L1-L5 order; the image is shared."""
    from lumbar_monai.anatomy import AP
    from lumbar_monai.io.aasce import aasce_layout, read_aasce
    from lumbar_monai.io.annotations import write_annotation_json
    from lumbar_monai.training.framed import attach_extra_windows, window_shifts

    pairs = read_aasce(AASCE, outside="skip")[:2]
    spines = {p.name: a for p, a in read_aasce(AASCE, lumbar_only=False, outside="keep")}
    items, samples = [], []
    k = 0.5  # samples cached at half size
    for i, (image, ann) in enumerate(pairs):
        items.append({"image": str(image), "label": str(write_annotation_json(tmp_path / f"{i}.json", ann))})
        w, h = ann.image_size
        samples.append({"image": np.zeros((round(h * k), round(w * k)), np.uint8),
                        "points": (np.asarray(ann.points) + 0.5) * k - 0.5})
    dl = tmp_path / "datalist.json"
    dl.write_text(json.dumps({"training": items}))
    out = attach_extra_windows(samples, dl, "training", ["T3", "T8"])
    assert len(out) == 6 and all(a is b for a, b in zip(out[:2], samples, strict=True))  # the originals first, then T3-T7, T8-T12
    spine = aasce_layout(lumbar_only=False)
    for i, (image, _) in enumerate(pairs):
        own, t3, t8 = out[i]["points"], out[2 + 2 * i], out[3 + 2 * i]
        assert t8["image"] is samples[i]["image"]
        (w, h), (nh, nw) = spines[image.name].image_size, samples[i]["image"].shape
        full = (np.asarray(spines[image.name].points, dtype=np.float64) + 0.5) * np.array([nw / w, nh / h]) - 0.5
        # T12 in L5's place is the spine layout's T12, corner by corner (the corner names match)
        for corner in AP.vertebrae[4].corners:
            np.testing.assert_allclose(t8["points"][AP.index("L5", corner)], full[spine.index("T12", corner)])
            np.testing.assert_allclose(t3["points"][AP.index("L1", corner)], full[spine.index("T3", corner)])
        c, c8 = AP.centres(own), AP.centres(t8["points"])
        gap = np.median(np.diff(c[:, 1]))
        assert (np.diff(c8[:, 1]) > 0).all() and 0.5 * gap < c[0, 1] - c8[-1, 1] < 1.6 * gap  # T12 just above L1
        # the same sides: each corner of T12 lies on the side of its L1 namesake
        for corner in ("superior_right", "superior_left"):
            left_of_centre = t8["points"][AP.index("L5", corner), 0] < c8[-1, 0]
            assert left_of_centre == (own[AP.index("L1", corner), 0] < c[0, 0])
    assert window_shifts(["T1", "T7", "T8"]) == [12, 6, 5]
    for bad in (["T9"], ["L1"], ["C7"], "T8", [8]):
        with pytest.raises(ValueError, match="extra_windows"):
            window_shifts(bad)
    with pytest.raises(InputError, match="does not start a run"):
        attach_extra_windows(samples, dl, "training", ["T10"])
    for bad in (["L2"], "T8"):
        with pytest.raises(ValueError, match="extra_windows"):
            check_schedule({"mnet_lumbar": {"extra_windows": bad}})
    none = attach_extra_windows(samples, dl, "training", [])
    assert len(none) == 2 and all(a is b for a, b in zip(none, samples, strict=True))


def test_mnet_cli_trains_on_the_extra_windows(tmp_path, caplog):
    """``framed mnet`` with ``extra_windows``: the training set holds each image's runs beside its L1-L5 (the log
    counts them), validation stays L1-L5, and the stage checkpoint is written."""
    import logging

    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json
    from lumbar_monai.training.framed import main

    pairs = read_aasce(AASCE, outside="skip")[:3]
    items = [{"image": str(image), "label": str(write_annotation_json(tmp_path / f"{i}.json", ann))}
             for i, (image, ann) in enumerate(pairs)]
    dl = tmp_path / "datalist.json"
    dl.write_text(json.dumps({"training": items[:2], "validation": items[2:]}))
    sched = tmp_path / "s.json"
    sched.write_text(json.dumps({"seed": 0, "framing": {"factor": 2.0, "passes": 2},
                                 "mnet_lumbar": {"crop_size": 32, "channels": [4, 8], "lr": 1e-3, "batch_size": 4,
                                                 "max_epochs": 1, "patience": 5, "extra_windows": ["T8"]}}))
    with caplog.at_level(logging.INFO, logger="lumbar_monai.training.framed"):
        rc = main(["mnet", "--datalist", str(dl), "--schedule", str(sched), "--out", str(tmp_path / "run"),
                   "--device", "cpu"])
    assert rc == 0 and (tmp_path / "run" / "mnet_lumbar.pt").is_file()
    assert "mnet: 4 training / 1 validation samples" in caplog.text
