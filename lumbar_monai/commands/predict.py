"""``lumbar-monai predict INPUT... --out DIR``: the two-stage predictor over files, folders and DICOMDIRs.

Per image: JSON (landmarks, confidences, QC flags, measurements), overlay PNG and, for DICOM sources, a Structured
Report and a presentation state (optionally an RGB secondary capture); for the run: ``measurements.csv`` and
``failures.txt`` (merged with those of earlier runs into the same folder). Exit status: 0 when at least one image
succeeded, 1 when every image failed, 2 when no image was found or the output folder cannot be used (checked
before any image is read; see :mod:`lumbar_monai.batch`).
"""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "bundles/lumbar_landmarks/runs/default/models/lumbar_landmarks.pt"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="find the landmarks in images, folders or DICOM studies and write JSON, overlays, SR and GSPS",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("inputs", nargs="+", help="image files (DICOM, PNG, JPEG, TIFF, NIfTI, ...), folders, DICOMDIRs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"predictor checkpoint written by the bundle's training (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--secondary-capture", action="store_true",
                   help="also write an RGB secondary-capture overlay for DICOM sources")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--batch-size", type=_positive, default=1, metavar="N",
                   help="images per network batch (default 1: one image at a time)")
    p.add_argument("--workers", type=_non_negative, default=0, metavar="W",
                   help="processes that read and pre-process the files while the networks run (default 0)")
    p.add_argument("--facing", choices=("auto", "left", "right", "standard", "mirrored"), default="auto",
                   help="lateral views: the image side the patient faces (left, right); AP views: whether the image "
                        "is shown standard (the patient's left on the image right) or mirrored; 'auto' (default) "
                        "decides from each image (AP: with the model's display network, if it has one)")
    p.add_argument("--centre-refinement", type=_non_negative, default=None, metavar="K",
                   help="move the lumbar centres to the mean of their predicted corners and run stage 2 again, K "
                        "times (0: the paper's Pose-Net centres; default: the model's own setting)")
    # the choices are lumbar_monai.predictor.TTA_MODES, written out so that building the parser does not import torch
    p.add_argument("--tta", choices=("none", "mirror"), default=None,
                   help="test-time augmentation: 'mirror' averages the corner network over each crop and its "
                        "left-right mirror (AP models only; twice the stage-2 time); default: the model's own setting")
    p.add_argument("--no-shape-prior", action="store_true",
                   help="keep every corner where the corner network put it, even when the model holds a shape prior "
                        "(default: a model's shape prior corrects and flags outlying corners)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..batch import check_output_folder, run_batch
    from ..devices import resolve_device
    from ..errors import InputError
    from ..loading import load_predictor

    try:
        device = resolve_device(args.device)
        check_output_folder(Path(args.out))  # before the model loads: a folder we cannot write fails fast
    except (InputError, ValueError) as e:
        print(f"lumbar-monai predict: {e}", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(args.model, device=device)
    except InputError as e:
        print(f"lumbar-monai predict: {e} (train one with the bundle: see README)", file=sys.stderr)
        return 2
    if args.centre_refinement is not None:
        if not hasattr(predictor, "refined_centres"):
            print(f"lumbar-monai predict: {Path(args.model).name}: --centre-refinement needs a two-stage model",
                  file=sys.stderr)
            return 2
        predictor.centre_refinement = args.centre_refinement
    if args.tta is not None:
        if not hasattr(predictor, "tta"):
            print(f"lumbar-monai predict: {Path(args.model).name}: --tta needs a two-stage model", file=sys.stderr)
            return 2
        try:
            predictor.tta = args.tta
        except ValueError as e:
            print(f"lumbar-monai predict: {Path(args.model).name}: --tta {args.tta}: {e}", file=sys.stderr)
            return 2
    if args.no_shape_prior and hasattr(predictor, "shape_prior"):
        predictor.shape_prior = None
    try:
        summary = run_batch(args.inputs, args.out, predictor, secondary_capture=args.secondary_capture,
                            progress=not args.no_progress, batch_size=args.batch_size, workers=args.workers,
                            facing=args.facing)
    except InputError as e:  # the output folder: not writable, not a folder, or holds a summary not ours
        print(f"lumbar-monai predict: {e}", file=sys.stderr)
        return 2
    print(f"{summary.ok} ok, {summary.failed} failed -> {args.out} (failures: {summary.failures_txt})")
    return summary.exit_code


def _positive(text: str) -> int:
    v = _non_negative(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return v
