"""Time and peak memory of the stage-1 pre-processing on one very large image: network resolution (``fit``, the
default: resize the unpadded image, pad at 512) against the former full-resolution path (``pad_resize``: pad to a
square and anti-alias filter at the original size, then resize). Each path runs in a fresh process, so the peak
resident-set growth is its own (measured over the loaded image, after a warm-up on a small one).

    .venv/bin/python benchmarks/bench_preprocessing.py [--width 10000] [--height 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(mode: str, width: int, height: int, threads: int) -> dict:
    import numpy as np
    import torch
    from monai.transforms import Compose

    from lumbar_monai.transforms.augment import stage1_preprocessing

    torch.set_num_threads(threads)
    img = np.random.default_rng(0).random((height, width), dtype=np.float32)
    chain = Compose(stage1_preprocessing("image", point_keys=(), size=512, resample=mode))
    chain({"image": torch.rand(1, 600, 500)})  # warm-up: lazy imports, allocator
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t = time.perf_counter()
    out = chain({"image": torch.from_numpy(img)[None]})
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    assert tuple(out["image"].shape) == (1, 512, 512)
    return {"mode": mode, "ms": 1000.0 * seconds, "growth_mib": peak - base, "image_mib": img.nbytes / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=10000)
    ap.add_argument("--height", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.width, args.height, args.threads)))
        return
    mpx = args.width * args.height / 1e6
    print(f"stage-1 pre-processing of one {args.width}x{args.height} image ({mpx:.0f} Mpx, float32), "
          f"{args.threads} torch thread(s), each path in a fresh process")
    print("| path | ms | peak RSS growth over the loaded image (MiB) | the image itself (MiB) |")
    print("|---|---:|---:|---:|")
    for mode, label in (("fit", "network resolution (resize, pad at 512)"),
                        ("pad_resize", "full resolution (pad, filter, resize)")):
        proc = subprocess.run([sys.executable, __file__, "--one", mode, "--width", str(args.width), "--height",
                               str(args.height), "--threads", str(args.threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {label} | failed: {proc.stderr.strip().splitlines()[-1:]} | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {label} | {r['ms']:.0f} | {r['growth_mib']:.0f} | {r['image_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
