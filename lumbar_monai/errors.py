"""The one error type for bad input: a message that names the file (and line) and the problem in one line."""

from __future__ import annotations

from os import PathLike

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input file: ``str(err)`` is ``"<path>[:<line>]: <problem>"`` on one line, never a traceback dump.

    Args:
        path: the offending file (``None`` when the input is in memory).
        problem: what is wrong, in words a user can act on (e.g. "no pixel data", "install pylibjpeg-openjpeg").
        line: 1-based line (or row) number for text formats.
    """

    def __init__(self, path: str | PathLike | None, problem: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        self.line = line
        where = self.path if self.path is not None else "<memory>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {self.problem}")
