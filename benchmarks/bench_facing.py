"""Facing (issue 15, item 1): the same synthetic lateral studies facing image-left and mirrored (facing image-right,
same anatomical names), through a trained predictor with and without the facing decision.

The studies are the test split of a bundle run's synthetic set, regenerated from their seeds with every patient
facing left (the generator draws the anatomy independently of the facing, so a study and its mirror are the same
patient); the mirror flips the image and moves every landmark to ``x -> W - 1 - x`` under its anatomical name.
For each study and each facing mode of :meth:`~lumbar_monai.predictor.LandmarkPredictor.predict` (``"left"``: the
networks read the image as they get it, as before issue 15; ``"auto"``: the facing is decided from the image and
the networks read it in their trained facing) it prints the RD over all 22 landmarks of each image (Eq. 12-15, no
centre outlier excluded): median and mean over the images, how often the facing was found, how many images were
flagged ``facing_uncertain``, the smallest score margin between the two readings (``auto``; the flag is raised
below :data:`~lumbar_monai.facing.UNCERTAIN_MARGIN`), and the wall time per image.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/bench_facing.py \\
        --run bundles/lumbar_landmarks/runs/default
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np


def test_studies(run: Path, limit: int | None = None):
    """``(name, image, points)`` of the run's synthetic test split, regenerated with every patient facing left."""
    from lumbar_monai.synthetic import SyntheticConfig, case_seed, generate_radiograph

    syn = run / "synthetic"
    try:
        settings = json.loads((syn / "settings.json").read_text())
        test = json.loads((syn / "datalist.json").read_text())["test"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{syn}: no synthetic set with settings.json and a test split ({type(e).__name__})") from None
    cfg = SyntheticConfig(max_side=settings["max_side"], facing_right_prob=0.0)
    out = []
    for entry in test[:limit]:
        m = re.search(r"case_(\d+)", entry["image"])
        if m is None:
            raise SystemExit(f"{syn}: test image {entry['image']!r} is not a synthetic case name")
        study = generate_radiograph(case_seed(int(settings["seed"]), int(m.group(1))), cfg)
        out.append((Path(entry["image"]).stem, study.image.astype(np.float32), study.points))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a bundle run folder (models/ and synthetic/)")
    ap.add_argument("--model", type=Path, default=None, help="default: <run>/models/lumbar_landmarks.pt")
    ap.add_argument("--limit", type=int, default=None, help="first N test studies only")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from lumbar_monai.facing import mirror_image, mirror_points
    from lumbar_monai.loading import load_predictor
    from lumbar_monai.metrics.landmark import relative_distance_error

    predictor = load_predictor(args.model or args.run / "models" / "lumbar_landmarks.pt", device=args.device)
    studies = test_studies(args.run, args.limit)
    rows = []
    for facing_label, flip in (("left (as generated)", False), ("right (mirrored)", True)):
        truth = "right" if flip else "left"
        for mode in ("left", "auto"):
            rd, found, uncertain, wall, margin = [], 0, 0, [], []
            for _, image, points in studies:
                img = mirror_image(image) if flip else image
                gt = mirror_points(points, image.shape[1]) if flip else points
                t0 = time.perf_counter()
                res = predictor.predict(img, facing=mode)
                wall.append(time.perf_counter() - t0)
                rd.append(float(relative_distance_error(res.points, gt, predictor.layout).mean()))
                found += res.meta.get("facing", {}).get("facing") == truth
                uncertain += "facing_uncertain" in res.qc_flags
                scores = res.meta.get("facing", {}).get("scores")
                if scores:
                    margin.append(abs(scores["left"] - scores["right"]))
            rows.append((facing_label, mode, np.median(rd), np.mean(rd), found, uncertain,
                         f"{min(margin):.2f}" if margin else "-", 1000 * np.median(wall)))
            print(f"  {facing_label}, facing={mode}: median RD {rows[-1][2]:.2f} %", flush=True)
    n = len(studies)
    print(f"\n{n} synthetic lateral test studies of {args.run}, RD (%) over all 22 landmarks of each image\n")
    print("| patient faces | `facing=` | median RD (%) | mean RD (%) | facing in the result right | `facing_uncertain` "
          "| smallest score margin | ms / image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, mode, med, mean, found, unc, marg, ms in rows:
        print(f"| {label} | `{mode}` | {med:.2f} | {mean:.2f} | {found}/{n} | {unc}/{n} | {marg} | {ms:.0f} |")
    by = {(r[0].split()[0], r[1]): r[2] for r in rows}
    print(f"\nmedian RD mirrored / facing left: {by['right', 'left'] / by['left', 'left']:.2f}x with facing=left, "
          f"{by['right', 'auto'] / by['left', 'auto']:.2f}x with facing=auto")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
