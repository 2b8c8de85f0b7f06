"""Stage-1 training (An et al. 2022, Sections 3.2 and 4.1): images -> Pose-Net -> Eq. 2-4, on MONAI's Ignite engines.

Chain per image sample ``{"image": (1, H, W) or (H, W), "points": (N, 2) original px, "layout": name}``:
:func:`~lumbar_monai.transforms.augment.stage1_preprocessing` (pad to square, resize to ``input_size``, [0, 1],
blur, CLAHE; cached by MONAI's ``CacheDataset`` since it is deterministic) -> when training,
:func:`~lumbar_monai.transforms.augment.stage1_augmentation` (brightness/contrast, rotation/zoom/translation with
the points, RSC or conventional cutout) -> :class:`~lumbar_monai.codecs.centre.CentreHeatmapd` (Eq. 1 targets).

Training follows Section 4.1 (Adam, lr 1e-4, batch 16, linear LR decay, up to 200 epochs, early stopping after 30
epochs without validation-loss improvement); every number is a field of :class:`Stage1Config`, and
``input_size`` (512) can be lowered for tests (128 gives 16x16 maps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose

from ..anatomy import get_layout
from ..codecs.centre import CentreHeatmapCodec, CentreHeatmapd
from ..losses.centre import PoseNetLoss
from ..metrics.centre import CentreErrorMetric
from ..networks.posenet import PoseNet
from ..postprocess import postprocess_centres
from ..transforms.augment import stage1_augmentation, stage1_preprocessing

__all__ = [
    "Stage1Config",
    "PoseNetTupleLoss",
    "stage1_train_transforms",
    "build_network",
    "build_codec",
    "train_stage1",
    "predict_centres",
    "evaluate_stage1",
    "mean_centre_baseline",
]


@dataclass
class Stage1Config:
    """Everything a stage-1 run needs (paper values by default; *ours* where the paper is silent)."""

    layout: str = "lateral"
    input_size: int = 512
    heatmap_size: int | None = None  # default input_size // 8
    # network (see lumbar_monai.networks.posenet)
    width: int = 32
    stage_channels: int | None = None
    kernel_size: int = 13
    pre_convs: int = 3
    stage_convs: int = 5
    # targets and pre-processing
    sigma_scale: float = 0.5
    blur_sigma: float = 1.0
    clahe: bool = True
    clahe_clip: float = 0.01
    # augmentation
    cutout: str = "rsc"
    cutout_ratio: float = 0.6
    cutout_prob: float = 0.5
    affine_prob: float = 0.5
    intensity_prob: float = 0.5
    # optimisation (Section 4.1)
    lr: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 200
    patience: int = 30
    linear_lr_decay: bool = True
    seed: int = 0
    device: str = "cpu"

    @property
    def map_size(self) -> int:
        return int(self.heatmap_size or self.input_size // PoseNet.stride)

    def network_kwargs(self) -> dict[str, Any]:
        return {"layout": self.layout, "width": self.width, "stage_channels": self.stage_channels,
                "kernel_size": self.kernel_size, "pre_convs": self.pre_convs, "stage_convs": self.stage_convs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PoseNetTupleLoss(torch.nn.Module):
    """:class:`~lumbar_monai.losses.centre.PoseNetLoss` taking the network's ``(final, pre)`` tuple as one
    prediction, the form MONAI's ``SupervisedTrainer`` and Ignite's ``Loss`` call a loss with."""

    def __init__(self, layout: str = "lateral") -> None:
        super().__init__()
        self.loss = PoseNetLoss(layout)

    def forward(self, pred: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        final, pre = pred
        return self.loss(final, pre, target)


def build_network(cfg: Stage1Config) -> PoseNet:
    return PoseNet(**cfg.network_kwargs())


def build_codec(cfg: Stage1Config) -> CentreHeatmapCodec:
    return CentreHeatmapCodec(cfg.layout, input_size=cfg.input_size, heatmap_size=cfg.map_size,
                              sigma_scale=cfg.sigma_scale)


def stage1_train_transforms(cfg: Stage1Config, train: bool = True) -> Compose:
    """Pre-processing (+ augmentation when ``train``) + the centre-map target, for ``CacheDataset``."""
    chain = stage1_preprocessing(size=cfg.input_size, blur_sigma=cfg.blur_sigma, clahe=cfg.clahe,
                                 clahe_clip=cfg.clahe_clip)
    if train:
        chain += stage1_augmentation(cutout=cfg.cutout, cutout_ratio=cfg.cutout_ratio, cutout_prob=cfg.cutout_prob,
                                     affine_prob=cfg.affine_prob, intensity_prob=cfg.intensity_prob)
    chain.append(CentreHeatmapd(layout=cfg.layout, input_size=cfg.input_size, heatmap_size=cfg.map_size,
                                sigma_scale=cfg.sigma_scale))
    return Compose(chain)


def _keep(sample: Mapping, layout: str) -> dict:
    img = np.asarray(sample["image"], dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    out = {"image": img, "points": np.asarray(sample["points"], dtype=np.float64), "layout": layout}
    return out


def _loader(samples: Sequence[Mapping], cfg: Stage1Config, train: bool, shuffle: bool, seed: int) -> DataLoader:
    transform = stage1_train_transforms(cfg, train=train)
    transform.set_random_state(seed=seed)
    data = [_keep(s, cfg.layout) for s in samples]
    ds = CacheDataset(data, transform, cache_rate=1.0, num_workers=0, progress=False, copy_cache=True)
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, num_workers=0, generator=g)


def _prepare_batch(batch: Mapping, device=None, non_blocking: bool = False, **kwargs):
    img = torch.as_tensor(batch["image"]).float().to(device, non_blocking=non_blocking)
    target = torch.as_tensor(batch["centre_heatmap"]).float().to(device, non_blocking=non_blocking)
    return img, target


def train_stage1(
    train_samples: Sequence[Mapping],
    cfg: Stage1Config,
    val_samples: Sequence[Mapping] | None = None,
    network: PoseNet | None = None,
) -> dict[str, Any]:
    """Train Pose-Net with MONAI's ``SupervisedTrainer`` (Section 4.1).

    Args:
        train_samples: image samples ``{"image", "points"}`` in original pixels.
        cfg: configuration.
        val_samples: optional validation images: validation loss (Eq. 4) each epoch, early stopping after
            ``cfg.patience`` epochs without improvement, best weights restored.
        network: start from this network instead of a new one.

    Returns:
        ``{"network", "network_kwargs", "config", "history": [mean train loss per epoch], "val_history"}``.
    """
    from monai.utils import set_determinism

    from .fit import fit

    set_determinism(seed=cfg.seed)
    device = torch.device(cfg.device)
    net = (network or build_network(cfg)).to(device)
    loader = _loader(train_samples, cfg, train=True, shuffle=True, seed=cfg.seed)
    val_loader = _loader(val_samples, cfg, train=False, shuffle=False, seed=cfg.seed + 1) if val_samples else None
    curves = fit(net, loader, PoseNetTupleLoss(cfg.layout), lr=cfg.lr, max_epochs=cfg.max_epochs,
                 val_loader=val_loader, patience=cfg.patience, linear_lr_decay=cfg.linear_lr_decay, device=device,
                 prepare_batch=_prepare_batch)
    return {"network": net, "network_kwargs": cfg.network_kwargs(), "config": cfg.to_dict(), **curves}


@torch.inference_mode()
def predict_centres(
    net: torch.nn.Module, images: torch.Tensor, codec: CentreHeatmapCodec, geometry=None, repair: bool = True,
    batch_size: int = 16, **repair_kwargs,
) -> dict[str, Any]:
    """Pose-Net on ``(B, 1, S, S)`` pre-processed images -> centres (heatmap / input / original px) with
    Algorithm 1 (:func:`~lumbar_monai.postprocess.postprocess_centres`)."""
    net.eval()
    device = next(net.parameters()).device
    maps = torch.cat([net(images[i : i + batch_size].to(device).float())[0].cpu()
                      for i in range(0, len(images), batch_size)])
    return postprocess_centres(maps, codec, geometry=geometry, repair=repair, **repair_kwargs)


def _preprocessed(samples: Sequence[Mapping], cfg: Stage1Config) -> list[dict]:
    t = Compose(stage1_preprocessing(size=cfg.input_size, blur_sigma=cfg.blur_sigma, clahe=cfg.clahe,
                                     clahe_clip=cfg.clahe_clip))
    return [t(_keep(s, cfg.layout)) for s in samples]


def evaluate_stage1(
    net: torch.nn.Module | None,
    samples: Sequence[Mapping],
    cfg: Stage1Config,
    constant_centres: np.ndarray | None = None,
    repair: bool = True,
    **repair_kwargs,
) -> dict[str, Any]:
    """Centre metrics (Section 4.2) of the net, or of fixed ``constant_centres`` ``(V, 2)`` (512-space px).

    ``repair`` runs Algorithm 1 with ``repair_kwargs`` (see :func:`~lumbar_monai.postprocess.repair_missing_centre`).

    Returns ``{"summary": CentreErrorMetric.summary(), "mean_error_px": float, "pred": (M, V, 2),
    "repaired": (M,) bool}`` with ``pred`` in input (``cfg.input_size``) pixels.
    """
    items = _preprocessed(samples, cfg)
    gt = torch.as_tensor(np.stack([np.asarray(s["points"], np.float64) for s in items]))
    repaired = np.zeros(len(items), dtype=bool)
    if constant_centres is not None:
        pred = torch.as_tensor(np.broadcast_to(np.asarray(constant_centres, np.float64),
                                               (len(items), get_layout(cfg.layout).num_vertebrae, 2)).copy())
    else:
        images = torch.stack([torch.as_tensor(s["image"]).float() for s in items])
        out = predict_centres(net, images, build_codec(cfg), repair=repair, **repair_kwargs)
        pred = out["input"]
        repaired = out["centre_repaired"].numpy()
    metric = CentreErrorMetric(cfg.layout)
    metric(pred, gt)
    return {"summary": metric.summary(), "mean_error_px": float(metric.aggregate()), "pred": pred.numpy(),
            "repaired": repaired}


def mean_centre_baseline(samples: Sequence[Mapping], cfg: Stage1Config) -> np.ndarray:
    """``(V, 2)`` mean ground-truth centre position in input pixels: the constant-predictor baseline."""
    items = _preprocessed(samples, cfg)
    return np.mean([get_layout(cfg.layout).centres(np.asarray(s["points"], np.float64)) for s in items], axis=0)
