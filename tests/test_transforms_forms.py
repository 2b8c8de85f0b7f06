"""The transforms in MONAI's full form: array variants that match the dictionary ones, ``D``/``Dict`` aliases,
geometry undone by ``Compose.inverse`` (image back on its grid, points back exactly), metadata kept, and the
predictor's landmarks unchanged by the move (fixed synthetic image, numbers recorded before it, 1e-3 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped
from torch import nn

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.baselines import one_stage
from lumbar_monai.codecs import centre, corner, paf
from lumbar_monai.codecs.corner import CornerCodec
from lumbar_monai.codecs.paf import PAFCodec
from lumbar_monai.predictor import LandmarkPredictor
from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph
from lumbar_monai.transforms import augment, cutout, geometry, intensity, resample
from lumbar_monai.transforms.geometry import get_geometry

pytestmark = pytest.mark.compat

ALIASES = [
    (geometry, "PadToSquared"), (geometry, "ResizeSquared"), (resample, "FitToSquared"),
    (augment, "RandAffinePointsd"), (augment, "RandMirrord"), (intensity, "CLAHEd"), (intensity, "RandBrightnessContrastd"),
    (cutout, "RandSpineCutoutd"), (cutout, "RandConventionalCutoutd"), (centre, "CentreHeatmapd"),
    (corner, "CornerHeatmapd"), (paf, "PAFMapd"), (one_stage, "LandmarkHeatmapd"),
]


@pytest.mark.parametrize("module,name", ALIASES)
def test_dictionary_transforms_have_monai_aliases_and_array_forms(module, name):
    d = getattr(module, name)
    base = name[:-1]
    assert getattr(module, base + "D") is d and getattr(module, base + "Dict") is d
    assert {name, base + "D", base + "Dict"} <= set(module.__all__)
    if name not in ("RandAffinePointsd", "RandMirrord"):  # image-only array forms: MONAI's RandAffine, Flip
        assert getattr(module, base) is not d and base in module.__all__


def _sample(seed=1, side=160):
    r = generate_radiograph(seed, SyntheticConfig(max_side=side))
    return r.image.astype(np.float32)[None], np.asarray(r.points, np.float64)


@pytest.mark.parametrize("kind", ["rsc", "conventional"])
def test_array_cutouts_match_the_dictionary_forms(kind):
    img, pts = _sample()
    arr_cls = cutout.RandSpineCutout if kind == "rsc" else cutout.RandConventionalCutout
    for seed in range(4):
        d = cutout.make_cutout(kind, prob=1.0, box_key="box").set_random_state(seed)
        a = arr_cls(prob=1.0, layout="lateral").set_random_state(seed)
        out_d = d({"image": img, "points": pts, "layout": "lateral"})
        out_a = a(img, pts)
        np.testing.assert_array_equal(out_a, out_d["image"])
        np.testing.assert_array_equal(a.last_box, out_d["box"])
        assert (a(np.ones_like(img), pts, randomize=False) == 0).sum() > 20  # a box is cut
    assert arr_cls(prob=0.0, layout="lateral")(img, pts) is img


def test_array_brightness_contrast_matches_the_dictionary_form():
    img = np.linspace(0.1, 0.9, 64, dtype=np.float32).reshape(1, 8, 8)
    a = intensity.RandBrightnessContrast(prob=1.0, brightness=0.2, contrast=0.4).set_random_state(7)
    d = intensity.RandBrightnessContrastd("image", prob=1.0, brightness=0.2, contrast=0.4).set_random_state(7)
    out = np.asarray(a(img))
    np.testing.assert_allclose(out, np.asarray(d({"image": img})["image"]), atol=1e-7)
    assert not np.allclose(out, img) and out.min() >= 0 and out.max() <= 1


def test_array_targets_match_the_codecs():
    _, pts = _sample()
    np.testing.assert_array_equal(centre.CentreHeatmap(input_size=64, heatmap_size=16)(pts),
                                  centre.CentreHeatmapd(input_size=64, heatmap_size=16)({"points": pts})["centre_heatmap"])
    corners = torch.tensor([[3.0, 4.0], [20.0, 5.0], [4.0, 22.0], [21.0, 23.0]], dtype=torch.float64)
    maps = corner.CornerHeatmap(LATERAL, "lumbar", size=32)(corners)
    assert maps.dtype == torch.float32 and maps.shape == (4, 32, 32)
    np.testing.assert_allclose(maps, CornerCodec(LATERAL, "lumbar", size=32).encode(corners).float())
    np.testing.assert_array_equal(corner.CornerHeatmapd("c", LATERAL, size=32)({"c": corners})["corner_heatmap"], maps)
    field = paf.PAFMap(LATERAL, "lumbar", size=32)(corners)
    assert field.shape == (1, 32, 32) and float(field.sum()) > 0
    np.testing.assert_array_equal(field, PAFCodec(LATERAL, "lumbar", size=32).encode(corners).float())
    np.testing.assert_array_equal(paf.PAFMapd("c", LATERAL, size=32)({"c": corners})["paf"], field)
    lm = one_stage.LandmarkHeatmap(32, sigma=2.0)(corners.numpy())
    np.testing.assert_array_equal(lm, one_stage.LandmarkHeatmapd(32, sigma=2.0)({"points": corners.numpy()})["label"])


def _blob(h, w, x, y, s=3.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)).astype(np.float32)[None]


def _centroid(img):
    a = np.asarray(img, np.float64)[0]
    a = np.where(a > 0.2 * a.max(), a, 0.0)
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return np.array([(a * xx).sum() / a.sum(), (a * yy).sum() / a.sum()])


CHAINS = {
    "pad_resize": lambda: [geometry.PadToSquared("image"), geometry.ResizeSquared("image", size=48)],
    "fit": lambda: [resample.FitToSquared("image", size=48)],
    "fit_affine": lambda: [resample.FitToSquared("image", size=48), augment.RandAffinePointsd("image", prob=1.0)],
    "fit_mirror_affine": lambda: [resample.FitToSquared("image", size=48), augment.RandMirrord("image", prob=1.0),
                                  augment.RandAffinePointsd("image", prob=1.0)],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_compose_inverse_undoes_the_geometry_on_image_and_points(name):
    h, w = 90, 60
    img = _blob(h, w, 25.0, 40.0)
    pts = np.array([[25.0, 40.0], [3.25, 80.5], [np.nan, np.nan]])
    chain = Compose([EnsureTyped("image", track_meta=True), *CHAINS[name]()]).set_random_state(3)
    out = chain({"image": img, "points": pts, "facing": "left"})
    assert out["facing"] == ("right" if "mirror" in name else "left")
    x = out["image"]
    assert isinstance(x, MetaTensor) and tuple(x.shape) == (1, 48, 48)
    assert len(x.applied_operations) == len(chain.transforms) - 1
    assert not np.allclose(np.asarray(x.affine), np.eye(4))  # the image's affine follows the steps
    np.testing.assert_allclose(_centroid(x), out["points"][0], atol=0.6)  # points moved with the image
    back = chain.inverse(out)
    y = back["image"]
    assert isinstance(y, MetaTensor) and tuple(y.shape) == (1, h, w) and y.applied_operations == []
    np.testing.assert_allclose(np.asarray(y.affine), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(back["points"], pts, atol=1e-9)  # exact, NaN rows stay NaN
    np.testing.assert_allclose(get_geometry(back), np.eye(3), atol=1e-12)
    assert back["facing"] == "left"
    np.testing.assert_allclose(_centroid(y), [25.0, 40.0], atol=0.6)  # the image is back on its grid


def test_inverse_of_a_skipped_random_affine_and_of_plain_arrays():
    img = _blob(40, 40, 10.0, 12.0)
    t = augment.RandAffinePointsd("image", prob=0.0)
    out = t({"image": MetaTensor(img), "points": np.array([[10.0, 12.0]])})
    back = t.inverse(out)
    np.testing.assert_array_equal(np.asarray(back["image"]), img)
    np.testing.assert_array_equal(back["points"], [[10.0, 12.0]])
    pad = geometry.PadToSquared("image", point_keys=())
    plain = pad({"image": img[:, :, :30]})
    assert isinstance(plain["image"], np.ndarray) and plain["image"].shape == (1, 40, 40)  # as before: no record
    with pytest.raises(TypeError, match="MetaTensor"):
        pad.inverse(plain)


def test_stage1_preprocessing_keeps_the_metadata_and_inverts():
    img, pts = _sample(side=120)
    meta_img = MetaTensor(img, meta={"spacing_source": "test", "filename_or_obj": "case"})
    chain = Compose(augment.stage1_preprocessing(size=64))
    out = chain({"image": meta_img, "points": pts})
    x = out["image"]
    assert isinstance(x, MetaTensor) and x.meta["spacing_source"] == "test" and tuple(x.shape) == (1, 64, 64)
    assert [op["class"] for op in x.applied_operations] == ["FitToSquare"]
    back = chain.inverse(out)
    assert tuple(back["image"].shape) == img.shape
    np.testing.assert_allclose(back["points"], pts, atol=1e-9)
    plain = Compose(augment.stage1_preprocessing(size=64, track_meta=False))({"image": meta_img, "points": pts})
    assert "spacing_source" not in getattr(plain["image"], "meta", {})  # the former chain dropped the metadata
    assert not getattr(plain["image"], "applied_operations", [])
    np.testing.assert_allclose(np.asarray(plain["image"]), np.asarray(x), atol=1e-6)
    np.testing.assert_allclose(plain["points"], out["points"], atol=1e-9)


# ----- the predictor's landmarks before / after ------------------------------------------------------------------
CROP = 32
LUMBAR_TEMPLATE = torch.tensor([[9.25, 8.5], [22.0, 9.75], [9.5, 23.25], [22.75, 22.5]], dtype=torch.float64)
SACRUM_TEMPLATE = torch.tensor([[8.5, 17.25], [23.5, 12.0]], dtype=torch.float64)
BLOBS = np.array([[92.0, 47.0], [97.5, 93.0], [101.0, 139.5], [99.0, 186.0], [94.5, 231.0], [88.0, 268.5]])
# printed by this predictor on this image before the transforms became invertible (commit 61d470f)
CENTRES_BEFORE = np.array([
    [92.1169, 48.4994], [97.9499, 95.5891], [100.9325, 140.8628], [99.2980, 188.9204], [94.9136, 235.5233],
    [87.5978, 269.3170]])
POINTS_BEFORE = np.array([
    [78.3211, 33.0481], [106.4645, 35.8073], [78.8729, 65.6062], [108.1200, 63.9507], [84.4201, 80.4357],
    [112.0209, 83.1417], [84.9613, 112.3660], [113.6444, 110.7425], [87.2609, 125.5506], [115.1510, 128.2849],
    [87.8078, 157.8155], [116.7916, 156.1749], [85.4317, 173.3902], [113.7189, 176.1634], [85.9863, 206.1146],
    [115.3829, 204.4507], [81.2605, 220.2318], [109.1130, 222.9624], [81.8066, 252.4533], [110.7513, 250.8149],
    [72.3063, 273.1399], [105.0739, 261.6712]])


class _TemplateNet(nn.Module):
    """The same corner maps (plus an empty PAF channel) for every crop."""

    def __init__(self, codec: CornerCodec, template: torch.Tensor):
        super().__init__()
        self.register_buffer("maps", torch.cat([codec.encode(template, sigma=2.0),
                                                torch.zeros(1, CROP, CROP, dtype=torch.float64)]).float())

    def forward(self, x):
        return self.maps[None].expand(x.shape[0], -1, -1, -1)


class _BlobNet(nn.Module):
    """Centre maps read off the image: the 8x-pooled input weighted by a band around each vertebra's row."""

    def __init__(self, rows, size=16):
        super().__init__()
        g = torch.arange(size, dtype=torch.float32)[:, None]
        rows_t = torch.as_tensor(rows, dtype=torch.float32)[:, None, None]
        self.register_buffer("w", torch.exp(-0.5 * (g[None] - rows_t) ** 2))

    def forward(self, x):
        return F.avg_pool2d(x, 8) * self.w[None]


