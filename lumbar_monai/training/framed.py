"""Train the framed two-stage predictor from a landmark datalist on the CPU or a CUDA GPU (the AP model recipe).

Stage 1 is Pose-Net on framed windows (:mod:`lumbar_monai.framing`); stage 2 is the lumbar M-Net of
:mod:`lumbar_monai.training.stage2` unchanged. Every image is read once into an in-memory cache (``uint8`` after
min-max scaling: stage 2 full size, stage 1 with its long side cut to ``cache_long_side``), so epochs cost only the
networks and the augmentation. Checkpoints are selected on the validation split (:func:`~.fit.fit` keeps the weights
of the best landmark metric, heatmap-peak distance in input pixels; ``"select_by": "loss"`` in the schedule selects
by the validation loss instead); the test split is never read here. The learning rate decays linearly over the
epochs, or over a stage's ``max_seconds`` of wall time with ``"lr_decay": "time"`` (a run capped in time whose epoch
speed is unknown beforehand, e.g. on a GPU lent for minutes, then still ends annealed).

Command line (``scripts/train_aasce_ap.sh`` runs it on AASCE)::

    python -m lumbar_monai.training.framed STAGE --datalist D --schedule S --out DIR

``STAGE`` is ``posenet``, ``mnet`` (independent: run them side by side) or ``export`` (both into one checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..anatomy import Layout, crop_record, get_layout, with_crop_record
from ..checkpoint import build_network, cpu_state, network_kwargs, save_checkpoint, with_init_kwargs
from ..devices import resolve_device

__all__ = ["load_split", "attach_aux_centres", "attach_extra_windows", "window_shifts", "load_init", "init_weights", "train_posenet", "train_mnet", "vertebrae_above_l1", "export",
           "check_schedule", "resolve_device", "main"]

logger = logging.getLogger(__name__)


def load_split(datalist: str | Path, split: str, layout: str, long_side: int | None = None,
               cache: str | Path | None = None) -> list[dict[str, Any]]:
    """``[{"image": (H, W) uint8, "points": (N, 2), "layout"}]`` of one split; ``long_side`` shrinks each image
    (anti-aliased) and its points so that its longer side is at most that. With ``cache`` (an ``.npz`` path) the
    result is read from there when present and written there otherwise (plain arrays, no pickle)."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            n = int(z["n"])
            return [{"image": z[f"image_{i}"], "points": z[f"points_{i}"], "layout": layout} for i in range(n)]
    out = _load_split(datalist, split, layout, long_side)
    if cache is not None:
        arrays = {"n": np.array(len(out))}
        for i, s in enumerate(out):
            arrays[f"image_{i}"], arrays[f"points_{i}"] = s["image"], s["points"]
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    return out


