"""What CoordConv costs in M-Net, by placement: the reading of the paper's Table 8 (issue 15, item 3).

An et al. 2022, Table 8: the landmark stage takes 12.98 ms per image without CoordConv and 21.71 ms with CC(2)
(+67 %) on an RTX 3090. CoordConv only concatenates two coordinate channels to the input of a convolution, so its
arithmetic is that of two more input channels. This script counts the forward FLOPs of the paper-size lumbar M-Net
(``torch.utils.flop_counter.FlopCounterMode``; a multiply-add is 2 FLOPs) for CoordConv in the first 0, 1, 2
(the paper's CC(2), this project's default: both convolutions of the full-resolution level), 4 and all 8 encoder
convolutions, and times a forward of the six crops of one image (five lumbar crops; interleaved repeats, median)
for 0 and 2.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/coordconv_cost.py [--repeats 3] [--size 256]
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="crop side (the paper's 256)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crops", type=int, default=6, help="crops timed per forward (one image: 5 lumbar + S1)")
    args = ap.parse_args(argv)
    from torch.utils.flop_counter import FlopCounterMode

    from lumbar_monai.networks.mnet import MNet

    x = torch.rand(1, 1, args.size, args.size)
    nets, flops = {}, {}
    for cc in (0, 1, 2, 4, 8):
        torch.manual_seed(0)
        nets[cc] = MNet(out_channels=5, coordconv=cc).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            nets[cc](x)
        flops[cc] = fc.get_total_flops() / 1e9
    batch = torch.rand(args.crops, 1, args.size, args.size)
    times: dict[int, list[float]] = {0: [], 2: []}
    with torch.no_grad():
        for cc in times:
            nets[cc](batch[:1])  # warm-up
        for _ in range(args.repeats):
            for cc in times:
                t0 = time.perf_counter()
                nets[cc](batch)
                times[cc].append(1000.0 * (time.perf_counter() - t0))
    med = {cc: sorted(v)[len(v) // 2] for cc, v in times.items()}
    print(f"paper-size lumbar M-Net (channels 32-256, PAF), {args.size}x{args.size} crops, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| CoordConv in the first k encoder convolutions | GFLOPs per crop | vs none | "
          f"CPU ms per {args.crops} crops (median of {args.repeats}) |")
    print("|---|---:|---:|---:|")
    for cc, g in flops.items():
        t = f"{med[cc]:.0f}" if cc in med else "-"
        print(f"| {cc}{' (CC(2))' if cc == 2 else ' (every encoder convolution)' if cc == 8 else ''} | {g:.3f} "
              f"| {100.0 * (g / flops[0] - 1):+.2f} % | {t} |")
    print(f"\nCC(2) vs none: {100.0 * (flops[2] / flops[0] - 1):+.2f} % FLOPs, "
          f"{100.0 * (med[2] / med[0] - 1):+.1f} % CPU time here; the paper's Table 8: +67.3 % GPU time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
