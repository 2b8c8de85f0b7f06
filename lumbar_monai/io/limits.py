"""Size limits every image reader checks *before* decoding, so a small file cannot claim gigabytes of pixels.

Two limits, each a module default that an environment variable or a function argument overrides:

* :func:`max_pixels` - pixel values in one image (width x height x frames x samples per pixel), default
  :data:`DEFAULT_MAX_PIXELS` = 100 megapixels (a 43 x 43 cm detector at 0.1 mm is 18.5 megapixels, a stitched
  long-leg film about 50); ``LUMBAR_MAX_PIXELS`` overrides it.
* :func:`max_file_bytes` - size of the file itself, default :data:`DEFAULT_MAX_FILE_MB` = 1024 MiB;
  ``LUMBAR_MAX_FILE_MB`` overrides it.

An image over a limit raises :class:`~lumbar_monai.errors.InputError` with one line that names the file, the
declared size and the variable to set.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

from ..errors import InputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FILE_MB",
    "ENV_MAX_PIXELS",
    "ENV_MAX_FILE_MB",
    "max_pixels",
    "max_file_bytes",
    "check_pixel_count",
    "check_file_size",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_MB = 1024
ENV_MAX_PIXELS = "LUMBAR_MAX_PIXELS"
ENV_MAX_FILE_MB = "LUMBAR_MAX_FILE_MB"
_warned: set[str] = set()


def _positive_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        if name not in _warned:
            _warned.add(name)
            log.warning("%s=%r is not a positive number; using the default %d", name, raw, default)
        return default
    return value


def max_pixels() -> int:
    """The pixel limit in force: ``$LUMBAR_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    return _positive_env(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS)


def max_file_bytes() -> int:
    """The file size limit in force, in bytes: ``$LUMBAR_MAX_FILE_MB`` MiB or :data:`DEFAULT_MAX_FILE_MB` MiB."""
    return _positive_env(ENV_MAX_FILE_MB, DEFAULT_MAX_FILE_MB) * 1024 * 1024


def check_pixel_count(
    path: str | os.PathLike | None, dims: Sequence[int], what: str = "image", limit: int | None = None
) -> int:
    """Raise :class:`InputError` unless the declared ``dims`` (e.g. ``(W, H)`` or ``(rows, cols, frames,
    samples)``) are all positive and their product is at most ``limit`` (default :func:`max_pixels`).

    Returns the product.
    """
    sizes = [int(d) for d in dims]
    shown = " x ".join(str(d) for i, d in enumerate(sizes) if i < 2 or d != 1)  # "W x H", extras when not 1
    if not sizes or min(sizes) <= 0:
        raise InputError(path, f"{what} declares an empty size ({shown})")
    n = math.prod(sizes)
    lim = max_pixels() if limit is None else int(limit)
    if n > lim:
        raise InputError(
            path,
            f"{what} declares {shown} = {n / 1e6:.1f} megapixels, over the limit of {lim / 1e6:g} megapixels "
            f"(set {ENV_MAX_PIXELS} to raise it)",
        )
    return n


def check_file_size(path: str | os.PathLike, size: int, limit: int | None = None) -> None:
    """Raise :class:`InputError` if a file of ``size`` bytes is over ``limit`` (default :func:`max_file_bytes`)."""
    lim = max_file_bytes() if limit is None else int(limit)
    if size > lim:
        raise InputError(
            path,
            f"file of {size / 2**20:.0f} MiB is over the limit of {lim / 2**20:g} MiB (set {ENV_MAX_FILE_MB} to raise it)",
        )
