"""Training throughput of stage 1 (Pose-Net), stage 2 (lumbar M-Net) and the one-stage BasicUNet baseline, and
which side limits it: the data pipeline or the model.

    .venv/bin/python benchmarks/bench_training.py [--size demo|paper] [--images 16] [--batch 4] [--num-workers 0]
        [--threads N] [--device cpu|cuda] [--stages posenet,mnet,baseline] [--data-only]

Each stage is measured three ways, in samples per second (images for Pose-Net and the baseline, vertebra crops for
the M-Net: every image gives one crop per lumbar vertebra, 5 on the lateral layout):

* (a) data: one epoch of the DataLoader alone (``monai.data.Dataset``, nothing cached, so every epoch pays for
  reading the PNG + annotation, the pre-processing and the augmentation), no model; with ``--num-workers`` > 0
  the workers' start-up is part of the epoch, as in training (it weighs on small ``--images``);
* (b) model: the training step alone on one batch held in memory (on the device): forward, the stage's loss,
  backward, Adam step; median of ``--steps`` steps after one warm-up step;
* (c) loop: one epoch of both together, as the bundle's trainer runs them (one warm-up step before it).

``--data-only`` measures (a) alone (no network is built), for CPUs on which the paper-size steps take minutes, and
adds the main process's CPU time per sample (with 0 workers and 1 thread: the pipeline's work, robust on a CPU
shared with other jobs, where the wall time measures the share the process got).

The bottleneck is "data" when (a) is slower than (b), else "model". The chains are the project's own training
transforms with their augmentation: ``posenet_transforms(True, hp, layout)`` and ``mnet_transforms(True,
Stage2Config, layout)``; the baseline uses ``lumbar_monai.baselines.one_stage.one_stage_transforms`` (the stage-1
pre-processing and augmentation, cutout off) with one
Gaussian heatmap (sigma = input side / 128 px, as in the bundle) per landmark at the input resolution and the
per-map L2-norm loss (``MapNormLoss``, Eq. 3). The losses are
``PoseNetTupleLoss`` and ``corner_loss_for(layout, "lumbar", paf=True, deep_supervision_levels=len(channels))``, as
in ``bundles/lumbar_landmarks/configs/train.json``.

Sizes: ``demo`` = the bundle's CPU sizes (Pose-Net 256 -> 32 with width 8, stage_channels 32, pre_convs 1,
stage_convs 2; M-Net crops of 96 with channels 8-16-32-64; baseline at 256); ``paper`` = Pose-Net 512 -> 64 and
M-Net crops of 256 with the default networks, baseline at 512. The BasicUNet has features 16-16-32-64-128-16 at
both sizes. The synthetic studies are generated first with the project's generator
(``lumbar_monai.workflows.data.prepare_datalist``; ``--max-side`` px, the bundle's 768 by default; generation is
not timed) into ``--data-dir`` (re-used when it already holds the same set) or a temporary folder. Peak RSS is the
main process's, read after each stage (it only grows; DataLoader workers are not included). ``--batch`` counts
images, so an M-Net batch holds 5x as many crops.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _timing import median_ms

LAYOUT = "lateral"
BASELINE_FEATURES = (16, 16, 32, 64, 128, 16)
TRAIN_JSON = Path(__file__).resolve().parents[1] / "bundles" / "lumbar_landmarks" / "configs" / "train.json"


@dataclass
class Stage:
    name: str
    network: str
    unit: str
    input_desc: str
    transform: object
    build: Callable[[], torch.nn.Module]
    loss: Callable[[], torch.nn.Module]


def _bundle_section(key: str) -> dict:
    return json.loads(TRAIN_JSON.read_text())[key]


def make_stages(size: str) -> dict[str, Stage]:
    from lumbar_monai.baselines.one_stage import build_network as one_stage_network
    from lumbar_monai.baselines.one_stage import one_stage_transforms
    from lumbar_monai.losses.centre import MapNormLoss
    from lumbar_monai.losses.corner import corner_loss_for
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.training.stage1 import PoseNetTupleLoss
    from lumbar_monai.training.stage2 import Stage2Config, build_network
    from lumbar_monai.workflows.stages import mnet_transforms, posenet_transforms

    demo = size == "demo"
    # stage 1
    hp = _bundle_section("posenet")
    if demo:
        pose_kwargs = {k: hp[k] for k in ("width", "stage_channels", "pre_convs", "stage_convs", "kernel_size")}
    else:
        hp = {**hp, "input_size": 512, "heatmap_size": 64}
        pose_kwargs = {}
    s1 = int(hp["input_size"])
    # stage 2 (lumbar M-Net)
    if demo:
        cfg2 = {k: v for k, v in _bundle_section("mnet_lumbar")["config"].items() if k != "seed"}
        cfg2["layout"] = LAYOUT
        stage2 = Stage2Config(**cfg2)
    else:
        stage2 = Stage2Config(layout=LAYOUT, kind="lumbar")
    # one-stage baseline
    sb = 256 if demo else 512
    baseline_chain = one_stage_transforms(True, {"input_size": sb, "sigma": sb / 128.0, "cutout": "none"}, LAYOUT)

    def basicunet():
        return one_stage_network(LAYOUT, BASELINE_FEATURES)

    return {
        "posenet": Stage(
            "stage 1", "Pose-Net" + (" (demo)" if demo else ""), "images", f"{s1} -> {int(hp['heatmap_size'])}",
            posenet_transforms(True, hp, LAYOUT), lambda: PoseNet(layout=LAYOUT, **pose_kwargs),
            lambda: PoseNetTupleLoss(LAYOUT)),
        "mnet": Stage(
            "stage 2", "M-Net lumbar" + (" (demo)" if demo else ""), "crops",
            f"{stage2.crop_size} crops, channels {'-'.join(str(c) for c in stage2.channels)}",
            mnet_transforms(True, stage2, LAYOUT), lambda: build_network(stage2),
            lambda: corner_loss_for(LAYOUT, "lumbar", paf=stage2.paf, deep_supervision_levels=len(stage2.channels))),
        "baseline": Stage(
            "one stage", "BasicUNet", "images", f"{sb} -> {sb}, 22 maps", baseline_chain, basicunet,
            MapNormLoss),
    }


def synthetic_items(n: int, data_dir: Path, max_side: int | None) -> list[dict]:
    """``n`` synthetic lateral studies (every split of the generated datalist)."""
    from lumbar_monai.io.datalist import load_landmark_datalist
    from lumbar_monai.workflows.data import prepare_datalist

    path = prepare_datalist(None, data_dir, n, 0, max_side, LAYOUT)
    splits = json.loads(Path(path).read_text())
    items = [it for split in ("training", "validation", "test") if splits.get(split)
             for it in load_landmark_datalist(path, split)]
    return items[:n]


def _plain(t):
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)


def _count(batch) -> int:
    return int(batch["image"].shape[0])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(stage: Stage, items: list[dict], batch: int, workers: int, device: str, steps: int,
            data_only: bool = False) -> dict:
    from monai.data import CacheDataset, DataLoader, Dataset

    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def loader(ds=None):
        g = torch.Generator()
        g.manual_seed(0)
        return DataLoader(ds if ds is not None else Dataset(items, stage.transform), batch_size=batch, shuffle=True,
                          num_workers=workers, generator=g, persistent_workers=False)

    stage.transform.set_random_state(seed=0)
    stage.transform(items[0])  # lazy imports (CLAHE, image readers) stay out of the timings

    # (a) data alone: one epoch
    n_a = 0
    t = time.perf_counter()
    cpu = time.process_time()
    for b in loader():
        n_a += _count(b)
    data_s = time.perf_counter() - t
    cpu_s = time.process_time() - cpu
    if data_only:
        return {"batch_samples": min(batch, len(items)) * (n_a // max(len(items), 1)), "samples": n_a,
                "data": n_a / data_s, "cpu_ms": 1000.0 * cpu_s / max(n_a, 1), "rss": _peak_rss_mib()}

    torch.manual_seed(0)
    net = stage.build().to(dev).train()
    loss_fn = stage.loss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        sync()

    # (b) model alone: one batch held on the device
    first = next(iter(loader()))
    x, y = _plain(first["image"]).to(dev), _plain(first["label"]).to(dev)
    step(x, y)  # warm-up (allocations, Adam state, cuDNN)
    model_ms = median_ms(lambda: step(x, y), steps)

    # (c) the real loop: one epoch
    n_c = 0
    t = time.perf_counter()
    for b in loader():
        step(_plain(b["image"]).to(dev), _plain(b["label"]).to(dev))
        n_c += _count(b)
    loop_s = time.perf_counter() - t

    # (d) the bundle's way: MONAI CacheDataset holds the deterministic part (stage 1: read, pad/resize, blur, CLAHE
    # at network resolution; stage 2: read and [0, 1] scaling), filled once before the epochs; then the data alone
    # and the loop again, paying only for the random part
    t = time.perf_counter()
    cached = CacheDataset(items, stage.transform, cache_rate=1.0, num_workers=max(workers, 1), progress=False)
    fill_s = time.perf_counter() - t
    n_d = 0
    t = time.perf_counter()
    for b in loader(cached):
        n_d += _count(b)
    cached_s = time.perf_counter() - t
    n_e = 0
    t = time.perf_counter()
    for b in loader(cached):
        step(_plain(b["image"]).to(dev), _plain(b["label"]).to(dev))
        n_e += _count(b)
    cached_loop_s = time.perf_counter() - t
    return {
        "batch_samples": _count(first),
        "samples": n_a,
        "data": n_a / data_s,
        "model": _count(first) / (model_ms / 1000.0),
        "loop": n_c / loop_s,
        "fill_s": fill_s,
        "data_cached": n_d / cached_s,
        "loop_cached": n_e / cached_loop_s,
        "rss": _peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("demo", "paper"), default="demo")
    ap.add_argument("--images", type=int, default=16, help="synthetic images per epoch (default 16)")
    ap.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for (a) and (c) (default 0)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    ap.add_argument("--steps", type=int, default=3, help="timed model steps for (b) (default 3)")
    ap.add_argument("--stages", default="posenet,mnet,baseline", help="comma list of posenet, mnet, baseline")
    ap.add_argument("--max-side", type=int, default=768,
                    help="synthetic image size, px (default 768, the bundle's; 0: full clinical size)")
    ap.add_argument("--data-only", action="store_true",
                    help="measure only (a), the uncached DataLoader (no network is built or run)")
    ap.add_argument("--data-dir", default=None, help="where to generate the synthetic set (default: a temp folder)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = [s.strip() for s in args.stages.split(",") if s.strip()]
    stages = make_stages(args.size)
    unknown = [s for s in names if s not in stages]
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; known: {', '.join(stages)}")

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        items = synthetic_items(args.images, Path(args.data_dir or tmp), args.max_side or None)
        dev_name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
        print(
            f"size {args.size}; {len(items)} synthetic images (max side {args.max_side or 'full'} px); "
            f"batch {args.batch} images; "
            f"{args.num_workers} DataLoader workers; device {device} ({dev_name}); "
            f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        )
        if args.data_only:
            print("\nThroughput in samples/s (images; crops for the M-Net) of (a): the DataLoader alone, nothing "
                  "cached (read, pre-processing, augmentation, targets); 'CPU ms per sample': the main process's "
                  "CPU time (all its threads; not the workers') over the epoch, per sample: the work itself, "
                  "whatever share of a busy CPU the process got.\n")
            print("| stage | network | input | unit | batch | samples/epoch | (a) data /s | ms per sample | "
                  "CPU ms per sample | peak RSS MiB |")
            print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
            for name in names:
                st = stages[name]
                r = measure(st, items, args.batch, args.num_workers, device, args.steps, data_only=True)
                assert math.isfinite(r["data"])
                print(f"| {st.name} | {st.network} | {st.input_desc} | {st.unit} | {r['batch_samples']} | "
                      f"{r['samples']} | {r['data']:.2f} | {1000.0 / r['data']:.1f} | {r['cpu_ms']:.1f} | "
                      f"{r['rss']:.0f} |", flush=True)
            return
        print("\nThroughput in samples/s (images; crops for the M-Net). (a) DataLoader alone, nothing cached; "
              "(b) training step alone on a batch in memory; (c) both, the real loop, nothing cached; "
              "(d) DataLoader alone and (e) the loop with MONAI's CacheDataset holding the deterministic part (the "
              "bundle's setting; filled once, 'fill s'); (b)/(e): how many times slower the cached loop runs than "
              "the model step alone.\n")
        print("| stage | network | input | unit | batch | samples/epoch | (a) data /s | (b) model /s | (c) loop /s | "
              "bottleneck | fill s | (d) data, cached /s | (e) loop, cached /s | (b)/(e) | peak RSS MiB |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for name in names:
            st = stages[name]
            r = measure(st, items, args.batch, args.num_workers, device, args.steps)
            assert all(math.isfinite(r[k]) for k in ("data", "model", "loop"))
            bottleneck = "data" if r["data"] < r["model"] else "model"
            print(f"| {st.name} | {st.network} | {st.input_desc} | {st.unit} | {r['batch_samples']} | {r['samples']} | "
                  f"{r['data']:.2f} | {r['model']:.2f} | {r['loop']:.2f} | {bottleneck} | {r['fill_s']:.3g} | "
                  f"{r['data_cached']:.2f} | {r['loop_cached']:.2f} | {r['model'] / r['loop_cached']:.2f} | "
                  f"{r['rss']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
