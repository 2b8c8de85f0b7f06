"""Re-run one of the paper's ablation tables: train + evaluate the bundle once per variant, then one table.

``python -m lumbar_monai.workflows.ablation TABLE --out DIR [--schedule FILE] [--override KEY VALUE ...]``

TABLE is one of :data:`TABLES` (the paper's Tables 2-7 and 10-11). Every variant trains on the same data: the
embedded synthetic set is generated once into ``DIR/data`` (or ``--dataset-dir`` points at real data), and each
variant's run lives in ``DIR/<variant>`` (so an interrupted table resumes where it stopped, as ``training`` does).
The collected table is ``DIR/<table>.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from ..io.atomic import atomic_write_text

__all__ = ["TABLES", "run_table"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
ABLATIONS = REPO / "configs" / "ablations"

#: table name -> (paper table, variants as (label, override file names under configs/ablations))
TABLES: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "kernel": ("Table 2", [("Pose-Net 7x7", ["posenet_kernel7"]), ("Pose-Net 13x13", ["posenet_kernel13"])]),
    "rsc_ratio": ("Table 3", [(f"RSC {r}", [f"rsc_{r.replace('.', '')}"]) for r in ("1.0", "0.8", "0.6", "0.4")]),
    "cutout": ("Table 4", [("no cutout", ["cutout_none"]), ("conventional cutout", ["cutout_conventional"]),
                           ("RSC 0.6", ["rsc_06"])]),
    "coordconv": ("Table 5", [(f"CC({n})", [f"coordconv_{n}"]) for n in (0, 1, 2)]),
    "paf_width": ("Table 6", [(f"PAF width {w}", [f"paf_width{w}"]) for w in (2, 4, 6)]),
    "coordconv_paf": ("Table 7", [("w/o CC, w/o PAF", ["coordconv_0", "paf_none"]),
                                  ("CC(2), w/o PAF", ["coordconv_2", "paf_none"]),
                                  ("w/o CC, PAF 4", ["coordconv_0", "paf_width4"]),
                                  ("CC(2), PAF 4", ["coordconv_2", "paf_width4"])]),
    "kim": ("Tables 10-11", [("Kim et al. adapted", ["kim_baseline"]), ("ours", [])]),
}


def _bundle(run_id: str, configs: list[Path], overrides: list[str]) -> None:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files, *overrides]
    logger.info("running: %s", " ".join(cmd))
    subprocess.run(cmd, cwd=BUNDLE, check=True)


def run_table(table: str, out: Path, schedule: Path | None = None, dataset_dir: str | None = None,
              extra: list[str] | None = None) -> Path:
    """Train and evaluate every variant of ``table``; return the path of the collected Markdown table."""
    paper_table, variants = TABLES[table]
    out = out.resolve()
    extra = list(extra or [])
    base = [BUNDLE / "configs" / "train.json"] + ([schedule.resolve()] if schedule else [])
    if not dataset_dir:
        # one synthetic set for all variants: prepare it once with the schedule's synthetic settings
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([str(p) for p in base])
        for k, v in zip(extra[::2], extra[1::2], strict=True):
            parser[k.lstrip("-")] = json.loads(v) if v[:1] in "[{0123456789-" or v in ("true", "false", "null") else v
        from .data import prepare_datalist

        dataset_dir = prepare_datalist(None, out / "data", parser["synthetic"]["n"], parser["synthetic"]["seed"],
                                       parser["synthetic"]["max_side"])
    rows = []
    for label, names in variants:
        run_dir = out / ("_".join(names) or "default")
        configs = base + [ABLATIONS / f"{n}.json" for n in names]
        common = ["--output_dir", str(run_dir), "--dataset_dir", str(dataset_dir), *extra]
        _bundle("training", configs, common)
        _bundle("evaluate", [BUNDLE / "configs" / "evaluate.json", *configs[1:]], common)
        summary = json.loads((run_dir / "eval" / "summary.json").read_text())
        rows.append((label, summary))
    cols = ["variant", "centre error all (px)", "centre detection accuracy (%)", "landmark D (px)",
            "landmark RD (%)", "n test images"]

    def fmt(v, d=2):
        return "n/a" if v is None else f"{v:.{d}f}"

    body = [[label, fmt(s["centre_error_all_px"]), fmt(s["centre_detection_accuracy_pct"]), fmt(s["landmark_d_px"]),
             fmt(s["landmark_rd_pct"]), str(s["n_cases"])] for label, s in rows]
    md = [f"### {paper_table} re-run: {table}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in body]
    md += ["", f"Schedule: {schedule.name if schedule else 'bundle default (small CPU demonstration)'}; "
           f"data: {dataset_dir}. Per-vertebra tables: <variant>/eval/*.md.", ""]
    path = out / f"{table}.md"
    atomic_write_text(path, "\n".join(md))
    atomic_write_text(out / f"{table}.csv", "\n".join(",".join(r) for r in [cols, *body]) + "\n")
    print("\n".join(md))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.workflows.ablation", description=__doc__.splitlines()[0])
    p.add_argument("table", choices=sorted(TABLES))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--schedule", type=Path, default=None, help="e.g. configs/schedules/paper.json")
    p.add_argument("--dataset-dir", default=None, help="real data (see configs/datasets); default: synthetic")
    p.add_argument("--override", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra bundle override, e.g. --override posenet#max_epochs 2")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    extra = [x for k, v in args.override for x in (f"--{k}", v)]
    run_table(args.table, args.out, args.schedule, args.dataset_dir, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