def _load_split(datalist: str | Path, split: str, layout: str, long_side: int | None) -> list[dict[str, Any]]:
    from ..io.datalist import LoadLandmarkSampled, load_landmark_datalist

    loader = LoadLandmarkSampled(("image", "label"), layout=layout)
    out = []
    for item in load_landmark_datalist(datalist, split):
        s = loader(item)
        img = torch.as_tensor(np.asarray(s["image"], dtype=np.float32)[0])
        pts = np.asarray(s["points"], dtype=np.float64)
        h, w = img.shape
        if long_side and max(h, w) > long_side:
            k = long_side / max(h, w)
            nh, nw = max(round(h * k), 1), max(round(w * k), 1)
            img = torch.nn.functional.interpolate(img[None, None], size=(nh, nw), mode="bilinear",
                                                  align_corners=False, antialias=True)[0, 0]
            pts = np.stack([(pts[:, 0] + 0.5) * nw / w - 0.5, (pts[:, 1] + 0.5) * nh / h - 0.5], axis=1)
        lo, hi = float(img.min()), float(img.max())
        u8 = ((img - lo) / max(hi - lo, 1e-12) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
        out.append({"image": u8, "points": pts, "layout": layout})
    return out


def _spine_points_of(samples: Sequence[Mapping[str, Any]], datalist: str | Path, split: str,
                     purpose: str) -> list[np.ndarray]:
    """For each sample, the 68 T1-L5 corners of its image from the AASCE copy that holds it (``images_training/``
    beside ``labels_training/``, or the release's layout) in the sample's pixels (its image may be a shrunk copy), read
    in the vertebra order the datalist item records (``"aasce_order"``, :func:`~lumbar_monai.io.aasce.write_aasce_datalist`;
    anatomical when absent) so that they match its labels. ``purpose`` names the schedule key in errors."""
    from ..errors import InputError
    from ..io.aasce import aasce_copy_of, read_aasce
    from ..io.datalist import load_landmark_datalist

    items = load_landmark_datalist(datalist, split)
    if len(items) != len(samples):
        raise InputError(Path(datalist), f"split {split!r} has {len(items)} items but {len(samples)} cached samples")
    by_copy: dict[tuple[Path, str, str], dict[str, tuple[np.ndarray, tuple[int, int]]]] = {}
    out = []
    for item, sample in zip(items, samples, strict=True):
        image = Path(item["image"])
        copy = aasce_copy_of(image)
        if copy is None:
            raise InputError(image, f"{purpose} need the image inside an AASCE copy (images_<s>/ beside "
                                    "labels_<s>/landmarks.csv, or the release's data/<s>/ beside labels/<s>/)")
        key = (copy[0], copy[1], str(item.get("aasce_order", "anatomical")))
        if key not in by_copy:
            try:
                pairs = read_aasce(key[0], lumbar_only=False, split=key[1], outside="keep", order=key[2])
            except ValueError as e:  # an unknown aasce_order in the datalist
                raise InputError(Path(datalist), str(e)) from None
            by_copy[key] = {p.name: (np.asarray(a.points, dtype=np.float64), a.image_size) for p, a in pairs}
        if image.name not in by_copy[key]:
            raise InputError(image, "not listed in its AASCE copy's filenames.csv")
        points, (w, h) = by_copy[key][image.name]
        nh, nw = np.shape(sample["image"])[-2:]
        out.append((points + 0.5) * np.array([nw / w, nh / h]) - 0.5)
    return out


def attach_aux_centres(samples: list[dict[str, Any]], datalist: str | Path, split: str,
                       vertebrae: Sequence[str]) -> list[dict[str, Any]]:
    """Add ``"aux_points"`` ``(K, 2)`` to each sample: the centres of ``vertebrae`` (e.g. ``["T11", "T12"]``) from
    the AASCE copy that holds the sample's image, in the sample's pixels and the datalist's vertebra order
    (:func:`_spine_points_of`). Auxiliary stage-1 targets: vertebrae the layout does not have, which show the network
    where the chain it must name sits in the spine (T12 carries the last ribs).

    Raises:
        InputError: an image that is not in an AASCE copy, or a vertebra the AASCE files do not have.
    """
    from ..errors import InputError
    from ..io.aasce import AASCE_VERTEBRAE, aasce_layout

    unknown = [v for v in vertebrae if v not in AASCE_VERTEBRAE]
    if unknown:
        raise InputError(Path(datalist), f"aux_vertebrae {unknown} are not AASCE vertebrae "
                                         f"({', '.join(AASCE_VERTEBRAE)})")
    spine = aasce_layout(lumbar_only=False)
    rows = [spine.vertebra_names.index(v) for v in vertebrae]
    spines = _spine_points_of(samples, datalist, split, "aux_vertebrae")
    return [{**sample, "aux_points": spine.centres(points)[rows]}
            for sample, points in zip(samples, spines, strict=True)]


def attach_extra_windows(samples: list[dict[str, Any]], datalist: str | Path, split: str,
                         tops: Sequence[str]) -> list[dict[str, Any]]:
    """``samples`` followed by M-Net training samples of further vertebrae: for each sample and each name in ``tops``
    (e.g. ``["T3", "T8"]``) a copy whose ``"points"`` are the corners of the run of consecutive AASCE vertebrae that
    starts there, as many as the AP layout has (``"T8"``: T8-T12 in the places of L1-L5), from the AASCE copy that
    holds the sample's image (:func:`_spine_points_of`). The image array is shared, not copied; a run with a corner
    outside its image is left out. More end-plate corners for an M-Net that overfits a few hundred images (README
    "Thoracic crops for the M-Net").

    Raises:
        InputError: an image that is not in an AASCE copy, or a name that does not start a run above L1.
    """
    from ..errors import InputError
    from ..io.aasce import aasce_layout

    if not tops:
        return list(samples)
    try:
        shifts = window_shifts(tops)
    except ValueError as e:
        raise InputError(Path(datalist), str(e)) from None
    lumbar, spine = get_layout("ap"), aasce_layout(lumbar_only=False)
    # the spine layout's row of each lumbar point (same corners per vertebra, 4 rows each): a run k vertebrae
    # higher is these rows minus 4k, in the lumbar corner order
    spine_rows = np.array([spine.index(v.name, c) for v in lumbar.vertebrae for c in v.corners])
    out = list(samples)
    for sample, points in zip(samples, _spine_points_of(samples, datalist, split, "extra_windows"), strict=True):
        nh, nw = np.shape(sample["image"])[-2:]
        for shift in shifts:
            run = points[spine_rows - 4 * shift]
            inside = (run >= -0.5).all() and (run[:, 0] <= nw - 0.5).all() and (run[:, 1] <= nh - 0.5).all()
            if np.isfinite(run).all() and inside:
                out.append({**sample, "points": run})
    return out


def window_shifts(tops: Sequence[str]) -> list[int]:
    """For each ``mnet_lumbar.extra_windows`` name, how many vertebrae its run of five sits above L1-L5 (``"T8"``: 5);
    ``ValueError`` (one line) for a name that is not an AASCE vertebra starting a run that ends above L1."""
    from ..io.aasce import AASCE_VERTEBRAE

    if isinstance(tops, str) or not all(isinstance(t, str) for t in tops):
        raise ValueError(f"mnet_lumbar.extra_windows must be a list of vertebra names, got {tops!r}")
    n, l1 = get_layout("ap").num_vertebrae, AASCE_VERTEBRAE.index("L1")
    shifts = []
    for top in tops:
        if top not in AASCE_VERTEBRAE or AASCE_VERTEBRAE.index(top) + n > l1:
            raise ValueError(f"mnet_lumbar.extra_windows: {top!r} does not start a run of {n} vertebrae above L1 "
                             f"(one of {', '.join(AASCE_VERTEBRAE[:l1 - n + 1])})")
        shifts.append(l1 - AASCE_VERTEBRAE.index(top))
    return shifts


class _ToUnit:
    """``uint8`` image -> ``(1, H, W)`` float32 in [0, 1] (a picklable transform)."""

    def __call__(self, d: Mapping) -> dict:
        d = dict(d)
        d["image"] = torch.as_tensor(np.asarray(d["image"], dtype=np.float32) / 255.0)[None]
        return d


def posenet_transforms(cfg: Mapping[str, Any], layout: str, factor: float, train: bool):
    """(train: mirror, ``mirror_prob``) -> RandFramed -> intensity pre-processing -> (train: brightness/contrast, RSC) ->
    centre-map target."""
    from monai.transforms import Compose, GaussianSmoothd, ScaleIntensityd

    from ..anatomy import get_layout
    from ..codecs.centre import AppendCentreMapsd, CentreHeatmapd
    from ..framing import RandFramed
    from ..transforms.augment import RandBrightnessContrastd, RandMirrord
    from ..transforms.cutout import make_cutout
    from ..transforms.intensity import CLAHEd

    size = int(cfg["input_size"])
    mirror = float(cfg.get("mirror_prob", 0.0)) if train else 0.0
    aux = list(cfg.get("aux_vertebrae") or [])  # with mirror_prob refused by check_schedule
    chain: list = [
        _ToUnit(),
        *([RandMirrord("image", point_keys=("points",), prob=mirror, point_order=get_layout(layout).mirror_order)]
          if mirror > 0 else []),
        RandFramed("image", "points", layout=layout, size=size, factor=factor,
                   whole_prob=float(cfg.get("whole_prob", 0.3)), fov_crop_prob=float(cfg.get("fov_crop_prob", 0.25)),
                   below_cut_prob=float(cfg.get("below_cut_prob", 0.0)),
                   jitter=train, aux_keys=("aux_points",) if aux else ()),
        ScaleIntensityd("image", minv=0.0, maxv=1.0),
        GaussianSmoothd("image", sigma=float(cfg.get("blur_sigma", 1.0)) * size / 512.0),
        CLAHEd("image", clip_limit=float(cfg.get("clahe_clip", 0.01))),
    ]
    if train:
        chain.append(RandBrightnessContrastd("image", prob=0.5))
        cut = make_cutout(str(cfg.get("cutout", "rsc")), keys="image", point_key="points",
                          ratio=float(cfg.get("cutout_ratio", 0.6)), prob=float(cfg.get("cutout_prob", 0.3)))
        if cut is not None:
            chain.append(cut)
    chain.append(CentreHeatmapd(layout=layout, input_size=size, heatmap_size=size // 8))
    if aux:
        chain.append(AppendCentreMapsd("aux_points", layout=layout, input_size=size, heatmap_size=size // 8))
    return Compose(chain)


def _selection_metric(schedule: Mapping[str, Any], num_channels: int | None, scale: float):
    """The validation metric that keeps the best weights: the landmark metric
    (:class:`~lumbar_monai.metrics.selection.PeakDistance`, heatmap peaks in input pixels) unless the schedule says
    ``"select_by": "loss"`` (the validation loss, as before)."""
    from monai.handlers import from_engine

    from ..metrics.selection import PeakDistance

    if str(schedule.get("select_by", "landmark")) == "loss":  # any other value: refused by check_schedule
        return None
    return PeakDistance(num_channels=num_channels, scale=scale, output_transform=from_engine(["pred", "label"]))


def posenet_kwargs(cfg: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """Pose-Net constructor arguments of a schedule; ``aux_vertebrae`` add output channels after the layout's."""
    keys = ("width", "stage_channels", "kernel_size", "pre_convs", "stage_convs")
    kw = {"layout": layout, **{k: cfg[k] for k in keys if k in cfg}}
    aux = list(cfg.get("aux_vertebrae") or [])
    if aux:
        kw["out_channels"] = get_layout(layout).num_vertebrae + len(aux)
    return kw


def load_init(net: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a stage checkpoint's weights into ``net``; a tensor whose first dimension grew (output channels added,
    e.g. auxiliary Pose-Net maps) keeps the checkpoint's rows and its fresh initialisation for the new ones. Any
    other difference is an error."""
    own = net.state_dict()
    missing = set(own) ^ set(state)
    if missing:
        raise ValueError(f"init checkpoint and network differ in layers: {sorted(missing)[:4]}")
    merged = {}
    for k, v in state.items():
        t = own[k]
        if v.shape == t.shape:
            merged[k] = v
        elif v.ndim == t.ndim and v.shape[1:] == t.shape[1:] and v.shape[0] < t.shape[0]:
            merged[k] = torch.cat([v.to(t.dtype), t[v.shape[0]:]], dim=0)
        else:
            raise ValueError(f"init checkpoint tensor {k} {tuple(v.shape)} does not fit {tuple(t.shape)}")
    net.load_state_dict(merged)


def init_weights(ckpt: Mapping[str, Any], stage: str, source: str | Path = "init") -> Mapping[str, Any]:
    """The ``{"kwargs", "state_dict"}`` to continue ``stage`` (``posenet`` / ``mnet``) from: a stage checkpoint as it
    is, or the stage's network in a predictor checkpoint (e.g. the shipped ``aasce_ap.pt``: its ``stage1`` or
    ``lumbar`` entry), so that a new round can start from a model without its stage files. ``ValueError`` (one line,
    naming ``source``) for anything else."""
    if "state_dict" in ckpt:
        return ckpt
    entry = ckpt.get("stage1" if stage == "posenet" else "lumbar") if "format" in ckpt else None
    if not isinstance(entry, Mapping) or "state_dict" not in entry:
        raise ValueError(f"{source}: neither a stage checkpoint nor a predictor checkpoint with a {stage} network")
    return entry


def train_posenet(train: Sequence[Mapping], val: Sequence[Mapping], schedule: Mapping[str, Any], layout: str,
                  device: str = "cpu", init: Mapping[str, Any] | None = None, workers: int = 0) -> dict[str, Any]:
    """Pose-Net on random framings; validation: every validation image framed whole and as its lumbar window
    (``posenet.val_framings``: ``["whole"]`` for a level network trained on whole-image framings only).
    ``init``: a stage checkpoint (``{"kwargs", "state_dict"}``) to continue from; ``workers``: DataLoader worker
    processes for the training augmentation (MONAI's DataLoader seeds each worker's transforms)."""
    from monai.data import CacheDataset, DataLoader, Dataset
    from monai.utils import set_determinism

    from ..networks.posenet import PoseNet
    from .fit import fit
    from .stage1 import PoseNetTupleLoss

    check_schedule(schedule)
    cfg = dict(schedule["posenet"])
    if cfg.get("aux_vertebrae") and any("aux_points" not in s for s in (*train, *val)):
        raise ValueError("posenet.aux_vertebrae needs the samples' aux_points (attach_aux_centres)")
    seed = int(schedule.get("seed", 0))
    factor = float(schedule.get("framing", {}).get("factor", 2.0))
    set_determinism(seed=seed)
    net = with_init_kwargs(PoseNet, **posenet_kwargs(cfg, layout))
    if init is not None:
        load_init(net, init["state_dict"])
    net = net.to(device)
    tr = posenet_transforms(cfg, layout, factor, train=True)
    tr.set_random_state(seed=seed)
    g = torch.Generator()
    g.manual_seed(seed)
    loader = DataLoader(Dataset(list(train), tr), batch_size=int(cfg["batch_size"]), shuffle=True,
                        num_workers=int(workers), generator=g, persistent_workers=int(workers) > 0,
                        pin_memory=torch.device(device).type == "cuda")
    val_items = [{**s, "framing": kind} for s in val for kind in cfg.get("val_framings", ("whole", "lumbar"))]
    val_ds = CacheDataset(val_items, posenet_transforms(cfg, layout, factor, train=False), progress=False)
    val_loader = DataLoader(val_ds, batch_size=int(cfg["batch_size"]), shuffle=False, num_workers=0)

    def prepare(batch, device=None, non_blocking=False, **_):
        return (torch.as_tensor(batch["image"]).float().to(device),
                torch.as_tensor(batch["centre_heatmap"]).float().to(device))

    loss = PoseNetTupleLoss(layout)
    curves = fit(net, loader, loss, lr=float(cfg["lr"]), max_epochs=int(cfg["max_epochs"]), val_loader=val_loader,
                 patience=int(cfg["patience"]), device=device, prepare_batch=prepare,
                 max_seconds=cfg.get("max_seconds"),
                 select_metric=_selection_metric(schedule, get_layout(layout).num_vertebrae, 8.0),
                 amp=_amp(schedule, device), decay_in_time=schedule.get("lr_decay", "epochs") == "time")
    return {"network": net, **curves}


def train_mnet(train: Sequence[Mapping], val: Sequence[Mapping], schedule: Mapping[str, Any], layout: str,
               device: str = "cpu", init: Mapping[str, Any] | None = None, workers: int = 0) -> dict[str, Any]:
    """The lumbar M-Net on Eq. 5 crops around the ground-truth centres (the chain and loss of
    :func:`~lumbar_monai.training.stage2.train_stage2`, plus a wall-time limit). ``init``: a stage checkpoint
    (``{"kwargs", "state_dict"}``) to continue from; ``workers``: DataLoader worker processes for training."""
    from monai.data import DataLoader, Dataset
    from monai.utils import set_determinism

    from ..codecs.corner import vertebra_template
    from ..losses.corner import corner_loss_for
    from ..networks.mnet import MNet
    from .fit import fit
    from .stage2 import Stage2Config, schedule_settings, stage2_transforms

    check_schedule(schedule)
    cfg = dict(schedule["mnet_lumbar"])
    layout = mnet_layout(schedule, layout)  # the crop geometry it trains on
    s2 = Stage2Config(layout=layout, kind="lumbar", crop_size=int(cfg["crop_size"]),
                      channels=tuple(cfg["channels"]), lr=float(cfg["lr"]), batch_size=int(cfg["batch_size"]),
                      max_epochs=int(cfg["max_epochs"]), patience=int(cfg["patience"]),
                      seed=int(schedule.get("seed", 0)), device=device, **schedule_settings(cfg))
    set_determinism(seed=s2.seed)
    net = with_init_kwargs(MNet, **s2.network_kwargs())
    if init is not None:
        net.load_state_dict(init["state_dict"])
    net = net.to(device)

    def loader(samples, train_mode: bool, seed: int):
        tf = stage2_transforms(s2, train=True, augment=train_mode)
        tf.set_random_state(seed=seed)
        keep = [{"image": s["image"], "points": np.asarray(s["points"], dtype=np.float64)} for s in samples]
        g = torch.Generator()
        g.manual_seed(seed)
        n = int(workers) if train_mode else 0
        return DataLoader(Dataset(keep, tf), batch_size=s2.batch_size, shuffle=train_mode, num_workers=n, generator=g,
                          persistent_workers=n > 0, pin_memory=torch.device(device).type == "cuda")

    loss = corner_loss_for(layout, "lumbar", paf=s2.paf, deep_supervision_levels=net.levels)
    curves = fit(net, loader(train, True, s2.seed), loss, lr=s2.lr, max_epochs=s2.max_epochs,
                 val_loader=loader(val, False, s2.seed + 1), val_loss=corner_loss_for(layout, "lumbar", paf=s2.paf),
                 patience=s2.patience, device=device, max_seconds=cfg.get("max_seconds"),
                 select_metric=_selection_metric(schedule, vertebra_template(layout, "lumbar").num_corners, 1.0),
                 amp=_amp(schedule, device), decay_in_time=schedule.get("lr_decay", "epochs") == "time")
    return {"network": net, **curves, "crop_size": s2.crop_size, "crop_blur_sigma": s2.crop_blur_sigma,
            "crop_antialias": s2.crop_antialias}


def check_schedule(schedule: Mapping[str, Any]) -> None:
    """``ValueError`` (one line) for a schedule that contradicts itself, before any data is read."""
    from ..io.aasce import AASCE_VERTEBRAE

    decay = str(schedule.get("lr_decay", "epochs"))
    if decay not in ("epochs", "time"):
        raise ValueError(f"lr_decay must be 'epochs' or 'time', got {decay!r}")
    by = str(schedule.get("select_by", "landmark"))
    if by not in ("landmark", "loss"):
        raise ValueError(f"select_by must be 'landmark' or 'loss', got {by!r}")
    pose = schedule.get("posenet") or {}
    kinds = list(pose.get("val_framings", ("whole", "lumbar")))
    if not kinds or any(k not in ("whole", "lumbar") for k in kinds):
        raise ValueError(f"posenet.val_framings must list 'whole' and/or 'lumbar', got {kinds!r}")
    aux = list(pose.get("aux_vertebrae") or [])
    unknown = [v for v in aux if v not in AASCE_VERTEBRAE]
    if unknown:
        raise ValueError(f"posenet.aux_vertebrae {unknown} are not AASCE vertebrae ({', '.join(AASCE_VERTEBRAE)})")
    if aux and float(pose.get("mirror_prob", 0.0)) > 0:
        raise ValueError("posenet.aux_vertebrae and posenet.mirror_prob cannot be combined (the mirror reorders "
                         "only the layout's points)")
    window_shifts((schedule.get("mnet_lumbar") or {}).get("extra_windows") or [])


def _amp(schedule: Mapping[str, Any], device: str | torch.device) -> bool:
    """Mixed precision when the schedule asks for it (``"amp": true``) and the device is CUDA (MONAI's engines
    autocast for CUDA only)."""
    return bool(schedule.get("amp", False)) and torch.device(device).type == "cuda"


def _save_stage(path: Path, net: torch.nn.Module, extra: Mapping[str, Any]) -> None:
    save_checkpoint({"kwargs": network_kwargs(net), "state_dict": cpu_state(net), **extra}, path)


def mnet_layout(schedule: Mapping[str, Any], layout: str) -> Layout:
    """The layout whose Eq. 5 crops the M-Net trains on: ``mnet_lumbar.crop_aspect`` of the schedule, when given,
    replaces the layout's (e.g. 1.0 to retrain the square crops of the rounds before the AP aspect existed)."""
    lay = get_layout(layout)
    aspect = (schedule.get("mnet_lumbar") or {}).get("crop_aspect")
    return lay if aspect is None else dataclasses.replace(lay, crop_aspect=float(aspect))


def vertebrae_above_l1(aux: Sequence[str]) -> list[str]:
    """The auxiliary vertebrae that sit directly over L1 without a gap, top to bottom (``["T11", "T12"]`` of
    ``["T11", "T12"]``; ``[]`` without T12): what :func:`~lumbar_monai.levels.anchor_chain` can shift the chain onto."""
    from ..io.aasce import AASCE_VERTEBRAE

    thoracic = [v for v in AASCE_VERTEBRAE if v.startswith("T")]
    run: list[str] = []
    for name in reversed(thoracic):
        if name not in aux:
            break
        run.insert(0, name)
    return run


def export(out_dir: Path, schedule: Mapping[str, Any], layout: str, model_path: Path, meta: Mapping[str, Any],
           centre_refinement: int = 0, tta: str = "none", level: Path | None = None,
           level_input_size: int | None = None, level_margin: float | None = None):
    """Both stages of ``out_dir`` into one :class:`~lumbar_monai.predictor.LandmarkPredictor` checkpoint
    (``centre_refinement``, ``tta``: the predictor settings of those names, chosen on the validation split).

    ``level``: a level network's stage checkpoint (:mod:`lumbar_monai.levels`: a Pose-Net trained on whole-image
    framings, ``posenet.whole_prob`` 1) for the first pass; ``level_input_size`` its input side where the stage
    checkpoint does not record it; ``level_margin`` the renaming margin (default
    :data:`~lumbar_monai.levels.DEFAULT_LEVEL_MARGIN`)."""
    from ..networks.mnet import MNet
    from ..networks.posenet import PoseNet
    from ..predictor import LandmarkPredictor

    s1 = torch.load(out_dir / "posenet.pt", map_location="cpu", weights_only=True)
    s2 = torch.load(out_dir / "mnet_lumbar.pt", map_location="cpu", weights_only=True)
    cfg = schedule["posenet"]
    size = int(cfg["input_size"])
    stage1 = {"input_size": size, "heatmap_size": size // 8,
              "preprocessing": {"blur_sigma": float(cfg.get("blur_sigma", 1.0)),
                                "clahe_clip": float(cfg.get("clahe_clip", 0.01))},
              "repair": schedule.get("repair", {}), "framing": dict(schedule["framing"])}
    if s1.get("aux_vertebrae"):  # auxiliary training maps: inference reads the layout's channels only
        meta = {**meta, "stage1_aux_vertebrae": list(s1["aux_vertebrae"])}
        stage1["aux_vertebrae"] = list(s1["aux_vertebrae"])
    level_net = None
    if level is not None:
        from ..levels import DEFAULT_LEVEL_MARGIN

        sl = torch.load(level, map_location="cpu", weights_only=True)
        level_size = sl.get("input_size", level_input_size)
        if level_size is None:
            raise ValueError(f"{level}: the stage checkpoint does not record its input size: give level_input_size")
        level_net = build_network(PoseNet, sl)
        stage1["level"] = {"input_size": int(level_size), "above": vertebrae_above_l1(s1.get("aux_vertebrae") or []),
                           "margin": float(DEFAULT_LEVEL_MARGIN if level_margin is None else level_margin)}
        meta = {**meta, "level_network": Path(level).name}
    # the crops the M-Net was trained on; a stage checkpoint without the record predates it: the layout's
    # crop_scale (the stage checkpoints recorded none), a square, vertical spacing
    lay = with_crop_record(get_layout(layout), s2, default_scale=get_layout(layout).crop_scale)
    pred = LandmarkPredictor(
        layout=lay, lumbar_net=build_network(MNet, s2), centre_net=build_network(PoseNet, s1),
        crop_size=int(s2["crop_size"]), crop_blur_sigma=float(s2["crop_blur_sigma"]),
        crop_antialias=bool(s2.get("crop_antialias", False)),
        device="cpu", meta=meta, stage1=stage1,
        centre_refinement=centre_refinement, tta=tta, level_net=level_net,
    )
    return pred.save(model_path)


def main(argv: Sequence[str] | None = None) -> int:
    from ..predictor import TTA_MODES

    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.framed", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("posenet", "mnet", "export"))
    p.add_argument("--datalist", required=True)
    p.add_argument("--schedule", required=True, help="JSON schedule (configs/framed/aasce_ap_cpu.json)")
    p.add_argument("--out", required=True, help="run folder (stage checkpoints, logs)")
    p.add_argument("--layout", default="ap")
    p.add_argument("--model", help="export: the predictor checkpoint to write")
    p.add_argument("--trained-on", default="datalist training split")
    p.add_argument("--centre-refinement", type=int, default=0,
                   help="export: the predictor's centre_refinement (choose it on the validation split)")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="export: the predictor's test-time augmentation (choose it on the validation split)")
    p.add_argument("--level", help="export: a level network's stage checkpoint (a Pose-Net trained on whole-image "
                                    "framings) for the first pass; it names the chain (lumbar_monai.levels)")
    p.add_argument("--level-input-size", type=int, help="export: the level network's input side, where its stage "
                                                        "checkpoint does not record it")
    p.add_argument("--level-margin", type=float, help="export: the renaming margin in centre spacings")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes for the training augmentation (0: in the main process)")
    p.add_argument("--init", help="continue from this stage checkpoint (e.g. DIR/posenet.pt of a first round)")
    p.add_argument("--override", nargs=2, action="append", default=[], metavar=("STAGE.KEY", "JSON_VALUE"),
                   help="e.g. --override posenet.max_epochs 2 or --override select_by '\"loss\"' (the value is parsed "
                        "as JSON, never evaluated)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        schedule = json.loads(Path(a.schedule).read_text())
        for key, value in a.override:
            stage, _, name = key.partition(".")
            if name:
                schedule.setdefault(stage, {})[name] = json.loads(value)
            else:  # a top-level key, e.g. select_by
                schedule[stage] = json.loads(value)
    except (OSError, ValueError) as e:
        print(f"error: {a.schedule}: {e}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(a.device)
    except ValueError as e:
        print(f"error: --device: {e}", file=sys.stderr)
        return 2
    if a.workers < 0:
        print(f"error: --workers must be >= 0, got {a.workers}", file=sys.stderr)
        return 2
    try:
        check_schedule(schedule)
    except ValueError as e:
        print(f"error: {a.schedule}: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(int(schedule.get("seed", 0)))
    layout = get_layout(a.layout).name
    if a.stage == "mnet" and schedule.get("mnet_lumbar", {}).get("extra_windows") and layout != "ap":
        print(f"error: {a.schedule}: mnet_lumbar.extra_windows are AASCE vertebrae (layout ap), not {layout}",
              file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    init = None
    if a.init and a.stage != "export":
        try:
            init = init_weights(torch.load(a.init, map_location="cpu", weights_only=True), a.stage, a.init)
        except (OSError, RuntimeError, ValueError, AttributeError) as e:
            print(f"error: --init: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            return 2
    t0 = time.time()
    try:
        if a.stage == "export":
            if not a.model:
                p.error("export needs --model")
            meta = {"trained_on": a.trained_on, "schedule": Path(a.schedule).name,
                    "framing": dict(schedule["framing"])}
            try:
                print(export(out, schedule, layout, Path(a.model), meta, centre_refinement=a.centre_refinement,
                             tta=a.tta, level=Path(a.level) if a.level else None,
                             level_input_size=a.level_input_size, level_margin=a.level_margin))
            except (OSError, ValueError) as e:
                print(f"error: export: {e}", file=sys.stderr)
                return 2
            return 0
        long_side = int(schedule.get("cache_long_side", 1024)) if a.stage == "posenet" else None
        tag = f"_{long_side}" if long_side else ""
        train = load_split(a.datalist, "training", layout, long_side, out / f"cache_training{tag}.npz")
        val = load_split(a.datalist, "validation", layout, long_side, out / f"cache_validation{tag}.npz")
        aux = list(schedule.get("posenet", {}).get("aux_vertebrae") or []) if a.stage == "posenet" else []
        windows = list(schedule.get("mnet_lumbar", {}).get("extra_windows") or []) if a.stage == "mnet" else []
        if windows:  # validation stays L1-L5: the metric that keeps the best weights is the lumbar one
            train = attach_extra_windows(train, a.datalist, "training", windows)
        if aux:
            train = attach_aux_centres(train, a.datalist, "training", aux)
            val = attach_aux_centres(val, a.datalist, "validation", aux)
        logger.info("%s: %d training / %d validation samples cached in %.0f s", a.stage, len(train), len(val),
                    time.time() - t0)
        logger.info("%s on %s, %d DataLoader workers, amp %s", a.stage, device, a.workers, _amp(schedule, device))
        if a.stage == "posenet":
            res = train_posenet(train, val, schedule, layout, device=str(device), init=init, workers=a.workers)
        else:
            res = train_mnet(train, val, schedule, layout, device=str(device), init=init, workers=a.workers)
    except ValueError as e:  # InputError (a bad file), or an --init whose weights do not fit the schedule's network
        print(f"error: {e}", file=sys.stderr)
        return 2
    net = res.pop("network")
    name = "posenet" if a.stage == "posenet" else "mnet_lumbar"
    extra = {k: v for k, v in res.items() if k in ("crop_size", "crop_blur_sigma", "crop_antialias")}
    if a.stage == "posenet":
        extra["input_size"] = int(schedule["posenet"]["input_size"])
    else:  # the crop geometry the M-Net learned (export builds the predictor's layout from it)
        extra.update(crop_record(mnet_layout(schedule, layout)))
    if a.stage == "posenet" and schedule["posenet"].get("aux_vertebrae"):
        extra["aux_vertebrae"] = list(schedule["posenet"]["aux_vertebrae"])  # names of the channels after the layout's
    _save_stage(out / f"{name}.pt", net, extra)
    record = {"wall_seconds": time.time() - t0, "history": res["history"], "val_history": res["val_history"],
              "val_loss_history": res.get("val_loss_history", []),
              "selected_by": str(schedule.get("select_by", "landmark")), "epochs_run": len(res["history"])}
    (out / f"{name}.done.json").write_text(json.dumps(record, indent=1))
    logger.info("%s done in %.0f s; best validation %s %.5f", name, record["wall_seconds"], record["selected_by"],
                min(res["val_history"]) if res["val_history"] else float("nan"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
