"""Shared fixtures: paths to the real material in ../shared (read in place, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from _paths import REPO, SHARED  # noqa: E402,F401  (pytest puts tests/ on sys.path)

torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real test material not found at {SHARED}")
    return SHARED
