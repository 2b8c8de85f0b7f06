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

``--batch-mode N`` adds the *whole* predictor in batch mode (:meth:`LandmarkPredictor.predict_batch`: files read and
pre-processed in ``--workers`` processes, both stages batched, AMP on CUDA as the predictor's default): images/s over
``--batch-images`` files (the synthetic files repeated), with the peak memory (the process's resident set; on CUDA
also ``max_memory_allocated``). ``--compare-preprocessing`` times the stage-1 pre-processing at network resolution
(``resample="fit"``, the default) against the former full-resolution path (``"pad_resize"``) on the same images and
prints how far their 512 x 512 inputs differ. ``--facing`` is passed to the predictor (lateral images: ``auto``
runs both networks twice, on the image and its mirror; ``left`` once).
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


def run(device: str, images: list, repeats: int, crop_size: int, coordconv: int, baseline: bool = False,
        facing: str = "auto") -> dict[str, float]:
    pred = build_baseline(device) if baseline else build_predictor(device, crop_size, coordconv)
    kw = {} if baseline else {"facing": facing}
    pred(images[0], **kw)  # warm-up (allocations, cuDNN autotuning, lazy imports)
    totals: dict[str, float] = {}
    walls = []
    n = 0
    for _ in range(repeats):
        for img in images:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = pred(img, **kw)
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


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_batch_mode(device: str, files: list, batch: int, workers: int, repeats: int, crop_size: int,
                   coordconv: int, facing: str) -> dict[str, float]:
    """Whole predictor in batch mode over ``files``: images/s, ms per image, peak memory."""
    pred = build_predictor(device, crop_size, coordconv)
    pred.predict_batch(files[:batch], batch_size=batch, workers=0, facing=facing)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pred.predict_batch(files, batch_size=batch, workers=workers, facing=facing)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        assert len(out) == len(files)
    wall = float(np.median(walls))
    r = {"images_per_s": len(files) / wall, "ms_per_image": 1000.0 * wall / len(files), "rss": _peak_rss_mib()}
    if device.startswith("cuda"):
        r["cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return r


def compare_preprocessing(images: list, repeats: int) -> list[dict[str, float]]:
    """Stage-1 pre-processing, network resolution vs the former full-resolution path, per image (CPU)."""
    from lumbar_monai.predictor import LandmarkPredictor

    rows = []
    for img in images:
        arr = LandmarkPredictor.read_input(img)[0]
        row: dict[str, float] = {"w": arr.shape[1], "h": arr.shape[0]}
        outs = {}
        for mode in ("pad_resize", "fit"):
            pred = build_predictor("cpu", 32, 0)
            pred.stage1["preprocessing"] = {"resample": mode}
            pred.stage1_input(arr)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                x, g = pred.stage1_input(arr)
                times.append(1000.0 * (time.perf_counter() - t0))
            row[mode] = float(np.median(times))
            outs[mode] = (x.numpy()[0], g)
        diff = np.abs(outs["fit"][0] - outs["pad_resize"][0])
        row["mean_abs"] = float(diff.mean())
        row["p99_abs"] = float(np.percentile(diff, 99))
        row["offset_px"] = float(np.abs(outs["fit"][1][:2, 2] - outs["pad_resize"][1][:2, 2]).max())
        rows.append(row)
    return rows


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
    ap.add_argument("--batch-mode", type=int, default=0, metavar="N",
                    help="also time the whole predictor in batch mode, batches of N images (images/s)")
    ap.add_argument("--workers", type=int, default=0, help="reading / pre-processing processes for --batch-mode")
    ap.add_argument("--batch-images", type=int, default=32, help="files per --batch-mode run (default 32)")
    ap.add_argument("--facing", default="auto", help="auto | left | right (lateral: auto runs the networks twice)")
    ap.add_argument("--compare-preprocessing", action="store_true",
                    help="time stage-1 pre-processing at network resolution against the former full-resolution path")
    ap.add_argument("--skip-single", action="store_true", help="skip the per-image (latency) table")
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
    if args.compare_preprocessing:
        print(f"\nstage-1 pre-processing on the CPU ({torch.get_num_threads()} threads), ms per image: the former "
              "full-resolution path (pad, anti-alias filter, resize) against network resolution (resize, pad at 512); "
              "then both: [0, 1], blur, CLAHE at 512")
        print("| image (W x H) | full resolution ms | network resolution ms | speed-up | mean abs diff | "
              "99th pct abs diff | content offset (input px) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in compare_preprocessing(images, args.repeats):
            print(f"| {r['w']}x{r['h']} | {r['pad_resize']:.1f} | {r['fit']:.1f} | {r['pad_resize'] / r['fit']:.1f} | "
                  f"{r['mean_abs']:.4f} | {r['p99_abs']:.4f} | {r['offset_px']:.2f} |")
    for dev in devices:
        name = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
        if args.batch_mode:
            files = [images[i % len(images)] for i in range(args.batch_images)]
            b = run_batch_mode(dev, files, args.batch_mode, args.workers, args.repeats, args.crop_size,
                               args.coordconv, args.facing)
            amp = "AMP float16, channels-last" if dev.startswith("cuda") else "fp32"
            print(f"\n{dev} ({name}), whole predictor in batch mode ({len(files)} files, batches of {args.batch_mode}, "
                  f"{args.workers} workers, facing {args.facing}, {amp})")
            print("| images/s | ms per image | peak RSS MiB | peak CUDA MiB |")
            print("|---:|---:|---:|---:|")
            cuda = f"{b['cuda_mib']:.0f}" if "cuda_mib" in b else "-"
            print(f"| {b['images_per_s']:.2f} | {b['ms_per_image']:.1f} | {b['rss']:.0f} | {cuda} |")
        if args.skip_single:
            continue
        r = run(dev, images, args.repeats, args.crop_size, args.coordconv, facing=args.facing)
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
