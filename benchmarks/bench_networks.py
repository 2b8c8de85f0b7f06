"""Size, compute and memory of every network of the project, at paper size and at the bundle's CPU-demo size.

For each network: parameters, forward FLOPs of one input (batch 1), the input shape, and the peak memory of one
inference forward (batch 1, ``eval()``, ``torch.no_grad()``) and of one training step (``train()``, forward +
backward of a dummy loss, batch ``--batch``; no optimizer step, so no Adam state). Random weights.

    .venv/bin/python benchmarks/bench_networks.py [--device cpu|cuda] [--batch 4] [--threads N] [--only PATTERNS]

``--only`` takes comma-separated names or shell patterns (``--only 'mnet-*'``); ``--list`` prints the names.

* FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2 FLOPs and
  counts only convolutions (transposed included) and matrix products: normalisations, activations, pooling,
  interpolation and the CoordConv coordinate channels' concatenation are not counted.
* CPU memory is the peak resident-set growth of a fresh process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``):
  each network is measured in its own subprocess of this script; the baseline is taken after building the network
  and its inputs and one warm-up forward on a 32x32 input, so the figures are activations, gradients and work
  buffers, with the allocator's caching included. The training figure is read after the inference one in the same
  process (ru_maxrss only grows); a training step keeps more than an inference forward at batch 1, so it is the
  training step's own.
* CUDA memory is ``torch.cuda.max_memory_allocated`` during the step minus ``memory_allocated`` before it (after
  ``reset_peak_memory_stats``): tensors only, without the caching allocator's reserve or the CUDA context.
* The dummy training loss is the sum of ``.float().mean()`` over every tensor the network returns (Pose-Net's
  ``(final, pre)``, the M-Net's fused map and side outputs in training mode).

The paper (An et al. 2022) gives no parameter counts, FLOPs or memory figures for its networks, so no reference
column is printed (``bench_predictor.py`` compares times with the paper's). The baseline's "paper" size is the paper's
input side (512; 384 as a cheaper option); its "demo" size is the 256 that ``bench_training.py --size demo`` uses.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

MNET_DEMO_CHANNELS = (8, 16, 32, 64)  # bundles/lumbar_landmarks/configs/train.json, mnet_lumbar / mnet_sacrum
POSENET_DEMO = {"width": 8, "stage_channels": 32, "pre_convs": 1, "stage_convs": 2, "kernel_size": 13}


@dataclass(frozen=True)
class Spec:
    name: str
    network: str
    size: str
    description: str
    input_side: int
    build: Callable[[], torch.nn.Module]


def _posenet(**kwargs) -> Callable[[], torch.nn.Module]:
    def build():
        from lumbar_monai.networks.posenet import PoseNet

        return PoseNet(layout="lateral", **kwargs)

    return build


def _mnet(kind: str, **kwargs) -> Callable[[], torch.nn.Module]:
    def build():
        from lumbar_monai.anatomy import LATERAL
        from lumbar_monai.networks.mnet import MNet

        return MNet.for_layout(LATERAL, kind, **kwargs)

    return build


def _basicunet(features: tuple[int, ...]) -> Callable[[], torch.nn.Module]:
    def build():
        from monai.networks.nets import BasicUNet

        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=22, features=features)

    return build


SPECS: list[Spec] = [
    Spec("posenet-k13-512", "Pose-Net", "paper", "kernel 13", 512, _posenet()),
    Spec("posenet-k7-512", "Pose-Net", "paper", "kernel 7 (Kim et al.)", 512, _posenet(kernel_size=7)),
    Spec("posenet-demo-256", "Pose-Net", "demo", "w 8, c 32, 1+2 convs, kernel 13", 256, _posenet(**POSENET_DEMO)),
    Spec("mnet-lumbar-256", "M-Net lumbar", "paper", "CoordConv(2), PAF", 256, _mnet("lumbar", coordconv=2)),
    Spec("mnet-lumbar-cc0-nopaf-256", "M-Net lumbar", "paper", "CoordConv(0), no PAF (Kim-like)", 256,
         _mnet("lumbar", coordconv=0, paf=False)),
    Spec("mnet-sacrum-256", "M-Net sacrum", "paper", "CoordConv(2), PAF", 256, _mnet("sacrum", coordconv=2)),
    Spec("mnet-lumbar-demo-96", "M-Net lumbar", "demo", "channels 8-64, CoordConv(2), PAF", 96,
         _mnet("lumbar", coordconv=2, channels=MNET_DEMO_CHANNELS)),
    Spec("mnet-sacrum-demo-96", "M-Net sacrum", "demo", "channels 8-64, CoordConv(2), PAF", 96,
         _mnet("sacrum", coordconv=2, channels=MNET_DEMO_CHANNELS)),
    Spec("basicunet-512", "BasicUNet", "paper", "features 16-16-32-64-128-16", 512,
         _basicunet((16, 16, 32, 64, 128, 16))),
    Spec("basicunet-384", "BasicUNet", "paper", "features 16-16-32-64-128-16", 384,
         _basicunet((16, 16, 32, 64, 128, 16))),
    Spec("basicunet-demo-256", "BasicUNet", "demo", "features 16-16-32-64-128-16", 256,
         _basicunet((16, 16, 32, 64, 128, 16))),
    Spec("basicunet-monai-512", "BasicUNet", "paper", "MONAI default 32-32-64-128-256-32", 512,
         _basicunet((32, 32, 64, 128, 256, 32))),
]


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(spec: Spec, device: str, batch: int) -> dict:
    """Everything for one network, in this process (the parent runs it in a fresh subprocess)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    net = spec.build().to(dev)
    params = sum(p.numel() for p in net.parameters())
    s = spec.input_side
    x1 = torch.rand(1, 1, s, s, device=dev)
    xb = torch.rand(batch, 1, s, s, device=dev)
    net.eval()
    with torch.no_grad():  # warm-up on a small input: lazy code loading and kernel set-up stay out of the figures
        net(torch.rand(1, 1, 32, 32, device=dev))

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    # inference, batch 1
    net.eval()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = _maxrss_mib()
    with torch.no_grad():
        net(x1)
    sync()
    infer_mib = (torch.cuda.max_memory_allocated(dev) - before) / 2**20 if cuda else _maxrss_mib() - before

    # training step (forward + backward of a dummy loss), batch `batch`
    net.train()
    net.zero_grad(set_to_none=True)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        before_train = torch.cuda.memory_allocated(dev)
    else:
        before_train = before  # the same baseline: ru_maxrss is a process-lifetime peak
    out = net(xb)
    loss = sum(t.float().mean() for t in _tensors(out))
    loss.backward()
    sync()
    train_mib = (torch.cuda.max_memory_allocated(dev) - before_train) / 2**20 if cuda else _maxrss_mib() - before
    del out, loss

    # FLOPs of one forward, batch 1
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = net(x1)
    out_shapes = [list(t.shape[1:]) for t in _tensors(out)]
    return {
        "params": params,
        "flops": counter.get_total_flops(),
        "input": [1, s, s],
        "outputs": out_shapes,
        "infer_mib": infer_mib,
        "train_mib": train_mib,
    }


