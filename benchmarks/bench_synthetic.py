"""Benchmark: time to write a synthetic study set (full-size images, every format) with 1..k worker processes.

The issue's target: 50 studies (full size: about 1000-3000 px a side, PNG + JSON + BUU CSV + DICOM + datalist)
in under one minute on 2 cores. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_synthetic.py --n 50 --workers 1 2

Prints one table row per worker count, with the machine's core count and load average (the load tells whether
other work shared the cores during the run), and a per-stage profile of one study.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _stages(seed: int) -> dict[str, float]:
    """Seconds per stage for one full-size study."""
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph
    from lumbar_monai.synthetic.model import sample_spine
    from lumbar_monai.synthetic.render import form_image, place_on_detector, render_density, sample_imaging
    from lumbar_monai.synthetic.study import write_case

    cfg = SyntheticConfig()
    ss = np.random.SeedSequence(seed).spawn(4)
    out: dict[str, float] = {}
    t = time.perf_counter()
    model = sample_spine(np.random.default_rng(ss[1]), cfg)
    out["anatomy (mm model)"] = time.perf_counter() - t
    params_rng, noise_rng = np.random.default_rng(ss[2]), np.random.default_rng(ss[3])
    t = time.perf_counter()
    placement = place_on_detector(params_rng, model, cfg)
    imaging = sample_imaging(params_rng, cfg)
    rendered = render_density(noise_rng, model, placement, cfg, imaging)
    out["thickness map (render grid)"] = time.perf_counter() - t
    t = time.perf_counter()
    form_image(noise_rng, rendered, placement, imaging, float(np.median(rendered.tau)))
    out["physics + noise (full res)"] = time.perf_counter() - t
    study = generate_radiograph(seed, cfg)
    with tempfile.TemporaryDirectory() as d:
        for fmt in ("png", "dicom", "json", "buu"):
            t = time.perf_counter()
            write_case(d, 0, study, formats=(fmt,))
            out[f"write {fmt}"] = time.perf_counter() - t
    out["_megapixels"] = study.image.size / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="studies per run (default 50)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-format", choices=("png", "tiff"), default="png")
    args = parser.parse_args()

    from lumbar_monai.synthetic import write_study_set

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores available: {cores}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows = []
    for workers in args.workers:
        tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        write_study_set(
            tmp, args.n, seed=args.seed, image_format=args.image_format, progress=False, num_workers=workers
        )
        dt = time.perf_counter() - t
        load1 = os.getloadavg()[0]
        sizes = []
        for p in (tmp / "images").iterdir():
            from PIL import Image

            with Image.open(p) as im:
                sizes.append(im.size[0] * im.size[1] / 1e6)
        disk = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 2**20
        shutil.rmtree(tmp)
        rows.append((workers, args.n, dt, dt / args.n, float(np.mean(sizes)), disk, load0, load1))

    print()
    print("| workers | studies | seconds | s/study | mean Mpx | MiB written | load before | load after | < 60 s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for w, n, dt, per, mpx, mib, l0, l1 in rows:
        print(
            f"| {w} | {n} | {dt:.1f} | {per:.2f} | {mpx:.2f} | {mib:.0f} | {l0:.2f} | {l1:.2f} | "
            f"{'yes' if dt < 60 else 'no'} |"
        )

    st = _stages(args.seed + 12345)
    mpx = st.pop("_megapixels")
    print()
    print(f"one study ({mpx:.2f} Mpx), single process:")
    print("| stage | seconds |")
    print("|---|---:|")
    for k, v in st.items():
        print(f"| {k} | {v:.3f} |")


if __name__ == "__main__":
    main()
