from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lumbar_monai.anatomy import AP, LATERAL
from lumbar_monai.codecs.corner import CornerCodec
from lumbar_monai.codecs.gaussian import render_gaussians
from lumbar_monai.crops import crop_affines, crop_boxes_eq5, crop_to_image
from lumbar_monai.errors import InputError
from lumbar_monai.networks.mnet import MNet
from lumbar_monai.predictor import LandmarkPredictor, order_violations, with_init_kwargs

pytestmark = pytest.mark.compat

CROP = 32
LUMBAR_TEMPLATE = torch.tensor([[9.25, 8.5], [22.0, 9.75], [9.5, 23.25], [22.75, 22.5]], dtype=torch.float64)
SACRUM_TEMPLATE = torch.tensor([[8.5, 17.25], [23.5, 12.0]], dtype=torch.float64)


class TemplateNet(nn.Module):
    """Answers the same corner maps (plus a PAF channel) for every crop: a known answer for the back-mapping."""

    def __init__(self, codec: CornerCodec, template: torch.Tensor, peak: float = 1.0):
        super().__init__()
        self.register_buffer("maps", torch.cat([codec.encode(template, sigma=2.0) * peak,
                                                torch.zeros(1, CROP, CROP, dtype=torch.float64)]).float())

    def forward(self, x):
        return self.maps[None].expand(x.shape[0], -1, -1, -1)


def _centres():
    return np.array([[100.0, 60.0], [104.0, 100.0], [106.5, 142.0], [105.0, 185.0], [101.0, 226.0], [96.0, 262.0]])


def _predictor(layout=LATERAL, peak=1.0, **kw):
    lumbar = TemplateNet(CornerCodec(layout, "lumbar", size=CROP), LUMBAR_TEMPLATE, peak)
    sacrum = TemplateNet(CornerCodec(layout, "sacrum", size=CROP), SACRUM_TEMPLATE, peak) if layout.has_sacrum \
        else None
    return LandmarkPredictor(layout, lumbar, sacrum, crop_size=CROP, device="cpu", **kw)


def test_stage2_with_given_centres_maps_corners_back_exactly():
    img = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    c = _centres()
    res = _predictor()(img, centres=c, pixel_spacing=(0.2, 0.1), facing="left")
    aff = crop_affines(c, crop_boxes_eq5(c, LATERAL), CROP)
    expected = np.concatenate([
        crop_to_image(LUMBAR_TEMPLATE.numpy()[None].repeat(5, 0), aff[:5]).reshape(-1, 2),
        crop_to_image(SACRUM_TEMPLATE.numpy()[None], aff[5:]).reshape(-1, 2),
    ])
    np.testing.assert_allclose(res.points, expected, atol=1e-3)
    assert res.points.shape == (22, 2) and res.confidence.shape == (22,)
    assert np.all(res.confidence > 0.95) and res.qc_flags == []  # on-grid peak heights of off-grid Gaussians
    assert res.image_size == (200, 300) and res.spacing_source == "argument"
    np.testing.assert_allclose(res.points_mm(), expected * [0.2, 0.1], atol=1e-3)
    assert set(res.meta["timings_ms"]) >= {"read", "stage2_crops", "stage2_network", "stage2_decode"}


def test_ap_layout_has_no_sacrum_net():
    c = _centres()[:5]
    res = _predictor(AP)(np.zeros((300, 200), np.float32), centres=c)
    assert res.points.shape == (20, 2)
    with pytest.raises(ValueError):
        LandmarkPredictor(LATERAL, MNet(channels=(4,)), None)


def test_low_confidence_and_order_flags():
    c = _centres()
    res = _predictor(peak=0.2)(np.zeros((300, 200), np.float32), centres=c)
    assert res.qc_flags == ["low_confidence"]
    swapped = c.copy()
    swapped[[1, 2]] = swapped[[2, 1]]
    res = _predictor()(np.zeros((300, 200), np.float32), centres=swapped)
    assert "order_violation" in res.qc_flags and res.meta["order_violations"]


def test_order_violations_rules():
    pts = np.concatenate([np.array([[0, 0], [40, 0], [0, 30], [40, 30]]) + [0, 45 * i] for i in range(5)]
                         + [np.array([[0, 230], [40, 225]])]).astype(float)
    centres = LATERAL.centres(pts)
    assert order_violations(pts, centres, LATERAL) == []
    bad = pts.copy()
    bad[2, 1] = -5.0  # L1 inferior anterior above superior anterior
    assert any("inferior corner" in r for r in order_violations(bad, centres, LATERAL))
    bad = pts.copy()
    bad[4:6, 1] = 20.0  # L2 superior end plate above L1 inferior end plate
    assert any("end plates of L1 and L2" in r for r in order_violations(bad, centres, LATERAL))


class FakeCentreNet(nn.Module):
    """Pose-Net stand-in: draws the given heatmap-pixel centres (ignores the image)."""

    def __init__(self, centres_hm: torch.Tensor, size: int, extra: torch.Tensor | None = None):
        super().__init__()
        maps = render_gaussians(centres_hm, 1.0, size, size)
        if extra is not None:  # a weaker second response, e.g. the skipped vertebra in channel 3
            maps[3] = torch.maximum(maps[3], 0.6 * render_gaussians(extra[None], 1.0, size, size)[0])
        self.register_buffer("maps", maps.float())

    def forward(self, x):
        return self.maps[None], self.maps[None, :1]


