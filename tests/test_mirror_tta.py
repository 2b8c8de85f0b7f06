"""Left-right mirrors of AP images: the side swap of point rows and map channels, mirror augmentation in training,
and the predictor's mirror test-time augmentation of stage 2 (``LandmarkPredictor(tta="mirror")``,
issue 15)."""

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _lm_helpers as H  # noqa: E402

from lumbar_monai.anatomy import get_layout, side_swap_order  # noqa: E402
from lumbar_monai.commands.predict import add_parser  # noqa: E402
from lumbar_monai.networks.mirror import MirrorEnsemble  # noqa: E402
from lumbar_monai.predictor import TTA_MODES, LandmarkPredictor, check_tta  # noqa: E402


def test_side_swap_pairs_left_with_right_and_keeps_the_rest():
    assert side_swap_order(["a_right", "a_left", "b", "c_left", "c_right"]) == [1, 0, 2, 4, 3]
    ap = get_layout("ap")
    order = ap.mirror_order
    names = ap.point_names
    assert [names[i] for i in order][:2] == ["L1_superior_left", "L1_superior_right"]
    assert sorted(order) == list(range(ap.num_points)) and [order[i] for i in order] == list(range(ap.num_points))
    assert get_layout("lateral").mirror_order is None  # a mirrored lateral image keeps its anatomical names
    with pytest.raises(ValueError, match="mirror partner"):
        side_swap_order(["x_left"])


class _Shift(torch.nn.Module):
    """A map 'network' that is not mirror-symmetric: each channel is the input shifted right by its index."""

    def forward(self, x):
        return torch.cat([torch.roll(x, shifts=k, dims=-1) for k in range(3)], 1)


def test_mirror_ensemble_averages_the_flipped_back_mirror_with_channels_swapped():
    x = torch.rand(2, 1, 6, 8)
    net = _Shift()
    plain = net(x)
    mirror = net(x.flip(-1)).flip(-1)
    out = MirrorEnsemble(net, [1, 0])(x)  # two sided channels kept, the third dropped
    assert out.shape == (2, 2, 6, 8)
    torch.testing.assert_close(out[:, 0], (plain[:, 0] + mirror[:, 1]) / 2)
    torch.testing.assert_close(out[:, 1], (plain[:, 1] + mirror[:, 0]) / 2)
    torch.testing.assert_close(MirrorEnsemble(net)(x), (plain + mirror) / 2)
    ident = torch.nn.Identity()
    torch.testing.assert_close(MirrorEnsemble(ident)(x), (x + x) / 2)  # a symmetric answer is unchanged


def _tiny_ap(path: Path) -> Path:
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import with_init_kwargs

    torch.manual_seed(0)
    return LandmarkPredictor(
        layout="ap", centre_net=with_init_kwargs(PoseNet, layout="ap", width=4, kernel_size=7),
        lumbar_net=with_init_kwargs(MNet, out_channels=5, channels=(4, 8), coordconv=2),
        crop_size=32, stage1={"input_size": 64, "heatmap_size": 8}, device="cpu").save(path)


def test_predictor_mirror_tta_round_trips_and_is_mirror_equivariant(tmp_path):
    path = _tiny_ap(tmp_path / "ap.pt")
    plain = LandmarkPredictor.load(path, device="cpu")
    assert plain.tta == "none"
    ckpt = plain.checkpoint()
    ckpt["tta"] = "mirror"
    tta = LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    assert LandmarkPredictor.load(tta.save(tmp_path / "tta.pt"), device="cpu").tta == "mirror"
    pts = H.spine_points("ap", width=44.0, height=26.0, disc=9.0, origin=(100.0, 60.0))
    img = H.render_spine_image(pts, layout="ap", size_wh=(220, 300))
    a, b = plain.predict(img), tta.predict(img)
    assert np.isfinite(b.points).all() and not np.allclose(a.points, b.points)
    np.testing.assert_allclose(a.centres, b.centres)  # Pose-Net is not mirrored (asymmetric anatomy names levels)
    # mirror-equivariant: the mirrored image (with mirrored centres) gives the mirrored points, sides swapped;
    # without the augmentation an untrained network is not
    c = get_layout("ap").centres(pts)
    mc = c * [-1, 1] + [img.shape[1] - 1, 0]
    lay = get_layout("ap")
    for pred, equal in ((tta, True), (plain, False)):
        p = pred.predict(img, centres=c).points
        m = pred.predict(img[:, ::-1].copy(), centres=mc).points
        back = (m * [-1, 1] + [img.shape[1] - 1, 0])[list(lay.mirror_order)]
        assert np.allclose(back, p, atol=1e-3) == equal


