"""Batched inference: :meth:`LandmarkPredictor.predict_batch` and ``lumbar-monai predict --batch-size N --workers W``.

The CPU work of an image (reading and decoding the file, stage-1 pre-processing at network resolution, also of its
mirror when the facing is to be decided) runs in ``workers`` DataLoader processes while the main process drives the
device. Per batch of ``batch_size`` images the Pose-Net runs once on every stage-1 input of the batch and each
M-Net once on every crop of the batch (:meth:`~lumbar_monai.predictor.LandmarkPredictor.centres_batch`,
:meth:`~lumbar_monai.predictor.LandmarkPredictor.corners_batch`). The per-image logic after the networks (facing
decision, QC flags, the result) is the single-image path's own: it is handed the batch's answers through
:class:`_BatchAnswers`, which stands in for the predictor's ``detect_centres`` / ``detect_corners`` and computes
directly whatever it was not asked in advance. So a batch gives the single-image landmarks (up to float rounding).

A file that cannot be read becomes one :class:`Prediction` with ``error`` set (never a crash of the batch); its
``reason`` is the one-line problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .result import LandmarkResult

__all__ = ["Prediction", "iter_predictions"]


@dataclass
class Prediction:
    """One input's outcome, in input order.

    Attributes:
        index: position in the inputs.
        result: the landmarks (``None`` when ``error``).
        error: the exception (``InputError`` for bad files) or ``None``.
        reason: one line: the problem (``InputError``) or ``"<Type>: <message>"``.
        radiograph: the image that was read (``image``, ``meta``, spacing) when the input was a file.
        extra: what ``extra(source)`` returned in the worker (e.g. a file digest), or ``None``.
    """

    index: int
    result: LandmarkResult | None = None
    error: Exception | None = None
    reason: str | None = None
    radiograph: Any = None
    extra: Any = None


def _is_path(x) -> bool:
    import os

    return isinstance(x, (str, os.PathLike))


def _variants(layout, facing: str, canonical: str) -> tuple[bool, ...]:
    """Which images the facing logic will ask the networks about: ``False`` the image, ``True`` its mirror."""
    from .facing import FACINGS

    if layout.view != "lateral":
        return (False,)
    if facing in FACINGS:
        return (facing != canonical,)
    return (False, True)


class _Prepare(torch.utils.data.Dataset):
    """What a worker does for one input: read it, pre-process stage 1 (of the image and of its mirror, as needed).
    It holds the stage-1 chain, not the predictor (no networks travel to the workers)."""

    def __init__(self, chain, sources: Sequence, centres: Sequence | None, variants: tuple[bool, ...],
                 loader: Callable | None, extra: Callable | None) -> None:
        self.chain = chain
        self.sources = sources
        self.centres = centres
        self.variants = variants
        self.loader = loader
        self.extra = extra

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> dict:
        from .display import display_hint
        from .facing import facing_hint, mirror_image
        from .io.inputs import read_input
        from .transforms.augment import stage1_input

        src = self.sources[i]
        try:
            radiograph = self.loader(src) if self.loader is not None and _is_path(src) else None
            if radiograph is None and _is_path(src):
                from .io.loader import load_radiograph

                radiograph = load_radiograph(src)
            img, spacing, source = read_input(radiograph if radiograph is not None else src)
            meta = dict(getattr(radiograph if radiograph is not None else src, "meta", None) or {})
            stage1 = {}
            if self.centres is None or self.centres[i] is None:
                for m in self.variants:
                    x, g = stage1_input(self.chain, mirror_image(img) if m else img)
                    stage1[m] = (x, g)
            return {"index": i, "image": torch.from_numpy(img), "spacing": spacing, "spacing_source": source,
                    "meta": meta, "hint": facing_hint(meta), "display_hint": display_hint(meta),
                    "stage1": stage1,
                    "path": None if radiograph is None else getattr(radiograph, "path", None),
                    "extra": self.extra(src) if self.extra is not None else None}
        except InputError as e:
            return {"index": i, "error": ("InputError", e.path, e.problem)}
        except MemoryError:
            return {"index": i, "error": ("InputError", str(src) if _is_path(src) else None,
                                          "not enough memory to read this image")}
        except Exception as e:  # noqa: BLE001 - reported per input, the batch goes on
            return {"index": i, "error": (type(e).__name__, None, str(e))}


def _error(kind: str, path: str | None, message: str, src=None) -> Exception:
    """The exception a worker reported (by type name and message): ``InputError`` for bad files, the built-in
    type when there is one, else ``RuntimeError``."""
    import builtins

    if kind == "InputError":
        return InputError(path if path is not None else (src if _is_path(src) else None), message)
    cls = getattr(builtins, kind, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - a built-in that wants other arguments
            pass
    return RuntimeError(f"{kind}: {message}")


def _as_list(batch: list) -> list:
    return batch


class _BatchAnswers:
    """Stands in for the predictor in the single-image logic: answers ``detect_centres`` / ``detect_corners`` for
    one image (or its mirror) from the batch's results; anything else goes to the predictor itself."""

    def __init__(self, predictor, image: np.ndarray, centres: dict, corners: dict) -> None:
        self._predictor = predictor
        self._image = image
        self._centres = centres
        self._corners = corners

    def __getattr__(self, name: str):
        return getattr(self._predictor, name)

    def _which(self, image) -> bool | None:
        if image is self._image:
            return False
        a = np.asarray(image)
        if a.shape == self._image.shape and np.array_equal(a[::17], self._image[::17, ::-1]):
            return True
        return None

    def detect_centres(self, image, timings=None):
        m = self._which(image)
        if m in self._centres:
            return self._centres[m]
        return self._predictor.detect_centres(image, timings)

    def detect_corners(self, image, centres, timings=None):
        m = self._which(image)
        if m in self._corners and np.array_equal(np.asarray(centres), self._corners[m][0]):
            return self._corners[m][1]
        return self._predictor.detect_corners(image, centres, timings)


