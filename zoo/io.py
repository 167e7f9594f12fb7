"""Files that are never seen half-written: a reader finds the old version or the new one, whatever happens."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from zoo.registry import ZooError

__all__ = ["WriteError", "cached", "write_atomic"]

T = TypeVar("T")
log = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class WriteError(ZooError, OSError):
    """A file that could not be written (a full disk, no permission); the previous version is intact."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """``write(file)`` into a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A rename within one directory is atomic, so a reader (or a resumed run) sees the old file or the new
    one, never a torn one, whatever moment a kill (SIGKILL included) or a full disk strikes. ``write``
    gets a binary file: ``write_atomic(p, lambda f: torch.save(obj, f))``. Returns ``path``. An ``OSError``
    (a full disk, a folder without write permission) becomes a :class:`WriteError` that names the file and
    says the previous version is intact.
    """
    path = Path(path)
    try:
        _write_atomic(path, write)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        previous = "the previous version is intact" if path.is_file() else "nothing was written"
        raise WriteError(e.errno, f"cannot write {path}: {e.strerror or e} ({previous}). Free some space or "
                                  "choose an output folder you can write (hydra.run.dir=...).") from e
    return path


def _write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
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


def cached(path: str | Path, *, read: Callable[[Path], T], build: Callable[[], T],
           write: Callable[[T, IO[bytes]], Any]) -> T:
    """The value cached in file ``path``: ``read(path)`` if the file is there, else ``build()``, saved there.

    Built once across processes: a builder holds ``path``'s lock file (``<path>.lock``) and looks again
    after taking it, so two runs that miss the same cache at once (the jobs of a parallel sweep) build it
    once, the second one reading what the first wrote. ``write(value, file)`` saves atomically
    (:func:`write_atomic`). A file that ``read`` cannot read (truncated, from an older format) is
    rebuilt, with a warning.
    """
    from filelock import FileLock

    path = Path(path)
    value = _read_cache(path, read)
    if value is not None:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        value = _read_cache(path, read)  # built by another process while this one waited for the lock
        if value is None:
            value = build()
            write_atomic(path, lambda f: write(value, f))
    return value


def _read_cache(path: Path, read: Callable[[Path], T]) -> T | None:
    if not path.is_file():
        return None
    try:
        return read(path)
    except Exception as e:  # noqa: BLE001 - any unreadable cache is rebuilt, never fatal
        log.warning("rebuilding the unreadable cache file %s (%s: %s)", path, type(e).__name__, e)
        return None
