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
from lumbar_monai.transforms.resample import fit_to_square_shape

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
    """Original px -> heatmap px through the stage-1 geometry (resize the longest side, pad at input size)."""
    h2, w2, top, left = fit_to_square_shape(h, w, input_size)
    xi = (xy[..., 0] + 0.5) * w2 / w - 0.5 + left
    yi = (xy[..., 1] + 0.5) * h2 / h - 0.5 + top
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
    assert (ckpt["crop_aspect"], ckpt["crop_spacing"]) == (AP.crop_aspect, AP.crop_spacing) == (1.25, "vertical")
    new = LandmarkPredictor.from_checkpoint(ckpt, device="cpu").layout
    assert (new.crop_aspect, new.crop_spacing) == (1.25, "vertical")
    # a checkpoint from before the aspect and spacing settings: its M-Net learned square crops, vertical spacing
    before_aspect = {k: v for k, v in ckpt.items() if k not in ("crop_aspect", "crop_spacing")}
    lay = LandmarkPredictor.from_checkpoint(before_aspect, device="cpu").layout
    assert (lay.crop_scale, lay.crop_aspect, lay.crop_spacing) == (AP.crop_scale, 1.0, "vertical")
    del ckpt["crop_scale"]
    old = LandmarkPredictor.from_checkpoint(ckpt, device="cpu")
    assert old.layout.crop_scale == 1.0 and old.layout.name == "ap"
    assert torch.equal(next(old.lumbar_net.parameters()), next(pred.lumbar_net.parameters()))


class BandCentreNet(nn.Module):
    """Pose-Net stand-in that reads the image: channel ``v`` is the input average-pooled to the heatmap grid, kept
    only in vertebra ``v``'s horizontal band (so each channel peaks on the bright blob in its band)."""

    def __init__(self, bands: list[tuple[float, float]], size: int, stride: int):
        super().__init__()
        y = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
        self.register_buffer("mask", torch.stack([((y >= a) & (y < b)).float() for a, b in bands]))
        self.stride = stride

    def forward(self, x):
        m = nn.functional.avg_pool2d(x, self.stride)
        maps = m.expand(-1, self.mask.shape[0], -1, -1) * self.mask
        return maps, maps[:, :1]


@pytest.mark.parametrize("shape", [(1200, 760), (700, 1100)])
def test_network_resolution_preprocessing_keeps_the_centres(shape):
    """Pre-processing at network resolution (resize first, pad at 512: ``resample="fit"``, the default) against
    the former full-resolution path (pad, anti-alias filter and resize: ``"pad_resize"``), CLAHE and blur on, the
    paper's 512 -> 64 grid: the stage-1 centres found by an image-reading Pose-Net stand-in on blobs move by at
    most 0.02 heatmap px (0.4 original px on a 1200 px image; measured: 0.004-0.006), and both paths find the
    blobs to 0.1 heatmap px."""
    h, w = shape
    rng = np.random.default_rng(5)
    cy = np.linspace(0.2, 0.8, 6) * h
    cx = w / 2 + 0.08 * w * np.sin(np.arange(6))
    truth = np.stack([cx, cy], 1)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 300 + 30 * rng.standard_normal((h, w))
    sigma = 0.02 * max(h, w)
    for x0, y0 in truth:
        img += 900 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    img = img.astype(np.float32)
    hm_per_px = 64 / max(h, w)
    hy = _to_heatmap(truth, h, w, 512, 64)[:, 1]
    mids = (hy[:-1] + hy[1:]) / 2
    bands = list(zip([-1.0, *mids], [*mids, 65.0], strict=True))
    found = {}
    for resample in ("pad_resize", "fit"):
        p = _predictor(stage1={"input_size": 512, "heatmap_size": 64, "repair": False,
                               "preprocessing": {"resample": resample}})
        p.centre_net = BandCentreNet(bands, 64, 8).eval()
        found[resample] = p.detect_centres(img)[0]
    shift = np.linalg.norm(found["fit"] - found["pad_resize"], axis=1) * hm_per_px
    assert shift.max() <= 0.02, shift
    for resample, c in found.items():
        assert (np.linalg.norm(c - truth, axis=1) * hm_per_px).max() <= 0.1, resample


def test_fit_to_square_geometry_and_device():
    """A dot lands where the recorded matrix says, in both orientations; arrays stay arrays, tensors tensors."""
    from lumbar_monai.transforms.geometry import to_original
    from lumbar_monai.transforms.resample import FitToSquared

    for h, w, dot in ((300, 180, (150.0, 40.0)), (120, 333, (20.0, 210.0))):
        img = np.zeros((1, h, w), np.float32)
        x0, y0 = int(dot[1]), int(dot[0])
        img[0, y0 - 2 : y0 + 3, x0 - 2 : x0 + 3] = 1.0
        out = FitToSquared("image", point_keys="points", size=64)({"image": img, "points": np.array([[x0, y0]], float)})
        assert isinstance(out["image"], np.ndarray) and out["image"].shape == (1, 64, 64)
        yy, xx = np.mgrid[0:64, 0:64]
        m = out["image"][0]
        centroid = np.array([(xx * m).sum(), (yy * m).sum()]) / m.sum()
        np.testing.assert_allclose(out["points"][0], centroid, atol=0.05)
        np.testing.assert_allclose(to_original(out["points"], out), [[x0, y0]], atol=1e-9)
    t = FitToSquared("image", point_keys=(), size=32)({"image": torch.rand(1, 50, 70)})["image"]
    assert isinstance(t, torch.Tensor) and t.shape == (1, 32, 32)
    assert torch.all(t[:, :4] == 0) and torch.all(t[:, -5:] == 0)  # 70 -> 32 wide, 50 -> 23 high, 4 above, 5 below
