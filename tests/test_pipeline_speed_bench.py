"""bench_training.py --data-only (column (a) alone) and bench_thread_overhead.py print well-formed tables (nothing
timed here)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, out
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return cells[0], cells[2:]


def test_bench_training_data_only(tmp_path):
    out = _run("benchmarks/bench_training.py", "--images", "2", "--batch", "2", "--max-side", "256", "--threads", "1",
               "--data-dir", str(tmp_path), "--stages", "posenet,mnet", "--data-only")
    header, rows = _rows(out)
    assert header == ["stage", "network", "input", "unit", "batch", "samples/epoch", "(a) data /s", "ms per sample",
                      "CPU ms per sample", "peak RSS MiB"]
    got = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert list(got) == ["stage 1", "stage 2"]
    assert got["stage 1"]["samples/epoch"] == "2" and got["stage 1"]["batch"] == "2"
    assert got["stage 2"]["samples/epoch"] == "10" and got["stage 2"]["batch"] == "10"  # 5 lumbar crops per image
    for row in got.values():
        rate, ms = float(row["(a) data /s"]), float(row["ms per sample"])
        assert math.isfinite(rate) and rate > 0 and abs(ms - 1000.0 / rate) < 0.1 + 0.01 * ms
        assert float(row["CPU ms per sample"]) > 0
    assert "(b) model" not in out  # no network built


def test_bench_thread_overhead_table():
    out = _run("benchmarks/bench_thread_overhead.py", "--threads", "2", "--repeats", "3")
    header, rows = _rows(out)
    assert header == ["op", "1 thread", "2 threads"] and len(rows) == 5
    assert all(float(v) > 0 for r in rows for v in r[1:])
