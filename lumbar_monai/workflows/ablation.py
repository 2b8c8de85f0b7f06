"""Re-run one of the paper's ablation tables: train + evaluate the bundle once per variant, then one table.

``python -m lumbar_monai.workflows.ablation TABLE --out DIR [--schedule FILE] [--dataset-config FILE]
[--override KEY VALUE ...]``

TABLE is one of :data:`TABLES` (the paper's Tables 2-7 and 10-11, and ``systems``: the full method, the Kim-like
ablation and the one-stage MONAI BasicUNet baseline). Every variant trains on the same data: the embedded synthetic
set is generated once into ``DIR/data`` (or ``--dataset-config`` names a file of ``configs/datasets``), and each
variant's run lives in ``DIR/<variant>`` (so an interrupted table resumes where it stopped, as ``training`` does).
The collected table is ``DIR/<table>.md`` and ``.csv``.

Stage reuse: a variant whose overrides touch only stage 1 (``posenet#...``) takes the M-Nets of the reference run
(the method with no override, trained first) instead of training identical ones again, and a variant that touches
only the M-Nets takes its Pose-Net; the table says which stages each row trained and how long they took. A variant
whose override files set only values the reference configuration already has (Table 2's 13x13 kernel is the bundle
default) is the reference run: it is neither trained nor evaluated again. A run evaluated after its last checkpoint
(by an earlier table with the same ``--out``) is kept as it is; delete its ``eval`` folder to evaluate it again.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from ..io.atomic import atomic_write_text

__all__ = ["TABLES", "run_table", "same_as_reference", "stages_touched"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
CONFIGS = REPO / "configs"
ABLATIONS = CONFIGS / "ablations"
STAGE1 = ("posenet",)
STAGE2 = ("mnet_lumbar", "mnet_sacrum")

#: table name -> (paper table, variants as (label, override files: a bare name is under configs/ablations, a name
#: with a "/" is relative to configs/))
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
    "systems": ("Issue 9: three systems", [("full method (ours)", []), ("Kim-like ablation", ["kim_baseline"]),
                                           ("one-stage BasicUNet", ["baselines/one_stage_basicunet"])]),
}


def override_file(name: str) -> Path:
    """``configs/ablations/<name>.json``, or ``configs/<name>.json`` when ``name`` has a folder."""
    return (CONFIGS / f"{name}.json") if "/" in name else (ABLATIONS / f"{name}.json")


def stages_touched(files: list[Path]) -> set[str]:
    """Which trained stages the override files change: ``{"stage1"}``, ``{"stage2"}``, both, or ``{"all"}`` when a
    key is neither a Pose-Net nor an M-Net key (another network, another ``training`` list)."""
    touched: set[str] = set()
    for f in files:
        for key in json.loads(f.read_text()):
            head = key.lstrip("+").split("#")[0]
            touched.add("stage1" if head in STAGE1 else "stage2" if head in STAGE2 else "all")
    return touched


def _reuse_stages(reference: Path, run_dir: Path, stages: tuple[str, ...]) -> None:
    """Copy finished stages (done marker + best/latest checkpoints) from the reference run's models folder."""
    src, dst = reference / "models", run_dir / "models"
    dst.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        if not (src / f"{stage}.done.json").is_file() or (dst / f"{stage}.done.json").is_file():
            continue
        for f in src.glob(f"{stage}_*.pt"):
            shutil.copy2(f, dst / f.name)
        marker = json.loads((src / f"{stage}.done.json").read_text())
        marker["reused_from"] = str(reference)
        atomic_write_text(dst / f"{stage}.done.json", json.dumps(marker))


def _training_record(run_dir: Path) -> tuple[str, float]:
    """(stages trained in this run, their wall seconds) from the done markers; reused stages are not counted."""
    trained, seconds = [], 0.0
    for marker in sorted((run_dir / "models").glob("*.done.json")):
        m = json.loads(marker.read_text())
        if "reused_from" not in m:
            trained.append(m["stage"])
            seconds += float(m.get("wall_seconds", float("nan")))
    return "+".join(trained), seconds


def cli_value(text: str):
    """A ``--key value`` override's value as the bundle's command line reads it: JSON for numbers, lists, dicts and
    booleans, the bare string otherwise."""
    return json.loads(text) if text[:1] in "[{0123456789-" or text in ("true", "false") else text


