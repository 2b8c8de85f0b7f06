"""``lumbar-monai evaluate DATA --out DIR --model M``: score a model on labelled images with the paper's metrics.

``DATA`` is a datalist JSON (``--split``), an AASCE-format folder or a BUU-LSPINE folder
(:mod:`lumbar_monai.io.labelled_data`). The evaluate workflow (:func:`lumbar_monai.workflows.evaluate.evaluate_predictor`,
the bundle's ``evaluate``) writes its tables, ``per_case.csv``, box plot, overlays and ``summary.json`` to ``DIR``;
this prints one summary row (no file names). Exit status: 0 when images were scored, 1 when every image failed, 2
for a bad model, data or output folder.
"""

from __future__ import annotations

import argparse

from .predict import DEFAULT_MODEL

SUMMARY_HEADER = ("| data | n | failed | centre detection (%) | RD detected images, paper's Total (%) "
                  "| RD median image (%) | landmark outliers, detected images (%) |")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on labelled images (a datalist, an AASCE-format or a BUU-LSPINE folder): centre "
             "detection, RD (paper's Total), median image RD, landmark outliers",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("data", help="datalist JSON, AASCE-format folder (labels_*/landmarks.csv, or the release's "
                                "labels/*/landmarks.csv) or BUU-LSPINE folder")
    p.add_argument("--out", required=True, help="output folder (tables, per_case.csv, overlays, summary.json)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"predictor checkpoint (default: {DEFAULT_MODEL})")
    p.add_argument("--split", default="test",
                   help="a datalist's split: training, validation, test (default) or all; folders are scored whole")
    p.add_argument("--aasce-subset", default=None, metavar="NAME",
                   help="an AASCE folder's images_NAME/ + labels_NAME/ or data/NAME/ + labels/NAME/ (needed only "
                        "when it holds several)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--max-cases", type=int, default=None, metavar="N", help="score the first N images only")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..batch import check_output_folder
    from ..devices import resolve_device
    from ..errors import InputError
    from ..io.labelled_data import scoring_datalist
    from ..loading import load_predictor
    from ..workflows.evaluate import evaluate_predictor

    def fail(message: str, code: int = 2) -> int:
        print(f"lumbar-monai evaluate: {message}", file=sys.stderr)
        return code

    if args.max_cases is not None and args.max_cases < 1:
        return fail(f"--max-cases must be at least 1, got {args.max_cases}")
    out = Path(args.out)
    try:
        device = resolve_device(args.device)
        check_output_folder(out)
        predictor = load_predictor(args.model, device=device)
        # the model's layout decides how a folder is read
        data = scoring_datalist(args.data, out, predictor.layout.name, split=args.split, subset=args.aasce_subset)
    except (InputError, ValueError) as e:  # ValueError: the device
        return fail(str(e))
    try:
        s = evaluate_predictor(predictor, data.datalist, out, split=data.split, max_cases=args.max_cases)
    except InputError as e:
        return fail(str(e))
    except ValueError as e:  # an empty split, or every image failed (summary.json is not written then)
        return fail(f"{args.data}: {' '.join(str(e).split())[:300]}", code=1)

    def pct(key: str) -> str:
        return "n/a" if s.get(key) is None else f"{s[key]:.2f}"

    print(SUMMARY_HEADER)
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {data.description} | {s['n_cases']} | {s['n_failed']} | {s['centre_detection_accuracy_pct']:.1f} "
          f"| {pct('landmark_rd_total_pct')} | {pct('landmark_rd_median_image_pct')} | {pct('landmark_outlier_pct')} |")
    print(f"tables, per_case.csv, overlays and summary.json -> {out}"
          + (f" ({s['n_failed']} image(s) could not be scored: the reasons are in summary.json)" if s["n_failed"]
             else ""))
    return 0
