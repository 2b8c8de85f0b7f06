"""The one-stage baseline a MONAI user would build instead of the paper's method (issue 9).

One MONAI :class:`monai.networks.nets.BasicUNet` reads the whole pre-processed radiograph (the stage-1 chain: pad to
square, resize to ``input_size``, [0, 1], blur, CLAHE) and predicts one Gaussian heatmap per landmark (22 lateral,
20 AP) at the input resolution; every landmark is the sub-pixel peak of its own map, mapped back to the original
image with the recorded geometry. No centres, no crops, no PAF, no CoordConv: the comparison asks what the paper's
two stages add over this.

Targets are Eq. 1's unnormalised Gaussian with one fixed ``sigma`` (input pixels; the bundle uses
``input_size / 128``, 3 px at 384) for every landmark; the loss is the paper's own heatmap loss, Eq. 3's per-map L2
norm (:class:`~lumbar_monai.losses.centre.MapNormLoss`). The first choice, plain MSE (``torch.nn.MSELoss``, what a
MONAI user reaches for first), did not learn within the AASCE budget: after 8 epochs its validation MSE (2e-4) was
still above that of an all-zero prediction, and the peaks it read were noise (centre detection 2.6 %); a mean over
every pixel of 20 sparse maps gives gradients too small to leave the zero solution in that time. ``one_stage#loss``
switches it back. The network's output layer starts at zero (:func:`build_network`), so training starts from the
all-zero maps instead of first spending its budget shrinking MONAI's default-initialised ones. Training runs through
the bundle (``configs/baselines/one_stage_basicunet.json``) on the same engines, data, augmentation (cutout off by
default, since Random Spine Cutout is part of the paper's method) and early stopping as Pose-Net.

Written here because MONAI has no landmark-heatmap target transform that keeps Eq. 1 exact (see
:mod:`lumbar_monai.codecs.gaussian`) nor a predictor that maps heatmap peaks back through the pad/resize geometry.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, MapTransform, SelectItemsd, Transform

from ..anatomy import Layout, get_layout
from ..checkpoint import check_checkpoint_format, cpu_state, save_checkpoint
from ..codecs.gaussian import decode_peaks, render_gaussians
from ..predictor import DEFAULT_CONFIDENCE_THRESHOLD
from ..result import LandmarkResult

__all__ = [
    "CHECKPOINT_FORMAT",
    "LandmarkHeatmap",
    "LandmarkHeatmapd",
    "LandmarkHeatmapD",
    "LandmarkHeatmapDict",
    "build_network",
    "one_stage_transforms",
    "OneStagePredictor",
    "export_one_stage_checkpoint",
]

CHECKPOINT_FORMAT = "lumbar-monai/one-stage-predictor"
CHECKPOINT_VERSION = 1
DEFAULT_FEATURES = (16, 16, 32, 64, 128, 16)


class LandmarkHeatmap(Transform):
    """``(N, 2)`` (x, y) landmarks in input pixels -> ``(N, S, S)`` float32: one Eq. 1 Gaussian per landmark.

    Args:
        size: map side; sigma: Gaussian sigma in input pixels, the same for every landmark.
    """

    def __init__(self, size: int, sigma: float = 2.0) -> None:
        self.size = int(size)
        self.sigma = float(sigma)

    def __call__(self, points) -> torch.Tensor:
        pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
        return render_gaussians(pts, self.sigma, self.size, self.size)


class LandmarkHeatmapd(MapTransform):
    """``points`` ``(N, 2)`` (x, y) in input pixels -> ``label`` ``(N, S, S)``: one Eq. 1 Gaussian per landmark.

    Args:
        size: map side (the network input side: BasicUNet predicts at full resolution).
        sigma: Gaussian sigma in input pixels, the same for every landmark.
        points_key, label_key: where the points are read and the maps written.
    """

    def __init__(self, size: int, sigma: float = 2.0, points_key: str = "points", label_key: str = "label",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(points_key, allow_missing_keys)
        self.heatmap = LandmarkHeatmap(size, sigma)
        self.size, self.sigma = self.heatmap.size, self.heatmap.sigma
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.label_key] = self.heatmap(d[key])
        return d


LandmarkHeatmapD = LandmarkHeatmapDict = LandmarkHeatmapd


def build_network(layout: str | Layout, features: Sequence[int] = DEFAULT_FEATURES,
                  zero_init_head: bool = True) -> BasicUNet:
    """MONAI's 2-D BasicUNet: 1 input channel, one output channel per landmark of ``layout``.

    ``zero_init_head`` starts the final 1x1 convolution at zero, so the untrained network predicts all-zero maps.
    With MONAI's default initialisation the untrained network's loss is about 30 times that of all-zero maps, and a
    short budget is spent shrinking its maps: fitting 4 synthetic images at 256 px, the default head was still above
    the all-zero loss after 200 Adam steps (peaks a median 130 px off) while the zero head was below it from step 50
    (42 px after 200 steps); ``benchmarks/baseline_head_init.py`` prints that table. The weights of a trained network
    are unaffected: a checkpoint's state dict replaces them.
    """
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=get_layout(layout).num_points,
                    features=tuple(int(f) for f in features))
    if zero_init_head:
        torch.nn.init.zeros_(net.final_conv.weight)
        torch.nn.init.zeros_(net.final_conv.bias)
    return net


def one_stage_transforms(train: bool, hp: Mapping[str, Any], layout: str) -> Compose:
    """Datalist item -> ``{"image": (1, S, S), "label": (N, S, S)}``: load, stage-1 pre-processing, the stage-1
    augmentation when ``train`` (``hp["cutout"]``, default ``"none"``), landmark maps.

    ``hp`` is the bundle's ``one_stage`` section (``input_size``, ``sigma``, ``cutout``, ``cutout_ratio``).
    """
    from ..io.datalist import LoadLandmarkSampled
    from ..transforms.augment import stage1_augmentation, stage1_preprocessing

    size = int(hp["input_size"])
    chain: list = [LoadLandmarkSampled(("image", "label"), layout=layout), *stage1_preprocessing(size=size)]
    if train:
        chain += stage1_augmentation(cutout=hp.get("cutout", "none"), cutout_ratio=float(hp.get("cutout_ratio", 0.6)))
    chain += [LandmarkHeatmapd(size=size, sigma=float(hp.get("sigma", 2.0))), SelectItemsd(("image", "label"))]
    return Compose(chain)


class OneStagePredictor:
    """``predictor(image) -> LandmarkResult`` for the one-stage baseline; the same interface as
    :class:`~lumbar_monai.predictor.LandmarkPredictor`, so ``evaluate``, ``inference`` and ``lumbar-monai predict``
    run it unchanged. Centres are the means of the predicted corners (as for the ground truth)."""

    def __init__(self, layout: Layout | str, network: torch.nn.Module, input_size: int = 512,
                 network_kwargs: Mapping[str, Any] | None = None,
                 confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
                 device: str | torch.device | None = None, meta: Mapping[str, Any] | None = None) -> None:
        self.layout = get_layout(layout)
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.network = network.to(self.device).eval()
        self.network_kwargs = dict(network_kwargs or {})
        self.stage1 = {"input_size": int(input_size)}
        self.confidence_threshold = float(confidence_threshold)
        self.meta = dict(meta or {})
        self._chain = None

    def _preprocess(self):
        if self._chain is None:
            from ..transforms.augment import stage1_preprocessing

            self._chain = Compose(stage1_preprocessing("image", point_keys=(), size=self.stage1["input_size"]))
        return self._chain

    @torch.inference_mode()
    def predict(self, image, centres=None, pixel_spacing: tuple[float, float] | None = None,
                spacing_source: str | None = None) -> LandmarkResult:
        """Landmarks of one image (any input :meth:`LandmarkPredictor.read_input` takes); ``centres`` is not used
        (the baseline has no centre stage) and must be None."""
        import time

        from ..predictor import LandmarkPredictor, order_violations
        from ..transforms.augment import stage1_input
        from ..transforms.geometry import to_original

        if centres is not None:
            raise ValueError("the one-stage baseline does not take centres")
        t0 = time.perf_counter()
        img, spacing, source = LandmarkPredictor.read_input(image)
        if pixel_spacing is not None:
            spacing, source = (float(pixel_spacing[0]), float(pixel_spacing[1])), spacing_source or "argument"
        x, geometry = stage1_input(self._preprocess(), img)  # a plain tensor: no MetaTensor through the network
        x = x[None].to(self.device)
        t1 = time.perf_counter()
        maps = self.network(x)[0].float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        xy, conf = decode_peaks(maps.cpu())
        pts = np.asarray(to_original(xy.double().numpy(), geometry), dtype=np.float64)
        conf_np = conf.double().numpy()
        cen = self.layout.centres(pts)
        flags = []
        if np.any(conf_np < self.confidence_threshold):
            flags.append("low_confidence")
        reasons = order_violations(pts, cen, self.layout)
        if reasons:
            flags.append("order_violation")
        meta = dict(self.meta)
        meta["timings_ms"] = {"preprocess": 1000.0 * (t1 - t0), "network": 1000.0 * (t2 - t1),
                              "decode": 1000.0 * (time.perf_counter() - t2)}
        if reasons:
            meta["order_violations"] = reasons
        meta["centres_from"] = "corner_mean"
        return LandmarkResult(
            layout=self.layout, points=pts, confidence=conf_np, centres=cen,
            centre_confidence=np.full(self.layout.num_vertebrae, np.nan), qc_flags=flags, pixel_spacing=spacing,
            spacing_source=source, image_size=(int(img.shape[1]), int(img.shape[0])), meta=meta)

    __call__ = predict

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "layout": self.layout.name,
            "network": {"name": "BasicUNet", "kwargs": dict(self.network_kwargs),
                        "state_dict": cpu_state(self.network)},
            "input_size": self.stage1["input_size"],
            "confidence_threshold": self.confidence_threshold,
            "meta": dict(self.meta),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`checkpoint` atomically (``torch.load(weights_only=True)`` reads it)."""
        return save_checkpoint(self.checkpoint(), path)

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], device: str | torch.device | None = None) -> OneStagePredictor:
        check_checkpoint_format(ckpt, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
        kwargs = dict(ckpt["network"]["kwargs"])
        net = build_network(ckpt["layout"], **kwargs)
        net.load_state_dict(ckpt["network"]["state_dict"])
        return cls(ckpt["layout"], net, input_size=int(ckpt["input_size"]), network_kwargs=kwargs,
                   confidence_threshold=float(ckpt.get("confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD)), device=device,
                   meta=ckpt.get("meta"))


def export_one_stage_checkpoint(ckpt_dir: str | Path, layout: str, one_stage: Mapping[str, Any],
                                filename: str = "lumbar_landmarks.pt", trained_on: str = "synthetic") -> Path:
    """Write ``<ckpt_dir>/<filename>`` from the bundle's ``one_stage_best.pt`` (or latest) checkpoint."""
    from ..workflows.checkpoints import load_state_dict_file, stage_file

    kwargs = {"features": [int(f) for f in one_stage.get("features", DEFAULT_FEATURES)]}
    net = build_network(layout, **kwargs)
    net.load_state_dict(load_state_dict_file(stage_file(Path(ckpt_dir), "one_stage")))
    predictor = OneStagePredictor(layout, net, input_size=int(one_stage["input_size"]), network_kwargs=kwargs,
                                  device="cpu", meta={"trained_on": trained_on, "bundle": "lumbar_landmarks",
                                                      "method": "one-stage BasicUNet baseline"})
    return predictor.save(Path(ckpt_dir) / filename)
