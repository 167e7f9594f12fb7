"""Files that are never seen half-written: a reader finds the old version or the new one, whatever happens."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_atomic"]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """``write(file)`` into a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A rename within one directory is atomic, so a reader (or a resumed run) sees the old file or the new
    one, never a torn one, whatever moment a kill (SIGKILL included) or a full disk strikes. ``write``
    gets a binary file: ``write_atomic(p, lambda f: torch.save(obj, f))``. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; saved files are as readable as other outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path
