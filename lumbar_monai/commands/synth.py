"""``lumbar-monai synth``: write a synthetic study set (images, annotations, BUU CSV, DICOM, datalist)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic lateral lumbar radiographs with landmarks",
        description="Generate N synthetic lateral lumbar radiographs with their lateral-layout landmarks in every "
        "format the project reads, and a MONAI datalist (training/validation/test).",
    )
    p.add_argument("--n", type=int, required=True, help="number of studies")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    p.add_argument("--max-side", type=int, default=None, help="cap the image size in px (faster, coarser spacing)")
    p.add_argument("--image-format", choices=("png", "tiff"), default="png", help="16-bit image format")
    p.add_argument("--no-dicom", action="store_true", help="skip the DICOM DX files")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..synthetic import SyntheticConfig, write_study_set

    if args.n < 1:
        raise SystemExit("lumbar-monai synth: --n must be at least 1")
    if args.max_side is not None and args.max_side < 64:
        raise SystemExit("lumbar-monai synth: --max-side must be at least 64")
    formats = ("png", "json", "buu") + (() if args.no_dicom else ("dicom",))
    cfg = SyntheticConfig(max_side=args.max_side)
    try:
        datalist = write_study_set(
            args.out,
            args.n,
            seed=args.seed,
            config=cfg,
            formats=formats,
            image_format=args.image_format,
            progress=not args.no_progress,
            num_workers=max(1, args.workers),
        )
    except OSError as e:
        raise InputError(args.out, f"cannot write the study set ({e.strerror or e})") from None
    print(f"wrote {args.n} synthetic studies to {datalist.parent}")
    print(f"datalist: {datalist}")
    return 0
