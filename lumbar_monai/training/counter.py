"""Train the vertebra counter (:mod:`lumbar_monai.counting`) and attach it to an AP model (*ours*, issue 15).

The counter learns one class-agnostic heatmap: a Gaussian (sigma :data:`COUNT_SIGMA` input pixels) at the centre of
every vertebra the AASCE files label, T1 to L5, on the whole image letterboxed to
:data:`~lumbar_monai.counting.COUNT_INPUT`. Each training sample is zoomed, rotated, shifted, mirrored and given
another gamma (:class:`RandCountViewd`; the points move with the image). The fit is the project's
(:func:`~lumbar_monai.training.fit.fit`: MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``, Ignite's
``TimeLimit``); the best weights are chosen by the landmark metric, :class:`CountError` (the share of validation
images whose counted L1-L5 miss a labelled centre), not by the loss::

    python -m lumbar_monai.training.counter train --datalist runs/aasce_ap/datalist.json --out runs/counter \\
        --median-target training   # trained on standardised contrast, as the shipped counter (round 25)
    python -m lumbar_monai.training.counter attach --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --counter runs/counter/counter.pt --out runs/counter/model.pt
    python -m lumbar_monai.training.counter standardise --model runs/counter/model.pt \\
        --datalist runs/aasce_ap/datalist.json --out runs/counter/model_std.pt   # the contrast of the count
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from ..checkpoint import (
    build_counter,
    network_entry,
    read_checkpoint,
    read_network_file,
    read_predictor_checkpoint,
    save_checkpoint,
)
from ..counting import (
    COUNT_INPUT,
    chain_from_maps,
    check_input_size,
    check_median_target,
    letterbox,
    letterbox_box,
    median_of_parts,
    standardise_median,
    vertebra_peaks,
)

__all__ = ["COUNT_SIGMA", "AASCE_SPINE", "BOTTOM_CUT", "centre_heatmap", "counter_target", "RandCountViewd",
           "CentreWeightedBCE", "CountError", "count_matches", "counter_samples", "training_median_target",
           "load_matching", "initial_counter", "train_counter",
           "counter_entry", "attach_counter", "standardise_counter", "main"]

logger = logging.getLogger(__name__)

#: Gaussian sigma of the counter's targets (input pixels; the vertebrae are 11-30 px apart at 384 px height).
COUNT_SIGMA = 2.5
#: the vertebrae the counter learns, top to bottom: every one the AASCE files label.
AASCE_SPINE = tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))
#: range of a bottom cut's row under the L5 centre, in L4-L5 centre distances (:class:`RandCountViewd`).
BOTTOM_CUT = (0.55, 1.6)


def centre_heatmap(points: np.ndarray, size: tuple[int, int] = COUNT_INPUT, sigma: float = COUNT_SIGMA) -> np.ndarray:
    """``(H, W)`` map: the maximum over ``(K, 2)`` points of unit Gaussians (points off the canvas add nothing)."""
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    out = np.zeros(size, np.float32)
    for x, y in np.asarray(points, np.float32).reshape(-1, 2):
        np.maximum(out, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)), out=out)
    return out


def counter_target(centres: np.ndarray, size: tuple[int, int] = COUNT_INPUT, sigma: float = COUNT_SIGMA) -> np.ndarray:
    """``(2, H, W)`` counter target of the ``(17, 2)`` T1-L5 centres: every vertebra, then T1 alone."""
    c = np.asarray(centres, np.float32).reshape(-1, 2)
    return np.stack([centre_heatmap(c, size, sigma), centre_heatmap(c[:1], size, sigma)])


class RandCountViewd(RandomizableTransform, MapTransform):
    """A counter sample: ``image`` (letterboxed ``(H, W)`` in [0, 1]) -> ``(1, H, W)`` input, ``centres`` (``(K, 2)``
    letterbox pixels, T1-L5) -> ``label`` ``(2, H, W)`` (:func:`counter_target`).

    With ``jitter`` the view is zoomed (``zoom``), rotated (``rotate`` degrees), shifted (``shift``: fraction of the
    width, height), mirrored with probability 0.5 (the target is symmetric: no names) and gamma-changed; the centres
    move with it. With probability ``top_cut_prob`` the view is also blanked above a random row between the T1 and
    the T4 centres (a film that starts lower): the vertebrae above the row leave both targets, so the T1 map learns
    T1 itself rather than "the topmost vertebra". With probability ``bottom_cut_prob`` it is blanked below a row
    ``bottom_cut`` L4-L5 centre distances under the L5 centre (a film that ends just below L5; *ours*): the targets
    stay, L5 is above the row. Without ``jitter`` the letterboxed image is the
    input (validation).

    With ``median_target`` (a counter trained on standardised contrast, as it will read films with
    ``stage1["count"]["median_target"]``; *ours*) the image's part of the canvas (``box_key``: ``(x0, y0, width,
    height)``, :func:`counter_samples`) is gamma-changed and then :func:`~lumbar_monai.counting.standardise_median`-ed
    before the geometry, so the network sees what :func:`~lumbar_monai.counting.letterbox` gives it at inference.
    The standardisation undoes the drawn gamma (exactly, unless its power is clipped): such a counter learns no
    contrast of its own, it relies on the standardisation.
    """

    def __init__(self, keys: KeysCollection = "image", point_key: str = "centres", label_key: str = "label",
                 zoom: tuple[float, float] = (0.8, 1.15), rotate: float = 8.0, shift: tuple[float, float] = (0.1, 0.06),
                 gamma: tuple[float, float] = (0.6, 1.6), sigma: float = COUNT_SIGMA, jitter: bool = True,
                 top_cut_prob: float = 0.0, bottom_cut_prob: float = 0.0,
                 bottom_cut: tuple[float, float] = BOTTOM_CUT, median_target: float | None = None,
                 box_key: str = "box") -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.point_key, self.label_key = point_key, label_key
        self.zoom, self.rotate, self.shift, self.gamma = tuple(zoom), float(rotate), tuple(shift), tuple(gamma)
        self.sigma, self.jitter, self.top_cut_prob = float(sigma), bool(jitter), float(top_cut_prob)
        self.bottom_cut_prob, self.bottom_cut = float(bottom_cut_prob), tuple(float(v) for v in bottom_cut)
        self.median_target, self.box_key = check_median_target(median_target), box_key

    def randomize(self, data: Any = None) -> None:
        self._zoom = self.R.uniform(*self.zoom)
        self._angle = math.radians(self.R.uniform(-self.rotate, self.rotate))
        self._shift = (self.R.uniform(-self.shift[0], self.shift[0]), self.R.uniform(-self.shift[1], self.shift[1]))
        self._mirror = bool(self.R.random() < 0.5)
        self._gamma = self.R.uniform(*self.gamma)
        self._cut = self.R.uniform(0.0, 1.0) if self.R.random() < self.top_cut_prob else None
        self._bottom = None  # drawn only when asked for, so that the draws of the other settings stay as they were
        if self.bottom_cut_prob > 0 and self.R.random() < self.bottom_cut_prob:
            self._bottom = self.R.uniform(*self.bottom_cut)

    def _warp(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image and points under the drawn similarity about the canvas centre (output pixel ``q`` samples input
        ``M (q - c) + c + t``)."""
        h, w = image.shape
        c, s = math.cos(self._angle) / self._zoom, math.sin(self._angle) / self._zoom
        m = np.array([[c, -s], [s, c]])
        if self._mirror:
            m = m @ np.diag([-1.0, 1.0])
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        t = np.array([self._shift[0] * w, self._shift[1] * h])
        # affine_grid works in [-1, 1] per axis: convert the pixel map q -> M (q - c) + c + t
        scale = np.diag([2.0 / w, 2.0 / h])
        theta = np.zeros((2, 3))
        theta[:, :2] = scale @ m @ np.linalg.inv(scale)
        theta[:, 2] = scale @ t
        grid = torch.nn.functional.affine_grid(torch.as_tensor(theta, dtype=torch.float32)[None], (1, 1, h, w),
                                               align_corners=False)
        img = torch.nn.functional.grid_sample(torch.as_tensor(image, dtype=torch.float32)[None, None], grid,
                                              align_corners=False)[0, 0].numpy()
        pts = (np.asarray(points, np.float64) - centre - t) @ np.linalg.inv(m).T + centre
        return img, pts

    def _standardised(self, img: np.ndarray, d: Mapping[Hashable, Any]) -> np.ndarray:
        """The canvas with its image part gamma-changed (when jittered) and brought to ``median_target``."""
        if self.box_key not in d:
            raise ValueError(f"RandCountViewd with a median_target needs the image's box in '{self.box_key}'")
        x0, y0, w, h = (int(v) for v in np.asarray(d[self.box_key]).ravel()[:4])
        out = np.array(img, dtype=np.float32, copy=True)
        part = torch.as_tensor(np.clip(out[y0:y0 + h, x0:x0 + w], 0.0, 1.0))
        if self.jitter:
            part = part ** self._gamma
        out[y0:y0 + h, x0:x0 + w] = standardise_median(part, self.median_target).numpy()
        return out

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pts = np.asarray(d[self.point_key], np.float64)
        if self.jitter:
            self.randomize()
        for key in self.key_iterator(d):
            img = np.asarray(d[key], np.float32)
            shown = pts  # the centres drawn in the targets, T1 first
            if self.median_target is not None:
                img = self._standardised(img, d)
            if self.jitter:
                img, pts = self._warp(img, pts)
                if self.median_target is None:
                    img = np.clip(img, 0.0, 1.0) ** self._gamma
                shown = pts
                if self._cut is not None:  # blank above a row between T1 and T4; those vertebrae leave the targets
                    row = pts[0, 1] + self._cut * (pts[3, 1] - pts[0, 1])
                    img[: max(int(np.ceil(row)), 0)] = 0.0
                    below = pts[1:][pts[1:, 1] >= row]
                    shown = np.concatenate([np.full((1, 2), -1e4), below])  # no T1: a point far off the canvas
                if self._bottom is not None:  # blank below a row under L5 (the last centre); the targets stay
                    row = pts[-1, 1] + self._bottom * float(np.linalg.norm(pts[-1] - pts[-2]))
                    img[max(int(np.ceil(row)), 0):] = 0.0
            d[key] = torch.as_tensor(np.ascontiguousarray(img))[None]
            d[self.label_key] = torch.as_tensor(counter_target(shown, img.shape, self.sigma))
        d[self.point_key] = torch.as_tensor(pts, dtype=torch.float32)
        return d


