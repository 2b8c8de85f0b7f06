"""Keep what DICOM libraries say about a data set off the console and out of the logs.

highdicom and pydicom quote attribute values in their warnings and log records (highdicom, for one, prints a
patient or referring physician name it finds unusual). Inside :func:`library_messages_withheld` such warnings
are recorded instead of shown and the libraries' loggers are silenced; only the number and kind of what was
withheld are reported, at DEBUG level, never the text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["LIBRARY_LOGGERS", "library_messages_withheld", "withholding_library_messages"]

#: Loggers whose records may quote data set values.
LIBRARY_LOGGERS = ("highdicom", "pydicom")

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def library_messages_withheld(loggers: tuple[str, ...] = LIBRARY_LOGGERS) -> Iterator[list[str]]:
    """Record warnings instead of showing them and silence ``loggers`` for the duration of the block.

    Yields a list that, after the block, holds the category name of every warning withheld (not its text).
    Not thread-safe (neither is :func:`warnings.catch_warnings`).
    """
    withheld: list[str] = []
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield withheld
            finally:
                withheld.extend(w.category.__name__ for w in caught)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def withholding_library_messages(func: F) -> F:
    """Decorator: run ``func`` inside :func:`library_messages_withheld`; log how many warnings were withheld."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with library_messages_withheld() as withheld:
            out = func(*args, **kwargs)
        if withheld:
            log.debug("%s: %d library warning(s) withheld (%s); they may quote patient attributes",
                      func.__name__, len(withheld), ", ".join(sorted(set(withheld))))
        return out

    return wrapper  # type: ignore[return-value]
