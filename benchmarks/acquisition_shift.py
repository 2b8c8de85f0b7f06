"""How an AP model holds when the radiographs come from another acquisition: the same images and labels, delivered
the way another site or batch might deliver them.

Every image of a datalist split is scored as delivered and under each *view* below, with its labels moved the same
way; one row per view (centre detection, Section 4.2; RD on detected images as the paper's Total, Eq. 12-14; median
image RD over all images):

* ``wider field``: the width padded (black, both sides) to height/width ``--aspect`` (2.3: the median of the other
  AASCE batch the issue names, against about 2.7 here); images already that wide stay as they are.
* ``shorter field``: the top cut off to height/width ``--aspect`` (the lower spine and pelvis kept).
* ``lumbar film``: a collimated lumbar AP film instead of a whole-spine one: the image cut to a portrait field
  centred on the labelled L3, ``--lumbar-half-height`` (3.5) L1-L5 centre spacings above and below it (7 spacings:
  from about T11-T12 to the upper sacrum) and 35 / 43 of that wide (the shape of
  a 35 x 43 cm film), within the image. No T1: the vertebra counter cannot count, the window Pose-Net names the
  levels alone.
* ``half resolution``: each side halved (antialiased), as a detector with twice the pixel spacing.
* ``mirrored``: left and right swapped, a film displayed as seen from behind (the patient's left on the image left,
  as some sites show PA scoliosis films); the labels keep their anatomical names, so a model that names corners by
  image side scores them swapped. A model with a display network (:mod:`lumbar_monai.display`) mirrors the image
  back before its networks.
* ``gamma 0.6`` / ``gamma 1.6``: another exposure or look-up table (``I ** gamma`` on the min-max scaled image).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/acquisition_shift.py \\
        --model bundles/lumbar_landmarks/models/aasce_ap.pt --datalist runs/aasce_ap/datalist.json \\
        --split validation

``--views`` picks some (``as delivered`` always runs), ``--limit N`` the first N images. Nothing is written; no file
names are printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from _splits import add_split_arguments, labelled_images

from lumbar_monai.anatomy import Layout
from lumbar_monai.facing import mirror_points
from lumbar_monai.metrics.centre import centre_outliers
from lumbar_monai.metrics.landmark import relative_distance_error, vertebra_total
from lumbar_monai.predictor import LandmarkPredictor

View = Callable[[np.ndarray, np.ndarray, Layout], tuple[np.ndarray, np.ndarray]]


def wider_field(aspect: float) -> View:
    """Pad the width (zeros, both sides) to height/width ``aspect``."""

    def view(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape
        extra = int(round(h / aspect)) - w
        if extra <= 0:
            return img, pts
        left = extra // 2
        out = np.zeros((h, w + extra), dtype=img.dtype)
        out[:, left:left + w] = img
        return out, pts + np.array([left, 0.0])

    return view


def shorter_field(aspect: float) -> View:
    """Cut rows off the top to height/width ``aspect``, never above the highest landmark's vertebra."""

    def view(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape
        cut = min(h - int(round(w * aspect)), int(np.floor(np.nanmin(pts[:, 1]))) - 1)
        if cut <= 0:
            return img, pts
        return img[cut:], pts - np.array([0.0, cut])

    return view


def lumbar_film(half_height: float, aspect: float = 43.0 / 35.0) -> View:
    """Cut the image to a portrait field ``2 * half_height`` L1-L5 centre spacings tall (height/width ``aspect``)
    centred on the labelled L3, within the image."""

    def view(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        centres = layout.centres(pts)
        spacing = float(np.median(np.linalg.norm(np.diff(centres, axis=0), axis=1)))
        mid = centres[len(centres) // 2]
        h, w = img.shape
        y0 = max(int(round(mid[1] - half_height * spacing)), 0)
        y1 = min(int(round(mid[1] + half_height * spacing)), h)
        width = min(int(round(2 * half_height * spacing / aspect)), w)
        x0 = int(np.clip(round(mid[0] - width / 2), 0, w - width))
        return np.ascontiguousarray(img[y0:y1, x0:x0 + width]), pts - np.array([x0, y0], dtype=np.float64)

    return view


def half_resolution(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Halve each side (antialiased); points follow the pixel-centre convention."""
    h, w = img.shape
    nh, nw = max(h // 2, 1), max(w // 2, 1)
    x = torch.as_tensor(img, dtype=torch.float32)[None, None]
    out = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    scaled = np.stack([(pts[:, 0] + 0.5) * nw / w - 0.5, (pts[:, 1] + 0.5) * nh / h - 0.5], axis=1)
    return out[0, 0].numpy(), scaled


def mirrored(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Swap left and right; every label keeps its row (anatomical name) and moves with the image."""
    return np.ascontiguousarray(img[:, ::-1]), mirror_points(pts, img.shape[1])


def gamma(g: float) -> View:
    """``I ** g`` on the min-max scaled image."""

    def view(img: np.ndarray, pts: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        x = img.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        return (((x - lo) / max(hi - lo, 1e-12)) ** g).astype(np.float32), pts

    return view


def views(aspect: float, lumbar_half_height: float = 3.5) -> dict[str, View]:
    return {"wider field": wider_field(aspect), "shorter field": shorter_field(aspect),
            "lumbar film": lumbar_film(lumbar_half_height),
            "half resolution": half_resolution, "mirrored": mirrored, "gamma 0.6": gamma(0.6),
            "gamma 1.6": gamma(1.6)}


def score(pred: LandmarkPredictor, samples: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Detection (%), RD on detected images (paper's Total, %), median image RD over all images (%)."""
    layout = pred.layout
    detected, rd_detected, image_rd = [], [], []
    for img, pts in samples:
        r = pred.predict(img)
        rd = relative_distance_error(np.asarray(r.points), pts, layout)
        outlier = bool(centre_outliers(np.asarray(r.centres), pts, layout))
        detected.append(not outlier)
        image_rd.append(float(np.nanmean(rd)))
        if not outlier:
            rd_detected.append(rd)
    total = vertebra_total(np.stack(rd_detected), layout)[0] if rd_detected else float("nan")
    return {"n": len(samples), "detection": 100.0 * float(np.mean(detected)), "rd_detected": total,
            "rd_median": float(np.median(image_rd))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--aspect", type=float, default=2.3, help="height/width of the wider and shorter fields")
    p.add_argument("--lumbar-half-height", type=float, default=3.5,
                   help="the lumbar film's half height in L1-L5 centre spacings")
    p.add_argument("--views", nargs="+", default=None, help="views to run besides 'as delivered' (default: all)")
    a = p.parse_args()
    all_views = views(a.aspect, a.lumbar_half_height)
    chosen = a.views or list(all_views)
    unknown = [v for v in chosen if v not in all_views]
    if unknown:
        raise SystemExit(f"error: unknown views {unknown}; choose from {list(all_views)}")
    torch.set_grad_enabled(False)
    pred = LandmarkPredictor.load(a.model, device="cpu")
    layout = pred.layout
    base = [(img, pts) for img, pts, _ in labelled_images(a.datalist, a.split, layout, a.limit)]
    print(f"split {a.split}, {len(base)} images; model {a.model}")
    print("| view | n | centre detection (%) | RD detected images, paper's Total (%) | RD median image (%) |")
    print("|---|---:|---:|---:|---:|")
    for name in ("as delivered", *chosen):
        samples = base if name == "as delivered" else [all_views[name](img, pts, layout) for img, pts in base]
        s = score(pred, samples)
        print(f"| {name} | {s['n']} | {s['detection']:.1f} | {s['rd_detected']:.2f} | {s['rd_median']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
