"""Checkpoint files and the network entries inside them: read with ``torch.load(weights_only=True)``, written
atomically, networks rebuilt from their stored constructor arguments.

One job, shared by the two-stage :class:`~lumbar_monai.predictor.LandmarkPredictor` (whose checkpoint layout its
module docstring describes), the one-stage baseline and the training tools that read a model, change one entry and
write it back (shape prior, vertebra counter, display network, vertebra M-Nets). A network entry is a plain dict,
``{"network": class name, "kwargs": constructor arguments, "state_dict": tensors}``, so that a file holds nothing
but dicts, lists, strings, numbers and tensors.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .anatomy import Layout
from .errors import InputError
from .io.atomic import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "build_counter", "build_display", "build_network",
    "check_checkpoint_format", "cpu_state", "half_entry", "is_network_entry", "network_entry", "network_kwargs",
    "predictor_from_file", "read_checkpoint", "read_network_file", "read_predictor_checkpoint", "save_checkpoint",
    "with_init_kwargs",
]

#: the two-stage predictor's checkpoint format and the newest version this code reads.
CHECKPOINT_FORMAT = "lumbar-monai-landmarks"
CHECKPOINT_VERSION = 1


# ----- files --------------------------------------------------------------------------------------------------
def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` a checkpoint dict (plain tensors and values) atomically."""
    buf = io.BytesIO()
    torch.save(dict(ckpt), buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> Mapping[str, Any]:
    """A checkpoint file read with ``torch.load(weights_only=True)`` onto the CPU; :class:`InputError` with one line
    for a missing file, one that does not unpickle as weights, or one that is not a dict."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, "checkpoint file not found") from None
    except Exception as e:  # noqa: BLE001 - unpickling errors have many types
        raise InputError(path, f"not a loadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, Mapping):
        raise InputError(path, "checkpoint is not a dict")
    return ckpt


def check_checkpoint_format(ckpt: Mapping[str, Any], fmt: str, version: int) -> None:
    """Raise ``ValueError`` unless ``ckpt`` has format ``fmt`` and a version this code reads."""
    if ckpt.get("format") != fmt:
        raise ValueError(f"not a {fmt} checkpoint (format={ckpt.get('format')!r})")
    if int(ckpt.get("version", 0)) > version:
        raise ValueError(f"checkpoint version {ckpt.get('version')} is newer than this code ({version})")


def read_predictor_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A two-stage predictor checkpoint file as a plain dict (weights only), for tools that copy it entry by entry
    and change a setting (the shape prior, the counter's contrast); :class:`InputError` with one line when it is not
    one."""
    ckpt = dict(read_checkpoint(path))
    try:
        check_checkpoint_format(ckpt, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    except ValueError as e:
        raise InputError(path, f"not a two-stage landmark model ({e})") from None
    return ckpt


def read_network_file(path: str | os.PathLike, what: str, ckpt: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A single network's checkpoint (``{"state_dict": ..., ...}``, e.g. a display network or a vertebra counter)
    read with weights only (``ckpt``: the file already read); :class:`InputError` with one line otherwise (``what``
    tells the user what the file should have been)."""
    entry = read_checkpoint(path) if ckpt is None else ckpt
    if "state_dict" not in entry:
        raise InputError(path, f"not a {what} checkpoint")
    return entry


def predictor_from_file(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        ckpt: Mapping[str, Any] | None = None):
    """``cls.from_checkpoint`` of a file (``ckpt``: the file already read); a checkpoint that does not build is an
    :class:`InputError` naming the file."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    try:
        return cls.from_checkpoint(ckpt, device=device)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise InputError(path, f"invalid checkpoint: {e}") from None


# ----- network entries ----------------------------------------------------------------------------------------
def with_init_kwargs(cls, **kwargs) -> torch.nn.Module:
    """Build ``cls(**kwargs)`` and remember the kwargs, so that :func:`network_entry` can store them."""
    net = cls(**kwargs)
    net.init_kwargs = dict(kwargs)
    return net


def network_kwargs(net: torch.nn.Module) -> dict[str, Any]:
    """The constructor arguments a network was built with (:func:`with_init_kwargs`), as plain values:
    ``weights_only`` loading accepts no ``Layout`` and no tuple, so layouts are stored by name and tuples as lists."""
    kw = getattr(net, "init_kwargs", None)
    if kw is None:
        raise ValueError(f"{type(net).__name__} has no init_kwargs: build it with with_init_kwargs() to save it")
    return {k: (v.name if isinstance(v, Layout) else list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's state dict, detached, on the CPU."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def network_entry(net: torch.nn.Module, network: str | None = None) -> dict[str, Any]:
    """A network as a checkpoint entry; ``network`` defaults to its class name."""
    return {"network": network or type(net).__name__, "kwargs": network_kwargs(net), "state_dict": cpu_state(net)}


def is_network_entry(entry: Any) -> bool:
    """Whether a checkpoint entry is one network (``{"state_dict": ..., ...}``)."""
    return isinstance(entry, Mapping) and "state_dict" in entry


def half_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A network entry with its floating-point weights stored as float16 (integer buffers unchanged); loading casts
    them back to the network's float32."""
    state = entry["state_dict"]
    return {**entry, "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in state.items()}}


def _loaded(net: torch.nn.Module, entry: Mapping[str, Any]) -> torch.nn.Module:
    net.load_state_dict(entry["state_dict"])
    net.init_kwargs = dict(entry["kwargs"])
    return net


def build_network(cls, entry: Mapping[str, Any]) -> torch.nn.Module:
    """``cls`` (one of the project's networks) rebuilt from a checkpoint entry, with its weights."""
    kwargs = dict(entry["kwargs"])
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return _loaded(cls(**kwargs), entry)


def build_display(entry: Mapping[str, Any]) -> torch.nn.Module:
    """The display network of a checkpoint (``monai.networks.nets.Classifier``; nothing else is built)."""
    from monai.networks.nets import Classifier

    if entry.get("network") != "Classifier":
        raise ValueError(f"checkpoint 'display' must be a Classifier, got {entry.get('network')!r}")
    kwargs = dict(entry["kwargs"])
    return _loaded(Classifier(**{**kwargs, "in_shape": tuple(kwargs["in_shape"]), "channels": tuple(kwargs["channels"]),
                                 "strides": tuple(kwargs["strides"])}), entry)


def build_counter(entry: Mapping[str, Any]) -> torch.nn.Module:
    """The vertebra counter of a checkpoint (``monai.networks.nets.BasicUNet``; nothing else is built)."""
    from monai.networks.nets import BasicUNet

    if entry.get("network") != "BasicUNet":
        raise ValueError(f"checkpoint 'stage1_counter' must be a BasicUNet, got {entry.get('network')!r}")
    kwargs = dict(entry["kwargs"])
    return _loaded(BasicUNet(**{**kwargs, "features": tuple(kwargs["features"])}), entry)