def test_mirror_tta_is_refused_for_lateral_models_and_unknown_modes(tmp_path):
    lateral = get_layout("lateral")
    with pytest.raises(ValueError, match="left/right"):
        check_tta("mirror", lateral)
    with pytest.raises(ValueError, match="tta must be"):
        check_tta("flip", get_layout("ap"))
    lateral_model = LandmarkPredictor.load(H.tiny_untrained_model(tmp_path / "lat.pt"), device="cpu")
    ckpt = lateral_model.checkpoint()
    ckpt["tta"] = "mirror"
    with pytest.raises(ValueError, match="left/right"):
        LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(ValueError, match="left/right"):  # setting it later is checked too
        lateral_model.tta = "mirror"
    assert lateral_model.tta == "none"


def test_command_line_tta(tmp_path, capsys):
    from PIL import Image

    from lumbar_monai.cli import main

    pts = H.spine_points("ap", width=44.0, height=26.0, disc=9.0, origin=(100.0, 60.0))
    img = H.render_spine_image(pts, layout="ap", size_wh=(220, 300))
    Image.fromarray((img / 16).astype("uint8")).save(tmp_path / "ap.png")
    ap = _tiny_ap(tmp_path / "ap.pt")
    assert main(["predict", str(tmp_path / "ap.png"), "--out", str(tmp_path / "o1"), "--model", str(ap),
                 "--no-progress", "--tta", "mirror"]) == 0
    lateral = H.tiny_untrained_model(tmp_path / "lat.pt")
    capsys.readouterr()
    tta_action = next(a for a in add_parser(argparse.ArgumentParser().add_subparsers())._actions if a.dest == "tta")
    assert tuple(tta_action.choices) == TTA_MODES  # the parser's literal copy stays in step
    assert main(["predict", str(tmp_path / "ap.png"), "--out", str(tmp_path / "o2"), "--model", str(lateral),
                 "--no-progress", "--tta", "mirror"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "left/right" in err[0] and "Traceback" not in err[0]


def test_mirror_point_order_must_swap_pairs():
    from lumbar_monai.transforms.augment import RandMirrord

    with pytest.raises(ValueError, match="in pairs"):
        RandMirrord("image", point_order=[1, 2, 0])
    RandMirrord("image", point_order=get_layout("ap").mirror_order)


def test_ap_mirror_augmentation_swaps_sides_in_both_stages():
    from lumbar_monai.training.framed import posenet_transforms
    from lumbar_monai.training.stage2 import Stage2Config, stage2_transforms

    pts = H.spine_points("ap", width=44.0, height=26.0, disc=9.0, origin=(20.0, 60.0))  # left of the middle
    img = H.render_spine_image(pts, layout="ap", size_wh=(220, 300))
    u8 = (img / img.max() * 255).astype(np.uint8)
    s2 = Stage2Config(layout="ap", crop_size=32, channels=(4, 8), translate=0.0, rotate=0.0, scale=(1.0, 1.0),
                      intensity_prob=0.0, mirror_prob=1.0)
    tf = stage2_transforms(s2, train=True)
    crops = tf({"image": u8, "points": pts})
    crops = crops if isinstance(crops, list) else [crops]
    for c in crops:  # the patient's right corners stay on the image's left after the mirror
        p = np.asarray(c["points"])
        assert (p[0::2, 0] < p[1::2, 0]).all()
    cfg = {"input_size": 64, "mirror_prob": 1.0, "cutout_prob": 0.0, "whole_prob": 1.0}
    out = posenet_transforms(cfg, "ap", 2.0, train=True)({"image": u8, "points": pts, "layout": "ap"})
    moved = np.asarray(out["points"])
    assert (moved[0::2, 0] < moved[1::2, 0]).all()
    assert moved[:, 0].mean() > 32  # the mirror moved the spine right of the middle of the whole-image window