def _child(name: str, device: str, batch: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    spec = next(s for s in SPECS if s.name == name)
    print(json.dumps(measure(spec, device, batch)))


def run_isolated(spec: Spec, device: str, batch: int, threads: int | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", spec.name, "--device", device, "--batch", str(batch)]
    env = dict(os.environ)
    if threads:
        cmd += ["--threads", str(threads)]
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec.name} on {device} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def select(patterns: str | None) -> list[Spec]:
    if not patterns:
        return list(SPECS)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [s for s in SPECS if any(fnmatch.fnmatchcase(s.name, p) for p in pats)]
    if not chosen:
        raise SystemExit(f"--only {patterns!r} matches none of: {', '.join(s.name for s in SPECS)}")
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="default: cpu, plus cuda when available")
    ap.add_argument("--batch", type=int, default=4, help="batch of the training step (default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--only", default=None, help="comma-separated names or shell patterns (see --list)")
    ap.add_argument("--list", action="store_true", help="print the network names and exit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: measure one network, print JSON
    args = ap.parse_args()
    if args.list:
        for s in SPECS:
            print(f"{s.name:<28}{s.network} ({s.size}): {s.description}, {s.input_side}x{s.input_side}")
        return
    if args.child:
        _child(args.child, args.device or "cpu", args.batch, args.threads)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = select(args.only)
    if args.device:
        devices = [args.device]
    else:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}; {threads} CPU threads; training-step batch {args.batch}; random weights")
    for dev in devices:
        if dev == "cuda":
            caption = (f"CUDA ({torch.cuda.get_device_name()}): peak memory = max_memory_allocated during the step "
                       "minus memory_allocated before it (tensors only)")
        else:
            caption = ("CPU: peak memory = peak resident-set growth of a fresh process over the built network "
                       "(allocator caching included)")
        print(f"\n{caption}; FLOPs from FlopCounterMode (multiply-add = 2 FLOPs), batch 1\n")
        print(f"| network | size | variant | input | parameters | params (M) | GFLOPs | "
              f"inference MiB (batch 1) | training step MiB (batch {args.batch}) |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|")
        for spec in specs:
            r = run_isolated(spec, dev, args.batch, args.threads)
            shape = "x".join(str(v) for v in r["input"])
            print(f"| {spec.network} | {spec.size} | {spec.description} | {shape} | {r['params']:,} | "
                  f"{r['params'] / 1e6:.3f} | {r['flops'] / 1e9:.3f} | {r['infer_mib']:.1f} | {r['train_mib']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
