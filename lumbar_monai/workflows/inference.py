"""The bundle's ``inference``: the two-stage predictor over images, folders or DICOM studies; and the parts of
``inference.json``'s model-zoo workflow (Pose-Net centres through a MONAI ``SupervisedEvaluator``).

Outputs per image of :func:`run_inference` come from :func:`lumbar_monai.batch.run_batch` (JSON with points, names,
confidences, QC flags, measurements and mm where the spacing is known; overlay PNG; for DICOM sources a Structured
Report and a presentation state), plus ``measurements.csv`` and ``failures.txt`` for the whole run.

The model-zoo workflow (``inference.json`` keys ``preprocessing``, ``network_def``, ``inferer``, ``postprocessing``,
``dataset``, ``evaluator``): :func:`centre_preprocessing` (load, pad, resize, blur, CLAHE; records the geometry),
:class:`~lumbar_monai.networks.posenet.PoseNetCentres`, MONAI's ``SimpleInferer``, :class:`CentresFromMapsd`
(maps -> centres in original pixels with Algorithm 1) and :class:`CentresWriter` (``centres.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, SelectItemsd

__all__ = ["default_inputs", "run_inference", "centre_preprocessing", "CentresFromMapsd", "CentresWriter",
           "image_items"]

logger = logging.getLogger(__name__)


def default_inputs(datalist: str | Path, split: str = "test", prefer: str = "dicom") -> list[str]:
    """The images of ``split`` of a datalist; ``prefer="dicom"`` takes an item's ``dicom`` file when it has one."""
    from ..io.datalist import load_landmark_datalist

    items = load_landmark_datalist(datalist, split)
    return [str(it.get(prefer) or it["image"]) for it in items]


def run_inference(
    checkpoint: str | Path,
    inputs: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    device: str | None = None,
    secondary_capture: bool = False,
) -> int:
    """Predict every image in ``inputs`` (files, folders, DICOMDIRs); returns the number of images that failed.

    Raises ``RuntimeError`` when every image failed (the batch's non-zero exit condition).
    """
    from ..batch import run_batch
    from ..loading import load_predictor

    predictor = load_predictor(checkpoint, device=device)
    summary = run_batch(inputs, output_dir, predictor, secondary_capture=secondary_capture)
    logger.info("inference: %d ok, %d failed -> %s", summary.ok, summary.failed, output_dir)
    if summary.exit_code != 0:
        raise RuntimeError(f"every input failed; reasons in {summary.failures_txt}")
    return summary.failed


def image_items(inputs: str | Path | Sequence[str | Path]) -> list[dict[str, str]]:
    """``[{"image": path}]`` for a MONAI ``Dataset`` from files, folders or DICOMDIRs (the batch's discovery)."""
    from ..batch import discover_inputs

    files, _, _ = discover_inputs([inputs] if isinstance(inputs, (str, Path)) else list(inputs))
    return [{"image": str(f)} for f in files]


def centre_preprocessing(input_size: int, layout: str = "lateral", preprocessing: Mapping | None = None) -> Compose:
    """``{"image": path}`` -> ``{"image": (1, S, S) float32, "geometry": original -> input 3x3}`` (Section 3.2).

    The same chain as :class:`~lumbar_monai.predictor.LandmarkPredictor`'s stage 1 (``preprocessing``: kwargs of
    :func:`~lumbar_monai.transforms.augment.stage1_preprocessing`); the radiograph is read with
    :func:`~lumbar_monai.io.loader.load_radiograph` (bounded size, one-line errors).
    """
    from ..io.datalist import LoadLandmarkSampled
    from ..transforms.augment import stage1_preprocessing

    return Compose([
        LoadLandmarkSampled(("image", "label"), layout=layout, allow_missing_keys=True),
        *stage1_preprocessing("image", point_keys=(), size=int(input_size), **dict(preprocessing or {})),
        SelectItemsd(("image", "geometry")),
    ])


class CentresFromMapsd(MapTransform):
    """Pose-Net centre maps ``(V, h, w)`` of one decollated item -> ``points`` ``(V, 2)`` (x, y) pixels of the
    original image and ``confidence`` ``(V,)``, decoded as the predictor does (peaks, Algorithm 1 repair).

    Args:
        keys: the maps key (``"pred"``).
        layout, input_size, heatmap_size: the Pose-Net's settings (the bundle's ``posenet`` section).
        repair: Algorithm 1 settings (:func:`~lumbar_monai.postprocess.repair_missing_centre` kwargs), or
            ``False`` to switch it off.
        geometry_key: the item's ``original -> input`` 3x3 geometry (from :func:`centre_preprocessing`).
    """

    def __init__(self, keys: KeysCollection = "pred", layout: str = "lateral", input_size: int = 256,
                 heatmap_size: int = 32, repair: Mapping[str, Any] | bool = True,
                 geometry_key: str = "geometry") -> None:
        super().__init__(keys)
        from ..codecs.centre import CentreHeatmapCodec

        self.codec = CentreHeatmapCodec(layout, input_size=int(input_size), heatmap_size=int(heatmap_size))
        self.repair = repair
        self.geometry_key = geometry_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from ..postprocess import postprocess_centres

        d = dict(data)
        geometry = np.asarray(torch.as_tensor(d[self.geometry_key]).cpu(), np.float64)
        kwargs = dict(self.repair) if isinstance(self.repair, Mapping) else {}
        for key in self.key_iterator(d):
            # channels beyond the layout's are auxiliary training targets (framed training's aux_vertebrae)
            maps = torch.as_tensor(d[key]).detach().float().cpu()[: self.codec.num_channels]
            out = postprocess_centres(maps, self.codec, geometry=geometry, repair=self.repair is not False, **kwargs)
            d["points"] = torch.as_tensor(out["original"], dtype=torch.float32)
            d["confidence"] = torch.as_tensor(out["confidence"], dtype=torch.float32)
        return d


class CentresWriter:
    """Ignite handler: collect each decollated item's ``points``/``confidence`` and write ``<output_dir>/centres.json``
    when the run completes (cases numbered in dataset order: no file name, nothing identifying, reaches the file)."""

    def __init__(self, output_dir: str | Path, layout: str = "lateral") -> None:
        from ..anatomy import get_layout

        self.path = Path(output_dir) / "centres.json"
        self.names = list(get_layout(layout).vertebra_names)
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, (list, tuple)) else [output]:
            pts = torch.as_tensor(item["points"]).tolist()
            conf = torch.as_tensor(item["confidence"]).tolist()
            self.rows.append({"case": len(self.rows), "centres": [
                {"name": n, "x": round(p[0], 2), "y": round(p[1], 2), "confidence": round(c, 4)}
                for n, p, c in zip(self.names, pts, conf, strict=True)]})

    def write(self, engine) -> None:
        from ..io.atomic import atomic_write_json

        atomic_write_json(self.path, {"format": "lumbar-monai/centres@1", "cases": self.rows})
        logger.info("centres of %d image(s) -> %s", len(self.rows), self.path)
