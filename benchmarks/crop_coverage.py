"""How often the Eq. 5 crops miss a corner even with perfect centres, per crop scale, aspect and spacing rule: the
check behind ``anatomy.AP.crop_scale``, ``crop_aspect`` and ``crop_spacing``.

For each image of a datalist split, the crops are made from the ground-truth centres (``--noise`` adds Gaussian
centre noise, in pixels of a ``--input-size`` stage-1 input) and the image counts as a centre outlier when a corner
lies outside its vertebra's crop (Section 4.2's rule, :func:`lumbar_monai.metrics.centre.centre_outliers`). Also
prints the crop scale each image would need (quantiles over the split) and how far apart neighbouring centres are
at the stage-1 input size (the scale on which a centre error is one vertebra).

    .venv/bin/python benchmarks/crop_coverage.py bundles/lumbar_landmarks/runs/aasce_cpu/datalist_aasce.json --layout ap
    .venv/bin/python benchmarks/crop_coverage.py runs/aasce_ap/datalist.json --layout ap --splits training \
        --scales 1.6 --aspects 1.0,1.25,1.5 --spacings vertical,euclidean

``--aspects`` (crop width / height) and ``--spacings`` (Eq. 5's neighbour distance: ``vertical``, the paper's, or
``euclidean``) add table rows; the defaults print the crop scales alone, with the layout's aspect and spacing.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datalist")
    ap.add_argument("--layout", default="lateral")
    ap.add_argument("--scales", default="1.0,1.2,1.4,1.6,1.8,2.0")
    ap.add_argument("--noise", type=float, default=0.0, help="centre noise sd, px of the stage-1 input")
    ap.add_argument("--input-size", type=int, default=512)
    ap.add_argument("--aspects", default=None, help="crop width / height values (default: the layout's)")
    ap.add_argument("--spacings", default=None, help="vertical and/or euclidean (default: the layout's)")
    ap.add_argument("--splits", default="training,test")
    ap.add_argument("--level-shift", type=float, default=0.0,
                    help="move the centres caudally by this many centre spacings first: how often a chain that far "
                         "off still keeps every corner in its crops (i.e. would count as detected)")
    args = ap.parse_args(argv)

    from lumbar_monai.anatomy import get_layout
    from lumbar_monai.crops import crop_boxes_eq5
    from lumbar_monai.io.datalist import LoadLandmarkSampled, load_landmark_datalist
    from lumbar_monai.metrics.centre import centre_outliers

    lay = get_layout(args.layout)
    load = LoadLandmarkSampled(("image", "label"), layout=lay.name)
    rng = np.random.default_rng(0)
    aspects = [lay.crop_aspect] if args.aspects is None else [float(x) for x in args.aspects.split(",")]
    spacings = [lay.crop_spacing] if args.spacings is None else args.spacings.split(",")
    for split in args.splits.split(","):
        pts, sides = [], []
        for item in load_landmark_datalist(args.datalist, split):
            s = load(item)
            pts.append(np.asarray(s["points"], np.float64))
            sides.append(max(np.asarray(s["image"]).shape[-2:]))
        if not pts:
            continue
        gt = np.stack(pts)
        gt_centres = centres = lay.centres(gt)
        if args.level_shift:
            spacing = np.linalg.norm(np.diff(gt_centres, axis=1), axis=-1).mean(-1)  # (images,)
            centres = centres + np.stack([np.zeros_like(spacing), args.level_shift * spacing], -1)[:, None]
        if args.noise:
            scale = (np.asarray(sides, np.float64) / args.input_size)[:, None, None]
            centres = centres + rng.normal(0.0, args.noise / np.sqrt(2), centres.shape) * scale
        unit = dataclasses.replace(lay, crop_scale=1.0)
        per_axis = np.array([lay.crop_aspect, 1.0])  # a corner's offset in units of the crop's (width, height)
        need = np.stack([2 * (np.abs(gt[:, sl] - gt_centres[:, [v]]) / per_axis).max(axis=(1, 2))
                         for v, sl in enumerate(lay.vertebra_slices)], axis=-1) / crop_boxes_eq5(gt_centres, unit)
        q = np.quantile(need.max(-1), [0.5, 0.9, 0.99])
        print(f"\n{split} split, {len(gt)} images, layout {lay.name} (its crop_scale {lay.crop_scale}, crop_aspect "
              f"{lay.crop_aspect}, crop_spacing {lay.crop_spacing}); centres moved {args.level_shift} spacings down; centre noise "
              f"{args.noise} px at {args.input_size}")
        print(f"crop scale needed per image (the layout's aspect and spacing): median {q[0]:.2f}, "
              f"90th percentile {q[1]:.2f}, 99th {q[2]:.2f}")
        gaps = np.linalg.norm(np.diff(gt_centres, axis=1), axis=-1).mean(-1) * args.input_size / np.asarray(sides)
        print(f"distance between neighbouring centres, px of the {args.input_size} px stage-1 input (mean per image): "
              f"mean {gaps.mean():.1f}, min {gaps.min():.1f}, max {gaps.max():.1f}\n")
        print("| crop scale | crop aspect | spacing | images with a corner outside its crop (%) |")
        print("|---:|---:|---|---:|")
        for k in (float(x) for x in args.scales.split(",")):
            for spacing in spacings:
                for aspect in aspects:
                    geo = dataclasses.replace(lay, crop_scale=k, crop_aspect=aspect, crop_spacing=spacing)
                    out = centre_outliers(centres, gt, geo)
                    print(f"| {k:.1f} | {aspect:.2f} | {spacing} | {100.0 * out.mean():.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
