"""The stage-1 chain on real radiographs (AASCE / SpineWeb-16 AP, read in place from ../shared): pre-processing to
512, Eq. 1 targets and decoding back to original pixels reproduce the annotated centres."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import Compose

from lumbar_monai.anatomy import AP
from lumbar_monai.codecs.centre import CentreHeatmapCodec, CentreHeatmapd
from lumbar_monai.transforms.augment import stage1_preprocessing
from lumbar_monai.transforms.geometry import to_original


@pytest.fixture(scope="module")
def aasce_pairs(shared_dir):
    root = shared_dir / "data" / "aasce16"
    if not root.is_dir():
        pytest.skip("aasce16 not present")
    from lumbar_monai.io.aasce import read_aasce

    return read_aasce(root, outside="skip", excluded=[])[:3]


def test_real_images_roundtrip_through_the_stage1_chain(aasce_pairs):
    from lumbar_monai.io.loader import load_radiograph

    codec = CentreHeatmapCodec("ap", input_size=512, heatmap_size=64)
    chain = Compose(stage1_preprocessing(size=512) + [CentreHeatmapd(layout="ap", input_size=512, heatmap_size=64)])
    for path, ann in aasce_pairs:
        rad = load_radiograph(path)
        pts = np.asarray(ann.points, dtype=np.float64)
        s = chain({"image": rad.channel_first(), "points": pts.copy(), "layout": "ap"})
        assert tuple(s["image"].shape) == (1, 512, 512)
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        # geometry: back to the original pixels exactly
        np.testing.assert_allclose(to_original(s["points"], s), pts, atol=1e-4)
        # targets decode to the annotated centres in original pixels (sub-pixel on a 64x64 map)
        dec = codec.decode(s["centre_heatmap"], geometry=s["geometry"])
        scale = max(rad.height, rad.width) / 512.0
        err = np.linalg.norm(dec.original.numpy() - AP.centres(pts), axis=-1)
        assert err.max() < 0.05 * 8 * scale, err  # under 1/20 of a map pixel
