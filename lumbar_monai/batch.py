"""Batch inference: files, folders (recursive) and DICOMDIRs in; per image JSON, overlay PNG, SR and GSPS out.

:func:`run_batch` works with any predictor that has ``predict(radiograph) -> LandmarkResult`` (the project's
:class:`~lumbar_monai.predictor.LandmarkPredictor`, or a test double). For every image it writes, atomically, into
``out_dir``:

* ``<name>.json``: the landmarks, confidences, QC flags and measurements (:mod:`lumbar_monai.io.result_json`);
* ``<name>_overlay.png``: the landmarks and end plates drawn over the image;
* DICOM sources only: ``<name>_sr.dcm`` (Structured Report), ``<name>_pr.dcm`` (presentation state) and, with
  ``secondary_capture=True``, ``<name>_sc.dcm`` (RGB secondary capture of the overlay).

``<name>`` is the SOP Instance UID for DICOM files and ``sha256-<first 16 hex digits of the file's SHA-256>``
otherwise, never a patient name or the input file name. After the run: ``measurements.csv`` (one row per image,
one column per measurement key) and ``failures.txt`` (one line per file that failed: ``path: reason``; the paths
are those the user gave). The log names images by their output name only. :attr:`BatchSummary.exit_code` is
non-zero only when no image succeeded.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import InputError
from .io.atomic import atomic_write_text
from .measures import measure_result
from .result import LandmarkResult

__all__ = ["Predictor", "BatchItem", "BatchSummary", "discover_inputs", "output_name", "run_batch"]

log = logging.getLogger(__name__)

#: Extensions (lower case) that a folder walk treats as images; files without an extension are tried too (DICOM
#: files often have none). Anything else found while walking a folder (JSON, CSV, text) is skipped, not failed.
IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii",
                  ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class Predictor(Protocol):
    def predict(self, radiograph: Any) -> LandmarkResult: ...


@dataclass
class BatchItem:
    """What happened to one input file."""

    path: str
    status: str  # "ok" | "failed"
    name: str | None = None
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass
class BatchSummary:
    """The outcome of :func:`run_batch`."""

    items: list[BatchItem]
    skipped: list[str]
    measurements_csv: Path
    failures_txt: Path

    @property
    def ok(self) -> int:
        return sum(i.status == "ok" for i in self.items)

    @property
    def failed(self) -> int:
        return sum(i.status == "failed" for i in self.items)

    @property
    def exit_code(self) -> int:
        """0 when at least one image succeeded, 1 when every image failed, 2 when there was nothing to read."""
        if not self.items:
            return 2
        return 0 if self.ok > 0 else 1


def _is_image_name(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith(IMAGE_SUFFIXES) or "." not in name


def _dicomdir_files(path: Path) -> list[Path]:
    """Files referenced by the IMAGE records of a DICOMDIR (pydicom reads the directory records)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        records = ds.DirectoryRecordSequence
    except Exception as e:  # noqa: BLE001 - any parse problem becomes one InputError
        raise InputError(path, f"not a readable DICOMDIR ({type(e).__name__}: {e})") from None
    out = []
    for rec in records:
        if str(rec.get("DirectoryRecordType", "")).upper() != "IMAGE" or "ReferencedFileID" not in rec:
            continue
        parts = rec.ReferencedFileID
        parts = [parts] if isinstance(parts, str) else list(parts)
        out.append(path.parent.joinpath(*[str(x) for x in parts]))
    return out


def discover_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str], list[tuple[str, str]]]:
    """Expand files, folders (recursively, sorted) and DICOMDIRs into image files.

    Returns:
        ``(files, skipped, errors)``: the files to read (each once), files skipped while walking folders (not
        images by name), and ``(path, problem)`` for inputs that do not exist or DICOMDIRs that cannot be read.
    """
    files: list[Path] = []
    skipped: list[str] = []
    errors: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    def add_dicomdir(p: Path) -> None:
        try:
            for f in _dicomdir_files(p):
                add(f)
        except InputError as e:
            errors.append((str(p), e.problem))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                rel_hidden = any(part.startswith(".") for part in f.relative_to(p).parts)
                if rel_hidden:
                    continue
                if f.name.upper() == "DICOMDIR":
                    add_dicomdir(f)
                elif _is_image_name(f):
                    add(f)
                else:
                    skipped.append(str(f))
        elif p.is_file():
            if p.name.upper() == "DICOMDIR":
                add_dicomdir(p)
            else:
                add(p)
        else:
            errors.append((str(p), "no such file or folder"))
    return files, skipped, errors


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_name(meta: dict[str, Any], sha256: str) -> str:
    """``<SOP Instance UID>`` when ``meta`` has a valid one (DICOM), else ``sha256-<16 hex digits>``."""
    uid = str(meta.get("sop_instance_uid") or "")
    if uid and _UID.match(uid) and len(uid) <= 64:
        return uid
    return f"sha256-{sha256[:16]}"


def _default_loader(path: Path):
    from .io.loader import load_radiograph

    return load_radiograph(path)


