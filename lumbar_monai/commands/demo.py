"""``lumbar-monai demo``: a small synthetic study set and an overview picture of it with the landmarks."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="generate a small synthetic study set and an overview PNG with the landmarks",
        description="Generate a few synthetic lateral lumbar radiographs (all formats + datalist) and draw them "
        "with their landmarks into OUT/overview.png.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=8, help="number of studies (default 8)")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1: the studies of docs/synthetic_study.png)")
    p.add_argument("--max-side", type=int, default=1024, help="image size cap in px (default 1024)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..io.annotations import read_annotation_json
    from ..synthetic import SyntheticConfig, write_study_set
    from ..synthetic.overview import render_overview

    if args.n < 1:
        raise SystemExit("lumbar-monai demo: --n must be at least 1")
    out = Path(args.out)
    cfg = SyntheticConfig(max_side=args.max_side)
    datalist = write_study_set(out, args.n, seed=args.seed, config=cfg, progress=True)
    # draw what was written (read back from disk, as a user of the files would)
    import numpy as np
    from PIL import Image

    doc = json.loads(datalist.read_text())
    entries = sorted((e for k in ("training", "validation", "test") for e in doc.get(k, [])), key=lambda e: e["image"])
    panels = []
    for e in entries[: min(len(entries), 8)]:
        ann = read_annotation_json(out / e["label"])
        image = np.asarray(Image.open(out / e["image"]))
        panels.append((image, ann.points, ann.layout, f"{Path(e['image']).name} (faces {ann.facing})"))
    overview = render_overview(panels, out / "overview.png", columns=4)
    print(f"studies:  {out.resolve()} ({args.n} cases: images/, annotations/, buu/, dicom/)")
    print(f"datalist: {datalist.resolve()}")
    print(f"overview: {overview.resolve()}")
    return 0
