"""Smoke tests of the benchmark scripts: they run at their smallest settings and print well-formed tables.

Nothing is timed here (speed is measured by the scripts themselves); the checks are the table's header, its rows and
finite positive numbers.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args, "--threads", "1"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table(out: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table of ``out``: header cells and row cells (separator line dropped)."""
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, out
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert set(lines[1].replace("|", "").replace(":", "")) == {"-"}, out
    return cells[0], cells[2:]


def _two_image_aasce_datalist(tmp_path: Path) -> Path:
    """Write ``tmp_path/datalist.json`` with the first two AASCE images as its validation split; returns the shipped
    AP model's path (skips the test when either is missing)."""
    import json

    import pytest
    from _paths import SHARED

    aasce = SHARED / "data" / "aasce16"
    model = REPO / "bundles" / "lumbar_landmarks" / "models" / "aasce_ap.pt"
    if not (aasce / "labels_training" / "landmarks.csv").is_file() or not model.is_file():
        pytest.skip("AASCE copy or shipped AP model not found")
    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json

    items = []
    for i, (image, ann) in enumerate(read_aasce(aasce, outside="skip")[:2]):
        items.append({"image": str(image), "label": str(write_annotation_json(tmp_path / f"{i}.json", ann))})
    (tmp_path / "datalist.json").write_text(json.dumps({"validation": items}))
    return model


def _positive(text: str) -> float:
    v = float(text.replace(",", ""))
    assert math.isfinite(v) and v > 0, text
    return v


def test_bench_networks_prints_one_row_per_selected_network():
    out = _run("benchmarks/bench_networks.py", "--only", "mnet-lumbar-demo-96", "--batch", "1", "--device", "cpu")
    header, rows = _table(out)
    assert header == ["network", "size", "variant", "input", "parameters", "params (M)", "GFLOPs",
                      "inference MiB (batch 1)", "training step MiB (batch 1)"]
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert (row["network"], row["size"], row["input"]) == ("M-Net lumbar", "demo", "1x96x96")
    params = _positive(row["parameters"])
    assert abs(params / 1e6 - _positive(row["params (M)"])) < 1e-3
    for key in ("GFLOPs", "inference MiB (batch 1)", "training step MiB (batch 1)"):
        _positive(row[key])
    assert "multiply-add = 2 FLOPs" in out and "resident-set growth" in out


def test_bench_training_prints_three_stages(tmp_path):
    out = _run("benchmarks/bench_training.py", "--images", "2", "--batch", "1", "--max-side", "256", "--steps", "1",
               "--data-dir", str(tmp_path), "--device", "cpu")
    header, rows = _table(out)
    assert header == ["stage", "network", "input", "unit", "batch", "samples/epoch", "(a) data /s", "(b) model /s",
                      "(c) loop /s", "bottleneck", "fill s", "(d) data, cached /s", "(e) loop, cached /s", "(b)/(e)",
                      "peak RSS MiB"]
    got = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    assert list(got) == ["stage 1", "stage 2", "one stage"]
    assert got["stage 2"]["unit"] == "crops" and got["stage 2"]["batch"] == "5"  # 5 lumbar crops per image
    assert got["stage 2"]["samples/epoch"] == "10"
    for row in got.values():
        for key in ("(a) data /s", "(b) model /s", "(c) loop /s", "fill s", "(d) data, cached /s",
                    "(e) loop, cached /s", "(b)/(e)", "peak RSS MiB"):
            _positive(row[key])
        data, model = float(row["(a) data /s"]), float(row["(b) model /s"])
        assert row["bottleneck"] == ("data" if data < model else "model")