class CentreWeightedBCE(torch.nn.Module):
    """Binary cross-entropy on the logits, each pixel weighted ``1 + weight * target``: the few pixels near a centre
    count as much as the background (*ours*; the maps are >99 % background)."""

    def __init__(self, weight: float = 20.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (bce * (1.0 + self.weight * target)).mean()


class CountError(Metric):
    """Share (%) of images whose counted L1-L5 (:func:`~lumbar_monai.counting.counted_chain` on the predicted maps)
    misses a labelled centre by more than half the labelled L1-L5 spacing, a refused count (no chain) weighing
    ``refusal_weight``; lower is better. A wrong count renames a right window chain (about four in five on AASCE
    validation), a refusal only forgoes mending a wrong one (about one in five): hence 0.25 by default (*ours*).

    ``output_transform`` gives ``(logits (B, 2, H, W), target maps (B, 2, H, W))``; the labelled centres are the
    first target map's peaks (:func:`counter_target` draws one per vertebra, T1-L5), so the metric needs nothing
    else.
    """

    def __init__(self, output_transform: Callable = lambda x: x, threshold: float = 0.5,
                 refusal_weight: float = 0.25, device: str | torch.device = "cpu") -> None:
        self.threshold, self.refusal_weight = float(threshold), float(refusal_weight)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._wrong, self._count = 0, 0

    @reinit__is_reduced
    def update(self, output: tuple[Any, Any]) -> None:
        logits, target = (torch.as_tensor(v).detach().float().cpu() for v in output)
        for p, t in zip(torch.sigmoid(logits), target, strict=True):
            labelled = vertebra_peaks(t[0], threshold=0.5)[:, :2]
            verdict = count_matches(p, labelled, self.threshold)
            self._wrong += self.refusal_weight if verdict is None else float(not verdict)
            self._count += 1

    def compute(self) -> float:
        if self._count == 0:
            raise NotComputableError("CountError needs at least one image")
        return 100.0 * self._wrong / self._count


def count_matches(prob: torch.Tensor, centres: np.ndarray, threshold: float = 0.5) -> bool | None:
    """Whether the counted L1-L5 of the counter's ``(2, H, W)`` probability maps lie within half a labelled spacing of
    the labelled ones (``centres``: the labelled centres top to bottom, L1-L5 the last five); ``None``: no count."""
    gt = np.asarray(centres, np.float64).reshape(-1, 2)[-5:]
    chain = chain_from_maps(prob, threshold)
    if chain is None:
        return None
    if len(gt) < 5:
        return False
    spacing = float(np.median(np.linalg.norm(np.diff(gt, axis=0), axis=1)))
    return bool(np.all(np.linalg.norm(chain - gt, axis=1) < 0.5 * spacing))


def counter_samples(datalist: str | Path, split: str, layout: str = "ap", long_side: int = 1024,
                    cache: str | Path | None = None,
                    size: tuple[int, int] = COUNT_INPUT) -> list[dict[str, Any]]:
    """``[{"image": letterboxed (H, W), "centres": (17, 2) T1-L5 in letterbox pixels, "box": the image's part of
    the canvas (x0, y0, width, height)}]`` of one split of an AASCE
    datalist (the images shrunk to ``long_side`` and cached as :func:`~lumbar_monai.training.framed.load_split`
    does; T1-T12 from the AASCE copy that holds each image, :func:`~lumbar_monai.training.framed.attach_aux_centres`)."""
    from ..anatomy import get_layout
    from .framed import attach_aux_centres, load_split

    samples = load_split(datalist, split, layout, long_side, cache)
    samples = attach_aux_centres(samples, datalist, split, AASCE_SPINE[:12])
    lay = get_layout(layout)
    out = []
    for s in samples:
        lumbar = np.asarray(s["points"], np.float64).reshape(lay.num_vertebrae, -1, 2).mean(1)
        img, scale, offset = letterbox(s["image"].astype(np.float32) / 255.0, size)
        _, nh, nw, x0, y0 = letterbox_box(s["image"].shape, size)
        centres = np.concatenate([np.asarray(s["aux_points"], np.float64), lumbar]) * scale + offset
        out.append({"image": img, "centres": centres.astype(np.float32), "box": np.array([x0, y0, nw, nh])})
    return out


def training_median_target(samples: Sequence[Mapping[str, Any]]) -> float:
    """:func:`~lumbar_monai.counting.median_of_parts` of :func:`counter_samples` (already letterboxed): the target
    :func:`~lumbar_monai.counting.median_target` fits on the images themselves."""
    if not samples:
        raise ValueError("no training image to fit the counter's median_target on")
    return check_median_target(median_of_parts((s["image"], s["box"]) for s in samples))  # all-black: refused


def load_matching(net: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Copy the tensors of ``state`` into ``net`` where the shapes match, or where only the first dimension (output
    channels) is smaller, into the first rows; returns how many tensors were copied."""
    own = net.state_dict()
    copied = 0
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape == own[k].shape:
            own[k] = v.clone()
        elif v.dim() == own[k].dim() and v.shape[1:] == own[k].shape[1:] and v.shape[0] < own[k].shape[0]:
            own[k][: v.shape[0]] = v
        else:
            continue
        copied += 1
    net.load_state_dict(own)
    return copied


def initial_counter(init: str | Path | None = None) -> torch.nn.Module:
    """A new counter network, its weights copied from ``init`` where given (:func:`load_matching`): a counter
    checkpoint, a model holding a counter (e.g. the shipped AP model) or a bare state dict; ``ValueError`` with one
    line when no tensor of ``init`` fits."""
    from ..counting import build_counter_net

    net = build_counter_net()
    if init is None:
        return net
    state = torch.load(init, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "stage1_counter" in state:  # a model holding a counter
        state = counter_entry(init, state)
    if not load_matching(net, state.get("state_dict", state) if isinstance(state, Mapping) else state):
        raise ValueError(f"{init}: no tensor of it fits the counter (not a counter or a model holding one)")
    return net


def train_counter(datalist: str | Path, out: str | Path, layout: str = "ap", epochs: int = 100,
                  batch_size: int = 8, lr: float = 2e-3, long_side: int = 1024, max_seconds: float | None = None,
                  device: str = "auto", seed: int = 0, init: str | Path | None = None,
                  top_cut_prob: float = 0.0, input_size: Sequence[int] = COUNT_INPUT,
                  bottom_cut_prob: float = 0.0, median_target: float | str | None = None) -> dict[str, Any]:
    """Train the counter on ``datalist``'s training split (the best epoch by :class:`CountError` on its validation
    split) and write ``out/counter.pt``; returns ``{"count_error": %, "epochs": n, "path": str}``. ``init``: what
    :func:`initial_counter` starts from (a counter checkpoint, a model holding one or a bare state dict; the U-Net
    is fully convolutional, so a counter of another ``input_size`` starts it too); ``top_cut_prob``,
    ``bottom_cut_prob``: :class:`RandCountViewd`'s; ``input_size``: the letterbox ``(height, width)``, kept in the checkpoint (``attach`` copies it);
    ``median_target``: train on standardised contrast (:class:`RandCountViewd`), a number in (0, 1) or
    ``"training"`` (the median of the training images' medians, :func:`training_median_target`); kept in the
    checkpoint, and ``attach`` sets the model's ``stage1["count"]["median_target"]`` from it."""
    from monai.data import DataLoader, Dataset
    from monai.handlers import from_engine
    from monai.utils import set_determinism

    from ..devices import resolve_device
    from .fit import fit

    size = check_input_size(input_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_determinism(seed)
    dev = resolve_device(device)
    train = counter_samples(datalist, "training", layout, long_side, out / f"cache_training_{long_side}.npz", size)
    val = counter_samples(datalist, "validation", layout, long_side, out / f"cache_validation_{long_side}.npz", size)
    if not train or not val:
        raise ValueError(f"{datalist}: the counter needs training and validation images")
    target = training_median_target(train) if median_target == "training" else check_median_target(median_target)
    net = initial_counter(init).to(dev)
    metric = CountError(output_transform=from_engine(["pred", "label"]))
    views = RandCountViewd(top_cut_prob=top_cut_prob, bottom_cut_prob=bottom_cut_prob, median_target=target)
    result = fit(net, DataLoader(Dataset(train, transform=views), batch_size=batch_size, shuffle=True,
                                 num_workers=0),
                 CentreWeightedBCE(), lr=lr, max_epochs=epochs,
                 val_loader=DataLoader(Dataset(val, transform=RandCountViewd(jitter=False, median_target=target)),
                                       batch_size=batch_size, num_workers=0),
                 patience=max(epochs, 1), device=dev, max_seconds=max_seconds, select_metric=metric)
    net = net.cpu().eval()
    error = float(min(result["val_history"])) if result["val_history"] else float("nan")
    path = save_checkpoint({**network_entry(net, "BasicUNet"), "count_error": error, "epochs": len(result["history"]),
                            "input_size": list(size), "median_target": target}, out / "counter.pt")
    logger.info("counter: %d epochs, validation count error %.1f %%", len(result["history"]), error)
    return {"count_error": error, "epochs": len(result["history"]), "path": str(path)}


def counter_entry(path: str | Path, ckpt: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The counter checkpoint entry (``network``, ``kwargs``, ``state_dict``, ``input_size``, ...) of ``path``: a
    file written by ``counter train``, or a predictor checkpoint that holds a counter (e.g. the shipped AP model:
    its counter can be attached to other window networks); :class:`~lumbar_monai.errors.InputError` with one line
    otherwise. ``ckpt``: the file already read."""
    from ..errors import InputError

    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    if "stage1_counter" not in ckpt:
        return read_network_file(path, "vertebra counter (train one with 'counter train')", ckpt)
    if not isinstance(ckpt["stage1_counter"], Mapping):
        raise InputError(Path(path), "the model holds no vertebra counter")
    settings = (ckpt.get("stage1") or {}).get("count") or {}
    counted = (ckpt.get("meta") or {}).get("counter") or {}
    return {**ckpt["stage1_counter"], "input_size": settings.get("input_size", list(COUNT_INPUT)),
            "count_error": counted.get("count_error", float("nan")), "median_target": settings.get("median_target")}


def attach_counter(model: str | Path, counter: str | Path, out: str | Path, margin: float | None = None,
                   aux_vertebrae: list[str] | None = None, mirror_check: bool = False, half: Sequence[str] = ()) -> Path:
    """Write a copy of the AP predictor checkpoint ``model`` (framed stage 1) with the counter ``counter`` in it.

    The window Pose-Net's T11/T12 maps, when it has them, let the count rename its chain upwards too.
    ``aux_vertebrae`` names its channels after L1-L5 for a checkpoint that does not (one written before the names
    were recorded, as the shipped model's round-4 Pose-Net with T11 and T12). ``mirror_check``: keep only counts
    the image's mirror repeats (:func:`~lumbar_monai.counting.count_reference`); ``half``: the entries whose weights
    are stored as float16 (:meth:`~lumbar_monai.predictor.LandmarkPredictor.save`)."""
    from ..errors import InputError
    from ..predictor import LandmarkPredictor

    pred = LandmarkPredictor.load(model, device="cpu")
    if aux_vertebrae is not None and not pred.stage1.get("aux_vertebrae"):
        extra = int(getattr(pred.centre_net, "out_channels", 0)) - pred.layout.num_vertebrae
        if len(aux_vertebrae) != extra:
            raise InputError(Path(model), f"its Pose-Net has {extra} auxiliary channels, not "
                                          f"{len(aux_vertebrae)} ({', '.join(aux_vertebrae)})")
        pred.stage1["aux_vertebrae"] = [str(v) for v in aux_vertebrae]
    entry = counter_entry(counter)
    settings = {"above": [v for v in ("T11", "T12") if v in pred.stage1.get("aux_vertebrae", [])],
                "mirror_check": bool(mirror_check), "input_size": entry.get("input_size", COUNT_INPUT),
                "median_target": entry.get("median_target")}  # a counter trained on standardised contrast
    if margin is not None:
        settings["margin"] = float(margin)
    try:
        pred.set_counter(build_counter(entry), settings)
    except ValueError as e:
        raise InputError(Path(model), str(e)) from None
    pred.meta["counter"] = {"count_error": float(entry.get("count_error", float("nan")))}
    return pred.save(out, half=half)


def standardise_counter(model: str | Path, datalist: str | Path, out: str | Path, split: str = "training") -> float:
    """Write a copy of ``model`` whose vertebra counter standardises each image's median intensity to that of
    ``split``'s images (:func:`~lumbar_monai.counting.median_target`, :func:`~lumbar_monai.counting.letterbox`);
    returns the target. The checkpoint is copied entry by entry (weights byte for byte); only
    ``stage1["count"]["median_target"]`` and ``meta["counter_median_target_fit"]`` are set. An image that cannot
    be read is skipped with a one-line warning naming its index (never its file name)."""
    import sys

    from ..counting import check_median_target, median_target
    from ..errors import InputError
    from ..io.datalist import LoadLandmarkSampled, load_landmark_datalist

    ckpt = read_predictor_checkpoint(model)
    count = (ckpt.get("stage1") or {}).get("count")
    if ckpt.get("stage1_counter") is None or count is None:
        raise InputError(Path(model), "the model has no vertebra counter (counter attach adds one)")
    loader = LoadLandmarkSampled(("image", "label"), layout=str(ckpt["layout"]))
    images = []
    for i, item in enumerate(load_landmark_datalist(datalist, split)):
        try:
            images.append(np.asarray(loader(item)["image"])[0])
        except (InputError, OSError, ValueError) as e:
            print(f"warning: {split} item {i} skipped: {type(e).__name__}", file=sys.stderr)
    if not images:
        raise InputError(Path(datalist), f"split {split!r} has no readable image")
    try:  # all-black (or all-white) films give no target
        target = check_median_target(median_target(images, tuple(count.get("input_size", COUNT_INPUT))))
    except ValueError as e:
        raise InputError(Path(datalist), f"split {split!r}: {e}") from None
    ckpt["stage1"] = {**ckpt["stage1"], "count": {**count, "median_target": target}}
    ckpt["meta"] = {**dict(ckpt.get("meta") or {}),
                    "counter_median_target_fit": {"split": split, "n_images": len(images)}}
    save_checkpoint(ckpt, out)
    return target


def _median_target_arg(value: str | None) -> float | str | None:
    if value is None or value == "training":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--median-target is a number in (0, 1) or 'training', got {value!r}") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.counter", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the vertebra counter")
    t.add_argument("--datalist", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--layout", default="ap")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--long-side", type=int, default=1024)
    t.add_argument("--max-seconds", type=float, default=None)
    t.add_argument("--device", default="auto")
    t.add_argument("--init", default=None, help="a counter checkpoint, or a model holding a counter, to start from")
    t.add_argument("--top-cut-prob", type=float, default=0.0,
                   help="share of training views blanked above a row between T1 and T4 (no T1 target)")
    t.add_argument("--bottom-cut-prob", type=float, default=0.0,
                   help=f"share of training views blanked below a row {BOTTOM_CUT[0]}-{BOTTOM_CUT[1]} L4-L5 centre "
                        "distances under L5 (a film that ends just below L5; every target kept)")
    t.add_argument("--median-target", default=None,
                   help="train on standardised contrast: each image brought to this median intensity, a number in "
                        "(0, 1) or 'training' (the training images' median); attach carries it into the model")
    t.add_argument("--input-size", default=f"{COUNT_INPUT[0]},{COUNT_INPUT[1]}",
                   help="letterbox HEIGHT,WIDTH of the counter input, multiples of 16 (default %(default)s)")
    a = sub.add_parser("attach", help="copy an AP model with the counter in it")
    a.add_argument("--model", required=True)
    a.add_argument("--counter", required=True,
                   help="a counter file ('counter train'), or a model holding one (e.g. the shipped AP model)")
    a.add_argument("--out", required=True)
    a.add_argument("--margin", type=float, default=None)
    a.add_argument("--aux-vertebrae", default=None,
                   help="comma-separated names of the Pose-Net's channels after L1-L5, for a checkpoint that does not "
                        "record them (the shipped model: T11,T12)")
    a.add_argument("--mirror-check", action="store_true", help="keep only counts that the image's mirror repeats")
    a.add_argument("--half", default="", help="comma-separated checkpoint entries whose weights are stored as float16 "
                                              "(e.g. lumbar,stage1_counter: the shipped model)")
    z = sub.add_parser("standardise", help="copy an AP model whose counter brings each image's median intensity to "
                                           "that of a split's images (a film's tone curve undone)")
    z.add_argument("--model", required=True, help="a model holding a counter (e.g. the shipped AP model)")
    z.add_argument("--datalist", required=True)
    z.add_argument("--split", default="training")
    z.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..errors import InputError

    try:
        if args.command == "train":
            r = train_counter(args.datalist, args.out, layout=args.layout, epochs=args.epochs, lr=args.lr,
                              long_side=args.long_side, max_seconds=args.max_seconds, device=args.device,
                              init=args.init, top_cut_prob=args.top_cut_prob, bottom_cut_prob=args.bottom_cut_prob,
                              input_size=[v.strip() for v in args.input_size.split(",")],
                              median_target=_median_target_arg(args.median_target))
            print(f"counter: {r['epochs']} epochs, validation count error {r['count_error']:.1f} % -> {r['path']}")
        elif args.command == "standardise":
            target = standardise_counter(args.model, args.datalist, args.out, args.split)
            print(f"counter median target {target:.4f} ({args.split} split) -> {args.out}")
        else:
            aux = None if args.aux_vertebrae is None else [v.strip() for v in args.aux_vertebrae.split(",") if v.strip()]
            half = [v.strip() for v in args.half.split(",") if v.strip()]
            path = attach_counter(args.model, args.counter, args.out, args.margin, aux, args.mirror_check, half)
            print(f"wrote {path}")
    except (InputError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
