"""Shared by the benchmark scripts that score a model on a labelled datalist split (run as
``python benchmarks/<script>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import numpy as np

from lumbar_monai.anatomy import Layout
from lumbar_monai.io.datalist import LoadLandmarkSampled, load_landmark_datalist


def add_split_arguments(parser: argparse.ArgumentParser, split: str = "validation") -> None:
    """``--model``, ``--datalist`` and ``--split`` (default ``split``)."""
    parser.add_argument("--model", required=True)
    parser.add_argument("--datalist", required=True)
    parser.add_argument("--split", default=split)


def labelled_images(datalist: str, split: str, layout: Layout | str,
                    limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """``(image (H, W), points (N, 2) float64, sample)`` of the first ``limit`` items (all by default) of ``split``,
    read as the evaluate workflow reads them."""
    loader = LoadLandmarkSampled(("image", "label"), layout=layout)
    for item in load_landmark_datalist(datalist, split)[:limit]:
        sample = loader(item)
        yield np.asarray(sample["image"])[0], np.asarray(sample["points"], dtype=np.float64), sample
