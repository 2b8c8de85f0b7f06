"""The two-stage landmark predictor: image in, :class:`~lumbar_monai.result.LandmarkResult` out (An et al. 2022).

Stage 1 (Section 3.2): zero-pad to square, resize to 512, scale to [0, 1], blur, CLAHE
(:func:`~lumbar_monai.transforms.augment.stage1_preprocessing`) -> Pose-Net -> centre maps -> Algorithm 1
(:mod:`lumbar_monai.postprocess`) -> centres mapped back to original pixels through the recorded geometry.
Stage 2 (Section 3.3): the whole original image is min-max scaled to [0, 1], every vertebra is cropped around its
centre (Eq. 5) in *one* batched resampling (:func:`~lumbar_monai.crops.extract_vertebra_crops`), resized, blurred;
the lumbar crops go through the lumbar M-Net as one batch, the S1 crop through the sacrum M-Net; the corner maps
are decoded with sub-pixel peaks and the corners mapped back to original pixels exactly through each crop's
matrix.

QC flags (:data:`~lumbar_monai.result.QC_FLAGS`): ``centre_repaired`` when Algorithm 1 fired; ``low_confidence``
when a corner's peak height is below ``confidence_threshold`` (0.3, *ours*: the targets peak at 1, a trained
M-Net's peaks at visible corners are typically well above one half); ``order_violation`` when the centres are not
strictly cranio-caudal in y, a vertebra's inferior corner is above its superior corner on the same side, or the
mean y of an end plate is above the one before it (vertebrae overlapping), all of which are anatomically
impossible on an upright lateral or AP radiograph; ``level_unconfirmed`` when a vertebra counter (or level network)
did not confirm the window Pose-Net's names of L1-L5 (``meta["level_check"]``: renamed, disputed or not counted);
``shape_outlier`` when a model with a shape prior (:mod:`lumbar_monai.shape_prior`) replaced a corner that lay half a
vertebra height or more from the prior's fit to all the corners (``meta["shape_prior"]``); ``centre_ambiguous`` when
a centre map has a second peak at least :data:`~lumbar_monai.postprocess.SECOND_PEAK_FLAG` as high as its highest
(``meta["centre_second_peak"]``, *ours*).

Checkpoint format (:meth:`LandmarkPredictor.save` / :meth:`LandmarkPredictor.load`, the file and network-entry
helpers in :mod:`lumbar_monai.checkpoint`): one ``torch.save`` of plain dicts, lists, strings, numbers and tensors,
so that ``torch.load(..., weights_only=True)`` reads it::

    {"format": "lumbar-monai-landmarks", "version": 1, "layout": "lateral",
     "stage1": {"network": "PoseNet", "kwargs": {...}, "state_dict": {...},
                "input_size": 512, "heatmap_size": 64, "preprocessing": {...}} | None,
     "lumbar": {"network": "MNet", "kwargs": {...}, "state_dict": {...}} | None,
     "sacrum": {...} | None,
     "lumbar_vertebrae": {"L5": {"network": "MNet", "kwargs": {...}, "state_dict": {...}}} | None,  # optional
     "stage1_level": {"network": "PoseNet", "kwargs": {...}, "state_dict": {...}} | None,  # optional
     "display": {"network": "Classifier", "kwargs": {...}, "state_dict": {...}} | None,  # optional, AP
     "stage1_counter": {"network": "BasicUNet", "kwargs": {...}, "state_dict": {...}} | None,  # optional
     "shape_prior": {"layout": ..., "mean": [...], "modes": [...], ...} | None,  # optional (ShapePrior.as_record)
     "crop_size": 256, "crop_blur_sigma": 1.0, "confidence_threshold": 0.3, "meta": {...},
     "crop_scale": 1.0, "crop_aspect": 1.0, "crop_spacing": "vertical"}  # the crops the M-Nets were trained on

A checkpoint without ``crop_scale`` / ``crop_aspect`` / ``crop_spacing`` predates the setting: 1.0, 1.0 and
``"vertical"`` (Eq. 5 as the paper has it), whatever the layout's defaults are now.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .anatomy import Layout, crop_record, get_layout, with_crop_record
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    build_counter,
    build_display,
    build_network,
    check_checkpoint_format,
    half_entry,
    is_network_entry,
    network_entry,
    predictor_from_file,
    save_checkpoint,
    with_init_kwargs,
)
from .codecs.corner import CornerCodec
from .counting import COUNT_INPUT, DEFAULT_AGREEMENT, check_input_size, check_median_target
from .crops import crop_to_image, extract_vertebra_crops
from .levels import DEFAULT_LEVEL_MARGIN
from .networks.mnet import MNet
from .postprocess import SECOND_PEAK_FLAG
from .result import CentreAnswer, LandmarkResult
from .shape_prior import ShapePrior

__all__ = ["LandmarkPredictor", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "order_violations", "with_init_kwargs"]
DEFAULT_CONFIDENCE_THRESHOLD = 0.3


def order_violations(points: np.ndarray, centres: np.ndarray, layout: Layout, facing: str | None = None) -> list[str]:
    """Human-readable reasons why the landmarks are in an impossible order (empty list: none).

    Cranio-caudal order in y always; on a lateral view with a known ``facing`` (the image side the patient faces)
    also the anterior corner of every end plate on that side of its posterior corner."""
    reasons = []
    if facing is not None and layout.view == "lateral":
        p = np.asarray(points, dtype=np.float64)
        s = 1.0 if facing == "left" else -1.0
        for (a, b), name in zip(layout.end_plate_segments, _plate_names(layout), strict=True):
            if not s * (p[b, 0] - p[a, 0]) > 0:
                reasons.append(f"{name}: the anterior corner is not on the {facing} (the side the patient faces)")
    cy = np.asarray(centres, dtype=np.float64)[:, 1]
    for i in range(len(cy) - 1):
        if not cy[i] < cy[i + 1]:
            reasons.append(f"centre of {layout.vertebrae[i + 1].name} is not below {layout.vertebrae[i].name}")
    p = np.asarray(points, dtype=np.float64)
    plate_y = []
    for spec, sl in zip(layout.vertebrae, layout.vertebra_slices, strict=False):
        q = p[sl]
        if len(spec.end_plates) == 2:
            (a0, a1), (b0, b1) = spec.end_plates
            if not (q[a0, 1] < q[b0, 1] and q[a1, 1] < q[b1, 1]):
                reasons.append(f"{spec.name}: an inferior corner is above its superior corner")
        for a, b in spec.end_plates:
            plate_y.append((spec.name, 0.5 * (q[a, 1] + q[b, 1])))
    for (n0, y0), (n1, y1) in zip(plate_y[:-1], plate_y[1:], strict=False):
        if not y0 < y1:
            reasons.append(f"end plates of {n0} and {n1} out of order")
    return reasons


def _plate_names(layout: Layout) -> list[str]:
    return [f"{v.name} {'superior' if k == 0 and len(v.end_plates) == 2 else 'inferior' if k else 'upper'} end plate"
            for v in layout.vertebrae for k in range(len(v.end_plates))]


class LandmarkPredictor:
    """Both stages behind one call: ``predictor(image) -> LandmarkResult`` (original pixels and mm).

    Args:
        layout: landmark layout.
        lumbar_net: the lumbar M-Net (``4 [+1]`` channels for the lateral layout).
        vertebra_nets: M-Nets of single lumbar vertebrae by name (*ours*, e.g. ``{"L5": net}``: a copy of the
            lumbar M-Net trained further on that vertebra's crops alone): a vertebra named here is read by its own
            network, on the same crop with the same corner codec; the others by ``lumbar_net``.
        sacrum_net: the sacrum M-Net, required when the layout has a sacrum.
        centre_net: the Pose-Net; without it :meth:`predict` needs ``centres``.
        level_net: a level network (:mod:`lumbar_monai.levels`, framed stage 1 only): a Pose-Net on the whole
            image whose L1-L5 chain, counted from the top of the spine, names the window Pose-Net's chain;
            ``stage1["level"]`` holds its ``input_size``, ``above`` (the window Pose-Net's auxiliary vertebrae
            directly over L1, top to bottom, e.g. ``["T11", "T12"]``) and ``margin``.
        counter_net: a vertebra counter (:mod:`lumbar_monai.counting`, framed stage 1 only): counts the vertebrae
            from T1 down on the whole image; its L1-L5 rename the window Pose-Net's chain by whole levels.
                ``stage1["count"]`` holds ``above`` (as for ``level_net``), ``margin``, ``agreement``, ``threshold``,
            ``min_distance``, ``mirror_check``, ``input_size`` and ``median_target``
            (:class:`~lumbar_monai.counting.CountPass`). Not together with ``level_net``.
        display_net: an AP display network (:mod:`lumbar_monai.display`): decides whether an AP image is shown
            mirrored (the patient's left on the image left); a mirrored image is mirrored back before the landmark
            networks and the points mirrored after, names unchanged. AP layouts only.
        crop_size: M-Net input side (256).
        crop_blur_sigma: blur after resizing the crops (crop pixels).
        crop_antialias: smooth the image before sampling the crops where they shrink it
            (:func:`~lumbar_monai.crops.antialias_sigma`; *ours*, off in checkpoints that predate it).
        stage1: stage-1 settings: ``input_size`` (512), ``heatmap_size`` (64), ``preprocessing`` (kwargs of
            :func:`~lumbar_monai.transforms.augment.stage1_preprocessing`: ``blur_sigma``, ``clahe``, ...),
            ``repair`` (kwargs of :func:`~lumbar_monai.postprocess.repair_missing_centre`, or ``False`` to skip
            Algorithm 1); framed stage 1 (:mod:`lumbar_monai.framing`): ``framing`` (``passes``, ``factor``),
            ``aux_vertebrae`` (names of the Pose-Net's channels after the layout's), ``level`` (with ``level_net``),
            ``count`` (with ``counter_net``).
        confidence_threshold: corner peak height below which ``low_confidence`` is flagged.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        meta: free-form, copied into every result (model versions); never patient data.
        amp: run the networks under float16 autocast (default: on CUDA only); on CUDA the networks and their
            inputs are also put in channels-last memory format.
        centre_refinement: after stage 2, move each lumbar centre to the mean of its four predicted corners and
            run stage 2 again on the new crops, this many times (*ours*; 0, the default, is the paper: the
            Pose-Net centres are final). Only Pose-Net centres are refined, never centres given to :meth:`predict`.
        tta: ``"none"`` (the paper) or ``"mirror"`` (*ours*): each M-Net averages its corner maps over the crop
            and its left-right mirror (:class:`~lumbar_monai.networks.mirror.MirrorEnsemble`, left/right corner
            channels swapped back); twice the stage-2 network work. Only for layouts with left/right corners (AP).
            Pose-Net is not mirrored: AASCE validation split, round-2 weights, centre detection 79.0 % -> 77.4 %
            with a mirrored Pose-Net too (its window holds asymmetric anatomy, a likely cue to the levels).
        shape_prior: a :class:`~lumbar_monai.shape_prior.ShapePrior` of the layout (*ours*; ``None``, the paper:
            every corner is its own peak): after stage 2 the corners are fitted with it, each moved towards the
            fit by one minus its Tukey weight; a corner half a vertebra height from the fit is replaced, QC flag
            ``shape_outlier``, names and the largest residual in ``meta["shape_prior"]``.
    """

    def __init__(
        self,
        layout: Layout | str = "lateral",
        lumbar_net: torch.nn.Module | None = None,
        sacrum_net: torch.nn.Module | None = None,
        centre_net: torch.nn.Module | None = None,
        crop_size: int = 256,
        crop_blur_sigma: float = 1.0,
        crop_antialias: bool = False,
        stage1: Mapping[str, Any] | None = None,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
        device: str | torch.device | None = None,
        meta: Mapping[str, Any] | None = None,
        amp: bool | None = None,
        centre_refinement: int = 0,
        tta: str = "none",
        level_net: torch.nn.Module | None = None,
        display_net: torch.nn.Module | None = None,
        counter_net: torch.nn.Module | None = None,
        shape_prior: ShapePrior | None = None,
        vertebra_nets: Mapping[str, torch.nn.Module] | None = None,
    ) -> None:
        self.layout = get_layout(layout)
        if shape_prior is not None and shape_prior.layout != self.layout.name:
            raise ValueError(f"the shape prior is for layout {shape_prior.layout!r}, not {self.layout.name!r}")
        self.shape_prior = shape_prior
        if display_net is not None and self.layout.view == "lateral":
            raise ValueError("a display network is for AP layouts (lateral images have a facing instead)")
        self.tta = tta
        if int(centre_refinement) < 0:
            raise ValueError(f"centre_refinement must be >= 0, got {centre_refinement}")
        self.centre_refinement = int(centre_refinement)
        if lumbar_net is None:
            raise ValueError("a lumbar M-Net is required")
        if self.layout.has_sacrum and sacrum_net is None:
            raise ValueError(f"layout {self.layout.name!r} has a sacrum: a sacrum M-Net is required")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.lumbar_net = lumbar_net.to(self.device).eval()
        self.vertebra_nets = self._check_vertebra_nets(vertebra_nets or {})
        self.sacrum_net = sacrum_net.to(self.device).eval() if sacrum_net is not None else None
        self.centre_net = centre_net.to(self.device).eval() if centre_net is not None else None
        self.crop_size = int(crop_size)
        self.crop_blur_sigma = float(crop_blur_sigma)
        self.crop_antialias = bool(crop_antialias)
        s1 = dict(stage1 or {})
        self.stage1 = {
            "input_size": int(s1.get("input_size", 512)),
            "heatmap_size": int(s1.get("heatmap_size", int(s1.get("input_size", 512)) // 8)),
            "preprocessing": dict(s1.get("preprocessing", {})),
            "repair": s1.get("repair", {}),
        }
        if s1.get("framing"):  # windows instead of pad-and-resize (lumbar_monai.framing): passes, factor
            self.stage1["framing"] = dict(s1["framing"])
        if s1.get("aux_vertebrae"):
            self.stage1["aux_vertebrae"] = [str(v) for v in s1["aux_vertebrae"]]
        self.level_net = level_net.to(self.device).eval() if level_net is not None else None
        if self.level_net is not None:
            self.stage1["level"] = self._check_level(s1)
        self.counter_net = None
        if counter_net is not None:
            self.set_counter(counter_net, s1.get("count") or {})
        self.display_net = display_net.to(self.device).eval() if display_net is not None else None
        self.confidence_threshold = float(confidence_threshold)
        self.meta = dict(meta or {})
        self.lumbar_codec = CornerCodec(self.layout, "lumbar", size=self.crop_size)
        self.sacrum_codec = CornerCodec(self.layout, "sacrum", size=self.crop_size) if self.layout.has_sacrum else None
        self._stage1_chain = None
        self._centre_codec = None
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            for net in (self.lumbar_net, self.sacrum_net, self.centre_net, self.level_net, self.counter_net,
                        *self.vertebra_nets.values()):
                if net is not None:
                    net.to(memory_format=torch.channels_last)

    def _check_vertebra_nets(self, nets: Mapping[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
        """``vertebra_nets`` in layout order, on the device; ``ValueError`` for a name that is not one of the layout's
        lumbar vertebrae."""
        lumbar = [self.layout.vertebrae[i].name for i in self.layout.lumbar_indices]
        unknown = [name for name in nets if name not in lumbar]
        if unknown:
            raise ValueError(f"vertebra_nets: {unknown} are not lumbar vertebrae of layout {self.layout.name!r} "
                             f"({', '.join(lumbar)})")
        return {name: nets[name].to(self.device).eval() for name in lumbar if name in nets}

    def set_vertebra_nets(self, nets: Mapping[str, torch.nn.Module]) -> None:
        """Replace :attr:`vertebra_nets` (see the class docstring), checked as the constructor checks them."""
        self.vertebra_nets = self._check_vertebra_nets(nets)
        if self.channels_last:
            for net in self.vertebra_nets.values():
                net.to(memory_format=torch.channels_last)

    def _check_level(self, s1: Mapping[str, Any]) -> dict[str, Any]:
        """The ``stage1["level"]`` settings of a level network, checked (``ValueError`` with one line)."""
        if not s1.get("framing"):
            raise ValueError("a level network needs framed stage 1 (stage1['framing'])")
        lv = dict(s1.get("level") or {})
        size = int(lv.get("input_size", 0))
        if size <= 0 or size % 8:
            raise ValueError(f"stage1['level']['input_size'] must be a positive multiple of 8, got {size}")
        aux = list(s1.get("aux_vertebrae") or [])
        above = [str(v) for v in lv.get("above", [])]
        missing = [v for v in above if v not in aux]
        if missing:
            raise ValueError(f"stage1['level']['above'] names {missing}, not among the Pose-Net's auxiliary "
                             f"vertebrae {aux}")
        return {"input_size": size, "above": above, "margin": float(lv.get("margin", DEFAULT_LEVEL_MARGIN))}

    def set_counter(self, net: torch.nn.Module, settings: Mapping[str, Any]) -> None:
        """Use the vertebra counter ``net`` (:mod:`lumbar_monai.counting`) with ``settings`` (``above``, ``margin``,
        ``agreement``, ``threshold``, ``min_distance``, ``mirror_check``, ``input_size``, ``median_target``; defaults
        for the missing ones); ``ValueError`` with one line when the predictor cannot use one."""
        if not self.stage1.get("framing") or self.centre_net is None:
            raise ValueError("a vertebra counter needs a framed stage 1 (stage1['framing'])")
        if self.level_net is not None:
            raise ValueError("a model has either a level network or a vertebra counter, not both")
        aux = list(self.stage1.get("aux_vertebrae") or [])
        above = [str(v) for v in settings.get("above", [])]
        missing = [v for v in above if v not in aux]
        if missing:
            raise ValueError(f"stage1['count']['above'] names {missing}, not among the Pose-Net's auxiliary "
                             f"vertebrae {aux}")
        self.stage1["count"] = {"above": above, "margin": float(settings.get("margin", DEFAULT_LEVEL_MARGIN)),
                                "agreement": float(settings.get("agreement", DEFAULT_AGREEMENT)),
                                "threshold": float(settings.get("threshold", 0.5)),
                                "min_distance": float(settings.get("min_distance", 8.0)),
                                "mirror_check": bool(settings.get("mirror_check", False)),
                                "input_size": list(check_input_size(settings.get("input_size", COUNT_INPUT))),
                                "median_target": check_median_target(settings.get("median_target"))}
        self.counter_net = net.to(self.device).eval()

    # ----- input ----------------------------------------------------------------------------------------------
    @staticmethod
    def read_input(image) -> tuple[np.ndarray, tuple[float, float] | None, str | None]:
        """``(H, W)`` float32 image, pixel spacing and its source from an array, tensor, path, Radiograph or
        pydicom ``Dataset`` (:func:`~lumbar_monai.io.inputs.read_input`)."""
        from .io.inputs import read_input

        return read_input(image)

    # ----- stage 1 --------------------------------------------------------------------------------------------
    def _stage1_transforms(self):
        if self._stage1_chain is None:
            from monai.transforms import Compose

            from .transforms.augment import stage1_preprocessing

            self._stage1_chain = Compose(stage1_preprocessing(
                "image", point_keys=(), size=self.stage1["input_size"], **self.stage1["preprocessing"]))
        return self._stage1_chain

    def _centre_decoder(self):
        if self._centre_codec is None:
            from .codecs.centre import CentreHeatmapCodec

            self._centre_codec = CentreHeatmapCodec(self.layout, input_size=self.stage1["input_size"],
                                                    heatmap_size=self.stage1["heatmap_size"])
        return self._centre_codec

    def stage1_input(self, image, device: str | torch.device | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Stage-1 pre-processing of one ``(H, W)`` image at network resolution: ``((1, S, S) float32 tensor on
        ``device`` (default: the image's), original -> input 3x3 geometry)``. The CPU part that
        :meth:`predict_batch`'s workers run; given a CUDA ``device``, the resize runs there."""
        from .transforms.augment import stage1_input

        return stage1_input(self._stage1_transforms(), image, device)

    @property
    def tta(self) -> str:
        """The test-time augmentation (see the class docstring); set it to change it, checked by :func:`check_tta`."""
        return self._tta

    @tta.setter
    def tta(self, value: str) -> None:
        self._tta = check_tta(value, self.layout)

    def _with_tta(self, net: torch.nn.Module, channel_names: Sequence[str]) -> torch.nn.Module:
        """A corner M-Net as the predictor calls it: wrapped in a :class:`MirrorEnsemble` when ``tta`` is
        ``"mirror"`` (``channel_names``: its corner channels, whose sides swap in the mirror)."""
        if self.tta != "mirror":
            return net
        from .anatomy import side_swap_order
        from .networks.mirror import MirrorEnsemble

        return MirrorEnsemble(net, side_swap_order(channel_names))

    def _net(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One network call: on the device, channels-last and autocast where enabled; float32 maps out."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp):
            out = net(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float()

    @torch.inference_mode()
    def centres_batch(self, inputs: torch.Tensor, geometries, timings: dict[str, float] | None = None):
        """Stage 1 on ``(B, 1, S, S)`` pre-processed inputs (:meth:`stage1_input`) with their ``(B, 3, 3)``
        geometries, one Pose-Net call: a list of ``(centres (V, 2) original px, confidence (V,), repaired)``."""
        if self.centre_net is None:
            raise ValueError("this predictor has no Pose-Net: pass centres to predict()")
        from .postprocess import postprocess_centres

        t = _Timer(self.device, timings)
        # channels beyond the layout's are auxiliary training targets (e.g. T11/T12, framed training's aux_vertebrae)
        maps = self._net(self.centre_net, inputs)[:, : self.layout.num_vertebrae]
        t.lap("stage1_network")
        out = postprocess_centres(maps.cpu(), self._centre_decoder(), geometry=np.asarray(geometries, np.float64),
                                  repair=self.stage1["repair"] is not False, **(self.stage1["repair"] or {}))
        t.lap("stage1_postprocess")
        return [CentreAnswer(out["original"][b].numpy(), out["confidence"][b].numpy(), bool(out["centre_repaired"][b]),
                             second_peak=float(out["second_peak"][b].max())) for b in range(len(maps))]

    @torch.inference_mode()
    def detect_centres(self, image: np.ndarray, timings: dict[str, float] | None = None) -> CentreAnswer:
        """Stage 1 on a ``(H, W)`` image: a :class:`~lumbar_monai.result.CentreAnswer` (centres ``(V, 2)`` original
        px, confidence ``(V,)``, repaired, level check)."""
        if self.centre_net is None:
            raise ValueError("this predictor has no Pose-Net: pass centres to predict()")
        if self.stage1.get("framing"):
            return self._detect_centres_framed(image, timings)
        t = _Timer(self.device, timings)
        x, geometry = self.stage1_input(image, self.device if self.device.type == "cuda" else None)
        t.lap("stage1_preprocess")
        return self.centres_batch(x[None], geometry[None], timings)[0]

    def _detect_centres_framed(self, image: np.ndarray, timings: dict[str, float] | None = None):
        """Stage 1 through :meth:`framed_centres` (whole image, then lumbar windows)."""
        t = _Timer(self.device, timings)
        out = self.framed_centres(image)
        t.lap("stage1_framed")
        return CentreAnswer(out["original"], out["confidence"], out["centre_repaired"], out["level_check"],
                            out["second_peak"])

    def framed_centres(self, image: np.ndarray, level: Any = "model", passes: int | None = None,
                       first_window: tuple[Sequence[float], float] | None = None) -> dict[str, Any]:
        """:func:`~lumbar_monai.framing.detect_centres_framed` with this predictor's Pose-Net and framing settings
        (its whole answer: windows, level shift and check too). ``level``: ``"model"`` (the counter or level network
        the checkpoint holds, :meth:`level_pass`), ``None`` (the window networks alone) or a
        :class:`~lumbar_monai.framing.LevelPass` / :class:`~lumbar_monai.counting.CountPass`; ``passes`` overrides
        the checkpoint's; ``first_window`` as there (benchmarks)."""
        from .framing import detect_centres_framed

        fr = self.stage1["framing"]
        return detect_centres_framed(self.centre_net, image, self._centre_decoder(),
                                     passes=int(fr.get("passes", 2)) if passes is None else int(passes),
                                     factor=float(fr.get("factor", 2.0)), preprocessing=self.stage1["preprocessing"],
                                     repair=self.stage1["repair"], device=self.device, first_window=first_window,
                                     level=self.level_pass() if level == "model" else level)

    def level_pass(self):
        """The :class:`~lumbar_monai.framing.LevelPass` of the level network, the
        :class:`~lumbar_monai.counting.CountPass` of the vertebra counter, or ``None`` without either."""
        if self.counter_net is not None:
            from .counting import CountPass

            c = self.stage1["count"]
            above = tuple(self.layout.num_vertebrae + self.stage1["aux_vertebrae"].index(n) for n in c["above"])
            return CountPass(net=self.counter_net, above_channels=above, margin=c["margin"],
                             agreement=c["agreement"], threshold=c["threshold"], min_distance=c["min_distance"],
                             mirror_check=c["mirror_check"], input_size=tuple(c["input_size"]),
                             median_target=c.get("median_target"))
        if self.level_net is None:
            return None
        from .codecs.centre import CentreHeatmapCodec
        from .framing import LevelPass

        lv = self.stage1["level"]
        v = self.layout.num_vertebrae
        codec = CentreHeatmapCodec(self.layout, input_size=lv["input_size"], heatmap_size=lv["input_size"] // 8)
        above = tuple(v + self.stage1["aux_vertebrae"].index(name) for name in lv["above"])
        return LevelPass(net=self.level_net, codec=codec, above_channels=above, margin=lv["margin"])

    # ----- stage 2 --------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def corners_batch(self, images, centres, timings: dict[str, float] | None = None):
        """Stage 2 on several images at once: ``images`` ``(H, W)`` arrays or tensors (any sizes), ``centres``
        ``(V, 2)`` each. Every vertebra of every image is cropped (one resampling per image, one blur for all),
        all lumbar crops go through the lumbar M-Net in one call, all S1 crops through the sacrum M-Net in one.
        Returns a list of ``(points (N, 2) original px, confidence (N,))``."""
        from .crops import blur_crops

        t = _Timer(self.device, timings)
        lay = self.layout
        v = lay.num_vertebrae
        crops, affs = [], []
        for image, c in zip(images, centres, strict=True):
            img = torch.as_tensor(image, dtype=torch.float32).to(self.device, non_blocking=True)
            lo, hi = img.min(), img.max()
            img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
            cr, aff = extract_vertebra_crops(img, np.asarray(c, dtype=np.float64), lay, out_size=self.crop_size,
                                             vertebrae="all", blur_sigma=0.0, antialias=self.crop_antialias)
            crops.append(cr)
            affs.append(aff)
        crops = blur_crops(torch.cat(crops), self.crop_blur_sigma)
        aff = np.concatenate(affs)
        t.lap("stage2_crops")
        n = len(affs)
        own = {lay.vertebra_names.index(name): net for name, net in self.vertebra_nets.items()}
        shared = [i for i in lay.lumbar_indices if i not in own]
        groups = [(shared, self.lumbar_net, self.lumbar_codec)] if shared else []
        groups += [([i], net, self.lumbar_codec) for i, net in own.items()]
        if lay.sacrum_index is not None:
            groups.append(([lay.sacrum_index], self.sacrum_net, self.sacrum_codec))
        decoded = []
        for idx, net, codec in groups:
            sel = [b * v + i for b in range(n) for i in idx]
            maps = self._net(self._with_tta(net, codec.spec.corners), crops[sel])
            decoded.append((idx, sel, codec, maps[:, : codec.num_corners]))
        t.lap("stage2_network")
        points = np.zeros((n, lay.num_points, 2))
        conf = np.zeros((n, lay.num_points))
        for idx, sel, codec, maps in decoded:
            xy, c = codec.decode(maps)
            back = crop_to_image(xy.double().cpu().numpy(), aff[sel]).reshape(n, len(idx), -1, 2)
            c = c.cpu().numpy().reshape(n, len(idx), -1)
            for j, vi in enumerate(idx):
                sl = lay.vertebra_slices[vi]
                points[:, sl] = back[:, j]
                conf[:, sl] = c[:, j]
        t.lap("stage2_decode")
        return [(points[b], conf[b]) for b in range(n)]

    def refined_centres(self, centres, points) -> np.ndarray:
        """``(V, 2)`` centres with each lumbar vertebra's moved to the mean of its predicted corners (the
        vertebra centre's definition, SPEC "Task"); the sacrum's stays (its two corners do not define it)."""
        out = np.array(centres, dtype=np.float64, copy=True)
        from_corners = self.layout.centres(np.asarray(points, dtype=np.float64))
        idx = list(self.layout.lumbar_indices)
        ok = np.isfinite(from_corners[idx]).all(axis=1)
        out[np.asarray(idx)[ok]] = from_corners[np.asarray(idx)[ok]]
        return out

    @torch.inference_mode()
    def detect_corners(self, image: np.ndarray, centres, timings: dict[str, float] | None = None):
        """Stage 2 on a ``(H, W)`` image with ``(V, 2)`` centres: ``(points (N, 2) original px, confidence (N,))``.

        All vertebrae are cropped in one resampling; lumbar crops run as one batch through the lumbar M-Net.
        """
        return self.corners_batch([image], [centres], timings)[0]

    # ----- both -----------------------------------------------------------------------------------------------
    def predict(
        self,
        image,
        centres=None,
        pixel_spacing: tuple[float, float] | None = None,
        spacing_source: str | None = None,
        facing: str = "auto",
    ) -> LandmarkResult:
        """Landmarks of one image.

        Args:
            image: ``(H, W)`` / ``(1, H, W)`` array or tensor, a file path (any format
                :func:`~lumbar_monai.io.loader.load_radiograph` reads), a ``Radiograph`` or a pydicom ``Dataset``.
            centres: ``(V, 2)`` centres in original pixels to skip stage 1 (e.g. ground truth).
            pixel_spacing: ``(sx, sy)`` mm per pixel; overrides the file's.
            spacing_source: where ``pixel_spacing`` came from (defaults to ``"argument"`` when it is given).
            facing: lateral views: ``"auto"`` decides from the image which side the patient faces (both networks
                on the image and its mirror, :func:`~lumbar_monai.facing.predict_any_facing`), ``"left"`` /
                ``"right"`` says it. The networks always see their trained facing; the points keep anatomical
                names. Recorded in ``meta["facing"]``; QC flag ``facing_uncertain`` when too close to call.
                AP views with a display network: ``"auto"`` decides whether the image is shown mirrored
                (:func:`~lumbar_monai.display.decide_display`), ``"standard"`` / ``"mirrored"`` says it; recorded
                in ``meta["display"]``, QC flag ``display_uncertain`` when too close to call.
        """
        from .display import display_hint
        from .facing import facing_hint

        if isinstance(image, (str, os.PathLike)):  # read the file here, so that its header can hint the facing
            from .io.loader import load_radiograph

            image = load_radiograph(image)
        hint = facing_hint(getattr(image, "meta", None))
        shown = display_hint(getattr(image, "meta", None))
        timings: dict[str, float] = {}
        t = _Timer(self.device, timings)
        img, spacing, source = self.read_input(image)
        if pixel_spacing is not None:
            spacing, source = (float(pixel_spacing[0]), float(pixel_spacing[1])), spacing_source or "argument"
        t.lap("read")
        return self._finish(self, img, spacing, source, centres, facing, hint, timings, display_hint=shown)

    def _display(self, img: np.ndarray, facing: str, hint: str | None):
        """The :class:`~lumbar_monai.display.DisplayDecision` of an AP image, or ``None`` (lateral, or no display
        network and no display given)."""
        from .display import DISPLAYS, DisplayDecision, decide_display

        if self.layout.view == "lateral":
            return None
        if facing in DISPLAYS:
            return DisplayDecision(facing, source="given", hint=hint)
        if facing not in (None, "auto"):
            raise ValueError(f"facing of an AP image must be 'auto', 'standard' or 'mirrored', got {facing!r}")
        if self.display_net is None:
            return None
        return decide_display(self.display_net, img, hint=hint, device=self.device)

    def _finish(self, stages, img: np.ndarray, spacing, source, centres, facing: str, hint: str | None,
                timings: dict[str, float], display_hint: str | None = None) -> LandmarkResult:
        """Both stages through ``stages`` (``detect_centres`` / ``detect_corners``: this predictor, or the answers
        :meth:`predict_batch` computed for the whole batch) -> the result of one image."""
        from .facing import CANONICAL_FACING, predict_any_facing, run_in_facing

        flags: list[str] = []
        shown = self._display(img, facing, display_hint)
        if shown is not None:  # AP: the networks see the standard display; "left" stands for it in run_in_facing
            out = run_in_facing(stages, img, "left" if shown.display == "standard" else "right", centres, timings,
                                canonical="left")
            decision = None
        else:
            out, decision = predict_any_facing(stages, img, centres, facing=facing, hint=hint, timings=timings,
                                               canonical=str(self.meta.get("canonical_facing", CANONICAL_FACING)))
        c, c_conf, pts, conf = out.centres, out.centre_confidence, out.points, out.confidence
        if out.repaired:
            flags.append("centre_repaired")
        if np.any(conf < self.confidence_threshold):
            flags.append("low_confidence")
        shape = None if self.shape_prior is None else self.shape_prior.correct(pts)
        if shape is not None:
            pts = shape.points
            if shape.outliers.any():
                flags.append("shape_outlier")
        reasons = order_violations(pts, c, self.layout, None if decision is None else decision.facing)
        if reasons:
            flags.append("order_violation")
        if decision is not None and decision.uncertain:
            flags.append("facing_uncertain")
        if shown is not None and shown.uncertain:
            flags.append("display_uncertain")
        if out.level_check is not None and out.level_check["status"] != "confirmed":
            flags.append("level_unconfirmed")
        if out.second_peak is not None and out.second_peak >= SECOND_PEAK_FLAG:
            flags.append("centre_ambiguous")
        meta = dict(self.meta)
        meta["timings_ms"] = {k: 1000.0 * v for k, v in timings.items()}
        if decision is not None and decision.facing is not None:
            meta["facing"] = decision.as_meta()
        if shown is not None:
            meta["display"] = shown.as_meta()
        if out.level_check is not None:
            meta["level_check"] = dict(out.level_check)
        if out.second_peak is not None:
            meta["centre_second_peak"] = round(float(out.second_peak), 4)
        if reasons:
            meta["order_violations"] = reasons
        if shape is not None:
            names = self.layout.point_names
            meta["shape_prior"] = {"outliers": [names[i] for i in np.flatnonzero(shape.outliers)],
                                   "max_residual_heights": round(float(shape.residual.max()), 3)}
        meta["centres_from"] = "stage1" if centres is None else "given"
        return LandmarkResult(
            layout=self.layout, points=pts, confidence=conf, centres=np.asarray(c, dtype=np.float64),
            centre_confidence=np.asarray(c_conf, dtype=np.float64), qc_flags=flags, pixel_spacing=spacing,
            spacing_source=source, image_size=(int(img.shape[1]), int(img.shape[0])), meta=meta,
        )

    __call__ = predict

    def predict_batch(
        self,
        images,
        centres=None,
        facing: str = "auto",
        batch_size: int = 8,
        workers: int = 0,
    ) -> list[LandmarkResult]:
        """Landmarks of many images, the same as :meth:`predict` on each, batched: files are read and pre-processed
        (stage 1, at network resolution) in ``workers`` processes while the device runs; each stage runs once per
        batch of ``batch_size`` images (all crops of a batch in one M-Net call). Raises on the first bad input;
        :func:`~lumbar_monai.batched.iter_predictions` reports bad inputs one by one instead.

        Args:
            images: anything :meth:`predict` takes, one per image.
            centres: ``None`` or one ``(V, 2)`` array (or ``None``) per image, to skip stage 1.
            facing: as in :meth:`predict`, for every image.
        """
        from .batched import iter_predictions

        out: list[LandmarkResult] = []
        for item in iter_predictions(self, images, centres=centres, facing=facing, batch_size=batch_size,
                                     workers=workers):
            if item.error is not None:
                raise item.error
            out.append(item.result)
        return out

    # ----- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict (see the module docstring); needs networks built from known kwargs."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "layout": self.layout.name,
            **crop_record(self.layout),
            "stage1": None if self.centre_net is None else {**network_entry(self.centre_net), **self.stage1},
            "stage1_level": None if self.level_net is None else network_entry(self.level_net),
            "stage1_counter": None if self.counter_net is None else network_entry(self.counter_net),
            "display": None if self.display_net is None else network_entry(self.display_net),
            "lumbar": network_entry(self.lumbar_net, "MNet"),
            "lumbar_vertebrae": {name: network_entry(net, "MNet") for name, net in self.vertebra_nets.items()} or None,
            "sacrum": None if self.sacrum_net is None else network_entry(self.sacrum_net, "MNet"),
            "crop_size": self.crop_size,
            "crop_blur_sigma": self.crop_blur_sigma,
            "crop_antialias": self.crop_antialias,
            "confidence_threshold": self.confidence_threshold,
            "centre_refinement": self.centre_refinement,
            "tta": self.tta,
            "shape_prior": None if self.shape_prior is None else self.shape_prior.as_record(),
            "meta": dict(self.meta),
        }

    def save(self, path: str | os.PathLike, half: Sequence[str] = ()) -> Path:
        """Write :meth:`checkpoint` atomically; the networks of the entries named in ``half`` (e.g. ``"lumbar"``,
        ``"stage1_counter"``) store their weights as float16, half the bytes (:meth:`load` builds float32 networks
        from them, ``load_state_dict`` casting). A ``ValueError`` names an entry the checkpoint does not hold."""
        ckpt = self.checkpoint()
        for name in half:
            entry = ckpt.get(name)
            if is_network_entry(entry):
                ckpt[name] = half_entry(entry)
            elif isinstance(entry, Mapping) and entry and all(map(is_network_entry, entry.values())):  # by name
                ckpt[name] = {key: half_entry(e) for key, e in entry.items()}
            else:
                raise ValueError(f"no network {name!r} in this checkpoint to store as float16")
        return save_checkpoint(ckpt, path)

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], device: str | torch.device | None = None) -> LandmarkPredictor:
        """Build a predictor from a checkpoint dict."""
        check_checkpoint_format(ckpt, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
        from .networks.posenet import PoseNet

        stage1 = ckpt.get("stage1")
        centre_net = None
        if stage1 is not None:
            centre_net = build_network(PoseNet, stage1)
        layout = get_layout(ckpt["layout"])
        layout = with_crop_record(layout, ckpt)  # the crops the M-Nets were trained on
        return cls(
            layout=layout,
            lumbar_net=build_network(MNet, ckpt["lumbar"]),
            sacrum_net=build_network(MNet, ckpt["sacrum"]) if ckpt.get("sacrum") is not None else None,
            centre_net=centre_net,
            crop_size=ckpt.get("crop_size", 256),
            crop_blur_sigma=ckpt.get("crop_blur_sigma", 1.0),
            crop_antialias=bool(ckpt.get("crop_antialias", False)),
            stage1=None if stage1 is None else {
                k: stage1[k] for k in ("input_size", "heatmap_size", "preprocessing", "repair", "framing",
                                       "aux_vertebrae", "level", "count")
                if k in stage1},
            confidence_threshold=ckpt.get("confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD),
            device=device,
            meta=ckpt.get("meta"),
            centre_refinement=int(ckpt.get("centre_refinement", 0)),
            tta=str(ckpt.get("tta", "none")),
            level_net=build_network(PoseNet, ckpt["stage1_level"]) if ckpt.get("stage1_level") is not None else None,
            display_net=build_display(ckpt["display"]) if ckpt.get("display") is not None else None,
            counter_net=build_counter(ckpt["stage1_counter"]) if ckpt.get("stage1_counter") is not None else None,
            shape_prior=ShapePrior.from_record(ckpt["shape_prior"]) if ckpt.get("shape_prior") is not None else None,
            vertebra_nets={name: build_network(MNet, e) for name, e in (ckpt.get("lumbar_vertebrae") or {}).items()},
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> LandmarkPredictor:
        """Read a checkpoint file with ``torch.load(weights_only=True)``."""
        return predictor_from_file(cls, path, device)


#: test-time augmentations of :class:`LandmarkPredictor` (its ``tta`` argument).
TTA_MODES = ("none", "mirror")


def check_tta(tta: str, layout: Layout) -> str:
    """``tta`` checked against :data:`TTA_MODES` and the layout: mirroring needs corners with sides (AP); a lateral
    image mirrored faces the other way, which the networks are not trained to see through."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if tta == "mirror" and layout.mirror_order is None:
        raise ValueError(f"tta 'mirror' needs a layout with left/right corners (AP), not {layout.name!r}")
    return tta


class _Timer:
    """Wall-clock laps (CUDA-synchronised) accumulated into a dict of seconds."""

    def __init__(self, device: torch.device, out: dict[str, float] | None) -> None:
        self.cuda = device.type == "cuda"
        self.out = out
        self.t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def reset(self) -> None:
        self.t = self._now()

    def lap(self, name: str) -> None:
        if self.out is None:
            return
        now = self._now()
        self.out[name] = self.out.get(name, 0.0) + now - self.t
        self.t = now
