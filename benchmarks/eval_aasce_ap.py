"""Score an AP predictor on a split of the AASCE datalist, once per number of stage-1 framing passes.

``passes 1`` is the whole image only (pad to square and resize, the pre-framing input); ``2`` adds the lumbar window;
``3`` one more window. ``--repair argmax|subpixel`` overrides the peaks Algorithm 1 decides on, ``--tta none|mirror``
the mirror averaging of the M-Net, ``--shape-prior off`` leaves out the model's shape prior, ``--crop-antialias on|off`` sets the predictor's
``crop_antialias`` (the image smoothed before the stage-2 crops are sampled). ``--refine K`` sets the predictor's ``centre_refinement`` (lumbar centres moved to
the mean of their predicted corners, stage 2 again, K times; 0 is the paper); one row per (passes, refine, tta, shape prior,
anti-aliasing). Each run is the project's evaluate workflow
(:func:`~lumbar_monai.workflows.evaluate.evaluate_predictor`: tables, per-case CSV, overlays under
``OUT/passes<N>``); this prints one summary row per run:

    .venv/bin/python benchmarks/eval_aasce_ap.py --model bundles/lumbar_landmarks/models/aasce_ap.pt \
        --datalist runs/aasce_ap/datalist.json --split test --passes 1 2 3 --out runs/aasce_ap/eval
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lumbar_monai.predictor import TTA_MODES, LandmarkPredictor
from lumbar_monai.workflows.evaluate import evaluate_predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--datalist", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--passes", type=int, nargs="+", default=[2])
    p.add_argument("--refine", type=int, nargs="+", default=[0])
    p.add_argument("--repair", choices=("model", "argmax", "subpixel"), default="model",
                   help="Algorithm 1's peaks: the model's setting, the paper's integer argmax or sub-pixel peaks")
    p.add_argument("--tta", nargs="+", choices=TTA_MODES, default=["model"],
                   help="test-time augmentation rows: none, mirror (default: the model's setting)")
    p.add_argument("--shape-prior", nargs="+", choices=("model", "off"), default=["model"],
                   help="rows with the model's shape prior (if it has one) and without it")
    p.add_argument("--crop-antialias", nargs="+", choices=("model", "on", "off"), default=["model"],
                   help="smooth the image before sampling the stage-2 crops (model: as the checkpoint says)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N: where the predictor runs")
    a = p.parse_args()
    print("| framing passes | centre refinement | TTA | shape prior | crop anti-aliasing | n | centre detection (%) | RD detected images, paper's Total (%) "
          "| RD all images (%) | RD median image (%) | landmark outliers, detected images (%) | s / image |")
    print("|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    runs = ((n, k, t, sp, aa) for n in a.passes for k in a.refine for t in a.tta for sp in a.shape_prior
            for aa in a.crop_antialias)
    for n, k, tta, prior, aa in runs:
        name = ((f"passes{n}" if k == 0 else f"passes{n}_refine{k}") + ("" if tta == "model" else f"_{tta}")
                + ("" if prior == "model" else "_noprior") + ("" if aa == "model" else f"_antialias_{aa}"))
        out = Path(a.out) / name
        out.mkdir(parents=True, exist_ok=True)
        pred = LandmarkPredictor.load(a.model, device=a.device)
        pred.stage1.setdefault("framing", {"factor": 2.0})["passes"] = n
        pred.centre_refinement = k
        if tta != "model":
            pred.tta = tta
        if prior == "off":
            pred.shape_prior = None
        if aa != "model":
            pred.crop_antialias = aa == "on"
        if a.repair != "model":
            pred.stage1["repair"] = {**(pred.stage1.get("repair") or {}), "rule_peaks": a.repair}
        pred.save(out / "model.pt")  # the settings scored, for the record
        t0 = time.time()
        s = evaluate_predictor(pred, a.datalist, out, split=a.split)
        per_image = (time.time() - t0) / max(s["n_cases"], 1)
        rd, outliers = s["landmark_rd_pct"], s["landmark_outlier_pct"]
        print(f"| {n} | {k} | {pred.tta} | {'on' if pred.shape_prior is not None else 'none'} | {'on' if pred.crop_antialias else 'off'} | {s['n_cases']} | {s['centre_detection_accuracy_pct']:.1f} "
              f"| {'n/a' if rd is None else f'{rd:.2f}'} | {s['landmark_rd_all_pct']:.2f} "
              f"| {s['landmark_rd_median_image_pct']:.2f} | {'n/a' if outliers is None else f'{outliers:.2f}'} "
              f"| {per_image:.1f} |")


if __name__ == "__main__":
    main()
