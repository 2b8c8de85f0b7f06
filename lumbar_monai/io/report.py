"""DICOM Structured Report (TID 1500 Measurement Report) of the landmarks and measurements of one radiograph.

Built with highdicom (pydicom 3); not part of the core import path.

Content (``highdicom.sr.Comprehensive3DSR`` with a ``MeasurementReport``):

* Observer: the algorithm as a device (name ``lumbar-monai``, model ``lumbar-monai``, software version), and an
  ``AlgorithmIdentification`` (name, family, version) on every group and measurement.
* One **planar ROI group** (TID 1410) per landmark: an ``ImageRegion`` SCOORD ``POINT`` on the source image, the
  tracking identifier ``"<vertebra>_<corner>"`` (the layout's point name), the finding site (the vertebra, SNOMED
  CT), the finding type (the corner, private code, see below) and one numeric item, the landmark's confidence.
* One **measurement group** (TID 1501) per vertebra, per level (pair of adjacent vertebrae) and one for the whole
  spine, with the finding site coded (SNOMED CT vertebra, L1/L2 ... L5/S1 disc level, lumbar spine) and every
  :class:`~lumbar_monai.measures.Measurement` as a numeric item with its UCUM unit. Every length in mm carries a
  Measurement Method saying the plane its pixel spacing measures in (private codes ``LM-PLANE-PAT`` patient,
  ``LM-PLANE-DET`` detector: not corrected for the geometric magnification, ``LM-PLANE-UNK`` not stated; see
  :func:`lumbar_monai.result.spacing_plane`).

Coordinates: the project's points have pixel centres at integer coordinates; DICOM SCOORD ``PIXEL`` coordinates
put the top-left corner of the top-left pixel at (0, 0), i.e. its centre at (0.5, 0.5). Writers add 0.5, the
reader subtracts it (:data:`PIXEL_ORIGIN_OFFSET`).

Codes: SNOMED CT codes come from pydicom's code dictionary (``pydicom.sr.codedict.codes.SCT``) where it has them;
the S1 vertebra is SCT 65985001 "Structure of first sacral vertebra" (not in pydicom's dictionary; as listed in
the AAPM TG-263 SNOMED CT mapping). Concepts without a standard code (corner names, lordosis, slip %, Genant and
Meyerding grades, ...) use the private coding scheme :data:`PRIVATE_SCHEME` ("99" prefix = private, PS3.16 8.2),
described in the SR's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ..anatomy import get_layout
from ..measures import QUANTITIES, MeasurementSet
from ..result import LandmarkResult
from .atomic import atomic_path
from .quiet import withholding_library_messages

__all__ = [
    "PRIVATE_SCHEME",
    "PIXEL_ORIGIN_OFFSET",
    "ALGORITHM_NAME",
    "vertebra_code",
    "level_code",
    "build_sr",
    "write_sr",
    "read_sr_landmarks",
    "read_sr_measurements",
    "read_sr_length_planes",
]

#: Private coding scheme designator for concepts with no standard code (PS3.16: "99" prefix marks private).
PRIVATE_SCHEME = "99LUMBARMONAI"
PRIVATE_SCHEME_NAME = "lumbar-monai private codes (landmark corners and spine measurements)"
#: SCOORD PIXEL (0, 0) is the top-left corner of the top-left pixel; our points have pixel centres at integers.
PIXEL_ORIGIN_OFFSET = 0.5
ALGORITHM_NAME = "lumbar-monai"
#: Stable device UID of the algorithm as an observer (derived from its name, so every report carries the same one).
DEVICE_UID = generate_uid(entropy_srcs=["lumbar-monai observer device"])

_SCT = codes.SCT
#: SNOMED CT body structure of each vertebra.
_VERTEBRA_CODES: dict[str, hd.sr.CodedConcept] = {
    "L1": hd.sr.CodedConcept.from_code(_SCT.L1Vertebra),
    "L2": hd.sr.CodedConcept.from_code(_SCT.L2Vertebra),
    "L3": hd.sr.CodedConcept.from_code(_SCT.L3Vertebra),
    "L4": hd.sr.CodedConcept.from_code(_SCT.L4Vertebra),
    "L5": hd.sr.CodedConcept.from_code(_SCT.L5Vertebra),
    "S1": hd.sr.CodedConcept("65985001", "SCT", "Structure of first sacral vertebra"),
}
#: SNOMED CT level of each intervertebral disc (pydicom's dictionary).
_LEVEL_CODES: dict[tuple[str, str], hd.sr.CodedConcept] = {
    ("L1", "L2"): hd.sr.CodedConcept.from_code(_SCT.LevelOfL1L2IntervertebralDisc),
    ("L2", "L3"): hd.sr.CodedConcept.from_code(_SCT.LevelOfL2L3IntervertebralDisc),
    ("L3", "L4"): hd.sr.CodedConcept.from_code(_SCT.LevelOfL3L4IntervertebralDisc),
    ("L4", "L5"): hd.sr.CodedConcept.from_code(_SCT.LevelOfL4L5IntervertebralDisc),
    ("L5", "S1"): hd.sr.CodedConcept.from_code(_SCT.LevelOfL5S1IntervertebralDisc),
}
_LUMBAR_SPINE = hd.sr.CodedConcept.from_code(_SCT.LumbarSpine)

#: Private codes: corner names and measurement quantities (code values are at most 16 characters, SH).
_CORNER_CODES = {
    "superior_anterior": ("LM-C-SA", "Superior anterior corner of vertebral body"),
    "superior_posterior": ("LM-C-SP", "Superior posterior corner of vertebral body"),
    "inferior_anterior": ("LM-C-IA", "Inferior anterior corner of vertebral body"),
    "inferior_posterior": ("LM-C-IP", "Inferior posterior corner of vertebral body"),
    "anterior": ("LM-C-A", "Anterior corner of superior end plate"),
    "posterior": ("LM-C-P", "Posterior corner of superior end plate"),
    "superior_right": ("LM-C-SR", "Superior right corner of vertebral body"),
    "superior_left": ("LM-C-SL", "Superior left corner of vertebral body"),
    "inferior_right": ("LM-C-IR", "Inferior right corner of vertebral body"),
    "inferior_left": ("LM-C-IL", "Inferior left corner of vertebral body"),
}
_QUANTITY_CODE_VALUES = {
    "lumbar_lordosis": "LM-Q-LL",
    "sacral_slope": "LM-Q-SS",
    "segmental_angle": "LM-Q-SEG",
    "wedge_angle": "LM-Q-WEDGEANG",
    "disc_angle": "LM-Q-DISCANG",
    "max_cobb_angle": "LM-Q-MAXCOBB",
    "anterior_height": "LM-Q-HA",
    "middle_height": "LM-Q-HM",
    "posterior_height": "LM-Q-HP",
    "right_height": "LM-Q-HR",
    "left_height": "LM-Q-HL",
    "wedge_ratio": "LM-Q-WEDGE",
    "biconcavity_ratio": "LM-Q-BICONC",
    "crush_ratio": "LM-Q-CRUSH",
    "height_loss": "LM-Q-HLOSS",
    "genant_grade": "LM-Q-GENANT",
    "disc_anterior_height": "LM-Q-DHA",
    "disc_middle_height": "LM-Q-DHM",
    "disc_posterior_height": "LM-Q-DHP",
    "disc_right_height": "LM-Q-DHR",
    "disc_left_height": "LM-Q-DHL",
    "slip_percent": "LM-Q-SLIP",
    "meyerding_grade": "LM-Q-MEYERDING",
}
_CONFIDENCE = hd.sr.CodedConcept("LM-CONF", PRIVATE_SCHEME, "Landmark detection confidence")
#: Measurement method of every length in mm: the plane its pixel spacing measures in (see
#: :func:`lumbar_monai.result.spacing_plane`); detector-plane lengths include the geometric magnification.
_PLANE_METHODS = {
    "patient": hd.sr.CodedConcept("LM-PLANE-PAT", PRIVATE_SCHEME, "Length in the patient plane"),
    "detector": hd.sr.CodedConcept("LM-PLANE-DET", PRIVATE_SCHEME,
                                   "Length at the detector plane, not corrected for magnification"),
    None: hd.sr.CodedConcept("LM-PLANE-UNK", PRIVATE_SCHEME, "Length in a plane the source does not state"),
}
_LANDMARK_FINDING = hd.sr.CodedConcept("LM-LANDMARK", PRIVATE_SCHEME, "Vertebral landmark")
#: lateral views: the image side the patient faces (the predictor's facing decision, lumbar_monai.facing), as a
#: qualitative evaluation of every landmark; a second one when the decision was flagged ``facing_uncertain``
_FACING = hd.sr.CodedConcept("LM-FACING", PRIVATE_SCHEME, "Image side the patient faces")
_FACING_VALUES = {"left": hd.sr.CodedConcept("LM-FACING-L", PRIVATE_SCHEME, "Image left"),
                  "right": hd.sr.CodedConcept("LM-FACING-R", PRIVATE_SCHEME, "Image right"),
                  "uncertain": hd.sr.CodedConcept("LM-FACING-UNC", PRIVATE_SCHEME, "Facing uncertain")}
#: AP views: how the image is displayed (the predictor's display decision, lumbar_monai.display): standard (the
#: patient's right on the image left) or mirrored; a second evaluation when it was flagged ``display_uncertain``
_DISPLAY = hd.sr.CodedConcept("LM-DISPLAY", PRIVATE_SCHEME, "AP image display")
_DISPLAY_VALUES = {"standard": hd.sr.CodedConcept("LM-DISPLAY-STD", PRIVATE_SCHEME, "Patient right on image left"),
                   "mirrored": hd.sr.CodedConcept("LM-DISPLAY-MIR", PRIVATE_SCHEME, "Patient left on image left"),
                   "uncertain": hd.sr.CodedConcept("LM-DISPLAY-UNC", PRIVATE_SCHEME, "Display uncertain")}
#: how L1-L5 were named (the predictor's level check, lumbar_monai.levels.LEVEL_STATUSES): what a vertebra counter
#: or level network said of the window Pose-Net's names, as a qualitative evaluation of every landmark
_LEVEL = hd.sr.CodedConcept("LM-LEVEL", PRIVATE_SCHEME, "Vertebral level naming check")
_LEVEL_VALUES = {"confirmed": hd.sr.CodedConcept("LM-LEVEL-CONF", PRIVATE_SCHEME, "Level names confirmed"),
                 "renamed": hd.sr.CodedConcept("LM-LEVEL-REN", PRIVATE_SCHEME, "Level names changed by the check"),
                 "disputed": hd.sr.CodedConcept("LM-LEVEL-DISP", PRIVATE_SCHEME, "Level names disputed"),
                 "not_counted": hd.sr.CodedConcept("LM-LEVEL-NONE", PRIVATE_SCHEME, "Level names not checked")}
#: a corner the shape prior (lumbar_monai.shape_prior) put where its fit says, replacing the corner network's peak
#: (``meta["shape_prior"]["outliers"]``, QC flag ``shape_outlier``): a qualitative evaluation of that landmark only
_SOURCE = hd.sr.CodedConcept("LM-SOURCE", PRIVATE_SCHEME, "Landmark position source")
_SOURCE_PRIOR = hd.sr.CodedConcept("LM-SOURCE-PRIOR", PRIVATE_SCHEME, "Placed by the shape prior")
_UCUM = {
    "deg": ("deg", "degree"),
    "mm": ("mm", "millimeter"),
    "{px}": ("{px}", "pixel"),
    "%": ("%", "percent"),
    "1": ("1", "no units"),
    "{grade}": ("{grade}", "grade"),
}


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


def vertebra_code(name: str) -> hd.sr.CodedConcept:
    """SNOMED CT code of a vertebra (``"L1"``..``"L5"``, ``"S1"``); a private code for names without one."""
    return _VERTEBRA_CODES.get(name) or _private(f"LM-V-{name}"[:16], f"Vertebra {name}")


def level_code(upper: str, lower: str) -> hd.sr.CodedConcept:
    """SNOMED CT code of the intervertebral level ``upper``/``lower``; a private code where none exists."""
    return _LEVEL_CODES.get((upper, lower)) or _private(f"LM-L-{upper}{lower}"[:16], f"Level {upper}/{lower}")


def quantity_code(quantity: str) -> hd.sr.CodedConcept:
    return _private(_QUANTITY_CODE_VALUES[quantity], QUANTITIES[quantity][0])


def corner_code(corner: str) -> hd.sr.CodedConcept:
    value, meaning = _CORNER_CODES.get(corner, (f"LM-C-{corner}"[:16], corner.replace("_", " ")))
    return _private(value, meaning)


def _unit(unit: str) -> hd.sr.CodedConcept:
    value, meaning = _UCUM[unit]
    return hd.sr.CodedConcept(value, "UCUM", meaning)


def algorithm_identification() -> hd.sr.AlgorithmIdentification:
    from .result_json import software_version

    return hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=software_version())


def _source_image(source: Dataset) -> hd.sr.SourceImageForRegion:
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=source.SOPClassUID, referenced_sop_instance_uid=source.SOPInstanceUID
    )


#: Type 2 patient/study attributes a derived object copies from its source (empty when the source lacks them).
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")


def source_for_derivation(source: Dataset) -> Dataset:
    """A header-only copy of ``source`` ready for highdicom: UIDs checked, missing Type 2 patient/study attributes
    present and empty (old files, e.g. without file meta, often lack PatientID). ``source`` is not modified.

    Raises:
        ValueError: the source lacks a UID a reference needs.
    """
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in source]
    if missing:
        raise ValueError(f"source image lacks {', '.join(missing)}: cannot reference it from a derived object")
    out = Dataset()
    for elem in source:
        if elem.tag != 0x7FE00010:  # everything but the pixel data
            out.add(elem)
    for key in _TYPE2_COPIED:
        if key not in out:
            setattr(out, key, "")
    return out


def _reading_evaluations(result: LandmarkResult) -> list:
    """The orientation the landmarks were read in, for every landmark group: the lateral facing
    (``meta["facing"]``) and the AP display (``meta["display"]``), each with an "uncertain" evaluation beside it when
    its QC flag is set, and the level check (``meta["level_check"]``); none when the result does not record them."""
    out = []
    status = (result.meta.get("level_check") or {}).get("status")
    if status in _LEVEL_VALUES:
        out.append(hd.sr.QualitativeEvaluation(name=_LEVEL, value=_LEVEL_VALUES[status]))
    for key, concept, values in (("facing", _FACING, _FACING_VALUES), ("display", _DISPLAY, _DISPLAY_VALUES)):
        value = (result.meta.get(key) or {}).get(key)
        if value not in values or value == "uncertain":
            continue
        out.append(hd.sr.QualitativeEvaluation(name=concept, value=values[value]))
        if f"{key}_uncertain" in result.qc_flags:
            out.append(hd.sr.QualitativeEvaluation(name=concept, value=values["uncertain"]))
    return out


def _landmark_groups(result: LandmarkResult, source: Dataset, algo) -> list:
    layout = get_layout(result.layout)
    src = _source_image(source)
    evaluations = _reading_evaluations(result)
    replaced = set((result.meta.get("shape_prior") or {}).get("outliers") or ())
    groups = []
    for i, name in enumerate(layout.point_names):
        vi = int(layout.point_vertebra[i])
        spec = layout.vertebrae[vi]
        corner = spec.corners[i - layout.vertebra_slices[vi].start]
        xy = np.asarray(result.points[i], dtype=np.float64) + PIXEL_ORIGIN_OFFSET
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT, graphic_data=xy[None, :],
                                   source_image=src)
        conf = float(result.confidence[i])
        meas = []
        if np.isfinite(conf):
            meas.append(hd.sr.Measurement(name=_CONFIDENCE, value=conf, unit=_unit("1"), algorithm_id=algo))
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
                referenced_region=region,
                finding_type=corner_code(corner),
                finding_category=_LANDMARK_FINDING,
                finding_sites=[hd.sr.FindingSite(vertebra_code(spec.name))],
                algorithm_id=algo,
                measurements=meas or None,
                qualitative_evaluations=(evaluations + ([hd.sr.QualitativeEvaluation(name=_SOURCE, value=_SOURCE_PRIOR)]
                                                        if name in replaced else [])) or None,
            )
        )
    return groups


def _measurement_groups(measurements: MeasurementSet, algo) -> list:
    from ..result import spacing_plane

    plane = _PLANE_METHODS[spacing_plane(measurements.spacing_source)]
    by_site: dict[tuple[str, ...], list] = {}
    for m in measurements:
        if not np.isfinite(m.value):
            continue  # undefined values are left out (a NUM item needs a number)
        by_site.setdefault(m.sites, []).append(m)
    groups = []
    for sites, items in by_site.items():
        if len(sites) == 0:
            site, label = _LUMBAR_SPINE, "spine"
        elif len(sites) == 1:
            site, label = vertebra_code(sites[0]), sites[0]
        else:
            site, label = level_code(sites[0], sites[-1]), "-".join(sites)
        finding_site = hd.sr.FindingSite(site)
        meas = [
            hd.sr.Measurement(name=quantity_code(m.quantity), value=float(m.value), unit=_unit(m.unit),
                              algorithm_id=algo, finding_sites=[finding_site],
                              method=plane if m.unit == "mm" else None)
            for m in items
        ]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{label} measurements"),
                finding_sites=[finding_site],
                algorithm_id=algo,
                measurements=meas,
            )
        )
    return groups


def _coding_scheme_item() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "lumbar-monai project"
    return item


@withholding_library_messages
def build_sr(
    source: Dataset,
    result: LandmarkResult,
    measurements: MeasurementSet | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = 9901,
    instance_number: int = 1,
) -> hd.sr.Comprehensive3DSR:
    """The SR document for one source image (patient and study attributes are copied from ``source`` by highdicom;
    the SR gets new series/instance UIDs).

    Args:
        source: the source image's dataset (pixel data not needed).
        result: the landmarks, in the source image's pixels.
        measurements: optional measurements of the same landmarks.
    """
    source = source_for_derivation(source)
    from .result_json import software_version

    algo = algorithm_identification()
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name=ALGORITHM_NAME, manufacturer_name="lumbar-monai project", model_name=ALGORITHM_NAME,
            serial_number=software_version(),
        ),
    )
    groups = _landmark_groups(result, source, algo)
    if measurements is not None:
        groups += _measurement_groups(measurements, algo)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.PlainRadiography,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer="lumbar-monai project",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = "lumbar-monai landmarks and measurements"
    sr.CodingSchemeIdentificationSequence = [_coding_scheme_item()]
    sr.SoftwareVersions = software_version()
    return sr


@withholding_library_messages
def write_sr(path: str | os.PathLike, source: Dataset, result: LandmarkResult,
             measurements: MeasurementSet | None = None, **kwargs: Any) -> Path:
    """Build the SR and write it atomically; returns the path."""
    sr = build_sr(source, result, measurements, **kwargs)
    with atomic_path(path, suffix=".dcm") as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return Path(path)


def _as_sr(sr_or_path) -> hd.sr.Comprehensive3DSR:
    """A highdicom SR whose content offers the TID 1500 accessors (a freshly built one is re-read from itself)."""
    if isinstance(sr_or_path, Dataset):
        if hasattr(getattr(sr_or_path, "content", None), "get_planar_roi_measurement_groups"):
            return sr_or_path
        return hd.sr.Comprehensive3DSR.from_dataset(sr_or_path, copy=True)
    return hd.sr.srread(sr_or_path)


def _joined(values: set[str]) -> str | None:
    """``{"right", "uncertain"}`` -> ``"right uncertain"`` (the value, then the flag); ``None`` when empty."""
    return " ".join(sorted(values - {"uncertain"}) + sorted(values & {"uncertain"})) or None


def read_sr_landmarks(sr_or_path, layout: str = "lateral") -> tuple[np.ndarray, dict[str, Any]]:
    """Read the landmarks back from an SR with highdicom: ``((N, 2) points in our convention, info)``.

    ``info`` holds ``confidence`` ``(N,)``, the ``finding_sites`` (code values), the referenced SOP Instance UID and
    ``facing`` (``"left"``/``"right"``, ``"right uncertain"``, ... or ``None`` when the SR does not say) and, for AP
    views, ``display`` (``"standard"``/``"mirrored"``, ``"mirrored uncertain"``, ... or ``None``), and
    ``level_check`` (``"confirmed"``, ``"renamed"``, ``"disputed"``, ``"not_counted"`` or ``None``), and
    ``shape_prior_replaced``: the landmarks the shape prior placed (names in layout order; empty when none).
    Raises ``ValueError`` if a landmark of the layout is missing.
    """
    layout = get_layout(layout)
    sr = _as_sr(sr_or_path)
    groups = sr.content.get_planar_roi_measurement_groups()
    found: dict[str, tuple[np.ndarray, float, str, str]] = {}
    facing: set[str] = set()
    display: set[str] = set()
    level: set[str] = set()
    replaced: set[str] = set()
    for g in groups:
        if g.tracking_identifier is not None and any(
                q.value.value == _SOURCE_PRIOR.value for q in g.get_qualitative_evaluations(name=_SOURCE)):
            replaced.add(str(g.tracking_identifier))
        for q in g.get_qualitative_evaluations(name=_LEVEL):
            level.add({v.value: k for k, v in _LEVEL_VALUES.items()}.get(q.value.value, "?"))
        for q in g.get_qualitative_evaluations(name=_FACING):
            facing.add({v.value: k for k, v in _FACING_VALUES.items()}.get(q.value.value, "?"))
        for q in g.get_qualitative_evaluations(name=_DISPLAY):
            display.add({v.value: k for k, v in _DISPLAY_VALUES.items()}.get(q.value.value, "?"))
        ident = g.tracking_identifier
        region = g.roi
        if ident is None or region is None:
            continue
        xy = np.asarray(region.value, dtype=np.float64).reshape(-1, 2)[0] - PIXEL_ORIGIN_OFFSET
        conf = np.nan
        for m in g.get_measurements(name=_CONFIDENCE):
            conf = float(m.value)
        sites = g.finding_sites
        site = sites[0].value.value if sites else ""
        ref = ""
        for child in region.get("ContentSequence", []):  # the "selected from" IMAGE item
            for sop in child.get("ReferencedSOPSequence", []):
                ref = str(sop.ReferencedSOPInstanceUID)
        found[str(ident)] = (xy, conf, site, ref)
    missing = [n for n in layout.point_names if n not in found]
    if missing:
        raise ValueError(f"SR lacks landmarks {missing[:3]}{'...' if len(missing) > 3 else ''}")
    pts = np.stack([found[n][0] for n in layout.point_names])
    info = {
        "confidence": np.array([found[n][1] for n in layout.point_names]),
        "finding_sites": [found[n][2] for n in layout.point_names],
        "referenced_sop_instance_uids": sorted({found[n][3] for n in layout.point_names}),
        "facing": _joined(facing),
        "display": _joined(display),
        "level_check": _joined(level),
        "shape_prior_replaced": [n for n in layout.point_names if n in replaced],
    }
    return pts, info


def read_sr_measurements(sr_or_path) -> dict[tuple[str, str], tuple[float, str]]:
    """``{(group tracking identifier, quantity code value): (value, UCUM unit)}`` of the measurement groups."""
    sr = _as_sr(sr_or_path)
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for g in sr.content.get_image_measurement_groups():
        ident = str(g.tracking_identifier)
        for m in g.get_measurements():
            out[(ident, m.name.value)] = (float(m.value), m.unit.value)
    return out


def read_sr_length_planes(sr_or_path) -> set[str]:
    """The plane codes (``LM-PLANE-PAT`` / ``-DET`` / ``-UNK``) given as the method of the SR's lengths."""
    sr = _as_sr(sr_or_path)
    return {m.method.value for g in sr.content.get_image_measurement_groups() for m in g.get_measurements()
            if m.method is not None}


def sr_quantity_lookup() -> dict[str, str]:
    """Private code value -> measures quantity key (to map SR items back to :data:`~lumbar_monai.measures.QUANTITIES`)."""
    return {v: k for k, v in _QUANTITY_CODE_VALUES.items()}


def evidence_uids(sr: Dataset) -> Sequence[str]:
    """SOP Instance UIDs listed in the SR's Current Requested Procedure Evidence Sequence."""
    out = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.ReferencedSeriesSequence:
            out += [item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence]
    return out