def test_predictor_landmarks_unchanged_on_a_fixed_synthetic_image():
    yy, xx = np.mgrid[0:300, 0:200].astype(np.float64)
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2)) for x, y in BLOBS)
    img = (img * 1000).astype(np.float32)
    p = LandmarkPredictor(
        LATERAL,
        _TemplateNet(CornerCodec(LATERAL, "lumbar", size=CROP), LUMBAR_TEMPLATE),
        _TemplateNet(CornerCodec(LATERAL, "sacrum", size=CROP), SACRUM_TEMPLATE),
        centre_net=_BlobNet([(y * 128 / 300) / 8 for _, y in BLOBS]), crop_size=CROP, device="cpu",
        stage1={"input_size": 128, "heatmap_size": 16, "preprocessing": {"clahe": False}, "repair": False})
    res = p(img, facing="left")
    np.testing.assert_allclose(res.centres, CENTRES_BEFORE, atol=1e-3)
    np.testing.assert_allclose(res.points, POINTS_BEFORE, atol=1e-3)
    assert np.abs(res.centres - BLOBS).max() < 5.0  # and they are where the blobs are


def test_training_chain_inverse_maps_points_back_without_warnings():
    import warnings

    img, pts = _sample(seed=3)
    for seed in range(2):
        chain = augment.stage1_transforms(train=True, size=64).set_random_state(seed)
        out = chain({"image": img, "points": pts, "layout": "lateral"})
        assert [op["class"] for op in out["image"].applied_operations] == ["FitToSquare", "RandAffinePointsd"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = chain.inverse(out)
        assert tuple(back["image"].shape) == img.shape
        np.testing.assert_allclose(back["points"], pts, atol=1e-9)