def _run(predictor, items: list[dict], given: Sequence | None, facing: str) -> list[LandmarkResult]:
    """Both stages of a batch of prepared items, then each image's result through the single-image logic."""
    from .facing import mirror_points

    timings: dict[str, float] = {}
    jobs1 = [(k, m) for k, it in enumerate(items) for m in it["stage1"]]
    centres: dict[tuple[int, bool], tuple] = {}
    if jobs1:
        x = torch.stack([items[k]["stage1"][m][0] for k, m in jobs1])
        g = np.stack([items[k]["stage1"][m][1] for k, m in jobs1])
        centres = dict(zip(jobs1, predictor.centres_batch(x, g, timings), strict=True))
    jobs2, imgs, cs = [], [], []
    device_images = {}
    for k, it in enumerate(items):
        c_given = None if given is None else given[it["index"]]
        w = int(it["image"].shape[-1])
        # stage 2 is batched where stage 1 was (or centres were given); anything else is answered per image
        for m in it["stage1"] if c_given is None else _given_variants(predictor, facing):
            if c_given is None:
                c = centres[(k, m)][0]
            else:
                c = np.asarray(c_given, dtype=np.float64).reshape(predictor.layout.num_vertebrae, 2)
                c = mirror_points(c, w) if m else c
            if k not in device_images:
                device_images[k] = it["image"].to(predictor.device, non_blocking=True)
            jobs2.append((k, m, c))
            imgs.append(torch.flip(device_images[k], [-1]) if m else device_images[k])
            cs.append(c)
    corners = predictor.corners_batch(imgs, cs, timings) if jobs2 else []
    per_image = {key: v / max(len(items), 1) for key, v in timings.items()}
    out = []
    for k, it in enumerate(items):
        img = it["image"].numpy()
        ans_c = {m: centres[(k, m)] for m in it["stage1"]}
        ans_k = {m: (c, r) for (kk, m, c), r in zip(jobs2, corners, strict=True) if kk == k}
        c_given = None if given is None else given[it["index"]]
        res = predictor._finish(_BatchAnswers(predictor, img, ans_c, ans_k), img, it["spacing"],
                                it["spacing_source"], c_given, facing, it["hint"], dict(per_image),
                                display_hint=it.get("display_hint"))
        res.meta["batch_size"] = len(items)
        out.append(res)
    return out


def _given_variants(predictor, facing: str) -> tuple[bool, ...]:
    from .facing import CANONICAL_FACING

    return _variants(predictor.layout, facing, str(predictor.meta.get("canonical_facing", CANONICAL_FACING)))


def iter_predictions(
    predictor,
    sources: Sequence,
    centres: Sequence | None = None,
    facing: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    loader: Callable | None = None,
    extra: Callable | None = None,
) -> Iterator[Prediction]:
    """:class:`Prediction` of every input, in input order, computed in batches (see the module docstring).

    Args:
        predictor: a :class:`~lumbar_monai.predictor.LandmarkPredictor`.
        sources: file paths, arrays, tensors, ``Radiograph`` s (anything ``predict`` takes).
        centres: ``None`` or one ``(V, 2)`` array (or ``None``) per input, to skip stage 1.
        facing: as in :meth:`~lumbar_monai.predictor.LandmarkPredictor.predict`.
        batch_size: images per network batch.
        workers: reading / pre-processing processes (0: in this process, in turn with the networks).
        loader: ``path -> Radiograph`` for file inputs (default :func:`~lumbar_monai.io.loader.load_radiograph`).
        extra: ``source -> value`` computed in the worker as well (e.g. the file's digest), returned in
            :attr:`Prediction.extra`.
    """
    from .io.loader import Radiograph

    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    sources = list(sources)
    if centres is not None and len(centres) != len(sources):
        raise ValueError(f"{len(centres)} centre arrays for {len(sources)} images")
    if centres is None and predictor.centre_net is None:
        raise ValueError("this predictor has no Pose-Net: pass centres")
    variants = _given_variants(predictor, facing)
    chain = None
    if predictor.centre_net is None or predictor.stage1.get("framing"):
        variants = ()  # framed stage 1 (lumbar_monai.framing) runs per image, through detect_centres
    else:
        chain = predictor._stage1_transforms()  # built once, before the workers start
    ds = _Prepare(chain, sources, centres, variants, loader, extra)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_as_list,
                                     pin_memory=predictor.device.type == "cuda",
                                     prefetch_factor=2 if workers else None)
    for batch in dl:
        ok = [it for it in batch if "error" not in it]
        results = dict(zip([it["index"] for it in ok], _run(predictor, ok, centres, facing), strict=True)) if ok \
            else {}
        for it in batch:
            i = it["index"]
            if "error" in it:
                err = _error(*it["error"], src=sources[i])
                yield Prediction(index=i, error=err, reason=err.problem if isinstance(err, InputError)
                                 else " ".join(f"{type(err).__name__}: {err}".split()))
                continue
            rg = None
            if _is_path(sources[i]) or isinstance(sources[i], Radiograph):
                rg = Radiograph(image=it["image"].numpy(), pixel_spacing=it["spacing"],
                                spacing_source=it["spacing_source"], path=it["path"], meta=it["meta"])
            yield Prediction(index=i, result=results[i], radiograph=rg, extra=it["extra"])
