"""One picture of several systems' overlays on the same images: one row per system, one column per image.

Each ``--row LABEL=DIR`` is the output folder of ``lumbar-monai predict`` for one system (its ``*_overlay.png``
files, named by image hash, so every folder lists the same images in the same order).

    .venv/bin/lumbar-monai predict ../shared/data/buu_lspine_ap_samples --out /tmp/buu_full \\
        --model bundles/lumbar_landmarks/runs/aasce_cpu/models/lumbar_landmarks.pt
    .venv/bin/python benchmarks/overlay_montage.py --row "full method=/tmp/buu_full" --out docs/buu_ap_overlays.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw


def montage(rows: list[tuple[str, list[Path]]], height: int, gap: int = 8, label_height: int = 22) -> Image.Image:
    tiles = [[Image.open(p).convert("RGB") for p in files] for _, files in rows]
    tiles = [[im.resize((max(1, round(im.width * height / im.height)), height)) for im in row] for row in tiles]
    width = max(sum(im.width for im in row) + gap * (len(row) - 1) for row in tiles)
    out = Image.new("RGB", (width, len(rows) * (height + label_height + gap)), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for (label, _), row in zip(rows, tiles, strict=True):
        draw.text((4, y + 4), label, fill=(0, 0, 0))
        x = 0
        for im in row:
            out.paste(im, (x, y + label_height))
            x += im.width + gap
        y += height + label_height + gap
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", action="append", required=True, metavar="LABEL=DIR")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--height", type=int, default=360, help="tile height in px")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.row:
        label, _, folder = spec.partition("=")
        files = sorted(Path(folder).glob("*_overlay.png"))
        if not files:
            raise SystemExit(f"{folder}: no *_overlay.png (run lumbar-monai predict --out {folder} first)")
        rows.append((label, files))
    if len({len(f) for _, f in rows}) != 1:
        raise SystemExit("the folders hold different numbers of overlays")
    from lumbar_monai.io.atomic import atomic_path

    img = montage(rows, args.height)
    with atomic_path(args.out, suffix=".png") as tmp:
        img.save(tmp, format="PNG", optimize=True)
    print(f"written: {args.out} ({img.width}x{img.height}, {len(rows)} rows x {len(rows[0][1])} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
