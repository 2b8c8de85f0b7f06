"""The MONAI Label environment (``scripts/setup-monailabel.sh``) imports torchvision with its compiled ops, and
with it MONAI Label's own bundle tasks (issue 17: ``import torchvision`` failed next to a CPU-only torch)."""

from __future__ import annotations

import subprocess

import pytest
from _monailabel_helpers import VENV, needs_monailabel

pytestmark = [pytest.mark.slow, needs_monailabel]

CHECK = """
import torch, torchvision
from torchvision.ops import nms
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
import numpy, pydicom
print(torch.__version__, torchvision.__version__, numpy.__version__, pydicom.__version__)
"""


def test_torchvision_and_monailabel_bundle_tasks_import():
    p = subprocess.run([str(VENV / "bin" / "python"), "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    torch_v, tv_v, np_v, dcm_v = p.stdout.split()
    assert np_v.startswith("1.") and dcm_v.startswith("2."), p.stdout  # MONAI Label's pins still hold