def _to_heatmap(xy, h, w, input_size=128, heatmap=16):
    side = max(h, w)
    x = xy[..., 0] + (side - w) // 2
    y = xy[..., 1] + (side - h) // 2
    s = input_size / side
    xi, yi = (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5
    st = input_size / heatmap
    return np.stack([(xi + 0.5) / st - 0.5, (yi + 0.5) / st - 0.5], -1)


def test_stage1_path_and_algorithm1_flag():
    h, w = 300, 200
    c = _centres()
    hm = torch.as_tensor(_to_heatmap(c, h, w))
    stage1 = {"input_size": 128, "heatmap_size": 16, "preprocessing": {"clahe": False}}
    p = _predictor(stage1=stage1)
    p.centre_net = FakeCentreNet(hm, 16).eval()
    res = p(np.random.default_rng(1).random((h, w)).astype(np.float32))
    np.testing.assert_allclose(res.centres, c, atol=1e-4)
    assert res.meta["centres_from"] == "stage1" and "centre_repaired" not in res.qc_flags
    assert set(res.meta["timings_ms"]) >= {"stage1_preprocess", "stage1_network", "stage1_postprocess"}
    # T12 in channel 1, L4 skipped (its response only as a weaker second peak): Algorithm 1 repairs it
    # (paper grid sizes: 512 input, 64 map; the repaired centre is read on the summed maps, so only roughly)
    p = _predictor(stage1={"input_size": 512, "heatmap_size": 64, "preprocessing": {"clahe": False}})
    t12 = c[0] - (c[1] - c[0])
    shifted = np.stack([t12, c[0], c[1], c[2], c[4], c[5]])
    p.centre_net = FakeCentreNet(torch.as_tensor(_to_heatmap(shifted, h, w, 512, 64)), 64,
                                 extra=torch.as_tensor(_to_heatmap(c[3], h, w, 512, 64))).eval()
    res = p(np.zeros((h, w), np.float32))
    assert "centre_repaired" in res.qc_flags
    np.testing.assert_allclose(res.centres, c, atol=3.0)


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    kw = dict(channels=(4, 8), coordconv=2)
    lumbar = MNet.for_layout(LATERAL, "lumbar", **kw)
    sacrum = MNet.for_layout(LATERAL, "sacrum", **kw)
    from lumbar_monai.networks.posenet import PoseNet

    pose = with_init_kwargs(PoseNet, layout=LATERAL, width=4, kernel_size=3, pre_convs=1, stage_convs=1)
    p = LandmarkPredictor(LATERAL, lumbar, sacrum, pose, crop_size=CROP, device="cpu",
                          stage1={"input_size": 64, "preprocessing": {"clahe": False}}, meta={"model": "test"})
    path = p.save(tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "lumbar-monai-landmarks" and raw["lumbar"]["kwargs"]["out_channels"] == 5
    assert raw["stage1"]["kwargs"]["layout"] == "lateral" and raw["stage1"]["heatmap_size"] == 8
    q = LandmarkPredictor.load(path, device="cpu")
    img = np.random.default_rng(2).random((100, 80)).astype(np.float32)
    c = _centres() * 0.3
    a, b = p(img, centres=c), q(img, centres=c)
    np.testing.assert_array_equal(a.points, b.points)
    r = q(img)  # full two-stage run of the untrained nets: it runs and answers in the original frame
    assert r.points.shape == (22, 2) and r.centres.shape == (6, 2) and np.isfinite(r.points).all()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        LandmarkPredictor.load(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt"):
        LandmarkPredictor.load(tmp_path / "other.pt")


def test_inputs_path_and_pydicom_dataset(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    img = (np.random.default_rng(3).random((300, 200)) * 4000).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [0.15, 0.125]  # row spacing (y), column spacing (x)
    ds.PixelData = img.tobytes()
    p = _predictor()
    c = _centres()
    from_ds = p(ds, centres=c)
    assert from_ds.pixel_spacing == pytest.approx((0.125, 0.15)) and from_ds.spacing_source == "PixelSpacing"
    from_arr = p(img, centres=c)
    np.testing.assert_allclose(from_ds.points, from_arr.points, atol=1e-6)
    path = tmp_path / "x.dcm"
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
    from_path = p(str(path), centres=c)
    np.testing.assert_allclose(from_path.points, from_arr.points, atol=1e-6)
    assert from_path.pixel_spacing == pytest.approx((0.125, 0.15))
    with pytest.raises(InputError):
        p(str(tmp_path / "missing.dcm"), centres=c)


def test_checkpoint_keeps_the_crop_scale_its_mnets_were_trained_with():
    """An AP checkpoint written before the AP crop scale existed (no key) keeps Eq. 5 as is (scale 1.0)."""
    import torch

    from lumbar_monai.anatomy import AP
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.predictor import LandmarkPredictor

    lumbar = MNet(out_channels=5, channels=(4, 8))
    pred = LandmarkPredictor("ap", lumbar, crop_size=32, device="cpu")
    ckpt = pred.checkpoint()
    assert ckpt["crop_scale"] == AP.crop_scale
    assert LandmarkPredictor.from_checkpoint(ckpt, device="cpu").layout.crop_scale == AP.crop_scale
    del ckpt["crop_scale"]
    old = LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    assert old.layout.crop_scale == 1.0 and old.layout.name == "ap"
    assert torch.equal(next(old.lumbar_net.parameters()), next(pred.lumbar_net.parameters()))
