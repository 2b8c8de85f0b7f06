"""RD per vertebra for several systems evaluated on the same test split: one grouped box plot and a table.

Reads each run's ``eval/per_case.csv`` (written by the bundle's ``evaluate``) and plots the relative distance error
(RD, Eq. 12-15, mean of a vertebra's corners) per vertebra for every system side by side. All test images are used
by default (``--cases all``): the centre-outlier sets differ between systems, so "inliers" would compare different
images; ``--cases common-inliers`` keeps the images that are inliers for every system. Prints a summary per system
(the numbers of the bundle's ``eval/summary.json``, recomputed from ``per_case.csv``) and one Markdown table
with, per vertebra and system, the paper's metrics as means (sd) over those images: centre error (pixels of the
stage-1 input), landmark distance error D (original pixels), RD (%) (also its median, which a few gross failures do
not dominate) and the landmark outlier ratio (vertebrae with
mean RD > 20 %), and for "Total" also the centre outlier ratio (images with a landmark outside the Eq. 5 crops).
"Total" is the paper's: every vertebra's value of every image weighs the same, so its mean is the mean of the
per-vertebra means (``lumbar_monai.metrics.landmark.vertebra_total``); the summary's "RD all" columns are means over
the landmarks (``mean_RD``, S1's two corners weighing half a lumbar vertebra).

    .venv/bin/python benchmarks/plot_systems.py --run "full method=bundles/lumbar_landmarks/runs/aasce_cpu" \\
        --run "Kim-like=bundles/lumbar_landmarks/runs/aasce_kim_cpu" \\
        --run "one-stage BasicUNet=bundles/lumbar_landmarks/runs/aasce_unet_cpu" --out docs/aasce_rd_systems.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_per_case(run: Path) -> dict[str, dict[str, float]]:
    """``{image: row}`` of ``<run>/eval/per_case.csv`` (or ``<run>/per_case.csv``)."""
    path = run / "eval" / "per_case.csv"
    if not path.is_file():
        path = run / "per_case.csv"
    if not path.is_file():
        raise SystemExit(f"{run}: no eval/per_case.csv (run the bundle's evaluate first)")
    with path.open(newline="") as f:
        return {r["image"]: r for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", help="a system's run folder")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--cases", choices=("all", "common-inliers"), default="all")
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)

    systems = []
    for spec in args.run:
        label, _, folder = spec.partition("=")
        systems.append((label, read_per_case(Path(folder))))
    images = sorted(set.intersection(*(set(rows) for _, rows in systems)))
    if not images:
        raise SystemExit("the runs share no test image")
    if args.cases == "common-inliers":
        images = [i for i in images if all(rows[i]["centre_outlier"] == "0" for _, rows in systems)]
        if not images:
            raise SystemExit("no image is a centre inlier for every system")
    vertebrae = [c[3:] for c in next(iter(systems[0][1].values())) if c.startswith("RD_")]
    data = {label: np.array([[float(rows[i][f"RD_{v}"]) for v in vertebrae] for i in images])
            for label, rows in systems}

    def column(rows, prefix):
        return np.array([[float(rows[i][f"{prefix}_{v}"]) for v in vertebrae] for i in images])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lumbar_monai.io.atomic import atomic_path
    from lumbar_monai.metrics.landmark import OUTLIER_RD

    fig, ax = plt.subplots(figsize=(9.0, 3.8), dpi=120)
    k = len(systems)
    width = 0.8 / k
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, _) in enumerate(systems):
        pos = np.arange(len(vertebrae)) + (j - (k - 1) / 2) * width
        bp = ax.boxplot([data[label][:, v] for v in range(len(vertebrae))], positions=pos, widths=width * 0.9,
                        patch_artist=True, showfliers=True, flierprops={"markersize": 2},
                        medianprops={"color": "black"})
        for box in bp["boxes"]:
            box.set_facecolor(colours[j % len(colours)])
            box.set_alpha(0.6)
        ax.plot([], [], color=colours[j % len(colours)], lw=6, alpha=0.6, label=label)
    ax.axhline(OUTLIER_RD, color="tab:red", lw=0.8, ls="--", label=f"outlier threshold {OUTLIER_RD:.0f} %")
    ax.set_xticks(range(len(vertebrae)), vertebrae)
    ax.set_yscale("log")
    ax.set_ylabel("RD per vertebra (%, log scale)")
    ax.set_title(args.title or f"RD per vertebra, {args.cases} test images (n={len(images)})", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(args.out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

    def ms(x):
        return f"{np.mean(x):.2f} ({np.std(x):.2f})"

    print(f"Summary, {args.cases} test images (n={len(images)})\n")
    print("| system | centre detection accuracy (%) | centre error all (input px) | RD inliers (%) | RD all (%) "
          "| RD all, median image (%) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, rows in systems:
        inlier = np.array([rows[i]["centre_outlier"] == "0" for i in images])
        per_image = np.array([float(rows[i]["mean_RD"]) for i in images])  # RD over all of the image's landmarks
        rd_in = f"{per_image[inlier].mean():.2f}" if inlier.any() else "n/a"
        print(f"| {label} | {100.0 * inlier.mean():.1f} | {column(rows, 'centre_err').mean():.2f} | {rd_in} "
              f"| {per_image.mean():.2f} | {np.median(per_image):.2f} |")
    print()

    print(f"Per vertebra, {args.cases} test images (n={len(images)}): mean (sd)\n")
    print("| vertebra | system | centre error (input px) | D (px) | RD (%) | RD median (%) | landmark outliers (%) "
          "| centre outliers (%) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for j, v in enumerate([*vertebrae, "Total"]):
        for label, rows in systems:
            sel = slice(None) if v == "Total" else j
            c, d, r = column(rows, "centre_err")[:, sel], column(rows, "D")[:, sel], data[label][:, sel]
            out = "-" if v != "Total" else f"{100.0 * np.mean([rows[i]['centre_outlier'] == '1' for i in images]):.1f}"
            print(f"| {v} | {label} | {ms(c)} | {ms(d)} | {ms(r)} | {np.median(r):.1f} "
                  f"| {100.0 * np.mean(r > OUTLIER_RD):.1f} | {out} |")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
