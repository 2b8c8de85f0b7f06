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

Geometry (:func:`image_geometry`, :class:`ImageGeometry`): the label image (:func:`write_label_image`) and the 3D
Slicer markups point list (:func:`slicer_markups`, ``.mrk.json`` content, LPS mm) are written in the radiograph's
own geometry as SimpleITK reads the file (origin, spacing, direction), so that Slicer, which reads images through
ITK, places them on the radiograph in physical space.

Requests (:func:`validate_train_request`, :func:`train_overrides`, :func:`parse_infer_request`): a train request is
reduced to the typed settings of :data:`TRAIN_PARAMS` (numbers within limits, bools, fixed words, ``cpu`` /
``cuda[:N]``); anything else raises :class:`TrainRequestError`. MONAI evaluates ``"$..."`` strings of a bundle
config as Python, so no text of a request may reach one (:func:`config_expressions` finds such strings).

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    "ImageGeometry",
    "image_geometry",
    "slicer_markups",
    "SLICER_MARKUPS_SCHEMA",
    "annotation_from_result",
    "read_datastore_label",
    "write_finetune_datalist",
    "finetune_overrides",
    "init_from_predictor",
    "RequestError",
    "TrainRequestError",
    "parse_infer_request",
    "TrainParam",
    "TRAIN_PARAMS",
    "validate_train_request",
    "train_overrides",
    "config_expressions",
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


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image's pixels lie in space, as SimpleITK reads the file (and 3D Slicer, through ITK): LPS, mm.

    ``size`` is ``(W, H)`` or ``(W, H, D)``; ``direction`` is the row-major ``dim x dim`` matrix whose columns are
    the index axes. Pixel ``(x, y)`` (column, row) lies at ``origin + direction @ (spacing * (x, y[, 0]))``.
    """

    size: tuple[int, ...]
    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dimension(self) -> int:
        return len(self.size)

    @classmethod
    def plain(cls, size_wh: Sequence[int], pixel_spacing: Sequence[float] | None = None) -> ImageGeometry:
        """Origin 0, axes along L and P (what SimpleITK reads from a PNG), ``pixel_spacing`` or 1 mm."""
        sx, sy = (1.0, 1.0) if pixel_spacing is None else (float(pixel_spacing[0]), float(pixel_spacing[1]))
        return cls((int(size_wh[0]), int(size_wh[1])), (0.0, 0.0), (sx, sy), (1.0, 0.0, 0.0, 1.0))

    def to_lps(self, points) -> np.ndarray:
        """``(N, 2)`` pixel ``(x, y)`` -> ``(N, 3)`` LPS mm (``z = 0`` for a 2-D image); NaN rows stay NaN."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        d = self.dimension
        idx = np.zeros((len(pts), d))
        idx[:, :2] = pts
        phys = np.asarray(self.origin) + (idx * np.asarray(self.spacing)) @ np.asarray(self.direction).reshape(d, d).T
        out = np.zeros((len(pts), 3))
        out[:, : min(d, 3)] = phys[:, :3]
        return out


def image_geometry(path: str | os.PathLike, size_wh: Sequence[int] | None = None) -> ImageGeometry:
    """The geometry SimpleITK reads from an image file's header (no pixel data is decoded).

    With ``size_wh`` (the size the predictor saw), a file SimpleITK cannot read, or reads with another size, gets
    :meth:`ImageGeometry.plain` of that size: the label then lines up in pixels, as before, and a warning says so
    (without the file name, which may identify a patient).
    """
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        geo = ImageGeometry(tuple(int(v) for v in reader.GetSize()), tuple(float(v) for v in reader.GetOrigin()),
                            tuple(float(v) for v in reader.GetSpacing()),
                            tuple(float(v) for v in reader.GetDirection()))
    except RuntimeError as e:
        if size_wh is None:
            raise InputError(path, f"SimpleITK cannot read its geometry ({str(e).strip().splitlines()[-1][:200]})")\
                from None
        logging.getLogger(__name__).warning("SimpleITK cannot read the image's geometry; label in pixel geometry")
        return ImageGeometry.plain(size_wh)
    ok = geo.dimension in (2, 3) and all(np.isfinite(geo.origin + geo.spacing + geo.direction)) and min(geo.spacing) > 0
    if ok and size_wh is not None:
        ok = tuple(geo.size[:2]) == (int(size_wh[0]), int(size_wh[1]))
    if not ok:
        if size_wh is None:
            raise InputError(path, f"unusable geometry (size {geo.size}, spacing {geo.spacing})")
        logging.getLogger(__name__).warning("the image's geometry (size %s) does not fit the predicted image size "
                                            "%s; label in pixel geometry", geo.size, tuple(size_wh))
        return ImageGeometry.plain(size_wh)
    return geo


