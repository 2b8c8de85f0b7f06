"""Pure helpers for the MONAI Label app (``apps/lumbar_monailabel``): no ``monailabel`` import, no highdicom.

MONAI Label (0.8.5) has no landmark task type: its result JSON carries points only as ``centroids``, and its
viewers show label maps. This module turns a :class:`~lumbar_monai.result.LandmarkResult` into both, and turns
what annotators save back into the datastore into the project's landmark annotation, so the app itself stays a
thin adapter. It runs under MONAI Label's pins (pydicom 2.4, numpy 1.26): it imports only the light core.

Label values (one table, :func:`label_values`): landmark ``i`` of ``layout.point_names`` has label ``i + 1`` (the
disc drawn in the label image, as :func:`lumbar_monai.io.nifti.landmark_label_map`); vertebra ``v`` has label
``N + 1 + v`` (its centre, reported in ``centroids``; not drawn).

``centroids`` follow MONAI Label's own producer (``GetCentroidsd`` of its radiology sample app, serialised by
``BasicInferTask.__call__``): ``{"label_<value>": ["<value>", "<i>", "<j>", "<k>"]}`` with integer voxel indices
of the label image as MONAI's readers present it. For a 2-D radiograph ``i = x`` (column), ``j = y`` (row) and
``k = 0`` (see :mod:`lumbar_monai.io.nifti` for the axis convention); the exact sub-pixel centres are in the
result's ``centres``.

Datastore labels the trainer accepts (:func:`read_datastore_label`): the project's landmark JSON
(``lumbar-monai/landmarks@1``), the infer result JSON (``lumbar-monai/result@1``, e.g. corrected in place), or a
NIfTI landmark label map (discs as written by the infer task, edited in a viewer: each label's centroid is taken
as the landmark; where discs touch they share pixels, which moves a centroid by up to a pixel).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .anatomy import Layout, get_layout
from .errors import InputError
from .io.annotations import ANNOTATION_FORMAT, LandmarkAnnotation, check_points_in_image, read_annotation_json
from .io.atomic import atomic_write_json
from .result import LandmarkResult

__all__ = [
    "label_values",
    "centroids",
    "disc_radius",
    "monailabel_result",
    "write_label_image",
    "annotation_from_result",
    "read_datastore_label",
    "write_finetune_datalist",
    "finetune_overrides",
    "init_from_predictor",
]

#: MONAI Label result JSON keys this module adds to :func:`lumbar_monai.io.result_json.result_document`.
EXTRA_KEYS = ("centroids", "label_names")


def label_values(layout: str | Layout) -> dict[str, int]:
    """``{name: label value}``: landmarks ``1..N`` (``layout.point_names``), vertebra centres ``N+1..N+V``."""
    lay = get_layout(layout)
    n = lay.num_points
    out = {name: i + 1 for i, name in enumerate(lay.point_names)}
    out.update({name: n + 1 + v for v, name in enumerate(lay.vertebra_names)})
    return out


def centroids(centres, layout: str | Layout, image_size_wh: Sequence[int] | None = None) -> dict[str, list[str]]:
    """Vertebra centres ``(V, 2)`` (x, y px) in MONAI Label's ``centroids`` form (see the module docstring).

    Centres a viewer cannot place are left out: non-finite ones, and with ``image_size_wh`` those whose voxel
    index falls outside the image.
    """
    lay = get_layout(layout)
    c = np.asarray(centres, dtype=np.float64).reshape(lay.num_vertebrae, 2)
    values = label_values(lay)
    out: dict[str, list[str]] = {}
    for name, (x, y) in zip(lay.vertebra_names, c, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        i, j = int(round(x)), int(round(y))
        if image_size_wh is not None and not (0 <= i < int(image_size_wh[0]) and 0 <= j < int(image_size_wh[1])):
            continue
        v = values[name]
        out[f"label_{v}"] = [str(v), str(i), str(j), "0"]
    return out


def disc_radius(image_size_wh: Sequence[int] | None) -> float:
    """Radius (px) of a landmark's disc in the label image: 0.5 % of the larger side, at least 2 px (*ours*:
    small enough that neighbouring corners of one end plate never merge on a lumbar radiograph)."""
    if not image_size_wh:
        return 3.0
    return max(2.0, 0.005 * float(max(image_size_wh)))


def monailabel_result(result: LandmarkResult, measurements=None, source: Mapping[str, Any] | None = None,
                      compute: bool = True) -> dict[str, Any]:
    """The infer task's JSON: the project's result document plus MONAI Label's ``centroids`` and ``label_names``.

    Keys: ``format`` (``lumbar-monai/result@1``), ``software``, ``source``, ``result`` (every landmark with name,
    x, y, confidence; the centres; ``qc_flags``; ...), ``measurements`` (computed from the landmarks when
    ``measurements`` is ``None`` and ``compute``), ``centroids``, ``label_names``. Strict JSON (non-finite
    numbers are ``null``).
    """
    from .io.result_json import result_document

    if measurements is None and compute:
        from .measures import compute_measurements

        measurements = compute_measurements(result.points, result.layout, result.pixel_spacing,
                                            result.spacing_source)
    doc = result_document(result, measurements, dict(source or {}))
    doc["centroids"] = centroids(result.centres, result.layout, result.image_size)
    doc["label_names"] = label_values(result.layout)
    return doc


def write_label_image(path: str | os.PathLike, result: LandmarkResult, radius: float | None = None) -> Path:
    """Write the label image: one disc of label ``i + 1`` per landmark (NIfTI, ``(W, H)``; see
    :func:`lumbar_monai.io.nifti.write_label_map_nifti`). ``radius`` defaults to :func:`disc_radius`."""
    from .io.nifti import write_label_map_nifti

    if result.image_size is None:
        raise ValueError("the result has no image_size: cannot size the label image")
    w, h = (int(v) for v in result.image_size)
    r = disc_radius(result.image_size) if radius is None else float(radius)
    return write_label_map_nifti(path, result.points, (h, w), result.pixel_spacing, radius=r)


def annotation_from_result(result: LandmarkResult, image: str | None = None,
                           meta: Mapping[str, Any] | None = None) -> LandmarkAnnotation:
    """The project's annotation holding a result's landmarks (a starting point an annotator corrects)."""
    return LandmarkAnnotation(
        layout=result.layout, points=np.asarray(result.points, dtype=np.float64).copy(),
        pixel_spacing=result.pixel_spacing, spacing_source=result.spacing_source, image=image,
        image_size=None if result.image_size is None else (int(result.image_size[0]), int(result.image_size[1])),
        meta=dict(meta or {}),
    )


def read_datastore_label(path: str | os.PathLike, layout: str | Layout = "lateral",
                         image_size_wh: Sequence[int] | None = None) -> LandmarkAnnotation:
    """Read a label saved in MONAI Label's datastore as the project's annotation (see the module docstring).

    Args:
        path: ``.json`` (landmark annotation or infer result) or ``.nii``/``.nii.gz`` (disc label map).
        layout: layout of a label map (JSON files name their own).
        image_size_wh: when given, points must lie in the image (:class:`InputError` names the landmark).
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".json"):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(p, "file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(p, f"cannot read as UTF-8 text ({type(e).__name__})") from None
        except json.JSONDecodeError as e:
            raise InputError(p, f"not valid JSON: {e.msg}", line=e.lineno) from None
        fmt = doc.get("format") if isinstance(doc, dict) else None
        if fmt == ANNOTATION_FORMAT:
            ann = read_annotation_json(p)
        else:
            from .io.result_json import RESULT_FORMAT, read_result_json

            if fmt != RESULT_FORMAT:
                raise InputError(p, f"not a landmark label (expected \"format\": \"{ANNOTATION_FORMAT}\" or "
                                    f"\"{RESULT_FORMAT}\", got {fmt!r})")
            res, _ = read_result_json(p)
            if not np.isfinite(res.points).all():
                raise InputError(p, "a landmark has no coordinates")
            ann = annotation_from_result(res)
    elif name.endswith((".nii", ".nii.gz")):
        from .io.nifti import read_label_map_points

        lay = get_layout(layout)
        pts, spacing = read_label_map_points(p, num_points=lay.num_points)
        missing = [lay.point_names[i] for i in np.flatnonzero(~np.isfinite(pts).all(axis=1))]
        if missing:
            raise InputError(p, f"label map has no disc for {len(missing)} landmark(s): {', '.join(missing[:4])}"
                                + (" ..." if len(missing) > 4 else ""))
        sp = None if np.allclose(spacing, (1.0, 1.0)) else spacing  # 1 mm = "unknown" in our writer
        ann = LandmarkAnnotation(layout=lay, points=pts, pixel_spacing=sp, spacing_source=None if sp is None
                                 else "label_map")
    else:
        raise InputError(p, "unsupported label file (expected .json, .nii or .nii.gz)")
    if image_size_wh is not None:
        check_points_in_image(ann.points, (int(image_size_wh[0]), int(image_size_wh[1])), p,
                              names=ann.layout.point_names)
    return ann


def write_finetune_datalist(items: Sequence[Mapping[str, str]], out_dir: str | os.PathLike,
                            layout: str | Layout = "lateral", val_every: int = 5) -> Path:
    """Write ``<out_dir>/datalist.json`` (the bundle's ``--dataset_dir``) from MONAI Label datastore pairs.

    Every ``{"image": path, "label": path}`` item's label is read with :func:`read_datastore_label` (checked
    against the image's size) and re-written as the project's JSON in ``<out_dir>/labels``. Split (*ours*,
    deterministic): sorted by image name, every ``val_every``-th item goes to validation; with fewer than
    ``val_every`` items the validation split re-uses the training items (early stopping then watches the
    training loss, the best one can do with so few corrections). ``test`` is empty.

    Raises:
        InputError: an unreadable label (naming its file), or no items.
    """
    from .io.images import image_size

    if not items:
        raise InputError(out_dir, "no labelled images in the datastore: save corrected landmarks first")
    out = Path(out_dir)
    entries = []
    for item in sorted(items, key=lambda d: Path(d["image"]).name):
        img = Path(item["image"])
        size = image_size(img)
        ann = read_datastore_label(item["label"], layout, image_size_wh=size)
        ann.image = str(img.resolve())
        ann.image_size = (int(size[0]), int(size[1]))
        target = out / "labels" / (img.name + ".json")
        atomic_write_json(target, ann.to_json_dict())
        entries.append({"image": str(img.resolve()), "label": str(target.resolve()), "case": img.stem})
    val = entries[val_every - 1 :: val_every] if len(entries) >= val_every else []
    train = [e for e in entries if e not in val]
    doc = {
        "description": "MONAI Label datastore: corrected landmark labels (tag 'final')",
        "split_rule": (f"sorted by image name, every {val_every}th item to validation" if val else
                       f"fewer than {val_every} items: validation re-uses the training items"),
        "training": train,
        "validation": val if val else list(train),
        "test": [],
    }
    return atomic_write_json(out / "datalist.json", doc)


def finetune_overrides(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """Bundle overrides (``id#path -> value``) that rebuild the networks of a predictor checkpoint, so that
    :func:`init_from_predictor` can load its weights into the bundle's networks (fine-tuning)."""
    import inspect

    from .networks.mnet import vertebra_template
    from .networks.posenet import PoseNet

    lay = get_layout(ckpt["layout"])
    out: dict[str, Any] = {"layout": lay.name}
    s1 = ckpt.get("stage1")
    if s1 is not None:
        # every shape argument of the Pose-Net, the constructor's defaults where the checkpoint left one out
        params = inspect.signature(PoseNet).parameters
        kw = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        kw.update(s1["kwargs"])
        out.update({f"posenet#{k}": kw[k] for k in ("width", "stage_channels", "kernel_size", "pre_convs",
                                                    "stage_convs")})
        out.update({"posenet#input_size": int(s1["input_size"]), "posenet#heatmap_size": int(s1["heatmap_size"])})
        if "repair" in s1:  # Algorithm 1 settings travel with the model
            out["posenet#repair"] = s1["repair"]
    for kind in ("lumbar", "sacrum"):
        entry = ckpt.get(kind)
        if entry is None:
            continue
        kw = entry["kwargs"]
        sec = f"mnet_{kind}#config#"
        out.update({
            sec + "channels": [int(c) for c in kw["channels"]],
            sec + "width": float(kw.get("width", 1.0)),
            sec + "coordconv": int(kw.get("coordconv", 2)),
            sec + "deep_supervision": bool(kw.get("deep_supervision", True)),
            sec + "paf": int(kw["out_channels"]) > vertebra_template(lay, kind).num_corners,
            sec + "crop_size": int(ckpt.get("crop_size", 256)),
        })
    return out


def init_from_predictor(path: str | os.PathLike | None, posenet=None, lumbar=None, sacrum=None) -> list[str]:
    """Load a predictor checkpoint's weights into the bundle's networks before training (fine-tuning).

    A bundle ``initialize`` step: with ``path`` empty or missing the networks keep their random initialisation
    (training from scratch). Shapes must match (build the networks with :func:`finetune_overrides`).

    Returns:
        names of the networks that were initialised (``"posenet"``, ``"lumbar"``, ``"sacrum"``).
    """
    import torch

    if not path or not Path(path).is_file():
        return []
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    done = []
    for name, net, key in (("posenet", posenet, "stage1"), ("lumbar", lumbar, "lumbar"), ("sacrum", sacrum, "sacrum")):
        entry = ckpt.get(key) if isinstance(ckpt, Mapping) else None
        if net is None or entry is None:
            continue
        net = getattr(net, "module", net)  # DistributedDataParallel (the bundle's multi-GPU override)
        try:
            net.load_state_dict(entry["state_dict"])
        except RuntimeError as e:
            raise InputError(path, f"its {name} network does not match the bundle's ({str(e).splitlines()[0]}); "
                                   "train with the overrides of finetune_overrides() or from scratch") from None
        done.append(name)
    logging.getLogger(__name__).info("initialised %s from %s", ", ".join(done) or "nothing", path)
    return done