def test_plot_systems_draws_and_tabulates_per_vertebra_rd(tmp_path):
    header = "image,centre_outlier,mean_RD,RD_L1,RD_L2,D_L1,D_L2,centre_err_L1,centre_err_L2\n"
    for name, rd in (("a", (5.0, 7.0)), ("b", (50.0, 70.0))):
        (tmp_path / name / "eval").mkdir(parents=True)
        rows = "".join(f"img{i}.png,{i % 2},{(rd[0] + rd[1]) / 2 + i},{rd[0] + i},{rd[1] + i},2.0,4.0,1.0,1.0\n"
                       for i in range(3))
        (tmp_path / name / "eval" / "per_case.csv").write_text(header + rows)
    out = tmp_path / "plot.png"
    proc = subprocess.run([sys.executable, "benchmarks/plot_systems.py", "--run", f"A={tmp_path / 'a'}",
                           "--run", f"B={tmp_path / 'b'}", "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary, per_vertebra = proc.stdout.split("Per vertebra", 1)
    head, rows = _table(summary)
    assert head[1] == "centre detection accuracy (%)"
    assert rows[0][:5] == ["A", "66.7", "1.00", "7.00", "7.00"]  # inliers img0, img2: per-image RD 6 and 8
    head, rows = _table(per_vertebra)
    assert head[:4] == ["vertebra", "system", "centre error (input px)", "D (px)"]
    by = {(r[0], r[1]): r for r in rows}
    assert by["L1", "A"][4] == "6.00 (0.82)" and by["L2", "B"][4] == "71.00 (0.82)"
    assert by["L1", "A"][5] == "6.0"  # median
    assert by["L1", "A"][6] == "0.0" and by["L1", "B"][6] == "100.0"  # RD > 20 % is a landmark outlier
    assert by["Total", "A"][3] == "3.00 (1.00)" and by["Total", "B"][7] == "33.3"  # one of 3 images an outlier
    assert out.stat().st_size > 1000


def test_overlay_montage_stacks_one_row_per_system(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i, size in enumerate(((40, 80), (60, 80))):
            Image.new("RGB", size, (255, 0, 0)).save(tmp_path / name / f"h{i}_overlay.png")
    out = tmp_path / "m.png"
    proc = subprocess.run([sys.executable, "benchmarks/overlay_montage.py", "--row", f"A={tmp_path / 'a'}",
                           "--row", f"B={tmp_path / 'b'}", "--out", str(out), "--height", "40"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = Image.open(out)
    assert img.size == (20 + 8 + 30, 2 * (40 + 22 + 8))
    (tmp_path / "b" / "h1_overlay.png").unlink()
    proc = subprocess.run([sys.executable, "benchmarks/overlay_montage.py", "--row", f"A={tmp_path / 'a'}",
                           "--row", f"B={tmp_path / 'b'}", "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "different numbers" in proc.stderr


def test_bench_predictor_reads_dicom_files_and_times_batches():
    out = _run("benchmarks/bench_predictor.py", "--images", "1", "--repeats", "1", "--max-side", "300",
               "--crop-size", "64", "--devices", "cpu", "--batched", "1", "--baseline")
    assert "DICOM DX files" in out
    read_ms = float(next(ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("read ")))
    assert read_ms > 0
    assert "one-stage BasicUNet baseline" in out
    head, rows = _table(out)
    assert head[0] == "precision" and [r[0] for r in rows] == ["fp32", "AMP"]
    assert all(math.isfinite(float(x)) and float(x) > 0 for r in rows for x in r[1:])


def test_crop_coverage_counts_fewer_misses_with_wider_crops(tmp_path):
    from lumbar_monai.workflows.data import prepare_datalist

    datalist = prepare_datalist(None, tmp_path, 8, 0, 256)
    proc = subprocess.run([sys.executable, "benchmarks/crop_coverage.py", datalist, "--scales", "0.5,1.0,3.0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    head, rows = _table(proc.stdout.split("test split")[0])  # the training split's table
    assert head == ["crop scale", "crop aspect", "spacing", "images with a corner outside its crop (%)"]
    assert {(r[1], r[2]) for r in rows} == {("1.00", "vertical")}  # the lateral layout's square, paper's spacing
    misses = [float(r[3]) for r in rows]
    assert misses[0] == 100.0 and misses[-1] == 0.0 and misses == sorted(misses, reverse=True)
    # neighbouring centres of a synthetic spine at a 512 px input: a few tens of pixels apart, never zero
    gap = re.search(r"neighbouring centres, px of the 512 px stage-1 input \(mean per image\): mean ([\d.]+), "
                    r"min ([\d.]+), max ([\d.]+)", proc.stdout)
    assert gap and 20.0 < float(gap[2]) <= float(gap[1]) <= float(gap[3]) < 120.0


def test_crop_coverage_rows_per_aspect_and_spacing(tmp_path):
    """Wider crops (aspect) never miss more corners than narrower ones at the same scale and spacing rule."""
    from lumbar_monai.workflows.data import prepare_datalist

    datalist = prepare_datalist(None, tmp_path, 8, 0, 256)
    proc = subprocess.run([sys.executable, "benchmarks/crop_coverage.py", datalist, "--scales", "0.8",
                           "--aspects", "1.0,2.0", "--spacings", "vertical,euclidean", "--splits", "training"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, rows = _table(proc.stdout)
    by = {(r[1], r[2]): float(r[3]) for r in rows}
    assert set(by) == {(a, s) for a in ("1.00", "2.00") for s in ("vertical", "euclidean")}
    for s in ("vertical", "euclidean"):  # at 0.8x Eq. 5 the square cuts the lateral vertebrae's depth off
        assert by["2.00", s] < by["1.00", s]
    # the distance between centres is never shorter than its vertical part, so the euclidean crops are no smaller
    for a in ("1.00", "2.00"):
        assert by[a, "euclidean"] <= by[a, "vertical"]


def test_baseline_head_init_starts_the_zero_head_at_the_all_zero_loss():
    proc = subprocess.run([sys.executable, "benchmarks/baseline_head_init.py", "--size", "32", "--images", "2",
                           "--steps", "2", "--report", "1", "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    zero_loss = float(re.search(r"loss of all-zero maps ([\d.]+)", proc.stdout)[1])
    head, rows = _table(proc.stdout)
    assert head == ["output layer", "step", "loss", "median peak error (px)", "peaks within 3 px (%)"]
    assert [(r[0], r[1]) for r in rows] == [(init, str(s)) for init in ("MONAI default init", "zero init")
                                            for s in (0, 1, 2)]
    by = {(r[0], r[1]): r for r in rows}
    assert float(by["zero init", "0"][2]) == zero_loss  # the zero head predicts all-zero maps
    assert float(by["MONAI default init", "0"][2]) != zero_loss


def test_stage1_failures_compares_model_framing_with_the_ground_truth_window(tmp_path):
    model = _two_image_aasce_datalist(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/stage1_failures.py", "--model", str(model), "--datalist",
                           str(tmp_path / "datalist.json"), "--split", "validation", "--out", str(tmp_path / "f.csv"),
                           "--crop-below", "1.2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.split("\n\n")
    header, rows = _table(first)
    assert header[0] == "stage-1 framing" and [r[0] for r in rows] == [
        "model framing", "ground-truth window", "image cut 1.2 spacings below the labelled L5"]
    for r in rows:
        n, detection, counts = int(r[1]), float(r[2]), [int(c) for c in r[3:]]
        assert n == 2 and 0.0 <= detection <= 100.0
        assert sum(counts) == round(n * (1 - detection / 100))  # every outlier in exactly one class
    text = (tmp_path / "f.csv").read_text()
    assert "sunhl" not in text and len(text.splitlines()) == 7  # header + 2 images x 3 framings, no file names
    # the outcomes split by the space below the labelled L5: every image in one band, both runs counted
    header, bands = _table(second)
    assert header[0].startswith("space below") and sum(int(b[1]) for b in bands) == 2
    for b in bands:
        assert all(sum(int(c) for c in cell.split(" / ")) == int(b[1]) for cell in b[2:])
    sys.path.insert(0, str(REPO / "benchmarks"))
    from stage1_failures import classify

    assert [classify(False, 2.0), classify(True, 0.8), classify(True, -0.6), classify(True, 0.3)] == [
        "ok", "caudal shift", "cranial shift", "partial"]


def test_acquisition_shift_views_move_the_labels_with_the_image():
    """Each view of benchmarks/acquisition_shift.py keeps every label on the pixel it marked: a bright square under
    each landmark of a synthetic tall image is still under the moved landmark."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from acquisition_shift import views

    from lumbar_monai.anatomy import get_layout

    layout = get_layout("ap")
    rng = np.random.default_rng(0)
    h, w = 300, 100  # height/width 3: both field views change it
    pts = np.stack([rng.uniform(20, w - 20, 20), np.sort(rng.uniform(150, h - 20, 20))], axis=1)
    img = np.zeros((h, w), dtype=np.float32)
    for i, (x, y) in enumerate(pts):
        img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 1.0 + i  # one value per point
    for name, view in views(2.3).items():
        out, moved = view(img, pts, layout)
        assert moved.shape == pts.shape, name
        # the view's own input is never changed in place
        assert img.max() == 20.0, name
        for i, (x, y) in enumerate(moved):
            patch = out[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2]
            if name.startswith("gamma"):
                assert patch.max() > 0.0 and np.isclose(patch.max(), out[img == 1.0 + i].max()), name
            else:
                assert patch.max() > 0.25 * (1.0 + i) and patch.max() <= 1.0 + i + 1e-5, (name, i, patch.max())
    wide, _ = views(2.3)["wider field"](img, pts, layout)
    short, _ = views(2.3)["shorter field"](img, pts, layout)
    assert wide.shape == (300, 130) and short.shape[1] == 100 and short.shape[0] < 300
    assert short.shape[0] > int(np.floor(pts[:, 1].max())) - int(np.floor(pts[:, 1].min()))  # every label kept
    film, fpts = views(2.3, lumbar_half_height=1.5)["lumbar film"](img, pts, layout)
    centres = layout.centres(pts)
    spacing = float(np.median(np.linalg.norm(np.diff(centres, axis=0), axis=1)))
    assert abs(film.shape[0] - 3.0 * spacing) <= 2 and film.shape[0] < 300  # 1.5 spacings each side of L3
    assert abs(film.shape[1] - min(round(3.0 * spacing * 35 / 43), 100)) <= 1
    np.testing.assert_allclose(layout.centres(fpts)[2], centres[2] - (pts - fpts)[0])  # L3 moved with the image
    assert 0 <= layout.centres(fpts)[2][1] - film.shape[0] / 2 + 0.5 <= 1.0  # ... to the middle row
    mir, mpts = views(2.3)["mirrored"](img, pts, layout)
    np.testing.assert_allclose(mpts[:, 0], w - 1 - pts[:, 0])  # rows (anatomical names) kept
    np.testing.assert_allclose(mir, img[:, ::-1])


def test_acquisition_shift_prints_one_row_per_view(tmp_path):
    model = _two_image_aasce_datalist(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/acquisition_shift.py", "--model", str(model), "--datalist",
                           str(tmp_path / "datalist.json"), "--split", "validation", "--views", "mirrored",
                           "wider field"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sunhl" not in proc.stdout
    header, rows = _table(proc.stdout)
    assert header[0] == "view" and [r[0] for r in rows] == ["as delivered", "mirrored", "wider field"]
    for r in rows:
        assert int(r[1]) == 2 and 0.0 <= float(r[2]) <= 100.0 and float(r[4]) > 0.0
    bad = subprocess.run([sys.executable, "benchmarks/acquisition_shift.py", "--model", str(model), "--datalist",
                          str(tmp_path / "datalist.json"), "--views", "sideways"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown views ['sideways']" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_model_size_counts_the_counter_at_its_letterbox():
    """The counter row uses the shipped counter's letterbox; a finer one costs more FLOPs, the same parameters."""
    rows = {}
    for size in ("384,160", "512,208"):
        proc = subprocess.run([sys.executable, "benchmarks/model_size_ap.py", "--counter-size", size], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        line = next(r for r in proc.stdout.splitlines() if "vertebra counter" in r)
        assert f"({size.replace(',', ' x ')})" in line
        rows[size] = [c.strip() for c in line.strip("|").split("|")]
    assert rows["384,160"][3] == rows["512,208"][3] == "0.49 M"
    assert float(rows["512,208"][-1]) > float(rows["384,160"][-1])


def test_rd_components_rows_split_rd_into_its_parts():
    """benchmarks/rd_components.py's rows: per vertebra, per corner kind, and the paper's Total."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from rd_components import component_rows

    from lumbar_monai.anatomy import AP

    rx = np.full((3, AP.num_points), 2.0)
    ry = np.full((3, AP.num_points), -3.0)
    rx[:, :4] = 6.0  # L1's corners only
    rx[0, 19] = 40.0  # one L5 corner of one image past the 30 % tail
    rows = {r[0]: r[1:] for r in component_rows(rx, ry, AP)}
    assert list(rows)[:5] == ["L1", "L2", "L3", "L4", "L5"] and "superior_right (all vertebrae)" in rows
    assert rows["L1"] == ["12", "6.00", "-3.00", "6.00", "3.00", f"{np.hypot(6, 3):.2f}", "0.0"]
    assert rows["L2"] == ["12", "2.00", "-3.00", "2.00", "3.00", f"{np.hypot(2, 3):.2f}", "0.0"]
    assert rows["L5"][-1] == f"{100 / 12:.1f}" and rows["inferior_left (all vertebrae)"][-1] == f"{100 / 15:.1f}"
    assert rows["L4"][:2] == ["12", "2.00"]
    assert rows["Total"][-1] == f"{100 / 60:.1f}"  # of all values
    rd_l5 = (np.hypot(40, 3) + 11 * np.hypot(2, 3)) / 12
    # each mean column of Total is the mean of the per-vertebra means (the paper's Total)
    assert rows["Total"][-2] == f"{(np.hypot(6, 3) + 3 * np.hypot(2, 3) + rd_l5) / 5:.2f}"
    assert rows["Total"][1] == f"{(6 + 3 * 2 + (40 + 11 * 2) / 12) / 5:.2f}"


def test_rd_components_prints_its_table(tmp_path, monkeypatch, capsys):
    """The script end to end on two real images (in this process: the table, no file names)."""
    model = _two_image_aasce_datalist(tmp_path)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import rd_components

    monkeypatch.setattr(sys, "argv", ["rd_components.py", "--model", str(model), "--datalist",
                                      str(tmp_path / "datalist.json"), "--split", "validation"])
    rd_components.main()
    out = capsys.readouterr().out
    assert "sunhl" not in out and "2 of 2 images with all centres detected" in out
    header, rows = _table(out)
    assert header[0] == "landmarks" and [r[0] for r in rows][:5] == ["L1", "L2", "L3", "L4", "L5"]
    assert rows[-1][0] == "Total" and int(rows[-1][1]) == 2 * 20
    for r in rows:
        for value in r[4:7]:  # mean |r_x|, mean |r_y|, mean RD
            _positive(value)
        assert 0.0 <= float(r[7]) <= 100.0
