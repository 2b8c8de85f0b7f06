"""Batch inference: files, folders (recursive) and DICOMDIRs in; per image JSON, overlay PNG, SR and GSPS out.

:func:`run_batch` works with any predictor that has ``predict(radiograph) -> LandmarkResult`` (the project's
:class:`~lumbar_monai.predictor.LandmarkPredictor`, or a test double). For every image it writes, atomically, into
``out_dir``:

* ``<name>.json``: the landmarks, confidences, QC flags and measurements (:mod:`lumbar_monai.io.result_json`);
* ``<name>_overlay.png``: the landmarks and end plates drawn over the image;
* DICOM sources only: ``<name>_sr.dcm`` (Structured Report), ``<name>_pr.dcm`` (presentation state) and, with
  ``secondary_capture=True``, ``<name>_sc.dcm`` (RGB secondary capture of the overlay).

``<name>`` is the SOP Instance UID for DICOM files and ``sha256-<first 16 hex digits of the file's SHA-256>``
otherwise, never a patient name or the input file name. A name that another image's outputs already hold (in this
run or in the folder: a repeated SOP Instance UID, or a copy of a file) becomes ``<name>-2``, ``-3``, ... with a
warning; an image's own outputs from an earlier run (same SHA-256) are replaced. An image gets all of its outputs
or none (they are staged and moved into place together).

Run summaries: ``measurements.csv`` (one row per image, one column per measurement key, merged by ``name`` with
the rows earlier runs left) and ``failures.txt`` (one line per file that failed: ``path: reason``, the paths as
the user gave them; lines of earlier runs are kept unless this run read the same path again). The output folder
is checked up front (created, writable, summaries readable) and temporaries a killed run left there are removed.

Nothing identifying reaches the log: images are named by their output name only, library warnings are withheld
(:mod:`lumbar_monai.io.quiet`) and failure reasons are scrubbed of the file's person names and patient IDs.
:attr:`BatchSummary.exit_code` is non-zero only when no image succeeded.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import InputError
from .io.atomic import TEMP_MARK, all_or_none, atomic_write_text, sweep_stale_temporaries
from .io.quiet import library_messages_withheld
from .measures import measure_result
from .result import LandmarkResult

__all__ = ["Predictor", "BatchItem", "BatchSummary", "discover_inputs", "output_name", "run_batch",
           "check_output_folder", "scrub"]

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
    renamed_from: str | None = None  # the output name another image already held


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


def _dicomdir_files(path: Path) -> tuple[list[Path], list[str]]:
    """Files referenced by the IMAGE records of a DICOMDIR (pydicom reads the directory records).

    Only references that resolve (symbolic links followed) inside the DICOMDIR's folder are followed; the others
    come back as problems (``"IMAGE record 3: ..."``, without the reference itself).

    Returns:
        ``(files, problems)``.
    """
    import pydicom

    try:
        with library_messages_withheld():
            ds = pydicom.dcmread(path, force=True)
            records = list(ds.DirectoryRecordSequence)
    except Exception as e:  # noqa: BLE001 - any parse problem becomes one InputError
        raise InputError(path, f"not a readable DICOMDIR ({type(e).__name__})") from None
    root = path.parent.resolve()
    out, problems = [], []
    for k, rec in enumerate(records, start=1):
        if str(rec.get("DirectoryRecordType", "")).upper() != "IMAGE" or "ReferencedFileID" not in rec:
            continue
        parts = rec.ReferencedFileID
        parts = [str(parts)] if isinstance(parts, str) else [str(x) for x in parts]
        target = _inside(root, parts)
        if target is None:
            problems.append(f"IMAGE record {k}: its file reference leaves the DICOMDIR's folder; not read")
        else:
            out.append(target)
    return out, problems


def _inside(root: Path, parts: Sequence[str]) -> Path | None:
    """``root / parts`` when every part is a plain name and the resolved path stays under ``root``, else None."""
    if not parts or any(not p or p in (".", "..") or "/" in p or "\\" in p or "\0" in p or os.path.isabs(p)
                        or (len(p) > 1 and p[1] == ":") for p in parts):
        return None
    target = root.joinpath(*parts)
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return None
    return target if resolved == root or root in resolved.parents else None


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
            found, problems = _dicomdir_files(p)
        except InputError as e:
            errors.append((str(p), e.problem))
            return
        for f in found:
            add(f)
        errors.extend((str(p), problem) for problem in problems)

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


#: Attributes besides person names (VR PN) whose values are scrubbed from failure reasons.
_IDENTIFYING_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientBirthDate", "PatientAddress",
    "PatientTelephoneNumbers", "AccessionNumber", "InstitutionName", "InstitutionAddress", "MedicalRecordLocator",
})
REDACTED = "[redacted]"


def _identifying_values(path: Path) -> list[str]:
    """Person names (whole, and components of 4+ letters) and patient IDs etc. (3+ characters) in a DICOM file's
    header, longest first; [] for anything else."""
    import pydicom
    from pydicom.multival import MultiValue

    values: set[str] = set()
    try:
        with library_messages_withheld():
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            for elem in ds.iterall():
                if elem.VR != "PN" and elem.keyword not in _IDENTIFYING_KEYWORDS:
                    continue
                vals = elem.value if isinstance(elem.value, (MultiValue, list)) else [elem.value]
                for v in vals:
                    text = str(v if v is not None else "").strip()
                    if len(text) >= 3:
                        values.add(text)
                    if elem.VR == "PN":  # the name as highdicom may print it, and each component of 4+ letters
                        parts = [x.strip() for x in re.split(r"[\^=]", text) if x.strip()]
                        values.update(x for x in [" ".join(parts), *parts] if len(x) >= 4)
    except Exception:  # noqa: BLE001 - not DICOM, or unreadable: nothing known to scrub
        return []
    return sorted(values, key=len, reverse=True)


def scrub(text: str, values: Sequence[str]) -> str:
    """``text`` with every occurrence (any case, not inside a longer word) of ``values`` replaced by ``[redacted]``."""
    for v in values:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])", REDACTED, text, flags=re.IGNORECASE)
    return text


_OUTPUT_SUFFIXES = (".json", "_overlay.png", "_sr.dcm", "_pr.dcm", "_sc.dcm")


def _owner(out: Path, name: str) -> str | None:
    """Whose outputs ``name`` holds in ``out``: ``None`` (none there), the SHA-256 recorded in its JSON, or ``""``
    (files there but no readable JSON: an unknown image's)."""
    doc = out / f"{name}.json"
    if doc.is_file():
        try:
            with open(doc, encoding="utf-8") as f:
                sha = json.loads(f.read(1 << 20))["source"]["sha256"]
            return str(sha) if isinstance(sha, str) else ""
        except (OSError, ValueError, KeyError, TypeError):
            return ""
    return "" if any((out / f"{name}{sfx}").exists() for sfx in _OUTPUT_SUFFIXES[1:]) else None


def _claim_name(out: Path, base: str, digest: str, used: set[str]) -> str:
    """The first of ``base``, ``base-2``, ... that no other image holds in this run or in ``out``."""
    name, k = base, 1
    while name in used or _owner(out, name) not in (None, digest):
        k += 1
        name = f"{base}-{k}"
    used.add(name)
    return name


def _usable_window(header) -> bool:
    from pydicom.multival import MultiValue

    if "WindowCenter" not in header or "WindowWidth" not in header:
        return False
    ww = header.WindowWidth
    try:
        return float(ww[0] if isinstance(ww, MultiValue) else ww) > 0
    except (TypeError, ValueError, IndexError):
        return False


def _write_dicom_outputs(path: Path, stage: Callable[[str], Path], name: str, result: LandmarkResult, ms,
                         secondary_capture: bool) -> None:
    """SR + GSPS (+ SC) for a DICOM source, into ``stage``; highdicom is imported here only."""
    import pydicom

    from .io.atomic import atomic_path
    from .io.gsps import build_sc_overlay, write_gsps
    from .io.report import write_sr

    with library_messages_withheld():
        header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        needs_pixels = secondary_capture or not _usable_window(header)
        source = pydicom.dcmread(path, force=True) if needs_pixels else header
    write_sr(stage(f"{name}_sr.dcm"), header, result, ms)
    write_gsps(stage(f"{name}_pr.dcm"), source, result, ms)
    if secondary_capture:
        sc = build_sc_overlay(source, result, ms)
        with atomic_path(stage(f"{name}_sc.dcm"), suffix=".dcm") as tmp, library_messages_withheld():
            sc.save_as(tmp, enforce_file_format=True)


def _process(path: Path, out_dir: Path, predictor: Predictor, loader: Callable, used: set[str],
             secondary_capture: bool, facing: str = "auto") -> BatchItem:
    radiograph = loader(path)
    meta = dict(getattr(radiograph, "meta", {}) or {})
    digest = _sha256(path)
    # "auto" is every predictor's default; only the two-stage predictor takes a stated facing
    result = predictor.predict(radiograph) if facing == "auto" else predictor.predict(radiograph, facing=facing)
    base_name = output_name(meta, digest)
    name = _claim_name(out_dir, base_name, digest, used)
    return _write_outputs(path, out_dir, radiograph, digest, result, name, base_name, secondary_capture)


def _write_outputs(path: Path, out_dir: Path, radiograph, digest: str, result: LandmarkResult, name: str,
                   base_name: str, secondary_capture: bool) -> BatchItem:
    """Every output of one image under its claimed ``name`` (JSON, overlay, SR/GSPS/SC for DICOM sources)."""
    from .io.overlay import write_overlay_png
    from .io.result_json import write_result_json

    meta = dict(getattr(radiograph, "meta", {}) or {})
    ms = measure_result(result)
    fmt = str(meta.get("format") or "")
    source = {"sop_instance_uid": meta.get("sop_instance_uid"), "sha256": digest, "format": fmt or None,
              "modality": meta.get("modality")}
    note = None
    dicom_outputs = fmt == "dicom" and importlib.util.find_spec("highdicom") is not None
    if fmt == "dicom" and not dicom_outputs:
        note = "SR and presentation state not written: highdicom is not installed (pip install lumbar-monai[dicom])"
    names = [f"{name}.json", f"{name}_overlay.png"]
    with all_or_none(out_dir) as stage:
        write_result_json(stage(names[0]), result, ms, source=source)
        write_overlay_png(stage(names[1]), getattr(radiograph, "image", radiograph), result, ms)
        if dicom_outputs:
            _write_dicom_outputs(path, stage, name, result, ms, secondary_capture)
            names += [f"{name}_sr.dcm", f"{name}_pr.dcm"] + ([f"{name}_sc.dcm"] if secondary_capture else [])
    row = {"name": name, "format": fmt, "layout": result.layout.name, "spacing_source": ms.spacing_source or "",
           "spacing_plane": result.spacing_plane or "", "length_unit": ms.length_unit,
           "facing": (result.meta.get("facing") or {}).get("facing") or "",
           "display": (result.meta.get("display") or {}).get("display") or "",
           "level_check": (result.meta.get("level_check") or {}).get("status") or "",
           "qc_flags": " ".join(result.qc_flags)}
    row.update(ms.as_row())
    return BatchItem(path=str(path), status="ok", name=name, outputs=[str(out_dir / n) for n in names], row=row,
                     note=note, renamed_from=base_name if name != base_name else None)


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of an existing measurements.csv; InputError when it is unreadable or not ours."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(path, f"cannot read the earlier run's summary ({type(e).__name__}); move it away") from None
    if columns and "name" not in columns:
        raise InputError(path, "exists but has no 'name' column: not a summary lumbar-monai wrote; move it away")
    return columns, rows


def _merge_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` merged into ``path``'s earlier rows by ``name`` (a new row replaces an old one)."""
    columns, old = _read_csv(path) if path.exists() else ([], [])
    merged: dict[str, dict[str, Any]] = {r.get("name") or f"\0{i}": r for i, r in enumerate(old)}
    for r in rows:
        merged[str(r["name"])] = r
    for r in merged.values():
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    for r in merged.values():
        w.writerow({k: _fmt(v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def _merge_failures(path: Path, items: Sequence[BatchItem]) -> Path:
    """Earlier lines of ``failures.txt`` minus those for paths read again, then this run's failures."""
    seen = {it.path for it in items}
    kept = []
    if path.exists():
        try:
            old = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(path, f"cannot read the earlier run's failures ({type(e).__name__}); move it away") from None
        for line in old:
            cut = [i for i in range(len(line)) if line.startswith(": ", i)]
            if line.strip() and not any(line[:i] in seen for i in cut):
                kept.append(line + "\n")
    new = [f"{it.path}: {it.reason}\n" for it in items if it.status == "failed"]
    return atomic_write_text(path, "".join(kept + new))


def _write_summaries(out: Path, csv_path: Path, fail_path: Path, items: Sequence[BatchItem]) -> None:
    try:
        _merge_csv(csv_path, [it.row for it in items if it.status == "ok"])
        _merge_failures(fail_path, items)
    except OSError as e:
        raise InputError(out, f"cannot write the run summaries ({e.strerror or type(e).__name__})") from None


def check_output_folder(out: Path) -> None:
    """Create ``out`` and check, before any image is read, that outputs can be written there and that the
    summaries of an earlier run in it can be merged; :class:`InputError` (one line) otherwise."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=f"{TEMP_MARK}{os.getpid()}", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(out, f"output folder is not writable ({e.strerror or type(e).__name__})") from None
    if (out / "measurements.csv").exists():
        _read_csv(out / "measurements.csv")
    fail = out / "failures.txt"
    if fail.exists() and not os.access(fail, os.R_OK):
        raise InputError(fail, "cannot read the earlier run's failures; move it away")


def _run_batched(files: Sequence[Path], out: Path, predictor, loader: Callable, used: set[str],
                 secondary_capture: bool, progress: bool, batch_size: int, workers: int,
                 facing: str = "auto") -> list[BatchItem]:
    """The batched run (``--batch-size`` / ``--workers``): files read, hashed and pre-processed in ``workers``
    processes (:func:`lumbar_monai.batched.iter_predictions`), networks on batches, output names claimed here in
    input order and the writers in one background thread (with ``workers > 0``), off the device's path. At most
    ``2 * batch_size`` images wait for their writer, so memory stays bounded."""
    from concurrent.futures import Future, ThreadPoolExecutor, wait

    from tqdm.auto import tqdm

    from .batched import iter_predictions

    n = len(files)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lumbar-monai-writer") if workers > 0 else None
    pending: list[tuple[Path, Any]] = []
    with library_messages_withheld() as withheld:  # one context for the run: it is not thread-safe
        try:
            preds = iter_predictions(predictor, files, batch_size=batch_size, workers=workers, loader=loader,
                                     extra=_sha256, facing=facing)
            for pred in tqdm(preds, total=n, desc="lumbar-monai", unit="image", disable=not progress):
                path = files[pred.index]
                if pred.error is not None:
                    pending.append((path, pred.error))
                    continue
                meta = dict(getattr(pred.radiograph, "meta", {}) or {})
                base_name = output_name(meta, pred.extra)
                name = _claim_name(out, base_name, pred.extra, used)
                args = (path, out, pred.radiograph, pred.extra, pred.result, name, base_name, secondary_capture)
                if pool is None:
                    try:
                        pending.append((path, _write_outputs(*args)))
                    except Exception as e:  # noqa: BLE001 - settled below like any failure
                        pending.append((path, e))
                    continue
                pending.append((path, pool.submit(_write_outputs, *args)))
                waiting = [f for _, f in pending if isinstance(f, Future) and not f.done()]
                if len(waiting) > 2 * batch_size:
                    wait(waiting[: len(waiting) - 2 * batch_size])
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        items = []
        for i, (path, outcome) in enumerate(pending, start=1):
            items.append(_settle(i, n, path, lambda o=outcome: _resolved(o)))
    if withheld:
        log.debug("%d library warning(s) withheld during the run", len(withheld))
    return items


def _resolved(outcome) -> BatchItem:
    """A writer's BatchItem, or raise what the reader or the writer raised."""
    from concurrent.futures import Future

    if isinstance(outcome, Future):
        return outcome.result()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _settle(i: int, n: int, path: Path, make: Callable[[], BatchItem]) -> BatchItem:
    """``make()`` (one image's outputs) with the batch's handling: a failure becomes a failed item with a scrubbed
    one-line reason, never an exception; the log names images by output name only."""
    try:
        with library_messages_withheld() as withheld:
            item = make()
        log.info("image %d/%d: ok -> %s", i, n, item.name)
        if item.renamed_from:
            log.warning("image %d/%d: output name %s is held by another image (a repeated SOP Instance UID or "
                        "a copy of a file); its outputs are named %s", i, n, item.renamed_from, item.name)
        if item.note:
            log.warning("image %d/%d: %s", i, n, item.note)
        if withheld:
            log.debug("image %d/%d: %d library warning(s) withheld", i, n, len(withheld))
    except InputError as e:
        reason = scrub(e.problem, _identifying_values(path))
        item = BatchItem(path=str(path), status="failed", reason=reason)
        log.warning("image %d/%d: failed (%s)", i, n, reason)
    except Exception as e:  # noqa: BLE001 - one bad image must not stop the batch; its reason is reported
        reason = scrub(" ".join(f"{type(e).__name__}: {e}".split()), _identifying_values(path))
        item = BatchItem(path=str(path), status="failed", reason=reason)
        log.warning("image %d/%d: failed (%s)", i, n, type(e).__name__)
    return item


def run_batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    predictor: Predictor,
    loader: Callable[[Path], Any] | None = None,
    secondary_capture: bool = False,
    progress: bool = True,
    batch_size: int = 1,
    workers: int = 0,
    facing: str = "auto",
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
        batch_size, workers: with ``batch_size > 1`` or ``workers > 0`` (and a predictor with ``predict_batch``)
            the files are read in ``workers`` processes and the networks run on batches
            (:func:`_run_batched`); the outputs are the same.
        facing: lateral views: ``"auto"`` (decide from each image), ``"left"`` or ``"right"`` (the side every
            image's patient faces; skips the mirrored second pass), see :meth:`LandmarkPredictor.predict`.

    Raises:
        InputError: the output folder cannot be created or written, or holds summaries that cannot be merged
            (checked before any image is read), or the summaries cannot be written at the end.
    """
    from tqdm.auto import tqdm

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = Path(out_dir)
    check_output_folder(out)
    swept = sweep_stale_temporaries(out)
    if swept:
        log.info("removed %d temporary file(s) left in the output folder by an interrupted run", swept)
    loader = loader or _default_loader
    files, skipped, errors = discover_inputs(inputs)
    items = [BatchItem(path=p, status="failed", reason=problem) for p, problem in errors]
    used: set[str] = set()
    n = len(files)
    csv_path, fail_path = out / "measurements.csv", out / "failures.txt"
    try:
        if (batch_size > 1 or workers > 0) and hasattr(predictor, "centres_batch"):
            items += _run_batched(files, out, predictor, loader, used, secondary_capture, progress, batch_size,
                                  workers, facing)
        else:
            for i, path in enumerate(tqdm(files, desc="lumbar-monai", unit="image", disable=not progress), start=1):
                items.append(_settle(i, n, path, lambda p=path: _process(p, out, predictor, loader, used,
                                                                         secondary_capture, facing)))
    except KeyboardInterrupt:  # interrupted: the images done so far keep their rows (their outputs are in place)
        _write_summaries(out, csv_path, fail_path, items)
        log.warning("interrupted after %d of %d image(s); their rows are in the summaries", len(items) - len(errors), n)
        raise
    _write_summaries(out, csv_path, fail_path, items)
    summary = BatchSummary(items=items, skipped=skipped, measurements_csv=csv_path, failures_txt=fail_path)
    log.info("%d ok, %d failed, %d skipped (not images)", summary.ok, summary.failed, len(skipped))
    return summary
