"""What one intra-op parallel region costs on this CPU: a few small torch ops (the size of per-sample transform work)
timed with 1 and with ``--threads`` torch threads.

    .venv/bin/python benchmarks/bench_thread_overhead.py [--threads 2] [--repeats 50]

On an idle machine the two columns are close. When the cores are busy with other processes (another training run),
every op that torch splits across threads waits until each of its threads has been scheduled, milliseconds per op
however small the op; single-threaded code (numpy, scipy, torch with one thread, DataLoader workers) does not wait.
Read ``bench_training.py --data-only`` figures at 2 threads next to this table.
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_ms

OPS = {
    "exp, 1024 float64 (a Gaussian target's factors)": (lambda x: torch.exp(x), (1024,), torch.float64),
    "sqrt, 4096 float32 (a PAF window)": (lambda x: torch.sqrt(x), (4096,), torch.float32),
    "x * 2, 65536 float32 (one 256 x 256 crop)": (lambda x: x * 2.0, (65536,), torch.float32),
    "x * 2, 262144 float32 (one 512 x 512 image)": (lambda x: x * 2.0, (262144,), torch.float32),
    "min + max, 262144 float32": (lambda x: (x.min(), x.max()), (262144,), torch.float32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    rows = []
    for name, (fn, shape, dtype) in OPS.items():
        x = torch.rand(shape, dtype=dtype) + 0.5
        row = [name]
        for n in (1, args.threads):
            torch.set_num_threads(n)
            fn(x)
            row.append(median_ms(lambda fn=fn, x=x: fn(x), args.repeats))
        rows.append(row)
    print(f"torch {torch.__version__}; median of {args.repeats} calls, ms\n")
    print(f"| op | 1 thread | {args.threads} threads |")
    print("|---|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} |")


if __name__ == "__main__":
    main()
