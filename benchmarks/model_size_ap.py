"""Paper-size vs compact AP networks side by side: parameters, float32 checkpoint MB and forward FLOPs per image.

The shipped AP model (``bundles/lumbar_landmarks/models/aasce_ap.pt``) must stay under 10 MB; this prints what the
paper-size configuration would cost. FLOPs are counted by ``torch.utils.flop_counter`` on the meta device (no
computation), one multiply-add = 2 FLOPs; stage 1 runs ``passes`` times per image, stage 2 once per lumbar vertebra
(twice with the mirror averaging of the shipped checkpoint, ``tta: "mirror"``); the vertebra counter
(:mod:`lumbar_monai.counting`) once, on the letterboxed whole image.

    .venv/bin/python benchmarks/model_size_ap.py [--schedule configs/framed/aasce_ap_cpu.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lumbar_monai.counting import COUNT_INPUT, build_counter_net, check_input_size
from lumbar_monai.networks.mnet import MNet, mnet_kwargs_for
from lumbar_monai.networks.posenet import PoseNet

SHIPPED = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"


def _count(net_fn, shape) -> tuple[int, float]:
    with torch.device("meta"):
        net = net_fn()
        x = torch.empty(shape)
    params = sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as fc:
        net.eval()(x)
    return params, fc.get_total_flops() / 1e9


def shipped_counter_size() -> tuple[int, int]:
    """The letterbox of the shipped model's counter (``stage1["count"]["input_size"]``), or the default one."""
    if SHIPPED.is_file():
        ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
        size = ((ckpt.get("stage1") or {}).get("count") or {}).get("input_size")
        if size:
            return check_input_size(size)
    return COUNT_INPUT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--schedule", default="configs/framed/aasce_ap_cpu.json")
    p.add_argument("--counter-size", default=None,
                   help="counter letterbox HEIGHT,WIDTH (default: the shipped model's, else 384,160)")
    a = p.parse_args()
    counter_size = (check_input_size(a.counter_size.split(",")) if a.counter_size else shipped_counter_size())
    s = json.loads(Path(a.schedule).read_text())
    pc, mc = s["posenet"], s["mnet_lumbar"]
    passes = int(s["framing"]["passes"])
    compact = ({k: pc[k] for k in ("width", "stage_channels", "kernel_size", "pre_convs", "stage_convs")},
               int(pc["input_size"]), passes, tuple(mc["channels"]), int(mc["crop_size"]))
    rows = [
        ("paper (An et al. 2022)", dict(width=32), 512, 1, (32, 64, 128, 256), 256, 1, False),
        ("compact, no mirror averaging", *compact, 1, False),
        ("compact, M-Net mirror averaging", *compact, 2, False),
        (f"compact, M-Net mirror averaging, vertebra counter ({counter_size[0]} x {counter_size[1]})", *compact, 2,
         True),
    ]
    cp, cf = _count(build_counter_net, (1, 1, *counter_size))
    print("| configuration | Pose-Net params | M-Net params | counter params | checkpoint MiB (float32) | stage-1 input "
          "| passes | crop | GFLOPs per image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, pkw, size, n_pass, ch, crop, stage2_runs, counter in rows:
        pp, pf = _count(lambda pkw=pkw: PoseNet("ap", **pkw), (1, 1, size, size))
        mp, mf = _count(lambda ch=ch: MNet(**mnet_kwargs_for("ap", "lumbar", channels=ch)), (5, 1, crop, crop))
        mb = 4 * (pp + mp + (cp if counter else 0)) / 2**20
        print(f"| {name} | {pp / 1e6:.2f} M | {mp / 1e6:.2f} M | {f'{cp / 1e6:.2f} M' if counter else '-'} | {mb:.1f} "
              f"| {size} | {n_pass} | {crop} | {n_pass * pf + stage2_runs * mf + (cf if counter else 0.0):.1f} |")


if __name__ == "__main__":
    main()