def _read(configs: list[Path]):
    """``configs`` read in order into one MONAI ``ConfigParser`` (nothing resolved)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    return parser


def _applicable_to(parser, extra: list[str]) -> list[str]:
    """The ``--key value`` overrides whose parent section exists in ``parser``'s configuration (``one_stage#...`` only
    reaches the variant that has the one-stage baseline)."""
    kept = []
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        key = k.lstrip("-")
        if "#" not in key or key.rsplit("#", 1)[0] in parser:
            kept += [k, v]
    return kept


def _parsed(configs: list[Path], extra: list[str]):
    """The configuration the bundle runs: ``configs`` read in order, then the applicable command-line overrides."""
    parser = _read(configs)
    kept = _applicable_to(parser, extra)
    for k, v in zip(kept[::2], kept[1::2], strict=True):
        parser[k.lstrip("-")] = cli_value(v)
    return parser


def same_as_reference(base: list[Path], files: list[Path], extra: list[str]) -> bool:
    """Whether the override ``files`` change nothing the reference run (``base`` and ``extra``, no file) trains with:
    every key they set holds the same raw value in both configurations, command-line overrides applied last as the
    bundle applies them. A merge key (``+name``) counts as a change."""
    if not files:
        return True
    keys = [key for f in files for key in json.loads(f.read_text())]
    if any(key.startswith("+") for key in keys):
        return False
    reference, variant = _parsed(base, extra), _parsed(base + files, extra)
    return all(key in reference and reference[key] == variant[key] for key in keys)


def _applicable(extra: list[str], configs: list[Path]) -> list[str]:
    """:func:`_applicable_to` the configuration of ``configs``."""
    return _applicable_to(_read(configs), extra)


#: which per-vertebra table each paper table shows: centres (Tables 2-4) or landmarks (Tables 5-7); both otherwise
PER_VERTEBRA = {"kernel": ("centre",), "rsc_ratio": ("centre",), "cutout": ("centre",),
                "coordconv": ("landmark",), "paf_width": ("landmark",), "coordconv_paf": ("landmark",)}


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def per_vertebra_table(table: str, runs: list[tuple[str, Path]]) -> list[str]:
    """Markdown lines in the layout of the paper's Tables 2-7: one row per vertebra, one column group per variant
    (centre error Inlier / All in stage-1 input pixels; landmark D px / RD % on the centre inliers)."""
    kinds = {"centre": ("centre_error", ("inlier_px", "all_px"), "Centre error (px of the stage-1 input), mean (sd)"),
             "landmark": ("landmark_error", ("D_px", "RD_pct"), "Landmark error on centre inliers, mean (sd)")}
    lines: list[str] = []
    for kind in PER_VERTEBRA.get(table, ("centre", "landmark")):
        name, cols, title = kinds[kind]
        data = [(label, {r["vertebra"]: r for r in _read_rows(run / "eval" / f"{name}.csv")}) for label, run in runs]
        vertebrae = list(data[0][1])
        head = ["vertebra"] + [f"{label}: {c}" for label, _ in data for c in cols]
        lines += [f"#### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([v] + [rows.get(v, {}).get(c, "n/a") for _, rows in data for c in cols]) + " |"
                  for v in vertebrae]
        lines.append("")
    return lines


def run_dir_for(out: Path, names: list[str]) -> Path:
    """The folder of the variant made of the override files ``names`` (``default``: the reference, no override)."""
    return out / ("_".join(n.replace("/", "-") for n in names) or "default")


def _finished(run_dir: Path) -> bool:
    """Whether the run was evaluated after its last checkpoint was written (an earlier table in the same folder)."""
    summary = run_dir / "eval" / "summary.json"
    models = list((run_dir / "models").glob("*")) if (run_dir / "models").is_dir() else []
    return summary.is_file() and bool(models) and all(m.stat().st_mtime <= summary.stat().st_mtime for m in models)


def _bundle(run_id: str, configs: list[Path], overrides: list[str]) -> None:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files, *overrides]
    logger.info("running: %s", " ".join(cmd))
    subprocess.run(cmd, cwd=BUNDLE, check=True)


def run_table(table: str, out: Path, schedule: Path | None = None, dataset_config: Path | None = None,
              extra: list[str] | None = None, reuse: bool = True) -> Path:
    """Train and evaluate every variant of ``table``; return the path of the collected Markdown table."""
    paper_table, variants = TABLES[table]
    out = out.resolve()
    extra = list(extra or [])
    data_cfg = [dataset_config.resolve()] if dataset_config else []
    base = [BUNDLE / "configs" / "train.json", *data_cfg] + ([schedule.resolve()] if schedule else [])
    common_data: list[str] = []
    if not dataset_config:
        # one synthetic set for all variants: prepare it once with the schedule's synthetic settings
        parser = _parsed(base, extra)
        from .data import prepare_datalist

        dataset_dir = prepare_datalist(None, out / "data", parser["synthetic"]["n"], parser["synthetic"]["seed"],
                                       parser["synthetic"]["max_side"])
        common_data = ["--dataset_dir", str(dataset_dir)]
    reference = out / "default"
    # a row whose overrides change nothing is the reference run (trained once, first); without reuse every row trains
    is_reference = {label: not names or (reuse and same_as_reference(base, [override_file(n) for n in names], extra))
                    for label, names in variants}
    run_dirs = {label: reference if is_reference[label] else run_dir_for(out, names) for label, names in variants}
    order = sorted(variants, key=lambda v: not is_reference[v[0]])  # the reference first, when it is a row
    if reuse and not any(is_reference.values()):
        order = [("reference", []), *variants]
        run_dirs["reference"] = reference
    rows, evaluated = {}, {}
    for label, names in order:
        run_dir = run_dirs[label]
        if run_dir in evaluated:  # a second row that is the reference run
            rows[label] = rows[evaluated[run_dir]]
            continue
        evaluated[run_dir] = label
        files = [] if run_dir == reference else [override_file(n) for n in names]
        touched = stages_touched(files)
        if reuse and files and touched == {"stage1"}:
            _reuse_stages(reference, run_dir, STAGE2)
        elif reuse and files and touched == {"stage2"}:
            _reuse_stages(reference, run_dir, STAGE1)
        common = ["--output_dir", str(run_dir), *common_data]
        if not _finished(run_dir):
            _bundle("training", base + files, common + _applicable(extra, base + files))
            _bundle("evaluate", [BUNDLE / "configs" / "evaluate.json", *data_cfg], common)
        else:
            logger.info("%s: trained and evaluated before, kept", run_dir)
        summary = json.loads((run_dir / "eval" / "summary.json").read_text())
        rows[label] = (summary, *_training_record(run_dir))
    cols = ["variant", "centre error all (px)", "centre detection accuracy (%)", "landmark D Total (px)",
            "landmark RD Total (%)", "landmark RD, mean of landmarks (%)", "landmark RD all cases, Total (%)",
            "n test images", "trained here", "training wall (min)"]

    def fmt(v, d=2):
        return "n/a" if v is None else f"{v:.{d}f}"

    # "Total" as the paper's tables: the mean of the per-vertebra means (summary.json of runs evaluated before it
    # existed: n/a); the mean over the landmarks beside it
    body = [[label, fmt(s["centre_error_all_px"]), fmt(s["centre_detection_accuracy_pct"]),
             fmt(s.get("landmark_d_total_px")), fmt(s.get("landmark_rd_total_pct")), fmt(s["landmark_rd_pct"]),
             fmt(s.get("landmark_rd_all_total_pct")), str(s["n_cases"]), stages or "-", fmt(sec / 60.0, 1)]
            for label, _ in variants for s, stages, sec in [rows[label]]]
    where = dataset_config.name if dataset_config else f"synthetic lateral set in {out / 'data'}"
    md = [f"### {paper_table} re-run: {table}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(r) + " |" for r in body]
    md += ["", *per_vertebra_table(table, [(label, run_dirs[label]) for label, _ in variants])]
    md += ["", f"Schedule: {schedule.name if schedule else 'bundle default (small CPU demonstration)'}"
           f"{' with ' + ' '.join(extra) if extra else ''}; data: {where}. Centre error in pixels of the stage-1 "
           "input; D and RD on the images without centre outliers, 'RD all cases' on every test image; 'Total' is the "
           "mean of the per-vertebra means, as in the paper. Per-vertebra "
           "tables: <variant>/eval/*.md.", ""]
    same = [label for label, names in variants if names and is_reference[label]]
    if same:
        md[-1:] = [f"Rows that are the reference run (their overrides equal its configuration): {'; '.join(same)}.", ""]
    path = out / f"{table}.md"
    atomic_write_text(path, "\n".join(md))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([cols, *body])  # labels such as "CC(2), w/o PAF" hold commas
    atomic_write_text(out / f"{table}.csv", buf.getvalue())
    print("\n".join(md))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.workflows.ablation", description=__doc__.splitlines()[0])
    p.add_argument("table", choices=sorted(TABLES))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--schedule", type=Path, default=None, help="e.g. configs/schedules/paper.json")
    p.add_argument("--dataset-config", type=Path, default=None,
                   help="a file of configs/datasets (real data and its layout); default: the embedded synthetic set")
    p.add_argument("--no-reuse", action="store_true", help="train every stage of every variant")
    p.add_argument("--override", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra bundle override, e.g. --override posenet#max_epochs 2")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    extra = [x for k, v in args.override for x in (f"--{k}", v)]
    run_table(args.table, args.out, args.schedule, args.dataset_config, extra, reuse=not args.no_reuse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
