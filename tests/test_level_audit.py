"""The level audit (issue 15): training images whose labelled L1-L5 both trained readers place a whole vertebra off
are left out of a copied datalist; nothing else changes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lumbar_monai.training.level_audit import level_flag, write_audited_datalist

sys.path.insert(0, str(Path(__file__).parent))
from _paths import REPO  # noqa: E402


@pytest.mark.parametrize("window, count, flagged", [
    (1.0, 0.9, True), (-1.1, -0.8, True),  # both readers a level off, the same way
    (1.0, -1.0, False),  # off in opposite directions: no agreement
    (0.2, 1.0, False), (1.0, 0.4, False),  # one reader agrees with the label
    (1.0, float("nan"), False),  # a refused count never flags
])
def test_level_flag_needs_both_readers_on_one_side(window, count, flagged):
    assert level_flag(window, count) is flagged


def test_audited_datalist_drops_only_flagged_training_items_and_keeps_paths_valid(tmp_path):
    src_dir, out_dir = tmp_path / "a", tmp_path / "b" / "c"
    (src_dir / "img").mkdir(parents=True)
    items = []
    for i in range(4):
        (src_dir / "img" / f"{i}.png").write_bytes(b"x")
        items.append({"image": f"img/{i}.png", "label": f"img/{i}.json", "case": str(i)})
    absolute = {"image": str(src_dir / "img" / "0.png"), "label": "img/0.json"}
    src = src_dir / "datalist.json"
    src.write_text(json.dumps({"description": "d", "training": items, "validation": items[:2] + [absolute],
                               "test": items[2:]}))
    out = write_audited_datalist(src, out_dir / "audited.json", flagged=[1, 3])
    raw = json.loads(out.read_text())
    assert [it["case"] for it in raw["training"]] == ["0", "2"]
    assert len(raw["validation"]) == 3 and len(raw["test"]) == 2  # only the audited split loses items
    assert raw["description"] == "d" and "2 training item(s) left out" in raw["level_audit"]
    for it in raw["training"] + raw["validation"] + raw["test"]:
        assert (out_dir / it["image"]).resolve().is_file()  # relative to the new file's folder
    assert raw["validation"][2]["image"] == absolute["image"]  # absolute paths stay as they were
    assert not list(out_dir.glob("*.tmp"))


def test_audit_cli_on_the_shipped_model(tmp_path):
    """The command audits real AASCE images with the shipped model's two readers and writes the datalist and a
    report without file names; a model without a counter is a one-line error."""
    from test_gpu_kit import SHIPPED, _mini_aasce

    from lumbar_monai.io.aasce import read_aasce
    from lumbar_monai.io.annotations import write_annotation_json

    if not SHIPPED.is_file():
        pytest.skip("shipped AP model not found")
    root = _mini_aasce(tmp_path, [0, 1])
    pairs = read_aasce(root, outside="skip")
    items = [{"image": str(p), "label": str(write_annotation_json(tmp_path / "labels" / f"{i}.json", a))}
             for i, (p, a) in enumerate(pairs)]
    datalist = tmp_path / "datalist.json"
    (tmp_path / "broken.png").write_bytes(b"not an image")
    broken = {"image": str(tmp_path / "broken.png"), "label": items[0]["label"]}
    datalist.write_text(json.dumps({"training": items + [broken], "validation": items[:1], "test": []}))
    out, report = tmp_path / "audited.json", tmp_path / "audit.csv"
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.level_audit", "--model", str(SHIPPED),
                           "--datalist", str(datalist), "--out", str(out), "--report", str(report)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "of 3 training images flagged" in proc.stdout
    # an unreadable image: one warning line naming its index, not the file; the audit carries on and keeps the item
    assert "warning: training item 2 skipped" in proc.stderr and "broken" not in proc.stderr
    rows = report.read_text().splitlines()
    assert rows[0] == "index,window_shift,count_shift,flagged" and len(rows) == 4
    assert rows[3] == "2,nan,nan,False"
    assert all(p.name not in report.read_text() for p, _ in pairs)
    n_flagged = sum(r.endswith("True") for r in rows[1:])
    assert len(json.loads(out.read_text())["training"]) == 3 - n_flagged
    for row in rows[1:]:  # the stored flag is the rule applied to the stored shifts
        _, w, c, f = row.split(",")
        assert level_flag(float(w), float(c)) is (f == "True")
    import torch

    bare = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    bare["stage1_counter"] = None
    bare["stage1"].pop("count", None)
    torch.save(bare, tmp_path / "bare.pt")
    proc = subprocess.run([sys.executable, "-m", "lumbar_monai.training.level_audit", "--model",
                           str(tmp_path / "bare.pt"), "--datalist", str(datalist), "--out", str(tmp_path / "x.json")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "no vertebra counter" in proc.stderr
    assert not (tmp_path / "x.json").exists()
