"""Which way round an AP radiograph is displayed, and running the networks on the way they learned (issue 15; *ours*).

The radiological convention shows an AP (or PA) film as if facing the patient: the patient's left on the image
right. Sites differ, above all for scoliosis films taken PA, which some display as seen from behind: the patient's
left on the image *left*, a mirror image. A model trained on one convention reads the other worse (the AASCE
validation split, shipped model: centre detection 82.3 % -> 74.2 % on the mirrored images,
``benchmarks/acquisition_shift.py``), because the lumbar window's asymmetric anatomy (liver, stomach, heart) is one of
its cues, and it names the corners by image side, so every left/right name comes out swapped.

The *display network* is a small whole-image classifier (``monai.networks.nets.Classifier``; 1 x 256 x 96 input,
the image resampled whatever its aspect) trained on the training split and its mirror
(:mod:`lumbar_monai.training.display`). :func:`decide_display` asks it about the image and about the image's mirror
and averages the two answers (a mirror-consistent probability); when the network is unsure, a DICOM ``PatientOrientation``
(:func:`display_hint`) decides, or without one the standard display. A mirrored image is mirrored back before the landmark networks and the
points mirrored again after, their rows (anatomical names: ``superior_right`` is the patient's right) unchanged, as
:func:`lumbar_monai.facing.run_in_facing` does for lateral facing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DISPLAYS",
    "DISPLAY_INPUT",
    "UNCERTAIN_BAND",
    "display_input",
    "build_display_net",
    "display_hint",
    "DisplayDecision",
    "mirrored_probability",
    "decide_display",
]

#: ``standard``: the patient's left on the image right (the convention of the training data); ``mirrored``: the other.
DISPLAYS = ("standard", "mirrored")
#: the display network's input, (height, width): the whole image resampled, aspect not kept.
DISPLAY_INPUT = (256, 96)
#: a mirrored probability within this distance of 0.5 is too close to call (*ours*): the hint decides, without one
#: the standard display (the convention, and a wrong mirror swaps every left/right name); flagged
#: ``display_uncertain``.
UNCERTAIN_BAND = 0.3


def display_input(image: np.ndarray, size: tuple[int, int] = DISPLAY_INPUT) -> torch.Tensor:
    """``(1, H, W)`` network input of an ``(H0, W0)`` image: resampled (antialiased) to ``size``, then
    zero mean and unit variance."""
    x = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    x = torch.nn.functional.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False,
                                        antialias=True)[0]
    return (x - x.mean()) / (x.std() + 1e-6)


def build_display_net(size: tuple[int, int] = DISPLAY_INPUT) -> torch.nn.Module:
    """The display network: ``Classifier`` with two outputs (standard, mirrored), its kwargs kept for checkpoints."""
    from monai.networks.nets import Classifier

    # kwargs kept as predictor.with_init_kwargs does (not imported: the predictor imports this module)
    kwargs = {"in_shape": [1, int(size[0]), int(size[1])], "classes": 2, "channels": [16, 32, 64, 128],
              "strides": [2, 2, 2, 2], "num_res_units": 1, "dropout": 0.2}
    net = Classifier(**kwargs)
    net.init_kwargs = dict(kwargs)
    return net


def display_hint(meta: Mapping[str, Any] | None) -> str | None:
    """The display a DICOM header suggests, from ``meta["orientation"]`` (PatientOrientation, 0020,0020).

    Its first value is the patient direction of increasing column: ``L`` (the image right is the patient's left) is
    the standard display, ``R`` the mirrored one. Anything else (missing, ``A``/``P``: a lateral view, malformed)
    gives ``None``. Only a hint: headers are often copied from a template or wrong after a flip.
    """
    from .facing import orientation_row

    row = orientation_row(meta)
    if row is None:
        return None
    has_l, has_r = "L" in row, "R" in row
    if has_l == has_r:
        return None
    return "standard" if has_l else "mirrored"


@dataclass
class DisplayDecision:
    """The display of one AP image: ``display`` (one of :data:`DISPLAYS`), ``probability`` that it is mirrored
    (``nan`` when not decided from the image), ``uncertain``, ``source`` (``image``, ``hint``, ``default`` or
    ``given``) and
    the file's ``hint``."""

    display: str
    probability: float = float("nan")
    uncertain: bool = False
    source: str = "image"
    hint: str | None = None

    def as_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"display": self.display, "source": self.source, "uncertain": bool(self.uncertain)}
        if np.isfinite(self.probability):
            out["mirrored_probability"] = round(float(self.probability), 4)
        if self.hint is not None:
            out["hint"] = self.hint
        return out


@torch.inference_mode()
def mirrored_probability(net: torch.nn.Module, image: np.ndarray, device: torch.device | str = "cpu") -> float:
    """The display network's probability that ``image`` is mirrored, averaged with ``1 -`` its probability for the
    image's mirror (both views in one batch), so that an image and its mirror always get complementary answers."""
    size = tuple(int(s) for s in net.init_kwargs["in_shape"][1:]) if hasattr(net, "init_kwargs") else DISPLAY_INPUT
    x = display_input(image, size)
    batch = torch.stack([x, torch.flip(x, dims=(-1,))]).to(device)
    p = torch.softmax(net(batch).float(), dim=1)[:, 1].cpu().numpy()
    return float(0.5 * (p[0] + 1.0 - p[1]))


def decide_display(net: torch.nn.Module, image: np.ndarray, hint: str | None = None,
                   device: torch.device | str = "cpu") -> DisplayDecision:
    """The display of an AP ``image`` from the display network. When its probability is within
    :data:`UNCERTAIN_BAND` of 0.5, ``hint`` (:func:`display_hint`) decides, or without one the standard display
    (``source="default"``)."""
    p = mirrored_probability(net, image, device)
    display = "mirrored" if p > 0.5 else "standard"
    uncertain = abs(p - 0.5) < UNCERTAIN_BAND
    source = "image"
    if uncertain:
        display, source = (hint, "hint") if hint in DISPLAYS else ("standard", "default")
    return DisplayDecision(display, probability=p, uncertain=uncertain, source=source, hint=hint)
