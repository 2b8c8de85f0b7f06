"""Fit a shape prior (:mod:`lumbar_monai.shape_prior`) on the labels of a datalist's training split and write a
copy of a model with it (*ours*, issue 15)::

    python -m lumbar_monai.training.shape_prior --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --datalist runs/aasce_ap/datalist.json --out runs/aasce_ap/with_prior.pt

Only the label files are read (no images, no training of networks). A label that cannot be read, or holds a
different layout, is skipped with a one-line warning naming its index (never its file name); the fit needs more
readable label sets than modes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..anatomy import Layout
from ..checkpoint import read_predictor_checkpoint, save_checkpoint
from ..shape_prior import DEFAULT_CUT, DEFAULT_MODES, ShapePrior

__all__ = ["read_split_shapes", "attach_shape_prior", "main"]


def read_split_shapes(datalist: str | Path, split: str, layout: Layout) -> np.ndarray:
    """``(M, N, 2)`` label points of ``split`` in ``layout``; unreadable items skipped with an index-only warning."""
    from ..errors import InputError
    from ..io.annotations import read_landmark_file
    from ..io.datalist import load_landmark_datalist

    shapes = []
    for i, item in enumerate(load_landmark_datalist(datalist, split)):
        try:
            if not item.get("label"):
                raise ValueError("no label")
            shapes.append(np.asarray(read_landmark_file(item["label"], layout).points, dtype=np.float64))
        except (InputError, OSError, ValueError) as e:
            print(f"warning: {split} item {i} skipped: {type(e).__name__}", file=sys.stderr)
    return np.stack(shapes) if shapes else np.zeros((0, layout.num_points, 2))


def attach_shape_prior(model: str | Path, datalist: str | Path, out: str | Path, split: str = "training",
                       modes: int = DEFAULT_MODES, cut: float = DEFAULT_CUT) -> tuple[Path, ShapePrior]:
    """Write a copy of ``model`` holding a :class:`ShapePrior` fitted on ``split``'s labels; ``(path, prior)``.

    The checkpoint is copied entry by entry (network weights byte for byte, float16 ones stay float16); only
    ``shape_prior`` and ``meta["shape_prior_fit"]`` (what it was fitted on; each result's ``meta["shape_prior"]`` says
    what it did to that image) are set."""
    from ..anatomy import get_layout
    from ..errors import InputError

    ckpt = read_predictor_checkpoint(model)
    try:
        layout = get_layout(str(ckpt["layout"]))
    except (ValueError, KeyError) as e:
        raise InputError(Path(model), f"not a two-stage landmark model ({e})") from None
    try:
        prior = ShapePrior.fit(read_split_shapes(datalist, split, layout), layout, modes=modes, cut=cut)
    except ValueError as e:
        raise InputError(Path(datalist), f"split {split!r}: {e}") from None
    ckpt["shape_prior"] = prior.as_record()
    ckpt["meta"] = {**dict(ckpt.get("meta") or {}),
                    "shape_prior_fit": {"split": split, "n_shapes": prior.n_shapes, "modes": modes, "cut": cut}}
    return save_checkpoint(ckpt, out), prior


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.shape_prior", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a two-stage model checkpoint")
    p.add_argument("--datalist", required=True)
    p.add_argument("--out", required=True, help="the copy of the model with the prior in it")
    p.add_argument("--split", default="training", help="whose labels the prior is fitted on (default: training)")
    p.add_argument("--modes", type=int, default=DEFAULT_MODES, help=f"principal modes kept ({DEFAULT_MODES})")
    p.add_argument("--cut", type=float, default=DEFAULT_CUT,
                   help=f"vertebra heights from the fit at which a corner is replaced ({DEFAULT_CUT})")
    args = p.parse_args(argv)
    from ..errors import InputError

    try:
        path, prior = attach_shape_prior(args.model, args.datalist, args.out, args.split, args.modes, args.cut)
    except (InputError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"shape prior: {prior.n_shapes} {args.split} label sets, {args.modes} modes, cut {args.cut} "
          f"vertebra heights -> {path}")


if __name__ == "__main__":
    main()
