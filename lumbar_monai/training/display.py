"""Train the AP display network (:mod:`lumbar_monai.display`) and attach it to a model (*ours*, issue 15).

The network learns whether a whole AP image is shown mirrored: every training sample is one image of the split,
mirrored with probability 0.5 (the label), zoomed, shifted, rotated and given another gamma; validation scores each
validation image and its mirror. The fit is the project's (:func:`~lumbar_monai.training.fit.fit`: MONAI's
``SupervisedTrainer`` / ``SupervisedEvaluator``, the best weights by validation loss, Ignite's ``TimeLimit``)::

    python -m lumbar_monai.training.display train --datalist runs/aasce_ap/datalist.json --out runs/display
    python -m lumbar_monai.training.display attach --model bundles/lumbar_landmarks/models/aasce_ap.pt \\
        --display runs/display/display.pt --out runs/display/model.pt

``train`` reads the training and validation splits (shrunk to ``--long-side`` and cached under ``--out``) and writes
``display.pt`` (the network, its kwargs, the validation accuracy of the mirror-consistent decision); ``attach``
writes a copy of an AP predictor checkpoint with the display network in it.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from ..checkpoint import build_display, network_entry, read_network_file, save_checkpoint
from ..display import DISPLAY_INPUT, build_display_net, display_input, mirrored_probability

__all__ = ["RandDisplayViewd", "train_display", "attach_display", "main"]

logger = logging.getLogger(__name__)


class RandDisplayViewd(RandomizableTransform, MapTransform):
    """A display-network sample of an ``(H, W)`` image in ``[0, 1]``: ``image`` -> ``(1, *size)`` network input,
    ``label`` -> 1 when the sample was mirrored, else 0.

    With ``jitter`` the mirror is drawn with probability 0.5 and the view is zoomed (``zoom``), shifted (``shift``,
    fraction of the side), rotated (``rotate`` degrees) and gamma-changed (``gamma``); with probability
    ``field_prob`` each, the top ``top_cut`` of the rows is cut off (a film that starts lower, the heart out of view)
    and the width padded by ``pad_width`` (a wider field); without ``jitter`` the sample's ``mirror_key`` entry
    (default ``False``) decides and the view is the plain one (validation).
    """

    def __init__(self, keys: KeysCollection = "image", label_key: str = "label", size: tuple[int, int] = DISPLAY_INPUT,
                 zoom: tuple[float, float] = (0.85, 1.15), shift: float = 0.1, rotate: float = 6.0,
                 gamma: tuple[float, float] = (0.6, 1.6), field_prob: float = 0.25,
                 top_cut: tuple[float, float] = (0.1, 0.5), pad_width: tuple[float, float] = (1.0, 1.4),
                 jitter: bool = True, mirror_key: str = "mirror") -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.label_key = label_key
        self.size = (int(size[0]), int(size[1]))
        self.zoom, self.shift, self.rotate, self.gamma = tuple(zoom), float(shift), float(rotate), tuple(gamma)
        self.field_prob, self.top_cut, self.pad_width = float(field_prob), tuple(top_cut), tuple(pad_width)
        self.jitter = bool(jitter)
        self.mirror_key = mirror_key

    def randomize(self, data: Any = None) -> None:
        self._mirror = bool(self.R.random() < 0.5)
        self._zoom = self.R.uniform(*self.zoom)
        self._shift = self.R.uniform(-self.shift, self.shift, 2)
        self._angle = math.radians(self.R.uniform(-self.rotate, self.rotate))
        self._gamma = self.R.uniform(*self.gamma)
        self._cut = self.R.uniform(*self.top_cut) if self.R.random() < self.field_prob else 0.0
        self._pad = self.R.uniform(*self.pad_width) if self.R.random() < self.field_prob else 1.0

    def _view(self, image: np.ndarray, mirror: bool) -> torch.Tensor:
        x = np.asarray(image, dtype=np.float32)
        if mirror:
            x = x[:, ::-1]
        if not self.jitter:
            return display_input(x, self.size)
        x = np.clip(x, 0.0, 1.0) ** self._gamma
        x = x[int(self._cut * x.shape[0]):]
        extra = int(round((self._pad - 1.0) * x.shape[1]))
        if extra > 0:
            x = np.pad(x, ((0, 0), (extra // 2, extra - extra // 2)))
        c, s, z = math.cos(self._angle), math.sin(self._angle), self._zoom
        theta = torch.tensor([[[z * c, -z * s, self._shift[0]], [z * s, z * c, self._shift[1]]]], dtype=torch.float32)
        t = torch.as_tensor(np.ascontiguousarray(x))[None, None]
        grid = torch.nn.functional.affine_grid(theta, (1, 1, *t.shape[-2:]), align_corners=False)
        return display_input(torch.nn.functional.grid_sample(t, grid, align_corners=False)[0, 0].numpy(), self.size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.jitter:
            self.randomize()
            mirror = self._mirror
        else:
            mirror = bool(d.get(self.mirror_key, False))
        for key in self.key_iterator(d):
            d[key] = self._view(d[key], mirror)
        d[self.label_key] = torch.tensor(int(mirror))
        return d


def _images(datalist: str | Path, split: str, layout: str, long_side: int, cache: Path) -> list[np.ndarray]:
    from .framed import load_split

    return [s["image"].astype(np.float32) / 255.0 for s in load_split(datalist, split, layout, long_side, cache)]


def validation_accuracy(net: torch.nn.Module, images: list[np.ndarray]) -> float:
    """Share (%) of the images *and* their mirrors that :func:`~lumbar_monai.display.mirrored_probability` calls
    right. It is mirror-consistent (a mirror's probability is ``1 - p``), so one call scores both views."""
    right = 0
    for img in images:
        p = mirrored_probability(net, img)
        right += int(p < 0.5) + int(1.0 - p > 0.5)
    return 100.0 * right / max(2 * len(images), 1)


def train_display(datalist: str | Path, out: str | Path, layout: str = "ap", epochs: int = 40,
                  samples_per_epoch: int = 768, batch_size: int = 32, lr: float = 1e-3, long_side: int = 512,
                  max_seconds: float | None = None, device: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Train the display network on ``datalist``'s training split (selected on its validation split) and write
    ``out/display.pt``; returns ``{"val_accuracy": %, "epochs": n, "path": str}``."""
    from monai.data import DataLoader, Dataset
    from monai.utils import set_determinism

    from ..devices import resolve_device
    from .fit import fit

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_determinism(seed)
    dev = resolve_device(device)
    train = _images(datalist, "training", layout, long_side, out / f"cache_training_{long_side}.npz")
    val = _images(datalist, "validation", layout, long_side, out / f"cache_validation_{long_side}.npz")
    if not train or not val:
        raise ValueError(f"{datalist}: the display network needs training and validation images")
    reps = max(1, math.ceil(samples_per_epoch / len(train)))
    train_ds = Dataset([{"image": img} for img in train] * reps, transform=RandDisplayViewd())
    val_ds = Dataset([{"image": img, "mirror": m} for img in val for m in (False, True)],
                     transform=RandDisplayViewd(jitter=False))
    net = build_display_net().to(dev)
    result = fit(net, DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=0),
                 torch.nn.CrossEntropyLoss(), lr=lr, max_epochs=epochs,
                 val_loader=DataLoader(val_ds, batch_size=batch_size, num_workers=0), patience=max(epochs, 1),
                 device=dev, max_seconds=max_seconds)
    net = net.cpu().eval()
    acc = validation_accuracy(net, val)
    path = save_checkpoint({**network_entry(net, "Classifier"), "val_accuracy": acc,
                            "epochs": len(result["history"])}, out / "display.pt")
    logger.info("display network: %d epochs, validation accuracy %.1f %% (images and mirrors)",
                len(result["history"]), acc)
    return {"val_accuracy": acc, "epochs": len(result["history"]), "path": str(path)}


def attach_display(model: str | Path, display: str | Path, out: str | Path) -> Path:
    """Write a copy of the AP predictor checkpoint ``model`` with the display network ``display`` in it."""
    from ..errors import InputError
    from ..predictor import LandmarkPredictor

    pred = LandmarkPredictor.load(model, device="cpu")
    if pred.layout.view == "lateral":
        raise InputError(Path(model), "a display network is for AP models; this one is lateral")
    entry = read_network_file(display, "display network (train one with 'display train')")
    pred.display_net = build_display(entry).eval()
    pred.meta["display_net"] = {"val_accuracy": float(entry.get("val_accuracy", float("nan")))}
    return pred.save(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lumbar_monai.training.display", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the display network")
    t.add_argument("--datalist", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--layout", default="ap")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--samples-per-epoch", type=int, default=768)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--long-side", type=int, default=512)
    t.add_argument("--max-seconds", type=float, default=None)
    t.add_argument("--device", default="auto")
    a = sub.add_parser("attach", help="copy an AP model with the display network in it")
    a.add_argument("--model", required=True)
    a.add_argument("--display", required=True)
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..errors import InputError

    try:
        if args.command == "train":
            r = train_display(args.datalist, args.out, layout=args.layout, epochs=args.epochs,
                              samples_per_epoch=args.samples_per_epoch, lr=args.lr, long_side=args.long_side,
                              max_seconds=args.max_seconds, device=args.device)
            print(f"display network: {r['epochs']} epochs, validation accuracy {r['val_accuracy']:.1f} % "
                  f"(images and their mirrors) -> {r['path']}")
        else:
            print(f"wrote {attach_display(args.model, args.display, args.out)}")
    except (InputError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
