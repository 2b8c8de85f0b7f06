"""The device a command or a training run asks for, checked before anything is built on it."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | None) -> torch.device:
    """``auto`` or ``None`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; an unknown name or a
    CUDA device that is not there is a :class:`ValueError` with one line (torch would fail later, with a traceback,
    when the first network moves there)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this torch build sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r} (auto, cpu, cuda, cuda:N)")
    return dev
