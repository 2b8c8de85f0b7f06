"""``render_overview``: a contact sheet of studies with their landmarks (corners, end plates, centres, labels)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..anatomy import Layout
from ..io.atomic import atomic_path
from .generator import SyntheticRadiograph

__all__ = ["render_overview"]


def _display(image: np.ndarray) -> np.ndarray:
    """Window a raw image to [0, 1] for display (0.5th-99.9th percentile)."""
    img = image.astype(np.float32)
    lo, hi = np.percentile(img[::4, ::4], [0.5, 99.9])
    return np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def render_overview(
    studies: Sequence[SyntheticRadiograph] | Sequence[tuple[np.ndarray, np.ndarray, Layout, str]],
    path: str | os.PathLike,
    columns: int = 4,
    panel_height: float = 4.2,
    dpi: int = 80,
    labels: bool = True,
) -> Path:
    """Draw studies side by side with landmarks and save a PNG atomically.

    Args:
        studies: :class:`SyntheticRadiograph` objects, or ``(image, points, layout, title)`` tuples.
        path: output PNG.
        columns: panels per row.
        panel_height: inches per panel row.
        dpi: output resolution (keep the file small enough for a README).
        labels: write the vertebra names next to the centres.

    Corners are dots (anterior filled, posterior open), end plates are lines, centres (the mean of the
    corners) are crosses.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    items = []
    for st in studies:
        if isinstance(st, SyntheticRadiograph):
            m = st.meta
            title = f"seed {m.get('seed')} | LL {m.get('lordosis_deg', 0):.0f}\u00b0 SS {m.get('sacral_slope_deg', 0):.0f}\u00b0"
            extra = []
            if m.get("fractured"):
                extra.append("fx " + ",".join(m["fractured"]))
            if m.get("slipped"):
                extra.append(f"slip {m['slipped']} {m.get('slip_mm', 0):.0f}mm")
            if m.get("occluded"):
                extra.append("shadow " + ",".join(m["occluded"]))
            if st.facing == "right":
                extra.append("faces right")
            if extra:
                title += "\n" + "; ".join(extra)
            items.append((_display(st.image), st.points, st.layout, title))
        else:
            image, points, layout, title = st
            items.append((_display(np.asarray(image)), np.asarray(points), layout, title))
    n = len(items)
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    aspect = np.mean([it[0].shape[1] / it[0].shape[0] for it in items])
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * panel_height * aspect, rows * (panel_height + 0.35)), squeeze=False
    )
    colours = plt.get_cmap("tab10")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (img, pts, layout, title) in zip(axes.ravel(), items, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
        for a, b in layout.end_plate_segments:
            ax.plot(pts[[a, b], 0], pts[[a, b], 1], "-", color="#ffd24d", lw=1.0)
        centres = layout.centres(pts)
        for vi, (v, sl) in enumerate(zip(layout.vertebrae, layout.vertebra_slices, strict=True)):
            col = colours(vi % 10)
            for ci, name in enumerate(v.corners):
                x, y = pts[sl.start + ci]
                filled = "anterior" in name
                ax.plot(x, y, "o", ms=3.5, mfc=col if filled else "none", mec=col, mew=1.0)
            ax.plot(*centres[vi], "+", color=col, ms=6, mew=1.2)
            if labels:
                ax.annotate(
                    v.name,
                    centres[vi],
                    xytext=(6, 0),
                    textcoords="offset points",
                    color=col,
                    fontsize=7,
                    va="center",
                    fontweight="bold",
                )
        ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m lumbar_monai.synthetic.overview OUT.png [--n 8] [--seed 0]``: the README's picture."""
    import argparse

    from .config import SyntheticConfig
    from .generator import generate_radiograph
    from .study import case_seed

    p = argparse.ArgumentParser(description="Draw synthetic studies with their landmarks into one PNG.")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-side", type=int, default=900)
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--dpi", type=int, default=72)
    args = p.parse_args(argv)
    cfg = SyntheticConfig(max_side=args.max_side)
    studies = [generate_radiograph(case_seed(args.seed, i), cfg) for i in range(args.n)]
    out = render_overview(studies, args.out, columns=args.columns, dpi=args.dpi)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
