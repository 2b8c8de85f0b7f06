"""Time the per-image outputs: measurements, result JSON, overlay PNG, SR, presentation state, secondary capture.

Usage: ``python benchmarks/bench_dicom_outputs.py [--sizes 512 2048] [--repeats 3]``. Prints a Markdown table of the
median wall time per output (ms) for a synthetic lateral DX of each size (longest side), its ground truth used as
the predictor's answer.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _timing import median_ms


def time_one(size: int, out: Path, repeats: int) -> tuple[str, dict[str, float]]:
    """Median timings for one synthetic DX whose longest side is ``size``."""
    import pydicom

    from lumbar_monai.io.gsps import build_gsps, build_sc_overlay
    from lumbar_monai.io.overlay import write_overlay_png
    from lumbar_monai.io.report import build_sr, read_sr_landmarks
    from lumbar_monai.io.result_json import write_result_json
    from lumbar_monai.measures import measure_result
    from lumbar_monai.result import LandmarkResult
    from lumbar_monai.synthetic.config import SyntheticConfig
    from lumbar_monai.synthetic.dicom import write_dx
    from lumbar_monai.synthetic.generator import generate_radiograph

    study = generate_radiograph(0, SyntheticConfig(max_side=size, large_fraction=1.0))
    path = write_dx(
        out / "dx.dcm",
        study.image,
        study.pixel_spacing,
        int(study.meta["bits_stored"]),
        case_name="BENCH",
        facing=study.facing,
    )
    ds = pydicom.dcmread(path)
    lay = study.layout
    res = LandmarkResult(
        lay,
        study.points,
        np.ones(lay.num_points),
        lay.centres(study.points),
        np.ones(lay.num_vertebrae),
        pixel_spacing=study.pixel_spacing,
        spacing_source="PixelSpacing",
        image_size=(ds.Columns, ds.Rows),
    )
    ms = measure_result(res)
    build_sr(ds, res, ms).save_as(out / "sr.dcm", enforce_file_format=True)
    timings = {
        "measurements": median_ms(lambda: measure_result(res), repeats),
        "result JSON": median_ms(lambda: write_result_json(out / "r.json", res, ms), repeats),
        "overlay PNG": median_ms(lambda: write_overlay_png(out / "o.png", study.image, res, ms), repeats),
        "SR build": median_ms(lambda: build_sr(ds, res, ms), repeats),
        "SR read back": median_ms(lambda: read_sr_landmarks(out / "sr.dcm"), repeats),
        "GSPS build": median_ms(lambda: build_gsps(ds, res, ms), repeats),
        "SC build": median_ms(lambda: build_sc_overlay(ds, res, ms), repeats),
    }
    return f"{ds.Columns}x{ds.Rows}", timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [time_one(size, Path(tmp), args.repeats) for size in args.sizes]
    names = list(rows[0][1])
    print("| image (WxH) | " + " | ".join(f"{n} (ms)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for size, t in rows:
        print(f"| {size} | " + " | ".join(f"{t[n]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
