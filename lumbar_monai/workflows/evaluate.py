"""The bundle's ``evaluate``: the two-stage predictor over a split, and the paper's tables and figures.

Tables (CSV + Markdown, the layout of An et al. 2022, Tables 2-7 and 9-11):

* ``centre_error``: per vertebra, centre distance error mean (std) in pixels of the stage-1 input (512 in the paper),
  "Inlier" (images that are not centre outliers) and "All", plus mm where the spacing is known; the centre outlier
  ratio and detection accuracy (Section 4.2).
* ``landmark_error``: per vertebra, landmark distance error D in original pixels (and mm), relative distance error RD
  (Eq. 12-15), landmark outlier ratio (mean RD of the vertebra > 20 %); centre outliers excluded, as in Section 4.3.
  "Total" is the paper's: the mean of the per-vertebra means (:func:`~lumbar_monai.metrics.landmark.vertebra_total`);
  the row "All landmarks" is the plain mean over the landmarks (the S1's two corners weigh half a lumbar vertebra).

``per_case.csv``: RD per vertebra and over all its landmarks, and centre error, of every test image (for plots
across systems).

Figures: a box plot of RD per vertebra (Figure 18 style) and overlays of the median and worst cases (Figures 13, 15,
20 style: prediction in colour, ground truth as white crosses).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import Layout, get_layout
from ..io.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..metrics.centre import centre_distance, centre_outliers
from ..metrics.landmark import (
    OUTLIER_RD,
    distance_error,
    landmark_outliers,
    relative_distance_error,
    vertebra_mean,
    vertebra_total,
)

__all__ = ["evaluate_predictor", "centre_table", "landmark_table", "write_table", "qc_flag_summary"]

logger = logging.getLogger(__name__)

DEMO_NOTE = (
    "Synthetic data and a CPU demonstration schedule unless stated otherwise: these numbers describe this run, "
    "not clinical performance."
)


def _mean_std(values: np.ndarray) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.2f} ({v.std():.2f})"


def centre_table(
    layout: Layout, err_input_px: np.ndarray, err_mm: np.ndarray | None, outlier: np.ndarray
) -> list[dict[str, str]]:
    """Rows per vertebra + "Total": centre error Inlier / All (input-space px; mm when known)."""
    rows = []
    inl = ~outlier
    names = [*layout.vertebra_names, "Total"]
    for i, name in enumerate(names):
        sel = slice(None) if name == "Total" else i
        e = err_input_px[:, sel]
        row = {
            "vertebra": name,
            "inlier_px": _mean_std(e[inl]),
            "all_px": _mean_std(e),
        }
        if err_mm is not None:
            m = err_mm[:, sel]
            row["inlier_mm"] = _mean_std(m[inl])
            row["all_mm"] = _mean_std(m)
        rows.append(row)
    return rows


def _total(layout: Layout, values: np.ndarray) -> str:
    m, s = vertebra_total(values, layout) if np.size(values) else (float("nan"), float("nan"))
    return "n/a" if not np.isfinite(m) else f"{m:.2f} ({s:.2f})"


def landmark_table(
    layout: Layout, d_px: np.ndarray, d_mm: np.ndarray | None, rd: np.ndarray, threshold: float = OUTLIER_RD
) -> list[dict[str, str]]:
    """Rows per vertebra, "Total" (the paper's: mean of the per-vertebra means) and "All landmarks" (mean over the
    landmarks): D px (mm), RD %, landmark outlier % (mean RD of the vertebra > threshold)."""
    rows = []
    rd_v = vertebra_mean(rd, layout) if len(rd) else np.zeros((0, layout.num_vertebrae))
    for i, name in enumerate([*layout.vertebra_names, "Total", "All landmarks"]):
        if name in ("Total", "All landmarks"):
            stat = (lambda v: _total(layout, v)) if name == "Total" else _mean_std
            o = rd_v > threshold
            row = {"vertebra": name, "D_px": stat(d_px), "RD_pct": stat(rd),
                   "outlier_pct": "-" if name != "Total" else "n/a" if o.size == 0 else f"{100.0 * o.mean():.2f}"}
            if d_mm is not None:
                row["D_mm"] = stat(d_mm)
            rows.append(row)
            continue
        sl = layout.vertebra_slices[i]
        d, r, o = d_px[:, sl], rd[:, sl], rd_v[:, i] > threshold
        row = {"vertebra": name, "D_px": _mean_std(d), "RD_pct": _mean_std(r),
               "outlier_pct": "n/a" if o.size == 0 else f"{100.0 * o.mean():.2f}"}
        if d_mm is not None:
            row["D_mm"] = _mean_std(d_mm[:, sl])
        rows.append(row)
    return rows


def write_table(rows: Sequence[dict[str, str]], stem: Path, title: str, note: str = DEMO_NOTE) -> None:
    """``<stem>.csv`` and ``<stem>.md`` (atomic)."""
    cols = list(rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    md = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    md += ["", f"_{note}_", ""]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(md))


def _box_plot(path: Path, layout: Layout, rd: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rd_v = vertebra_mean(rd, layout)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.boxplot([rd_v[:, i] for i in range(layout.num_vertebrae)], showfliers=True)
    ax.set_xticks(range(1, layout.num_vertebrae + 1), layout.vertebra_names)
    ax.axhline(OUTLIER_RD, color="tab:red", lw=0.8, ls="--", label=f"outlier threshold {OUTLIER_RD:.0f} %")
    ax.set_ylabel("relative distance error RD (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _case_overlay(path: Path, image: np.ndarray, result, gt: np.ndarray) -> None:
    from ..io.overlay import annotations_from_result, draw_annotations, write_png

    ann = annotations_from_result(result)
    size = max(image.shape[-2:])
    r = max(2.0, size / 300.0)
    for x, y in gt:
        ann.polylines.append((np.array([[x - r, y - r], [x + r, y + r]]), (1.0, 1.0, 1.0)))
        ann.polylines.append((np.array([[x - r, y + r], [x + r, y - r]]), (1.0, 1.0, 1.0)))
    write_png(path, draw_annotations(image, ann))


def qc_flag_summary(flags: Sequence[Iterable[str]], outlier: Sequence[bool]) -> dict[str, dict[str, int]]:
    """What each QC flag (:data:`~lumbar_monai.result.QC_FLAGS`) said on scored images: for every flag
    ``{"images", "centre_outliers", "outliers_with_no_other_flag"}`` (the last: what the flag adds), then
    ``"any_flag"`` and ``"no_flag"`` with ``{"images", "centre_outliers"}``. ``flags``: each image's QC flags;
    ``outlier``: whether it has a centre outlier."""
    from ..result import QC_FLAGS

    sets = [set(f) for f in flags]
    bad = [bool(o) for o in outlier]
    out: dict[str, dict[str, int]] = {}
    for name in QC_FLAGS:
        on = [i for i, f in enumerate(sets) if name in f]
        out[name] = {"images": len(on), "centre_outliers": sum(bad[i] for i in on),
                     "outliers_with_no_other_flag": sum(bad[i] and len(sets[i]) == 1 for i in on)}
    for key, pick in (("any_flag", bool), ("no_flag", lambda f: not f)):
        on = [i for i, f in enumerate(sets) if pick(f)]
        out[key] = {"images": len(on), "centre_outliers": sum(bad[i] for i in on)}
    return out


def _per_case_csv(path: Path, layout: Layout, names: list[str], rd: np.ndarray, d_px: np.ndarray,
                  centre_err: np.ndarray, outlier: np.ndarray, qc_flags: Sequence[Sequence[str]]) -> None:
    """One row per test image: centre-outlier flag, ``mean_RD`` (% over all its landmarks; the mean of this column
    is ``landmark_rd_all_pct``), RD (%) and D (original px) per vertebra (means over the vertebra's corners), centre
    error per vertebra (input px), the result's QC flags (space-separated).

    The file names are those of the data set's images (never patient data for the embedded and benchmark sets);
    plots across systems (``benchmarks/plot_systems.py``) read this file."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    v_names = layout.vertebra_names
    w.writerow(["image", "centre_outlier", "mean_RD", *(f"RD_{v}" for v in v_names), *(f"D_{v}" for v in v_names),
                *(f"centre_err_{v}" for v in v_names), "qc_flags"])
    rd_v, d_v = vertebra_mean(rd, layout), vertebra_mean(d_px, layout)
    for i, name in enumerate(names):
        w.writerow([name, int(outlier[i]), *(f"{x:.4f}" for x in (rd[i].mean(), *rd_v[i], *d_v[i], *centre_err[i])),
                    " ".join(qc_flags[i])])
    atomic_write_text(path, buf.getvalue())


def evaluate_predictor(
    checkpoint: str | Path | Any,
    datalist: str | Path,
    output_dir: str | Path,
    split: str = "test",
    layout: str | None = None,
    device: str | None = None,
    max_cases: int | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Run the predictor in ``checkpoint`` (a checkpoint file, or a predictor already loaded: then ``device`` is
    its own) over ``split`` of ``datalist``; write tables, box plot and overlays.

    Returns a summary dict (also written as ``summary.json``).
    """
    from ..io.datalist import LoadLandmarkSampled, load_landmark_datalist
    from ..loading import load_predictor

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = hasattr(checkpoint, "predict")
    predictor = checkpoint if loaded else load_predictor(checkpoint, device=device)
    lay = predictor.layout  # its crop scale is the one the M-Nets were trained with (centre outliers use it)
    if layout and get_layout(layout).name != lay.name:
        raise ValueError(f"{'the model' if loaded else checkpoint}: the model's layout is {lay.name!r}, not "
                         f"{get_layout(layout).name!r}")
    if note is None:
        trained_on = str(predictor.meta.get("trained_on", "synthetic"))
        note = DEMO_NOTE if "synthetic" in trained_on else (
            f"Model trained on {trained_on} with this run's schedule; numbers describe this run's {split} split, "
            "not clinical performance.")
    items = load_landmark_datalist(datalist, split)
    if max_cases:
        items = items[: int(max_cases)]
    if not items:
        raise ValueError(f"split {split!r} of {datalist} is empty")
    loader = LoadLandmarkSampled(("image", "label"), layout=lay)
    input_size = predictor.stage1["input_size"]
    # the images themselves are not kept (a batch of radiographs would fill memory): the two drawn at the end are
    # read again from their items
    gts, preds, cents, spacings, scales, results, scored, names = [], [], [], [], [], [], [], []
    failures = []
    for item in items:
        try:
            sample = loader(item)
            img = np.asarray(sample["image"])[0]
            res = predictor.predict(img, pixel_spacing=sample.get("pixel_spacing"),
                                    spacing_source=sample.get("spacing_source"))
        except Exception as e:  # noqa: BLE001 - a bad case (unreadable, or one the predictor refuses) is reported,
            # the others go on
            failures.append({"image": Path(str(item.get("image"))).name, "reason": " ".join(str(e).split())})
            continue
        names.append(Path(str(item.get("image"))).name)
        gts.append(np.asarray(sample["points"], np.float64))
        preds.append(res.points)
        cents.append(res.centres)
        spacings.append(sample.get("pixel_spacing"))
        scales.append(input_size / float(max(img.shape)))  # original px -> stage-1 input px (pad + resize)
        results.append(res)
        scored.append(item)
    if not gts:
        raise ValueError(f"every case of split {split!r} failed: {failures[:3]}")
    gt = np.stack(gts)
    pred = np.stack(preds)
    cen = np.stack(cents)
    scale = np.asarray(scales)[:, None]
    gt_c = lay.centres(gt)
    err_in = centre_distance(cen, gt_c) * scale
    known = all(s is not None for s in spacings)
    err_mm = centre_distance(cen, gt_c, np.asarray(spacings, np.float64)) if known else None
    outlier = centre_outliers(cen, gt, lay)
    inl = ~outlier
    d_px = distance_error(pred, gt)
    d_mm = distance_error(pred, gt, np.asarray(spacings, np.float64)) if known else None
    rd = relative_distance_error(pred, gt, lay)

    c_rows = centre_table(lay, err_in, err_mm, outlier)
    l_rows = landmark_table(lay, d_px[inl], None if d_mm is None else d_mm[inl], rd[inl])
    write_table(c_rows, out / "centre_error",
                f"Centre distance error (pixels of the {input_size}x{input_size} input), n={len(gt)}", note)
    write_table(l_rows, out / "landmark_error",
                f"Landmark error D (original pixels), RD (%), outliers; centre outliers excluded, n={int(inl.sum())}",
                note)
    write_table(landmark_table(lay, d_px, d_mm, rd), out / "landmark_error_all",
                f"Landmark error D (original pixels), RD (%), outliers; all cases, n={len(gt)}", note)
    box_sel = inl if inl.any() else np.ones_like(inl)
    _box_plot(out / "rd_boxplot.png", lay, rd[box_sel],
              f"RD per vertebra ({split} split, {'inliers' if inl.any() else 'all cases'}, n={int(box_sel.sum())})")
    flags = [list(r.qc_flags) for r in results]
    _per_case_csv(out / "per_case.csv", lay, names, rd, d_px, err_in, outlier, flags)
    image_rd = rd.mean(-1)  # per_case.csv's mean_RD: each image's RD over its landmarks
    order = np.argsort(image_rd)
    picks = {"median": int(order[len(order) // 2]), "worst": int(order[-1])}
    for tag, i in picks.items():
        _case_overlay(out / f"case_{tag}.png", np.asarray(loader(scored[i])["image"])[0], results[i], gt[i])
    summary = {
        "split": split,
        "n_cases": int(len(gt)),
        "n_failed": len(failures),
        "centre_outlier_pct": float(100.0 * outlier.mean()),
        "centre_detection_accuracy_pct": float(100.0 * (1.0 - outlier.mean())),
        "centre_error_all_px": float(err_in.mean()),
        "landmark_rd_pct": float(rd[inl].mean()) if inl.any() else None,
        "landmark_d_px": float(d_px[inl].mean()) if inl.any() else None,
        "landmark_rd_all_pct": float(rd.mean()),
        # the paper's "Total" (mean of the per-vertebra means); the three above are means over the landmarks
        "landmark_rd_total_pct": vertebra_total(rd[inl], lay)[0] if inl.any() else None,
        "landmark_d_total_px": vertebra_total(d_px[inl], lay)[0] if inl.any() else None,
        "landmark_rd_all_total_pct": vertebra_total(rd, lay)[0],
        # the median of image_rd over every image, and the landmark outliers of the detected images (vertebrae with
        # mean RD > OUTLIER_RD; landmark_error's "Total" outlier_pct)
        "landmark_rd_median_image_pct": float(np.median(image_rd)),
        "landmark_outlier_pct": float(100.0 * landmark_outliers(rd[inl], lay).mean()) if inl.any() else None,
        "n_detected": int(inl.sum()),
        # how the QC flags did here: per flag, images flagged and how many of them have a centre outlier
        "qc_flags": qc_flag_summary(flags, outlier),
        "input_size": int(input_size),
        "checkpoint_meta": {k: v for k, v in predictor.meta.items() if k != "timings_ms"},
        "failures": failures,
        "note": note,
    }
    atomic_write_json(out / "summary.json", summary)
    logger.info("evaluation written to %s: %s", out, json.dumps({k: summary[k] for k in (
        "n_cases", "centre_detection_accuracy_pct", "centre_error_all_px", "landmark_rd_pct")}))
    return summary
