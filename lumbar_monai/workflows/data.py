"""Where the bundle's data comes from: the embedded synthetic set, or a real data set in one of the known layouts."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import InputError

__all__ = ["prepare_datalist", "detect_dataset_kind"]

logger = logging.getLogger(__name__)


def detect_dataset_kind(dataset_dir: str | os.PathLike) -> str:
    """``"datalist"`` (a ``datalist.json``), ``"aasce"`` (``labels_training/landmarks.csv``) or ``"buu"`` (CSVs)."""
    d = Path(dataset_dir)
    if d.is_file() and d.suffix == ".json":
        return "datalist"
    if (d / "datalist.json").is_file():
        return "datalist"
    if (d / "labels_training" / "landmarks.csv").is_file():
        return "aasce"
    if any(d.glob("*.csv")) or any(d.glob("*/*.csv")):
        return "buu"
    raise InputError(d, "no datalist.json, AASCE labels_training/ or BUU-LSPINE CSVs found")


def prepare_datalist(*args, **kwargs) -> str:
    """Distributed-safe :func:`_prepare_datalist` (same arguments): rank 0 prepares, the other ranks wait, then
    find the prepared files."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            path = _prepare_datalist(*args, **kwargs)
            dist.barrier()
            return path
        dist.barrier()
    return _prepare_datalist(*args, **kwargs)


def _prepare_datalist(
    dataset_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    synthetic_n: int = 48,
    synthetic_seed: int = 0,
    synthetic_max_side: int | None = 768,
    layout: str | None = None,
) -> str:
    """Return the path of a MONAI datalist JSON (``training``/``validation``/``test`` splits) to train on.

    With no ``dataset_dir`` (``None`` or ``""``) the embedded default is used: ``synthetic_n`` synthetic lateral
    studies are generated once into ``<output_dir>/synthetic`` (re-used when already there with the same settings).
    Otherwise ``dataset_dir`` is a datalist JSON, a folder holding ``datalist.json``, an AASCE/SpineWeb-16 folder
    (a fixed split is written to ``<output_dir>/datalist_aasce.json``) or a BUU-LSPINE folder (images + CSVs).
    """
    out = Path(output_dir)
    if not dataset_dir:
        from ..synthetic import SyntheticConfig, write_study_set

        target = out / "synthetic"
        settings = {"n": int(synthetic_n), "seed": int(synthetic_seed), "max_side": synthetic_max_side}
        stamp = target / "settings.json"
        datalist = target / "datalist.json"
        if datalist.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == settings:
            return str(datalist)
        logger.info("generating %d synthetic studies into %s (the embedded default data set)", synthetic_n, target)
        cfg = SyntheticConfig(max_side=synthetic_max_side)
        path = write_study_set(target, int(synthetic_n), seed=int(synthetic_seed), config=cfg)
        from ..io.atomic import atomic_write_json

        atomic_write_json(stamp, settings)
        return str(path)
    kind = detect_dataset_kind(dataset_dir)
    d = Path(dataset_dir)
    if kind == "datalist":
        return str(d if d.is_file() else d / "datalist.json")
    if kind == "aasce":
        from ..io.aasce import write_aasce_datalist

        return str(write_aasce_datalist(d, out / "datalist_aasce.json"))
    from ..io.datalist import write_buu_datalist

    return str(write_buu_datalist(d, out / "datalist_buu.json", layout=layout))


def trained_datalist(dataset_dir: str | os.PathLike | None, output_dir: str | os.PathLike,
                     layout: str | None = None) -> str:
    """The datalist that ``training`` used in ``output_dir`` (for ``evaluate`` and ``inference``).

    With a ``dataset_dir`` it is prepared as in :func:`prepare_datalist`; without one, the synthetic set that
    training generated into ``<output_dir>/synthetic`` is re-used as it is (never regenerated, so evaluation always
    sees the training run's own test split).
    """
    if dataset_dir:
        return prepare_datalist(dataset_dir, output_dir, layout=layout)
    path = Path(output_dir) / "synthetic" / "datalist.json"
    if not path.is_file():
        raise InputError(path, "no synthetic data set here: run the bundle's training with this output_dir first")
    return str(path)
