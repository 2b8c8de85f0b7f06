"""Per-image time of the whole predictor (DICOM file in -> points out), with the share of each stage.

Paper-size networks (Pose-Net at 512 -> 64, two M-Nets at 256 with CoordConv(2) and a PAF channel), randomly
initialised (time does not depend on the weights), on synthetic radiographs of clinical size written as DICOM DX
files first (``--input array`` passes the arrays instead). Prints one table per device (CPU, and CUDA when
available) next to the paper's number: 21.87 ms per image for the landmark stage (both M-Nets) on an RTX 3090
(An et al. 2022, Section 4.3; 12.98 ms without CoordConv). ``--baseline`` adds the one-stage MONAI BasicUNet
baseline (22 maps at 512) on the same files.

    .venv/bin/python benchmarks/bench_predictor.py [--images 5] [--repeats 3] [--threads N] [--max-side 2500]
        [--input file|array] [--baseline] [--batched N]

``--batched N`` adds the networks' throughput on batches of N images, in fp32 and with automatic mixed precision
(float16 autocast on CUDA, bfloat16 on the CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PAPER_LANDMARK_MS = 21.87
PAPER_LANDMARK_NO_COORDCONV_MS = 12.98
DEFAULT_FEATURES_TEXT = "16-16-32-64-128-16"


def build_predictor(device: str, crop_size: int, coordconv: int):
    from lumbar_monai.anatomy import LATERAL
    from lumbar_monai.networks.mnet import MNet
    from lumbar_monai.networks.posenet import PoseNet
    from lumbar_monai.predictor import LandmarkPredictor, with_init_kwargs

    torch.manual_seed(0)
    pose = with_init_kwargs(PoseNet, layout="lateral")
    lumbar = MNet.for_layout(LATERAL, "lumbar", coordconv=coordconv)
    sacrum = MNet.for_layout(LATERAL, "sacrum", coordconv=coordconv)
    return LandmarkPredictor(LATERAL, lumbar, sacrum, pose, crop_size=crop_size, device=device)


def build_baseline(device: str):
    from lumbar_monai.baselines.one_stage import DEFAULT_FEATURES, OneStagePredictor, build_network

    torch.manual_seed(0)
    return OneStagePredictor("lateral", build_network("lateral", DEFAULT_FEATURES), input_size=512, device=device)


def run(device: str, images: list, repeats: int, crop_size: int, coordconv: int, baseline: bool = False
        ) -> dict[str, float]:
    pred = build_baseline(device) if baseline else build_predictor(device, crop_size, coordconv)
    pred(images[0])  # warm-up (allocations, cuDNN autotuning, lazy imports)
    totals: dict[str, float] = {}
    walls = []
    n = 0
    for _ in range(repeats):
        for img in images:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = pred(img)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - t0)
            for k, v in res.meta["timings_ms"].items():
                totals[k] = totals.get(k, 0.0) + v
            n += 1
    out = {k: v / n for k, v in totals.items()}
    out["total_wall"] = 1000.0 * float(np.mean(walls))
    return out


def network_throughput(device: str, batch: int, crop_size: int, coordconv: int, amp: bool, repeats: int
                       ) -> dict[str, float]:
    """Networks alone on a batch of ``batch`` images (Pose-Net at 512; 5 lumbar + 1 S1 crops per image): ms per
    image of each stage. ``amp``: autocast to float16 on CUDA, bfloat16 on the CPU."""
    pred = build_predictor(device, crop_size, coordconv)
    dtype = torch.float16 if device.startswith("cuda") else torch.bfloat16
    x1 = torch.rand(batch, 1, 512, 512, device=device)
    xl = torch.rand(5 * batch, 1, crop_size, crop_size, device=device)
    xs = torch.rand(batch, 1, crop_size, crop_size, device=device)

    def timed(fn) -> float:
        with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=amp):
            fn()  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        return 1000.0 * (time.perf_counter() - t0) / repeats / batch

    s1 = timed(lambda: pred.centre_net(x1))
    s2 = timed(lambda: (pred.lumbar_net(xl), pred.sacrum_net(xs)))
    return {"stage1": s1, "stage2": s2, "total": s1 + s2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--max-side", type=int, default=2500, help="synthetic image size (px, longest side)")
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--coordconv", type=int, default=2)
    ap.add_argument("--devices", default="auto", help="comma list (cpu,cuda) or auto")
    ap.add_argument("--input", choices=("file", "array"), default="file",
                    help="file: DICOM DX files read by the predictor (the clinical path); array: in-memory images")
    ap.add_argument("--baseline", action="store_true", help="also time the one-stage BasicUNet baseline")
    ap.add_argument("--batched", type=int, default=0, metavar="N",
                    help="also time the networks alone on batches of N images, fp32 and AMP (images/s)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    cfg = SyntheticConfig(max_side=args.max_side)
    studies = [generate_radiograph(1000 + i, cfg) for i in range(args.images)]
    images: list = [s.image.astype(np.float32) for s in studies]
    tmp = tempfile.TemporaryDirectory()
    if args.input == "file":
        from lumbar_monai.synthetic.dicom import write_dx

        images = [str(write_dx(Path(tmp.name) / f"bench_{i}.dcm", s.image, s.pixel_spacing,
                               int(s.meta.get("bits_stored", 12)), f"bench_{i}")) for i, s in enumerate(studies)]
    devices = (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")
    )
    shapes = ", ".join(f"{s.image.shape[1]}x{s.image.shape[0]}" for s in studies)
    print(
        f"images: {shapes} (W x H), {'DICOM DX files' if args.input == 'file' else 'in-memory arrays'}; "
        f"crops {args.crop_size}px; CoordConv({args.coordconv}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    stages = [
        "read",
        "stage1_preprocess",
        "stage1_network",
        "stage1_postprocess",
        "stage2_crops",
        "stage2_network",
        "stage2_decode",
    ]
    for dev in devices:
        r = run(dev, images, args.repeats, args.crop_size, args.coordconv)
        name = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
        total = r["total_wall"]
        landmark = sum(r.get(k, 0.0) for k in ("stage2_crops", "stage2_network", "stage2_decode"))
        print(f"\n{dev} ({name}): {total:8.2f} ms per image (whole predictor, wall)")
        print(f"  {'stage':<22}{'ms':>10}{'share':>9}")
        for k in stages:
            if k in r:
                print(f"  {k:<22}{r[k]:>10.2f}{100 * r[k] / total:>8.1f}%")
        other = total - sum(r.get(k, 0.0) for k in stages)
        print(f"  {'other (result, flags)':<22}{other:>10.2f}{100 * other / total:>8.1f}%")
        print(
            f"  landmark stage (stage 2): {landmark:.2f} ms  |  paper, RTX 3090: {PAPER_LANDMARK_MS} ms "
            f"({PAPER_LANDMARK_NO_COORDCONV_MS} ms without CoordConv)"
        )
        if args.baseline:
            b = run(dev, images, args.repeats, args.crop_size, args.coordconv, baseline=True)
            print(f"\n{dev} ({name}), one-stage BasicUNet baseline (features {DEFAULT_FEATURES_TEXT}, 512 input): "
                  f"{b['total_wall']:8.2f} ms per image (whole predictor, wall)")
            for k in ("preprocess", "network", "decode"):
                print(f"  {k:<22}{b[k]:>10.2f}{100 * b[k] / b['total_wall']:>8.1f}%")
        if args.batched:
            print(f"\n{dev} ({name}), networks alone, batches of {args.batched} images (ms per image; AMP = "
                  f"{'float16' if dev.startswith('cuda') else 'bfloat16'} autocast)")
            print("| precision | Pose-Net (512) | M-Nets (6 crops) | both | images/s |")
            print("|---|---:|---:|---:|---:|")
            for amp in (False, True):
                t = network_throughput(dev, args.batched, args.crop_size, args.coordconv, amp, args.repeats)
                print(f"| {'AMP' if amp else 'fp32'} | {t['stage1']:.2f} | {t['stage2']:.2f} | {t['total']:.2f} "
                      f"| {1000.0 / t['total']:.2f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
