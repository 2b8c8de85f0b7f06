"""Keep decoder chatter off the console: C libraries (OpenJPEG, GDCM/ITK, libjpeg) print to file descriptor 2
and pydicom logs the traceback of every plugin that failed. :func:`quiet_decoders` captures both around a
decode, so that the caller's one-line :class:`~lumbar_monai.errors.InputError` is all a user sees. Only the
number of captured lines is logged (at DEBUG level), never their text, which may quote header values.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_decoders", "DECODER_LOGGERS"]

log = logging.getLogger(__name__)

#: Python loggers of the decoders: not propagated (their records collected instead) while a decode runs.
DECODER_LOGGERS = ("pydicom", "openjpeg", "pylibjpeg", "libjpeg", "rle", "PIL")
_CAPTURE_BYTES = 1 << 16  # keep at most this much of what a decoder printed
_lock = threading.RLock()
_state = threading.local()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # the message only: no traceback
        try:
            self.lines.append(f"{record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a malformed log record must not break the decode
            self.lines.append(f"{record.name}: (unprintable message)")


@contextmanager
def _silence_loggers(lines: list[str]) -> Iterator[None]:
    handler = _Collect()
    saved = []
    for name in DECODER_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.propagate))
        lg.propagate = False
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate
        lines.extend(handler.lines)


def _flush_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


@contextmanager
def _capture_fd2(lines: list[str]) -> Iterator[None]:
    """Point fd 2 at a temporary file for the duration; nothing is captured if fd 2 cannot be duplicated."""
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(_CAPTURE_BYTES).decode("utf-8", errors="replace")
            lines.extend(ln for ln in text.splitlines() if ln.strip())


@contextmanager
def quiet_decoders() -> Iterator[list[str]]:
    """Context manager: decoder output on fd 2 and decoder log records are captured, not shown.

    Yields the list that receives the captured lines (filled when the block exits). The fd 2 redirection is
    process-wide, so concurrent decodes in other threads take turns; nested use is a no-op.
    """
    lines: list[str] = []
    if getattr(_state, "active", False):
        yield lines
        return
    with _lock:
        _state.active = True
        try:
            with _silence_loggers(lines), _capture_fd2(lines):
                yield lines
        finally:
            _state.active = False
            if lines:
                log.debug("decoder output withheld: %d line(s)", len(lines))
