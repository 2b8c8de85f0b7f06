"""The one error type for bad input: a message that names the file (and line) and the problem in one line."""

from __future__ import annotations

import os
from os import PathLike

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input file: ``str(err)`` is ``"<path>[:<line>]: <problem>"`` on one line, never a traceback dump.

    Args:
        path: the offending file (``None`` when the input is in memory).
        problem: what is wrong, in words a user can act on (e.g. "no pixel data", "install pylibjpeg-openjpeg").
            A library message quoted in it that repeats the path gets "<file>" instead: ``problem`` alone is what
            logs show, and a file name may identify a patient.
        line: 1-based line (or row) number for text formats.
    """

    def __init__(self, path: str | PathLike | None, problem: str, line: int | None = None):
        self.path = None if path is None else str(path)
        problem = " ".join(str(problem).split())  # keep it on one line
        if self.path and len(self.path) > 3:  # (a one-letter name would blank out every such letter)
            for form in sorted({self.path, os.path.abspath(self.path)}, key=len, reverse=True):
                problem = problem.replace(form, "<file>")
        self.problem = problem
        self.line = line
        where = self.path if self.path is not None else "<memory>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {self.problem}")
