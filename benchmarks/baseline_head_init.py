"""Can the one-stage BasicUNet baseline fit a handful of images, and how fast, with MONAI's default initialisation of
its output layer against the zero-initialised one (``build_network(zero_init_head=...)``)?

Fits the same few training images (stage-1 pre-processing, no augmentation, the bundle's ``MapNormLoss`` and
``sigma = size / 128``; Adam at the bundle's learning rate) and prints, every ``--report`` steps, the training loss,
the loss of all-zero maps, and where the peaks of the predicted maps are: the median distance to their targets and the
share within 3 px (pixels of the ``--size`` input). The check behind the zero head; a training-speed figure only
in its step count, never in seconds.

    .venv/bin/python benchmarks/baseline_head_init.py [--datalist DATALIST] [--images 4] [--size 256] [--steps 100]

Without ``--datalist`` it writes the bundle's synthetic set (seed 0, 8 studies) to a temporary folder first.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch


def fit(x: torch.Tensor, y: torch.Tensor, zero_head: bool, steps: int, report: int, lr: float):
    """Yield ``(step, loss, median peak error px, share within 3 px)`` while fitting ``x -> y``."""
    from lumbar_monai.baselines.one_stage import build_network
    from lumbar_monai.codecs.gaussian import decode_peaks
    from lumbar_monai.losses.centre import MapNormLoss

    torch.manual_seed(0)
    net = build_network("lateral", zero_init_head=zero_head)
    loss_fn = MapNormLoss()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    targets = torch.stack([decode_peaks(m)[0] for m in y])
    for step in range(steps + 1):
        opt.zero_grad()
        out = net(x)
        loss = loss_fn(out, y)
        if step % report == 0:
            peaks = torch.stack([decode_peaks(m)[0] for m in out.detach()])
            err = (peaks - targets).norm(dim=-1)
            yield step, loss.item(), float(err.median()), 100.0 * float((err < 3.0).float().mean())
        if step < steps:
            loss.backward()
            opt.step()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datalist", default=None)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="input side (the bundle's CPU demo size)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--report", type=int, default=50)
    ap.add_argument("--lr", type=float, default=2e-3, help="the bundle's learning rate")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lumbar_monai.baselines.one_stage import one_stage_transforms
    from lumbar_monai.io.datalist import load_landmark_datalist
    from lumbar_monai.losses.centre import MapNormLoss
    from lumbar_monai.workflows.data import prepare_datalist

    with tempfile.TemporaryDirectory() as tmp:
        datalist = args.datalist or prepare_datalist(None, tmp, 8, 0, 768)
        items = load_landmark_datalist(datalist, "training")[: args.images]
        chain = one_stage_transforms(False, {"input_size": args.size, "sigma": args.size / 128.0}, "lateral")
        samples = [chain(item) for item in items]
    x = torch.stack([torch.as_tensor(np.asarray(s["image"])) for s in samples]).float()
    y = torch.stack([torch.as_tensor(np.asarray(s["label"])) for s in samples]).float()
    zero_loss = float(MapNormLoss()(torch.zeros_like(y), y))

    print(f"{len(samples)} training images at {args.size} px, {y.shape[1]} maps, sigma {args.size / 128.0:g} px, "
          f"Adam lr {args.lr:g}; loss of all-zero maps {zero_loss:.3f}\n")
    print("| output layer | step | loss | median peak error (px) | peaks within 3 px (%) |")
    print("|---|---:|---:|---:|---:|")
    for label, zero_head in (("MONAI default init", False), ("zero init", True)):
        for step, loss, median, within in fit(x, y, zero_head, args.steps, args.report, args.lr):
            print(f"| {label} | {step} | {loss:.3f} | {median:.1f} | {within:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
