"""Stage-2 training (An et al. 2022, Sections 3.3 and 4.1): per-vertebra crops -> M-Net -> Eq. 10/11, on MONAI's
Ignite engines.

Chain per image sample ``{"image": (1, H, W) or (H, W), "points": (N, 2) original px}``:
min-max scale the whole image to [0, 1] (the same as the predictor) -> :class:`~lumbar_monai.crops.VertebraCropsd`
(Eq. 5 crops around the ground-truth centres, random translation / rotation / scale, resize; one sample per
vertebra of the chosen kind) -> Gaussian blur of each crop (:class:`~lumbar_monai.transforms.blur.GaussianBlurd`)
-> random brightness / contrast (stage 1's :class:`~lumbar_monai.transforms.augment.RandBrightnessContrastd`)
[-> random gamma (MONAI's ``RandAdjustContrastd``) -> Gaussian noise (``RandGaussianNoised``), both off by default]
-> :class:`CornerTargetsd` (Eq. 6-9 targets).

Training follows Section 4.1 (Adam, lr 1e-4, batch 32, linear LR decay, up to 250 epochs, early stopping after 25
epochs without validation-loss improvement); every number is a field of :class:`Stage2Config`. The augmentation
ranges are *ours* (the paper gives none): translation +-10 % of the crop side (about the spread of stage-1 centre
errors relative to a vertebra), rotation +-10 degrees, scale 0.9-1.1, brightness +-0.1, contrast 0.8-1.2.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped, MapTransform, ScaleIntensityd

from ..codecs.corner import CornerCodec
from ..codecs.paf import PAFCodec
from ..crops import VertebraCropsd
from ..losses.corner import corner_loss_for
from ..metrics.landmark import relative_distance_error_vertebra
from ..networks.mnet import MNet, mnet_kwargs_for
from ..transforms.blur import GaussianBlurd

__all__ = [
    "SCHEDULE_FIELDS",
    "schedule_settings",
    "Stage2Config",
    "CornerTargetsd",
    "stage2_transforms",
    "build_network",
    "train_stage2",
    "predict_crops",
    "evaluate_crops",
    "mean_crop_shape",
]


#: the :class:`Stage2Config` fields a schedule's ``mnet_lumbar`` section may set besides the network and the run
#: (:func:`lumbar_monai.training.framed.train_mnet`): how crops are sampled and augmented.
SCHEDULE_FIELDS = ("crop_antialias", "translate", "rotate", "scale", "augment_prob", "brightness", "contrast",
                   "intensity_prob", "gamma", "noise_std", "mirror_prob", "vertebrae")


@dataclass
class Stage2Config:
    """Everything a stage-2 run needs (paper values by default; the ablations switch ``coordconv`` and ``paf``)."""

    layout: str = "lateral"
    kind: str = "lumbar"
    crop_size: int = 256
    crop_blur_sigma: float = 1.0
    crop_antialias: bool = False  # *ours*: smooth the image before sampling a crop (crops.antialias_sigma)
    translate: float = 0.1
    rotate: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    augment_prob: float = 1.0
    brightness: float = 0.1
    contrast: float = 0.2
    intensity_prob: float = 0.5
    gamma: float = 0.0  # *ours*: gamma drawn from (1 / (1 + g), 1 + g) with intensity_prob (0: off)
    noise_std: float = 0.0  # *ours*: Gaussian noise of std up to this (on [0, 1] crops) with intensity_prob (0: off)
    mirror_prob: float = 0.0  # *ours*: left-right mirrors (AP: sides swapped, Layout.mirror_order; lateral: names kept)
    vertebrae: tuple[str, ...] = ()  # *ours*: crops of these lumbar vertebrae only (e.g. ("L5",)); (): all of `kind`
    paf: bool = True
    paf_width: float = 4.0
    paf_mode: str = "exact"
    paf_weight: float | None = None  # None: alpha = 0.001 (lumbar) / beta = 0.01 (sacrum)
    lumbar_sigma_factor: float = 0.1
    sacrum_sigma_factor: float = 1.0 / 6.0
    channels: tuple[int, ...] = (32, 64, 128, 256)
    width: float = 1.0
    coordconv: int = 2
    deep_supervision: bool = True
    lr: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 250
    patience: int = 25
    linear_lr_decay: bool = True
    seed: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def network_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the M-Net (what a checkpoint stores)."""
        return mnet_kwargs_for(
            self.layout, self.kind, paf=self.paf, channels=tuple(self.channels), width=self.width,
            coordconv=self.coordconv, deep_supervision=self.deep_supervision,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CornerTargetsd(MapTransform):
    """Add the stage-2 target ``(K [+1], N, N)``: corner maps (Eq. 6-7) and, unless disabled, the PAF (Eq. 8-9).

    Args:
        keys: key of the ``(K, 2)`` corners in crop pixels.
        corner_codec: a :class:`~lumbar_monai.codecs.corner.CornerCodec`.
        paf_codec: a :class:`~lumbar_monai.codecs.paf.PAFCodec`, or ``None`` for no PAF channel.
        label_key: where the target goes.
    """

    def __init__(
        self,
        keys: KeysCollection,
        corner_codec: CornerCodec,
        paf_codec: PAFCodec | None = None,
        label_key: str = "label",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.corner_codec = corner_codec
        self.paf_codec = paf_codec
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for k in self.key_iterator(d):
            pts = torch.as_tensor(np.asarray(d[k], dtype=np.float64))
            gy, gx = self.corner_codec.factors(pts)  # (K, H), (K, W) float64
            k_maps = gy.shape[0]
            label = np.zeros((k_maps + (self.paf_codec is not None), gy.shape[1], gx.shape[1]), dtype=np.float32)
            # the float64 outer product rounded once to float32, as torch.cat([encode(...), ...]).float() was; in
            # numpy (one thread: per-sample work gains nothing from torch's pool and loses much on a shared CPU)
            np.multiply(gy.numpy()[:, :, None], gx.numpy()[:, None, :], out=label[:k_maps])
            if self.paf_codec is not None:
                self.paf_codec.draw(pts, torch.from_numpy(label[k_maps]))
            d[self.label_key] = torch.from_numpy(label)
        return d


def _codecs(cfg: Stage2Config) -> tuple[CornerCodec, PAFCodec | None]:
    corner = CornerCodec(cfg.layout, cfg.kind, size=cfg.crop_size, lumbar_factor=cfg.lumbar_sigma_factor,
                         sacrum_factor=cfg.sacrum_sigma_factor)
    paf = PAFCodec(cfg.layout, cfg.kind, size=cfg.crop_size, width=cfg.paf_width, mode=cfg.paf_mode) if cfg.paf \
        else None
    return corner, paf


def schedule_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`SCHEDULE_FIELDS` a schedule section sets, each as its :class:`Stage2Config` field's type (``scale``
    a pair and ``vertebrae`` names, both JSON lists; ``crop_antialias`` a flag; the others numbers)."""
    defaults = Stage2Config()
    out = {}
    for k in (k for k in SCHEDULE_FIELDS if k in section):
        kind = type(getattr(defaults, k))
        if kind is bool and not isinstance(section[k], bool):  # bool("false") would be True
            raise ValueError(f"schedule key {k!r} is true or false, got {section[k]!r}")
        if kind is tuple and not isinstance(section[k], list):  # tuple("L5") would be ("L", "5")
            raise ValueError(f"schedule key {k!r} is a list, got {section[k]!r}")
        out[k] = kind(section[k])
    return out


def stage2_transforms(cfg: Stage2Config, train: bool = True, augment: bool | None = None) -> Compose:
    """Image sample -> list of crop samples with ``image`` ``(1, N, N)`` and ``label`` (see the module docstring).

    Args:
        cfg: the configuration.
        train: add targets; with ``augment`` unset, also augment.
        augment: force augmentation on or off (e.g. jittered evaluation crops).
    """
    augment = train if augment is None else augment
    corner, paf = _codecs(cfg)
    chain: list = [
        EnsureTyped("image", data_type="tensor", dtype=torch.float32, track_meta=False),
        _ChannelFirst("image"),
        *_mirror(cfg, augment),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),
        VertebraCropsd(
            "image", cfg.layout, points_key="points", vertebrae=crop_vertebrae(cfg), out_size=cfg.crop_size,
            blur_sigma=0.0,
            translate=cfg.translate if augment else 0.0, rotate=cfg.rotate if augment else 0.0,
            scale=tuple(cfg.scale) if augment else (1.0, 1.0), prob=cfg.augment_prob, antialias=cfg.crop_antialias,
        ),
        # the crop blur of Section 3.3 (VertebraCropsd's blur_sigma, the predictor's crops): the same kernel and
        # zero border, per crop, filtered by scipy in one thread (transforms/blur.py)
        GaussianBlurd("image", sigma=cfg.crop_blur_sigma),
    ]
    if augment:
        from ..transforms.augment import RandBrightnessContrastd

        chain.append(RandBrightnessContrastd("image", prob=cfg.intensity_prob, brightness=cfg.brightness,
                                             contrast=cfg.contrast))
        if cfg.gamma > 0:
            from monai.transforms import RandAdjustContrastd

            chain.append(RandAdjustContrastd("image", prob=cfg.intensity_prob,
                                             gamma=(1.0 / (1.0 + cfg.gamma), 1.0 + cfg.gamma)))
        if cfg.noise_std > 0:
            from monai.transforms import RandGaussianNoised

            chain.append(RandGaussianNoised("image", prob=cfg.intensity_prob, std=cfg.noise_std, sample_std=True))
    chain.append(CornerTargetsd("points", corner, paf))
    return Compose(chain)


def crop_vertebrae(cfg: Stage2Config) -> str | list[int]:
    """The vertebrae a stage-2 run crops: ``cfg.kind``, or the indices of ``cfg.vertebrae`` (``ValueError`` for a
    name that is not one of the layout's vertebrae of that kind)."""
    if not cfg.vertebrae:
        return cfg.kind
    from ..anatomy import get_layout

    layout = get_layout(cfg.layout)
    allowed = [v.name for v in layout.vertebrae if v.kind == cfg.kind]
    unknown = [v for v in cfg.vertebrae if v not in allowed]
    if unknown:
        raise ValueError(f"vertebrae {unknown} are not {cfg.kind} vertebrae of layout {layout.name!r} "
                         f"({', '.join(allowed)})")
    return [layout.vertebra_names.index(v) for v in cfg.vertebrae]


def _mirror(cfg: Stage2Config, augment: bool) -> list:
    """``[RandMirrord]`` when augmenting with ``mirror_prob`` > 0, else ``[]``."""
    if not augment or cfg.mirror_prob <= 0:
        return []
    from ..anatomy import get_layout
    from ..transforms.augment import RandMirrord

    return [RandMirrord("image", point_keys=("points",), prob=cfg.mirror_prob,
                        point_order=get_layout(cfg.layout).mirror_order)]


class _ChannelFirst(MapTransform):
    """``(H, W)`` -> ``(1, H, W)``; ``(C, H, W)`` passes through."""

    def __call__(self, data):
        d = dict(data)
        for k in self.key_iterator(d):
            if d[k].ndim == 2:
                d[k] = d[k][None]
        return d


def build_network(cfg: Stage2Config) -> MNet:
    return MNet(**cfg.network_kwargs())


def _loader(samples: Sequence[Mapping], transform: Compose, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    transform.set_random_state(seed=seed)
    keep = [{"image": s["image"], "points": np.asarray(s["points"], dtype=np.float64)} for s in samples]
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(Dataset(keep, transform), batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=g)


def train_stage2(
    train_samples: Sequence[Mapping],
    cfg: Stage2Config,
    val_samples: Sequence[Mapping] | None = None,
    network: MNet | None = None,
) -> dict[str, Any]:
    """Train one M-Net (``cfg.kind``) with MONAI's ``SupervisedTrainer``.

    Args:
        train_samples: image samples ``{"image", "points"}`` (original pixels).
        cfg: configuration.
        val_samples: optional validation images: validation loss each epoch, early stopping after
            ``cfg.patience`` epochs without improvement (Section 4.1), best weights restored.
        network: start from this network instead of a new one.

    Returns:
        ``{"network", "network_kwargs", "config", "history": [mean train loss per epoch], "val_history"}``;
        ``val_history`` has one validation loss per epoch run (early stopping may end the run before
        ``cfg.max_epochs``).
    """
    from monai.utils import set_determinism

    from .fit import fit

    set_determinism(seed=cfg.seed)
    device = torch.device(cfg.device)
    net = (network or build_network(cfg)).to(device)
    loader = _loader(train_samples, stage2_transforms(cfg, train=True), cfg.batch_size, True, cfg.seed)
    levels = net.levels if cfg.deep_supervision else 0
    loss = corner_loss_for(cfg.layout, cfg.kind, paf=cfg.paf, paf_weight=cfg.paf_weight,
                           deep_supervision_levels=levels)
    val_loader = val_loss = None
    if val_samples:
        val_loader = _loader(val_samples, stage2_transforms(cfg, train=True, augment=False), cfg.batch_size, False,
                             cfg.seed + 1)
        val_loss = corner_loss_for(cfg.layout, cfg.kind, paf=cfg.paf, paf_weight=cfg.paf_weight)
    curves = fit(net, loader, loss, lr=cfg.lr, max_epochs=cfg.max_epochs, val_loader=val_loader, val_loss=val_loss,
                 patience=cfg.patience, linear_lr_decay=cfg.linear_lr_decay, device=device)
    return {"network": net, "network_kwargs": cfg.network_kwargs(), "config": cfg.to_dict(), **curves}


@torch.inference_mode()
def predict_crops(net: torch.nn.Module, crops: torch.Tensor, codec: CornerCodec, batch_size: int = 64):
    """M-Net on ``(M, 1, N, N)`` crops -> ``(M, K, 2)`` corners in crop pixels and ``(M, K)`` peak heights."""
    net.eval()
    device = next(net.parameters()).device
    pts, conf = [], []
    for i in range(0, len(crops), batch_size):
        out = net(crops[i : i + batch_size].to(device))
        p, c = codec.decode(out[:, : codec.num_corners].float())
        pts.append(p.cpu())
        conf.append(c.cpu())
    return torch.cat(pts), torch.cat(conf)


def evaluate_crops(
    net: torch.nn.Module | None,
    samples: Sequence[Mapping],
    cfg: Stage2Config,
    augment: bool = False,
    seed: int = 1234,
    mean_shape: np.ndarray | None = None,
) -> dict[str, Any]:
    """RD (Eq. 12-15, in crop pixels) of the M-Net, or of a fixed ``mean_shape`` ``(K, 2)`` placed in every crop.

    Crops come from the ground-truth centres, jittered like training when ``augment`` (a stand-in for stage-1
    centre errors). Returns ``{"rd": (M, K) array, "mean_rd": float, "points": (M, K, 2), "gt": (M, K, 2)}``.
    """
    t = stage2_transforms(cfg, train=False, augment=augment)
    t.set_random_state(seed=seed)
    items = [c for s in samples for c in t({"image": s["image"], "points": np.asarray(s["points"], np.float64)})]
    gt = np.stack([np.asarray(c["points"], dtype=np.float64) for c in items])
    corner, _ = _codecs(cfg)
    if mean_shape is not None:
        pred = np.broadcast_to(np.asarray(mean_shape, dtype=np.float64), gt.shape)
    else:
        crops = torch.stack([torch.as_tensor(c["image"]) for c in items]).float()
        pred = predict_crops(net, crops, corner)[0].double().numpy()
    rd = relative_distance_error_vertebra(pred, gt, corner.spec)
    return {"rd": rd, "mean_rd": float(rd.mean()), "points": pred, "gt": gt}


def mean_crop_shape(samples: Sequence[Mapping], cfg: Stage2Config) -> np.ndarray:
    """``(K, 2)`` mean corner layout of the (unaugmented) training crops: the mean-shape baseline."""
    t = stage2_transforms(cfg, train=False, augment=False)
    pts = [np.asarray(c["points"], np.float64) for s in samples
           for c in t({"image": s["image"], "points": np.asarray(s["points"], np.float64)})]
    return np.mean(pts, axis=0)
