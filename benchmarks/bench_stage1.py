"""Stage-1 timings: centre-map target generation (vectorised vs a naive per-pixel loop), pre-processing of one
clinical-size radiograph, and Pose-Net forward time at 512x512 (kernels 13 and 7) on the CPU.

    .venv/bin/python benchmarks/bench_stage1.py [--repeats 5] [--threads N] [--size 512] [--width 32]

Prints Markdown tables of median wall times. The naive loop evaluates Eq. 1 pixel by pixel in Python, as a
reference for both speed and values (the maximum absolute difference is printed).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from _timing import median_ms


def _spine(size: int) -> np.ndarray:
    """A plausible lateral layout (22 points) in ``size``-px input space."""
    from lumbar_monai.anatomy import LATERAL

    s = size / 512.0
    pts = []
    for i, v in enumerate(LATERAL.vertebrae):
        cx, cy = 250.3 * s, (90.7 + 60.0 * i) * s
        if v.kind == "lumbar":
            pts += [(cx + dx * 25 * s, cy + dy * 20 * s) for dy in (-1, 1) for dx in (-1, 1)]
        else:
            pts += [(cx - 25 * s, cy - 30 * s), (cx + 25 * s, cy - 30 * s)]
    return np.array(pts)


def naive_encode(codec, points: np.ndarray) -> np.ndarray:
    """Eq. 1 pixel by pixel (the reference the vectorised codec replaces)."""
    centres = codec.input_to_heatmap(codec.centres(points))
    sigma = float(codec.sigma(points))
    n = codec.heatmap_size
    out = np.zeros((len(centres), n, n))
    for k, (cx, cy) in enumerate(centres):
        for y in range(n):
            for x in range(n):
                out[k, y, x] = math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma * sigma))
    return out


def bench_targets(size: int, repeats: int) -> None:
    from lumbar_monai.codecs.centre import CentreHeatmapCodec

    print(f"\n### Centre-map targets ({size} px input, {size // 8}x{size // 8} maps, 6 channels), per sample\n")
    print("| method | median ms | speed-up | max abs diff |")
    print("|---|---:|---:|---:|")
    codec = CentreHeatmapCodec("lateral", input_size=size, heatmap_size=size // 8)
    pts = _spine(size)
    vec_ms = median_ms(lambda: codec.encode(pts), repeats)
    naive_ms = median_ms(lambda: naive_encode(codec, pts), max(1, repeats // 2))
    diff = float(np.abs(codec.encode(pts, dtype=torch.float64).numpy() - naive_encode(codec, pts)).max())
    batch = np.stack([pts] * 16)
    batch_ms = median_ms(lambda: codec.encode(batch), repeats) / 16
    print(f"| naive per-pixel loop | {naive_ms:.2f} | 1.0 | - |")
    print(f"| vectorised (CentreHeatmapCodec.encode) | {vec_ms:.3f} | {naive_ms / vec_ms:.0f} | {diff:.1e} |")
    print(f"| vectorised, batch of 16 (per sample) | {batch_ms:.3f} | {naive_ms / batch_ms:.0f} | - |")


def bench_preprocessing(size: int, repeats: int) -> None:
    from monai.transforms import Compose

    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph
    from lumbar_monai.transforms.augment import stage1_preprocessing

    study = generate_radiograph(0, SyntheticConfig(large_fraction=1.0))
    h, w = study.image.shape
    sample = {"image": study.image.astype(np.float32)[None], "points": np.asarray(study.points)}
    chain = Compose(stage1_preprocessing(size=size))
    ms = median_ms(lambda: chain(sample), repeats)
    print(f"\n### Pre-processing one {w}x{h} radiograph to {size}x{size} (pad, resize, scale, blur, CLAHE)\n")
    print("| step | median ms |")
    print("|---|---:|")
    print(f"| whole chain | {ms:.1f} |")


def bench_posenet(size: int, width: int, repeats: int) -> None:
    from lumbar_monai.networks.posenet import PoseNet

    print(f"\n### Pose-Net forward on the CPU ({torch.get_num_threads()} threads), batch 1, {size}x{size}\n")
    print("| kernel | width | parameters (M) | median ms |")
    print("|---:|---:|---:|---:|")
    x = torch.rand(1, 1, size, size)
    for kernel in (13, 7):
        net = PoseNet(width=width, kernel_size=kernel).eval()
        params = sum(p.numel() for p in net.parameters()) / 1e6
        with torch.inference_mode():
            net(x)  # warm-up
            ms = median_ms(lambda net=net: net(x), repeats)
        print(f"| {kernel} | {width} | {params:.2f} | {ms:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--skip-preprocessing", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_targets(args.size, args.repeats)
    if not args.skip_preprocessing:
        bench_preprocessing(args.size, max(1, args.repeats // 2))
    bench_posenet(args.size, args.width, args.repeats)


if __name__ == "__main__":
    main()
