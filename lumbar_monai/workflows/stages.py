"""Per-stage transform chains for the bundle: datalist item -> ``{"image", "label"}`` ready to collate.

Stage 1 (Pose-Net, Section 3.2): load -> :func:`~lumbar_monai.transforms.augment.stage1_transforms` (pad, resize,
blur, CLAHE, augmentation, Eq. 1 centre maps) -> ``label``. Stage 2 (M-Net, Section 3.3): load ->
:func:`~lumbar_monai.training.stage2.stage2_transforms` (Eq. 5 crops, augmentation, Eq. 6-9 targets), one sample per
vertebra. Only ``image`` and ``label`` are kept so that the default collate works (``pixel_spacing`` may be None).
Both chains first bring every lateral sample to the facing the predictor shows the networks
(:class:`~lumbar_monai.facing.CanonicalFacingd`: image-left, a mirror that keeps the anatomical names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai.transforms import Compose, CopyItemsd, SelectItemsd

from ..facing import CanonicalFacingd
from ..io.datalist import LoadLandmarkSampled

__all__ = ["posenet_transforms", "mnet_transforms"]


def posenet_transforms(train: bool, hp: Mapping[str, Any], layout: str) -> Compose:
    """Stage-1 chain; ``hp`` is the bundle's ``posenet`` section (input_size, heatmap_size, cutout, cutout_ratio and,
    optionally, ``augmentation``: ``cutout_prob``, ``affine_prob``, ``intensity_prob``, each 0.5 by default)."""
    from ..transforms.augment import stage1_transforms

    augmentation = {k: float(v) for k, v in dict(hp.get("augmentation") or {}).items()}
    unknown = set(augmentation) - {"cutout_prob", "affine_prob", "intensity_prob"}
    if unknown:
        raise ValueError(f"posenet#augmentation: unknown key(s) {sorted(unknown)}")
    inner = stage1_transforms(
        train=train,
        size=int(hp["input_size"]),
        heatmap_size=int(hp["heatmap_size"]),
        cutout=hp.get("cutout", "rsc"),
        cutout_ratio=float(hp.get("cutout_ratio", 0.6)),
        augmentation=augmentation,
    )
    return Compose(
        [
            LoadLandmarkSampled(("image", "label"), layout=layout),
            CanonicalFacingd("image"),
            *inner.transforms,
            CopyItemsd("centre_heatmap", names="label"),
            SelectItemsd(("image", "label")),
        ]
    )


def mnet_transforms(train: bool, stage2_config, layout: str) -> Compose:
    """Stage-2 chain (crops + targets); augmentation only when ``train``."""
    from ..training.stage2 import stage2_transforms

    inner = stage2_transforms(stage2_config, train=True, augment=train)
    return Compose(
        [
            LoadLandmarkSampled(("image", "label"), layout=layout),
            CanonicalFacingd("image"),
            *inner.transforms,
            SelectItemsd(("image", "label")),
        ]
    )