def write_label_image(path: str | os.PathLike, result: LandmarkResult, radius: float | None = None,
                      geometry: ImageGeometry | None = None) -> Path:
    """Write the label image: one disc of label ``i + 1`` per landmark (0 = background), voxel ``(i, j)`` =
    pixel ``(x, y)``, in ``geometry`` (:func:`image_geometry` of the radiograph, so that the label lies on it in
    physical space; default :meth:`ImageGeometry.plain` with the result's pixel spacing). NIfTI (``.nii.gz``)
    or any format SimpleITK writes, atomically. ``radius`` (px) defaults to :func:`disc_radius`."""
    import SimpleITK as sitk

    from .io.atomic import atomic_path
    from .io.nifti import landmark_label_map

    if result.image_size is None:
        raise ValueError("the result has no image_size: cannot size the label image")
    w, h = (int(v) for v in result.image_size)
    geo = ImageGeometry.plain((w, h), result.pixel_spacing) if geometry is None else geometry
    if tuple(geo.size[:2]) != (w, h):
        raise ValueError(f"the geometry's size {geo.size} is not the result's image size {(w, h)}")
    r = disc_radius(result.image_size) if radius is None else float(radius)
    labels = landmark_label_map(result.points, (h, w), radius=r)  # (H, W)
    img = sitk.GetImageFromArray(labels if geo.dimension == 2 else labels[None])  # index (x, y[, 0])
    img.SetOrigin(geo.origin)
    img.SetSpacing(geo.spacing)
    img.SetDirection(geo.direction)
    target = Path(path)
    with atomic_path(target) as tmp:
        sitk.WriteImage(img, str(tmp), True)
    return target


#: the JSON schema 3D Slicer writes into (and checks in) a markups file
SLICER_MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                         "Schema/markups-schema-v1.0.3.json#")


def slicer_markups(result: LandmarkResult, geometry: ImageGeometry | None = None,
                   name: str = "lumbar_landmarks") -> dict[str, Any]:
    """The landmarks as a 3D Slicer markups point list (``.mrk.json`` content, schema v1.0.3).

    One ``Fiducial`` markup, ``"coordinateSystem": "LPS"``, mm: each landmark's position is its pixel
    ``(x, y)`` mapped through ``geometry`` (:func:`image_geometry` of the radiograph; default
    :meth:`ImageGeometry.plain`), so that Slicer shows it on the radiograph; the label is the landmark's name and
    the description its confidence. A landmark without coordinates is kept with ``"positionStatus":
    "undefined"``.
    """
    if geometry is None:
        if result.image_size is None:
            raise ValueError("the result has no image_size: give the geometry")
        geometry = ImageGeometry.plain(result.image_size, result.pixel_spacing)
    lps = geometry.to_lps(result.points)
    points = []
    for i, (label, pos) in enumerate(zip(result.layout.point_names, lps, strict=True)):
        cp: dict[str, Any] = {"id": str(i + 1), "label": label, "associatedNodeID": "",
                              "selected": True, "locked": False, "visibility": True}
        conf = float(result.confidence[i]) if result.confidence is not None else float("nan")
        cp["description"] = f"confidence {conf:.3f}" if math.isfinite(conf) else ""
        if np.isfinite(pos).all():
            cp.update(position=[float(v) for v in pos], orientation=[-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
                      positionStatus="defined")
        else:
            cp["positionStatus"] = "undefined"
        points.append(cp)
    return {
        "@schema": SLICER_MARKUPS_SCHEMA,
        "markups": [{
            "type": "Fiducial", "name": name, "coordinateSystem": "LPS", "coordinateUnits": "mm",
            "locked": False, "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
            "controlPoints": points, "measurements": [],
            "display": {"visibility": True, "pointLabelsVisibility": True, "glyphType": "Sphere3D"},
        }],
    }


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


# ----- train requests: an allow-list of typed hyper-parameters ----------------------------------------------------
# MONAI evaluates every "$..." string of a bundle config as Python and resolves "@..."/"%..." as references, so no
# text a client sends may reach the config: a request is reduced to the named settings below, each parsed into a
# number, a bool or one of fixed words, and the bundle overrides are built from those values only.


class RequestError(ValueError):
    """A MONAI Label request with a setting the app does not accept or a bad value; ``str(err)`` is one line
    (the app answers HTTP 422 with it)."""


class TrainRequestError(RequestError):
    """A refused train request."""


@dataclass(frozen=True)
class TrainParam:
    """One setting a train request may carry: ``kind`` is ``int``, ``float``, ``bool``, ``enum`` or ``device``;
    numbers must lie in ``[lo, hi]``; ``enum`` values in ``choices``."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()


_SECTIONS = ("posenet", "mnet_lumbar", "mnet_sacrum")
#: the settings a train request may carry (key: bundle id path, except ``init_from_model`` and ``device``); the
#: limits (*ours*) keep one request from asking for unbounded time or memory
TRAIN_PARAMS: dict[str, TrainParam] = {
    "init_from_model": TrainParam("bool"),
    "device": TrainParam("device"),
    "seed": TrainParam("int", 0, 2**31 - 1),
    "amp": TrainParam("bool"),
    **{f"{s}#max_epochs": TrainParam("int", 1, 1000) for s in _SECTIONS},
    **{f"{s}#patience": TrainParam("int", 1, 1000) for s in _SECTIONS},
    **{f"{s}#batch_size": TrainParam("int", 1, 256) for s in _SECTIONS},
    **{f"{s}#lr": TrainParam("float", 1e-8, 1.0) for s in _SECTIONS},
    "posenet#cutout": TrainParam("enum", choices=("none", "conventional", "rsc")),
    "posenet#cutout_ratio": TrainParam("float", 0.0, 1.0),
}
#: keys MONAI Label itself puts into a train request: ``model`` (the task's name) and ``gpus`` (its background
#: runner sets ``CUDA_VISIBLE_DEVICES`` from it); checked, never passed to the bundle
_GPUS = re.compile(r"all|[0-9]{1,2}(,[0-9]{1,2}){0,15}")
_DEVICE = re.compile(r"(cpu|cuda)(?::([0-9]{1,2}))?")
_INT = re.compile(r"[+-]?[0-9]{1,12}")
_FLOAT = re.compile(r"[+-]?([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,3})?")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _quote(v: Any) -> str:
    """At most 40 characters of a value's repr (a message stays one short line)."""
    r = repr(v) if not isinstance(v, int) or abs(v) < 10**30 else f"{'-' if v < 0 else ''}{'9' * 30}..."
    return f"{r[:40]}{'...' if len(r) > 40 else ''}"


def _shown(v: Any) -> str:
    """A value quoted in a message with its type."""
    return f"{type(v).__name__} {_quote(v)}"


def _parse(key: str, spec: TrainParam, v: Any) -> Any:
    bad = f"train request: {key!r} must be"
    if spec.kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        raise TrainRequestError(f"{bad} true or false, got {_shown(v)}")
    if spec.kind == "enum":
        if isinstance(v, str) and v in spec.choices:
            return spec.choices[spec.choices.index(v)]  # the app's own string, not the client's
        raise TrainRequestError(f"{bad} one of {', '.join(spec.choices)}, got {_shown(v)}")
    if spec.kind == "device":
        m = _DEVICE.fullmatch(v) if isinstance(v, str) else None
        if m is None:
            raise TrainRequestError(f"{bad} 'cpu', 'cuda' or 'cuda:N', got {_shown(v)}")
        return "cpu" if m.group(1) == "cpu" else ("cuda" if m.group(2) is None else f"cuda:{int(m.group(2))}")
    # numbers: JSON numbers, or the text a viewer's form sends ("4", "5e-5"); never bool, NaN or infinity
    num: float | int | None = None
    if isinstance(v, bool):
        num = None
    elif isinstance(v, int):
        num = v
    elif isinstance(v, float):
        num = v if math.isfinite(v) else None
    elif isinstance(v, str) and (_INT.fullmatch(v.strip()) or (spec.kind == "float" and _FLOAT.fullmatch(v.strip()))):
        num = int(v.strip()) if _INT.fullmatch(v.strip()) else float(v.strip())
        num = num if math.isfinite(num) else None
    if spec.kind == "int":
        if isinstance(num, float):
            num = int(num) if num.is_integer() else None
        what = "a whole number"
    else:
        num = None if num is None else float(num)
        what = "a number"
    if num is None:
        raise TrainRequestError(f"{bad} {what} in [{spec.lo:g}, {spec.hi:g}], got {_shown(v)}")
    if not spec.lo <= num <= spec.hi:
        raise TrainRequestError(f"{bad} in [{spec.lo:g}, {spec.hi:g}], got {_quote(num)}")
    return num


def validate_train_request(request: Mapping[str, Any], model: str | None = None) -> dict[str, Any]:
    """The settings of a MONAI Label train request, checked against :data:`TRAIN_PARAMS` and parsed.

    Every key must be a setting of :data:`TRAIN_PARAMS`, or one MONAI Label adds itself (``model``; ``gpus`` as
    ``all`` or ``0,1``; under the deprecated ``POST /train/`` the request also holds the model's own section
    as a dict named after it, whose keys MONAI Label has already copied to the top level). Values become ``int``,
    ``float``, ``bool``, one of the setting's words, or a normalised device name.

    Raises:
        TrainRequestError: an unknown key (naming it and the accepted ones) or a bad value (naming the key).
    """
    if not isinstance(request, Mapping):
        raise TrainRequestError(f"train request: expected a JSON object of settings, got {_shown(request)}")
    out: dict[str, Any] = {}
    for key, v in request.items():
        if not isinstance(key, str):
            raise TrainRequestError(f"train request: setting names are text, got {_shown(key)}")
        if key == "model":
            continue
        if key == "gpus":
            if not (isinstance(v, str) and _GPUS.fullmatch(v)):
                raise TrainRequestError(f"train request: 'gpus' must be 'all' or GPU numbers like '0,1', got "
                                        f"{_shown(v)}")
            continue
        if model is not None and key == model and isinstance(v, Mapping):
            continue
        spec = TRAIN_PARAMS.get(key)
        if spec is None:
            raise TrainRequestError(f"train request: {_quote(key)} is not a setting this app accepts "
                                    f"(accepted: {', '.join(sorted(TRAIN_PARAMS))})")
        out[key] = _parse(key, spec, v)
    return out


def train_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Bundle overrides from :func:`validate_train_request`'s output: the ``#`` keys with their numbers, bools
    and words, ``device`` as ``$torch.device('<cpu|cuda[:N]>')`` rebuilt from the checked name."""
    out: dict[str, Any] = {}
    for key, v in settings.items():
        spec = TRAIN_PARAMS.get(key)
        if spec is None or key == "init_from_model":
            continue
        if spec.kind == "device":
            m = _DEVICE.fullmatch(str(v))
            if m is None:  # only reachable when called with unchecked settings
                raise TrainRequestError(f"train request: bad device {_shown(v)}")
            out["device"] = "$torch.device('cpu')" if m.group(1) == "cpu" else (
                "$torch.device('cuda')" if m.group(2) is None else f"$torch.device('cuda:{int(m.group(2))}')")
        elif spec.kind == "enum":
            if v not in spec.choices:
                raise TrainRequestError(f"train request: {key!r} must be one of {', '.join(spec.choices)}")
            out[key] = spec.choices[spec.choices.index(v)]
        else:
            if isinstance(v, str) or not isinstance(v, (bool, int, float)):
                raise TrainRequestError(f"train request: {key!r} must be a number or bool, got {_shown(v)}")
            out[key] = v
    return out


def config_expressions(overrides: Mapping[str, Any]) -> list[str]:
    """Keys of ``overrides`` whose value (or an item in it) is a string MONAI's config parser would not keep as
    text: a ``$`` expression (evaluated as Python), an ``@`` reference or a ``%`` macro (reads a file)."""

    def active(v: Any) -> bool:
        if isinstance(v, str):
            return v.startswith(("$", "@", "%"))
        if isinstance(v, Mapping):
            return any(active(k) or active(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return any(active(x) for x in v)
        return False

    return [str(k) for k, v in overrides.items() if active(k) or active(v)]


def parse_infer_request(request: Mapping[str, Any], default_device: str = "cpu") -> tuple[str, float | None]:
    """``(device, label radius or None)`` of an infer request: ``device`` as ``cpu`` / ``cuda[:N]`` (a list: its
    first entry), ``label_radius`` a number of pixels in ``[0, 100]`` (0 or absent: :func:`disc_radius`).

    Raises:
        RequestError: a bad value, naming the key.
    """
    dev = request.get("device") or default_device
    if isinstance(dev, (list, tuple)) and dev:
        dev = dev[0]
    m = _DEVICE.fullmatch(dev) if isinstance(dev, str) else None
    if m is None:
        raise RequestError(f"infer request: 'device' must be 'cpu', 'cuda' or 'cuda:N', got {_shown(dev)}")
    device = "cpu" if m.group(1) == "cpu" else ("cuda" if m.group(2) is None else f"cuda:{int(m.group(2))}")
    radius = request.get("label_radius") or 0.0
    try:
        r = _parse("label_radius", TrainParam("float", 0.0, 100.0), radius)
    except TrainRequestError as e:
        raise RequestError(str(e).replace("train request", "infer request", 1)) from None
    return device, (r if r > 0 else None)
