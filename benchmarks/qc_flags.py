"""How much a model's QC flags say on a labelled split: for each flag, the images that carry it and how many of
them have all centres found, against the images without it.

Every image of a datalist split goes through the predictor as a user's would (``predict``, the checkpoint's own
settings); an image "fails" when some centre is an outlier (Section 4.2, the crop rule of the detection figures).
Prints one row per QC flag (:data:`~lumbar_monai.result.QC_FLAGS`) and rows for "any flag" and "no flag"; the
last column counts the flag's failures that carry no other flag (what the flag adds)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/qc_flags.py --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --datalist runs/aasce_ap/datalist.json --split validation

A second table lists the images by :func:`~lumbar_monai.postprocess.second_peak_ratio` band (the flag
``centre_ambiguous``). No file names are printed.
"""

from __future__ import annotations

import argparse

from _splits import add_split_arguments, labelled_images

from lumbar_monai.loading import load_predictor
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.result import QC_FLAGS
from lumbar_monai.workflows.evaluate import qc_flag_summary

BANDS = (0.0, 0.25, 0.5, 0.75, 1.01)


def flag_rows(flags: list[set[str]], failed: list[bool]) -> list[tuple[str, int, int, int, int]]:
    """``(flag, images, all centres found, failed, failed with no other flag)`` per QC flag, then any / no flag
    (:func:`~lumbar_monai.workflows.evaluate.qc_flag_summary`, the counts ``lumbar-monai evaluate`` writes)."""
    summary = qc_flag_summary(flags, failed)
    rows = []
    for key, counts in summary.items():
        label = f"`{key}`" if key in QC_FLAGS else key.replace("_", " ")
        n, bad = counts["images"], counts["centre_outliers"]
        rows.append((label, n, n - bad, bad, counts.get("outliers_with_no_other_flag", 0)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    pred = load_predictor(a.model, device=a.device)
    flags, failed, peaks = [], [], []
    for image, points, sample in labelled_images(a.datalist, a.split, pred.layout):
        res = pred.predict(image, pixel_spacing=sample.get("pixel_spacing"))
        flags.append(set(res.qc_flags))
        failed.append(bool(centre_outliers(res.centres[None], points[None], pred.layout)[0]))
        peaks.append(res.meta.get("centre_second_peak"))
    print(f"{a.split}: {len(flags)} images, {sum(failed)} with a centre outlier")
    print("| QC flag | images | all centres found | a centre outlier | outliers with no other flag |")
    print("|---|---:|---:|---:|---:|")
    for row in flag_rows(flags, failed):
        print("| " + " | ".join(str(v) for v in row) + " |")
    print()
    print("| second peak / highest (largest over the centre maps) | images | a centre outlier |")
    print("|---|---:|---:|")
    known = [(v, f) for v, f in zip(peaks, failed, strict=True) if v is not None]
    for lo, hi in zip(BANDS[:-1], BANDS[1:], strict=True):
        band = [f for v, f in known if lo <= v < hi]
        print(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {len(band)} | {sum(band)} |")


if __name__ == "__main__":
    main()
