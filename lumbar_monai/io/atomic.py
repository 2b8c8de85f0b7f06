"""Atomic file writes: write to a temporary file in the target folder, then ``os.replace`` it into place.

A crash or an error mid-write therefore never leaves a half-written output behind. :func:`all_or_none` extends
this to a set of files (an image's JSON, overlay, SR and presentation state): they are written into a hidden
staging folder and moved into place together, or not at all. Temporaries carry the writer's process id, so that
:func:`sweep_stale_temporaries` can remove those a killed run left behind without touching a live run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "all_or_none",
           "sweep_stale_temporaries", "TEMP_MARK"]

#: Marks every temporary name: ``.<stem>.<random>.lmtmp<pid><suffix>``.
TEMP_MARK = ".lmtmp"
_TEMP_NAME = re.compile(r"^\..*\.lmtmp(\d+)(\.[^/\\]*)?$")


def _temp_suffix(sfx: str) -> str:
    return f"{TEMP_MARK}{os.getpid()}{sfx}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Use it for writers that insist on a file name (PIL, pydicom, nibabel): ``with atomic_path(p) as tmp: img.save(tmp)``.
    ``suffix`` defaults to the target's suffix so writers that choose a format by extension still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sfx = target.suffix if suffix is None else suffix
    if target.name.endswith(".nii.gz"):
        sfx = ".nii.gz"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=_temp_suffix(sfx), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file as 0600; give the output the permissions a plain open() would have
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, default: Callable[[Any], Any] | None = None) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


@contextlib.contextmanager
def all_or_none(folder: str | os.PathLike) -> Iterator[Callable[[str], Path]]:
    """Write a set of files into ``folder`` together: yields ``stage(name) -> path`` to write each one to.

    On a clean exit every staged file that was written is moved to ``folder / name``; if the block raises (or a
    move fails) none of them is left in ``folder`` and the exception propagates. The staging folder is removed
    either way.
    """
    dest = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", suffix=_temp_suffix(""), dir=dest))
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        if Path(name).name != name or name in (".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        staged[name] = staging / name
        return staged[name]

    try:
        yield stage
        moved: list[Path] = []
        try:
            for name, p in staged.items():
                if p.exists():
                    os.replace(p, dest / name)
                    moved.append(dest / name)
        except BaseException:
            for m in moved:
                with contextlib.suppress(OSError):
                    m.unlink()
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its files
    return True


def sweep_stale_temporaries(folder: str | os.PathLike, max_age_s: float = 24 * 3600) -> int:
    """Remove the temporaries (files and staging folders) in ``folder`` that a killed writer left behind.

    A temporary is stale when the process that made it no longer runs on this machine, or when it is older than
    ``max_age_s`` (a process id may be reused, or the folder shared between machines). Only names of the form
    this module creates are touched; returns how many were removed.
    """
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m:
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > max_age_s
            if not old and _pid_alive(int(m.group(1))):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed
