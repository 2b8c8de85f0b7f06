"""Grayscale Softcopy Presentation State (GSPS) of the landmarks, a secondary-capture overlay, and a GSPS renderer.

Built with highdicom (pydicom 3); not part of the core import path.

* :func:`build_gsps`: a GSPS that references the source image and draws, in three graphic layers, every landmark
  (a ``POINT`` and a small ``CIRCLE``), every end plate (a ``POLYLINE``) and text labels (vertebra names beside the
  bodies, lordosis / sacral slope or the largest Cobb angle in the top-left corner). A PACS viewer shows the result
  without a plug-in. The display window is the source's first window when it has one, else a window from the
  pixel data's 0.5-99.5 percentiles; MONOCHROME1 sources get an ``INVERSE`` presentation LUT so bone stays bright.
* :func:`build_sc_overlay`: an RGB Secondary Capture of the overlay picture (burned-in annotations) for viewers
  that lack presentation states.
* :func:`annotations_from_presentation_state` and :func:`render_presentation_state`: read the GSPS's graphic
  annotations back and draw them over its image with the project's own overlay renderer (docs picture, tests).

``docs/gsps_render.png`` is such a rendering: synthetic study 1 of ``write_study_set(out, 6, seed=7,
config=SyntheticConfig(max_side=640), formats=("json", "dicom"))``, its ground truth written with
:func:`write_gsps` (measurements included), then ``python -m lumbar_monai.io.gsps PR.dcm IMAGE.dcm OUT.png``.

Coordinates: ``PIXEL`` annotation units put the top-left corner of the top-left pixel at (0, 0); our points have
pixel centres at integers, so writing adds 0.5 and reading subtracts it (as for the SR).
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from ..anatomy import get_layout
from ..measures import MeasurementSet
from ..result import LandmarkResult
from .atomic import atomic_path
from .overlay import Annotations, annotations_from_result, draw_annotations
from .quiet import withholding_library_messages
from .report import ALGORITHM_NAME, PIXEL_ORIGIN_OFFSET, source_for_derivation

__all__ = [
    "LAYERS",
    "build_gsps",
    "write_gsps",
    "build_sc_overlay",
    "display_image",
    "annotations_from_presentation_state",
    "render_presentation_state",
]

#: Graphic layers: name -> (order, description, CIE L*a*b* display colour).
LAYERS = {
    "LANDMARKS": (1, "Vertebral corner landmarks", (90.0, -5.0, 85.0)),  # yellow
    "ENDPLATES": (2, "End-plate lines", (85.0, -45.0, -15.0)),  # cyan
    "LABELS": (3, "Vertebra names and measurements", (85.0, -70.0, 65.0)),  # green
}


def _lab_to_rgb(lab) -> tuple[float, float, float]:
    from skimage.color import lab2rgb

    return tuple(float(v) for v in np.clip(lab2rgb(np.asarray(lab, dtype=np.float64)[None, None, :])[0, 0], 0, 1))


def _dicom_lab_to_lab(values) -> tuple[float, float, float]:
    """DICOM CIELab (0..65535 scaled, PS3.3 C.10.7.1.1) -> L* 0..100, a*/b* -128..127."""
    v = np.asarray(values, dtype=np.float64)
    return (v[0] * 100.0 / 65535.0, v[1] * 255.0 / 65535.0 - 128.0, v[2] * 255.0 / 65535.0 - 128.0)


def _modality_values(source: Dataset) -> np.ndarray:
    """Stored pixels through the Modality LUT (pydicom's ``apply_modality_lut``), float64 ``(H, W)``."""
    from pydicom.pixels import apply_modality_lut

    from .dicom import decode_pixels  # the reader's decoders: quiet, padded JPEG 2000 read

    source = _with_transfer_syntax(source)
    arr = decode_pixels(source)[0]
    if arr.ndim != 2:
        raise ValueError(f"expected a single-frame greyscale image, got pixel array of shape {arr.shape}")
    return np.asarray(apply_modality_lut(arr, source), dtype=np.float64)


def _mark_lumbar_series(ds: Dataset) -> None:
    """General Series of a derived object: Body Part Examined ``LSPINE`` (PS3.16 Annex L; what the landmarks
    describe, whatever the source's own label) and no Laterality (Type 2C, only for paired body parts)."""
    ds.BodyPartExamined = "LSPINE"
    if "Laterality" in ds:
        del ds.Laterality


def _with_transfer_syntax(source: Dataset) -> Dataset:
    """``source`` itself, or a shallow copy with a file meta Transfer Syntax UID when a legacy file (no file meta,
    read with ``force=True``) lacks one, so that pydicom can decode its pixels."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(source, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return source
    implicit, little = getattr(source, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    out = Dataset(source)
    out.file_meta = FileMetaDataset(meta or Dataset())
    out.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )
    return out


def _first(value) -> float:
    """First value of a possibly multi-valued DS attribute."""
    return float(value[0]) if isinstance(value, (MultiValue, list, tuple)) else float(value)


def _window(source: Dataset) -> tuple[float, float]:
    """The source's first window (centre, width), else one from the 0.5-99.5 percentiles of its pixel data."""
    if "WindowCenter" in source and "WindowWidth" in source:
        c, w = _first(source.WindowCenter), _first(source.WindowWidth)
        if w > 0:
            return c, w
    if "PixelData" not in source:
        raise ValueError("source has no usable window (WindowWidth must be > 0) and no pixel data to derive one from")
    lo, hi = np.percentile(_modality_values(source), [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


@withholding_library_messages
def build_gsps(
    source: Dataset,
    result: LandmarkResult,
    measurements: MeasurementSet | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 9902,
    instance_number: int = 1,
    window: tuple[float, float] | None = None,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """GSPS drawing ``result`` over ``source`` (see the module docstring).

    Args:
        source: the source image dataset (with pixel data when it has no window of its own).
        result: landmarks in the source's pixels.
        measurements: optional; lordosis and sacral slope (or the largest Cobb angle) are written as text.
        window: ``(centre, width)`` override of the display window.
    """
    from .result_json import software_version

    ref = source_for_derivation(source)
    if int(ref.get("SamplesPerPixel", 1)) != 1:
        raise ValueError("a grayscale presentation state needs a single-sample (greyscale) source image")
    layout = get_layout(result.layout)
    ann = annotations_from_result(result, measurements)
    layers = {name: hd.pr.GraphicLayer(layer_name=name, order=o, description=d, display_color=hd.color.CIELabColor(*c))
              for name, (o, d, c) in LAYERS.items()}
    units = hd.pr.AnnotationUnitsValues.PIXEL
    off = PIXEL_ORIGIN_OFFSET
    landmark_objects, plate_objects, text_objects = [], [], []
    radius = float(ann.circles[0][1]) if ann.circles else 3.0
    rows, cols = int(ref.Rows), int(ref.Columns)

    def inside(pts: np.ndarray) -> bool:
        # DICOM PIXEL units must lie in [0, Columns] x [0, Rows]: graphics of a landmark predicted outside the
        # image are left out of the presentation state (the landmark itself stays in the SR and the JSON)
        return bool(np.all(np.isfinite(pts)) and np.all(pts >= 0.0) and np.all(pts <= [cols, rows]))

    for name, xy in zip(layout.point_names, np.asarray(result.points, dtype=np.float64), strict=True):
        c = xy + off
        if not inside(c):
            continue
        landmark_objects.append(hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POINT,
                                                    graphic_data=c[None, :], units=units,
                                                    tracking_id=name, tracking_uid=generate_uid()))
        edge = c + [radius, 0.0] if c[0] + radius <= cols else c - [radius, 0.0]
        landmark_objects.append(hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.CIRCLE,
                                                    graphic_data=np.stack([c, edge]), units=units))
    for verts, _ in ann.polylines:
        v = np.asarray(verts, dtype=np.float64) + off
        if inside(v):
            plate_objects.append(hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                                                     graphic_data=v, units=units))
    for anchor, text, _ in ann.texts:
        a = np.clip(np.asarray(anchor, dtype=np.float64) + off, 0.0, [cols, rows])
        text_objects.append(hd.pr.TextObject(text_value=text[:64], units=units, anchor_point=(float(a[0]), float(a[1])),
                                             anchor_point_visible=False))
    annotations = []  # a graphic annotation needs at least one object
    if landmark_objects:
        annotations.append(hd.pr.GraphicAnnotation(referenced_images=[ref], graphic_layer=layers["LANDMARKS"],
                                                   graphic_objects=landmark_objects))
    if plate_objects:
        annotations.append(hd.pr.GraphicAnnotation(referenced_images=[ref], graphic_layer=layers["ENDPLATES"],
                                                   graphic_objects=plate_objects))
    if text_objects:
        annotations.append(hd.pr.GraphicAnnotation(referenced_images=[ref], graphic_layer=layers["LABELS"],
                                                   text_objects=text_objects))
    if window is None:
        window = _window(source)
    # lists: highdicom 0.28 splits a single explanation string into characters
    voi = hd.pr.SoftcopyVOILUTTransformation(window_center=[float(window[0])], window_width=[float(window[1])],
                                             window_explanation=["lumbar-monai display window"])
    shape = (hd.PresentationLUTShapeValues.INVERSE if str(ref.get("PhotometricInterpretation", "")) == "MONOCHROME1"
             else hd.PresentationLUTShapeValues.IDENTITY)
    version = software_version()
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[ref],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer="lumbar-monai project",
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=version,
        device_serial_number=version,
        content_label="LUMBAR_LANDMARKS",
        content_description="lumbar-monai landmarks and end plates",
        graphic_layers=list(layers.values()),
        graphic_annotations=annotations,
        voi_lut_transformations=[voi],
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=shape),
    )
    gsps.SeriesDescription = "lumbar-monai landmarks (presentation state)"
    _mark_lumbar_series(gsps)
    return gsps


@withholding_library_messages
def write_gsps(path: str | os.PathLike, source: Dataset, result: LandmarkResult,
               measurements: MeasurementSet | None = None, **kwargs) -> Path:
    """Build the GSPS and write it atomically."""
    gsps = build_gsps(source, result, measurements, **kwargs)
    with atomic_path(path, suffix=".dcm") as tmp:
        gsps.save_as(tmp, enforce_file_format=True)
    return Path(path)


def display_image(source: Dataset, window: tuple[float, float] | None = None, inverse: bool | None = None) -> np.ndarray:
    """``(H, W)`` float in [0, 1] as a viewer shows ``source``: Modality LUT, linear window (PS3.3 C.11.2.1.2,
    written by hand because pydicom's ``apply_voi_lut`` only reads the image's own window), then inversion for
    MONOCHROME1 (or when ``inverse`` is given)."""
    vals = _modality_values(source)
    c, w = window if window is not None else _window(source)
    out = np.clip((vals - (c - 0.5)) / max(w - 1.0, 1e-6) + 0.5, 0.0, 1.0)
    if inverse is None:
        inverse = str(source.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    return 1.0 - out if inverse else out


def _patient_orientation(source: Dataset, result: LandmarkResult) -> tuple[str, str]:
    """The source's Patient Orientation when it has two valid biped values; else derived from the landmarks
    (*ours*): lateral views facing left have posterior towards +x ("P"), facing right anterior ("A"); AP views in
    standard display have the patient's left towards +x ("L"); rows go to the feet ("F", upright image)."""
    valid = set("APLRHF")
    vals = [str(v) for v in source.get("PatientOrientation", [])]
    if len(vals) == 2 and all(v and set(v) <= valid for v in vals):
        return vals[0], vals[1]
    layout = get_layout(result.layout)
    if layout.view == "lateral":
        from ..measures import canonical_points

        _, facing = canonical_points(result.points, layout)
        return ("P" if facing == "left" else "A"), "F"
    return "L", "F"


@withholding_library_messages
def build_sc_overlay(
    source: Dataset,
    result: LandmarkResult,
    measurements: MeasurementSet | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 9903,
    instance_number: int = 1,
) -> hd.sc.SCImage:
    """RGB Secondary Capture of the overlay (burned-in annotations) for viewers without presentation states."""
    ref = source_for_derivation(source)
    rgb = draw_annotations(display_image(source), annotations_from_result(result, measurements))
    kwargs = {"patient_orientation": _patient_orientation(ref, result)}
    ps = ref.get("PixelSpacing") or ref.get("ImagerPixelSpacing")
    if ps is not None and len(ps) == 2:
        kwargs["pixel_spacing"] = (float(ps[0]), float(ps[1]))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer="lumbar-monai project",
        **kwargs,
    )
    _mark_lumbar_series(sc)
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = "lumbar-monai landmarks (burned-in overlay)"
    sc.DerivationDescription = "landmarks, end plates and labels drawn over the source image by lumbar-monai"
    return sc


def annotations_from_presentation_state(gsps: Dataset) -> Annotations:
    """Read a GSPS's graphic annotations (``PIXEL`` units) back into :class:`Annotations` in our point convention.

    ``POINT`` -> dot, ``CIRCLE`` -> circle (centre, point on the circumference), ``POLYLINE``/``INTERPOLATED`` ->
    polyline, ``ELLIPSE`` -> closed polyline through its axis ends; text objects -> texts at their anchor point (or
    bounding-box top-left corner). Colours are the layers' recommended CIELab display colours.
    """
    colours = {}
    for layer in gsps.get("GraphicLayerSequence", []):
        lab = layer.get("GraphicLayerRecommendedDisplayCIELabValue")
        colours[layer.GraphicLayer] = _lab_to_rgb(_dicom_lab_to_lab(lab)) if lab is not None else (1.0, 1.0, 0.0)
    ann = Annotations()
    off = PIXEL_ORIGIN_OFFSET
    for item in gsps.get("GraphicAnnotationSequence", []):
        col = colours.get(item.get("GraphicLayer"), (1.0, 1.0, 0.0))
        for g in item.get("GraphicObjectSequence", []):
            if g.GraphicAnnotationUnits != "PIXEL":
                continue  # DISPLAY units depend on the viewer's zoom; this writer never uses them
            data = np.asarray(g.GraphicData, dtype=np.float64).reshape(-1, 2) - off
            kind = g.GraphicType
            if kind == "POINT":
                ann.points.append((data[0], col))
            elif kind == "CIRCLE":
                ann.circles.append((data[0], float(np.linalg.norm(data[1] - data[0])), col))
            elif kind in ("POLYLINE", "INTERPOLATED"):
                ann.polylines.append((data, col))
            elif kind == "ELLIPSE":
                ann.polylines.append((data[[0, 2, 1, 3, 0]], col))
        for t in item.get("TextObjectSequence", []):
            if "AnchorPoint" in t and t.get("AnchorPointAnnotationUnits") == "PIXEL":
                xy = np.asarray(t.AnchorPoint, dtype=np.float64) - off
            elif "BoundingBoxTopLeftHandCorner" in t and t.get("BoundingBoxAnnotationUnits") == "PIXEL":
                xy = np.asarray(t.BoundingBoxTopLeftHandCorner, dtype=np.float64) - off
            else:
                continue
            ann.texts.append((xy, str(t.UnformattedTextValue), col))
    return ann


def render_presentation_state(gsps: Dataset, source: Dataset) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``source`` shown through the GSPS's window and presentation LUT, its graphics drawn."""
    window = None
    if "SoftcopyVOILUTSequence" in gsps:
        v = gsps.SoftcopyVOILUTSequence[0]
        if "WindowCenter" in v:
            window = (_first(v.WindowCenter), _first(v.WindowWidth))
    inverse = str(gsps.get("PresentationLUTShape", "IDENTITY")) == "INVERSE"
    # GSPS presentation LUT replaces the photometric interpretation's polarity (PS3.4 N.2.1.5)
    image = display_image(source, window=window, inverse=inverse)
    return draw_annotations(image, annotations_from_presentation_state(gsps))


def main(argv: list[str] | None = None) -> int:
    """``python -m lumbar_monai.io.gsps GSPS.dcm IMAGE.dcm OUT.png``: render a presentation state over its image."""
    import argparse

    import pydicom

    from .overlay import write_png

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("gsps")
    ap.add_argument("image")
    ap.add_argument("out_png")
    args = ap.parse_args(argv)
    rgb = render_presentation_state(pydicom.dcmread(args.gsps), pydicom.dcmread(args.image, force=True))
    write_png(args.out_png, rgb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
