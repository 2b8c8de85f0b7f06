"""An M-Net of one lumbar vertebra, attached to a predictor checkpoint (*ours*; round 27 of the AP model).

The paper reads every lumbar vertebra with one M-Net. Where one vertebra is read much worse than the others (on the
AASCE AP films L5: on validation most of its far-off inferior corners lie 0.3-1.2 vertebra heights below their
labels), a copy of the lumbar M-Net trained further on that vertebra's crops alone can read it instead: ``"vertebrae": ["L5"]`` in a framed schedule's
``mnet_lumbar`` section trains on those crops (and keeps the best weights by their validation corner error), and
this module puts the result into a model as ``vertebra_nets`` (:class:`~lumbar_monai.predictor.LandmarkPredictor`;
the checkpoint's ``lumbar_vertebrae`` entry). The crop geometry must be the model's: same crop side, blur,
anti-aliasing and Eq. 5 settings, else the network would read crops unlike its training ones.

    python -m lumbar_monai.training.vertebra_mnet --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --mnet runs/l5/mnet_lumbar.pt --vertebra L5 --out runs/l5/model.pt --half lumbar,stage1_counter,lumbar_vertebrae
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["attach_vertebra_mnet", "main"]


def attach_vertebra_mnet(model: str | Path, mnet: str | Path, vertebra: str, out: str | Path,
                         half: Sequence[str] = ()) -> Path:
    """Write a copy of the predictor checkpoint ``model`` whose lumbar vertebra ``vertebra`` is read by the M-Net
    stage checkpoint ``mnet`` (``training.framed mnet``'s ``mnet_lumbar.pt``). ``half``: the entries whose weights are
    stored as float16 (:meth:`~lumbar_monai.predictor.LandmarkPredictor.save`). One-line
    :class:`~lumbar_monai.errors.InputError` for a file that is not such a network or was trained on other crops."""
    from ..anatomy import crop_record
    from ..checkpoint import build_network, read_network_file
    from ..errors import InputError
    from ..networks.mnet import MNet
    from ..predictor import LandmarkPredictor

    pred = LandmarkPredictor.load(model, device="cpu")
    entry = read_network_file(mnet, "lumbar M-Net stage")
    want = {"crop_size": pred.crop_size, "crop_blur_sigma": pred.crop_blur_sigma,
            "crop_antialias": pred.crop_antialias, **crop_record(pred.layout)}
    differ = [f"{k} {entry.get(k)!r} (the model's: {v!r})" for k, v in want.items() if entry.get(k) != v]
    if differ:
        raise InputError(Path(mnet), f"trained on other crops than the model's: {'; '.join(differ)}")
    try:
        net = build_network(MNet, entry)
    except (KeyError, TypeError, RuntimeError) as e:
        raise InputError(Path(mnet), f"not an M-Net: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if net.out_channels != pred.lumbar_net.out_channels:
        raise InputError(Path(mnet), f"{net.out_channels} output channels, the model's lumbar M-Net has "
                                     f"{pred.lumbar_net.out_channels}")
    try:
        pred.set_vertebra_nets({**pred.vertebra_nets, vertebra: net})
    except ValueError as e:
        raise InputError(Path(model), str(e)) from None
    return pred.save(out, half=half)


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import InputError

    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.vertebra_mnet",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="predictor checkpoint to copy")
    p.add_argument("--mnet", required=True, help="the vertebra's M-Net stage checkpoint (training.framed mnet)")
    p.add_argument("--vertebra", required=True, help="the lumbar vertebra it reads, e.g. L5")
    p.add_argument("--out", required=True, help="the new predictor checkpoint")
    p.add_argument("--half", default="", help="comma-separated checkpoint entries whose weights are stored as float16 "
                                              "(e.g. lumbar,stage1_counter,lumbar_vertebrae)")
    a = p.parse_args(argv)
    half = [v.strip() for v in a.half.split(",") if v.strip()]
    try:
        path = attach_vertebra_mnet(a.model, a.mnet, a.vertebra, a.out, half)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.vertebra} M-Net attached -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
