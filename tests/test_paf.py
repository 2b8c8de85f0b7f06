from __future__ import annotations

import pytest
import torch

from lumbar_monai.anatomy import LATERAL
from lumbar_monai.codecs.paf import PAFCodec, segment_distance

pytestmark = pytest.mark.compat

RECT = torch.tensor([[10.0, 20.0], [50.0, 20.0], [10.0, 50.0], [50.0, 50.0]])


def test_segment_distance_known_answers():
    a = torch.tensor([[2.0, 3.0]])
    b = torch.tensor([[8.0, 3.0]])
    d = segment_distance(a, b, 10, 12)[0]
    assert d[3, 5].item() == 0.0  # on the segment
    assert d[6, 5].item() == pytest.approx(3.0)  # perpendicular
    assert d[3, 11].item() == pytest.approx(3.0)  # beyond the end b
    assert d[7, 0].item() == pytest.approx((4 + 16) ** 0.5)  # off the end a
    # degenerate segment = distance to a point
    d0 = segment_distance(a, a, 10, 12)[0]
    assert d0[0, 0].item() == pytest.approx((4 + 9) ** 0.5)


@pytest.mark.parametrize("width,rows", [(2.0, [19, 20, 21]), (4.0, [18, 19, 20, 21, 22]), (6.0, [17, 18, 19, 20, 21, 22, 23])])
def test_lumbar_paf_marks_both_end_plates_with_the_width(width, rows):
    codec = PAFCodec(LATERAL, "lumbar", size=64, width=width, reference_size=64)
    paf = codec.encode(RECT)
    assert paf.shape == (1, 64, 64)
    col = paf[0, :, 30]
    on = torch.nonzero(col[:35]).flatten().tolist()
    assert on == rows  # superior end plate at y = 20; half width inclusive
    assert col[50].item() == 1.0 and col[35].item() == 0.0  # inferior plate on, vertebral body between off
    assert paf[0, 20, 5].item() == 0.0 and paf[0, 20, 10].item() == 1.0  # segment ends at the corner
    expected_pixels = 2 * 41 * len(rows) if width <= 4 else None
    if expected_pixels is not None:
        # 41 columns (x = 10..50) per plate, plus round caps for the wider line
        assert int(paf.sum()) >= expected_pixels


def test_width_scales_with_crop_size_and_sacrum_has_one_segment():
    codec = PAFCodec(LATERAL, "sacrum", size=128, width=4.0)  # 4 px at 256 -> 2 px at 128
    assert codec.pixel_width == 2.0 and codec.segments == ((0, 1),)
    paf = codec.encode(torch.tensor([[10.0, 60.0], [100.0, 60.0]]))
    assert torch.nonzero(paf[0, :, 50]).flatten().tolist() == [59, 60, 61]


def test_antialiased_is_fractional_and_batched():
    codec = PAFCodec(LATERAL, "lumbar", size=64, width=4.0, reference_size=64, mode="antialiased")
    paf = codec.encode(torch.stack([RECT, RECT + 0.5]))
    assert paf.shape == (2, 1, 64, 64)
    assert paf[0, 0, 22, 30].item() == pytest.approx(0.5)  # d = 2 = half width: half coverage
    assert paf[0, 0, 20, 30].item() == 1.0 and paf[0, 0, 23, 30].item() == 0.0
    assert paf[1, 0, 22, 30].item() == pytest.approx(1.0)  # d = 1.5


def test_segment_scores():
    codec = PAFCodec(LATERAL, "lumbar", size=64, width=4.0, reference_size=64)
    paf = codec.encode(RECT)
    scores = codec.segment_scores(paf, RECT)
    torch.testing.assert_close(scores, torch.ones(2))
    wrong = RECT.clone()
    wrong[2:, 1] -= 15  # inferior corners moved into the vertebral body
    s = codec.segment_scores(paf, wrong)
    assert s[0].item() == pytest.approx(1.0) and s[1].item() == 0.0