def _write_dicom_outputs(path: Path, base: Path, result: LandmarkResult, ms, secondary_capture: bool) -> list[Path]:
    """SR + GSPS (+ SC) for a DICOM source; highdicom is imported here only."""
    import pydicom

    from .io.gsps import build_sc_overlay, write_gsps
    from .io.report import write_sr

    header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    needs_pixels = secondary_capture or "WindowCenter" not in header or "WindowWidth" not in header
    source = pydicom.dcmread(path, force=True) if needs_pixels else header
    out = [write_sr(base.with_name(base.name + "_sr.dcm"), header, result, ms),
           write_gsps(base.with_name(base.name + "_pr.dcm"), source, result, ms)]
    if secondary_capture:
        from .io.atomic import atomic_path

        sc = build_sc_overlay(source, result, ms)
        target = base.with_name(base.name + "_sc.dcm")
        with atomic_path(target, suffix=".dcm") as tmp:
            sc.save_as(tmp, enforce_file_format=True)
        out.append(target)
    return out


def _process(path: Path, out_dir: Path, predictor: Predictor, loader: Callable, used: set[str],
             secondary_capture: bool) -> BatchItem:
    from .io.overlay import write_overlay_png
    from .io.result_json import write_result_json

    radiograph = loader(path)
    meta = dict(getattr(radiograph, "meta", {}) or {})
    digest = _sha256(path)
    name = output_name(meta, digest)
    base_name, k = name, 1
    while name in used:  # the same image twice in one batch (e.g. a copy): keep both results
        k += 1
        name = f"{base_name}-{k}"
    used.add(name)
    result = predictor.predict(radiograph)
    ms = measure_result(result)
    base = out_dir / name
    fmt = str(meta.get("format") or "")
    source = {"sop_instance_uid": meta.get("sop_instance_uid"), "sha256": digest, "format": fmt or None,
              "modality": meta.get("modality")}
    outputs = [write_result_json(base.with_name(name + ".json"), result, ms, source=source)]
    image = getattr(radiograph, "image", radiograph)
    outputs.append(write_overlay_png(base.with_name(name + "_overlay.png"), image, result, ms))
    note = None
    if fmt == "dicom":
        if importlib.util.find_spec("highdicom") is None:
            note = "SR and presentation state not written: highdicom is not installed (pip install lumbar-monai[dicom])"
        else:
            outputs += _write_dicom_outputs(path, base, result, ms, secondary_capture)
    row = {"name": name, "format": fmt, "layout": result.layout.name, "spacing_source": ms.spacing_source or "",
           "length_unit": ms.length_unit, "qc_flags": " ".join(result.qc_flags)}
    row.update(ms.as_row())
    return BatchItem(path=str(path), status="ok", name=name, outputs=[str(o) for o in outputs], row=row, note=note)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def run_batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    predictor: Predictor,
    loader: Callable[[Path], Any] | None = None,
    secondary_capture: bool = False,
    progress: bool = True,
) -> BatchSummary:
    """Run ``predictor`` on every image found in ``inputs`` and write the outputs (see the module docstring).

    Args:
        inputs: files, folders (walked recursively) and DICOMDIR files.
        out_dir: output folder (created).
        predictor: anything with ``predict(radiograph) -> LandmarkResult``.
        loader: ``path -> radiograph`` (default :func:`lumbar_monai.io.loader.load_radiograph`); the radiograph
            should have ``image`` (H, W) and ``meta`` with ``format`` and, for DICOM, ``sop_instance_uid``.
        secondary_capture: also write an RGB secondary capture of the overlay for DICOM sources.
        progress: show a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loader = loader or _default_loader
    files, skipped, errors = discover_inputs(inputs)
    items = [BatchItem(path=p, status="failed", reason=problem) for p, problem in errors]
    used: set[str] = set()
    n = len(files)
    for i, path in enumerate(tqdm(files, desc="lumbar-monai", unit="image", disable=not progress), start=1):
        try:
            item = _process(path, out, predictor, loader, used, secondary_capture)
            log.info("image %d/%d: ok -> %s", i, n, item.name)
            if item.note:
                log.warning("image %d/%d: %s", i, n, item.note)
        except InputError as e:
            item = BatchItem(path=str(path), status="failed", reason=e.problem)
            log.warning("image %d/%d: failed (%s)", i, n, e.problem)
        except Exception as e:  # noqa: BLE001 - one bad image must not stop the batch; its reason is reported
            item = BatchItem(path=str(path), status="failed", reason=f"{type(e).__name__}: {e}")
            log.warning("image %d/%d: failed (%s)", i, n, type(e).__name__)
        items.append(item)
    ok_rows = [it.row for it in items if it.status == "ok"]
    csv_path = _write_csv(out / "measurements.csv", ok_rows)
    failures = "".join(f"{it.path}: {it.reason}\n" for it in items if it.status == "failed")
    fail_path = atomic_write_text(out / "failures.txt", failures)
    summary = BatchSummary(items=items, skipped=skipped, measurements_csv=csv_path, failures_txt=fail_path)
    log.info("%d ok, %d failed, %d skipped (not images)", summary.ok, summary.failed, len(skipped))
    return summary
