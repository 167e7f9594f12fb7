"""Finding and verifying dataset files, with errors that say which file and what to do."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

from zoo.registry import ZooError

MANIFEST_HELP = (
    "set data.root (or the environment variable ZOO_DATA_DIR) to the folder that holds it, "
    "or set data.download=true to fetch it when online"
)


class DataError(ZooError):
    """Dataset files are missing, corrupted, or unreadable."""


def missing_files_error(dataset: str, root: Path, files: Iterable[str], *, download: bool) -> DataError:
    listed = "\n".join(f"  {root / f}" for f in files)
    why = "download is off (data.download=false)" if not download else "downloading failed (offline?)"
    return DataError(
        f"{dataset}: data files not found under data root {root} and {why}. Expected:\n{listed}\n"
        f"To fix: {MANIFEST_HELP}."
    )


@functools.cache
def _digest(path: str, algo: str, size: int, mtime_ns: int) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, cached per (path, size, mtime) so repeated loads in one process are free."""
    st = path.stat()
    return _digest(str(path), algo, st.st_size, st.st_mtime_ns)


@functools.cache
def _read_manifest(path: str, mtime_ns: int) -> dict[str, str]:
    entries = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*").strip()] = digest.lower()
    return entries


def read_manifest(root: Path, manifest: str | None) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-style manifest in the data root, if there is one."""
    if not manifest:
        return {}
    path = root / manifest
    return _read_manifest(str(path), path.stat().st_mtime_ns) if path.is_file() else {}


def verify_file(root: Path, rel: str, *, md5: str | None, manifest: str | None) -> None:
    """Check one file: against the data root's sha256 manifest when it lists the file, else against ``md5``.

    The manifest is for local copies whose bytes legitimately differ from upstream (the rebuilt CIFAR-10
    batches); files fetched by a downloader are always checked against upstream md5 by torchvision.
    """
    path = root / rel
    listed = read_manifest(root, manifest).get(rel)
    if listed is not None:
        if file_digest(path, "sha256") != listed:
            raise DataError(
                f"checksum mismatch: {path} does not match its sha256 in {root / manifest} "
                "(corrupted or truncated?). Replace the file from its source, or delete it and run with "
                "data.download=true."
            )
        return
    if md5 is not None and file_digest(path, "md5") != md5:
        raise DataError(
            f"checksum mismatch: {path} has md5 {file_digest(path, 'md5')}, expected {md5} "
            "(corrupted or truncated?). Delete it and run with data.download=true, or list a verified copy's "
            f"sha256 in a manifest (data.manifest, e.g. {root}/checksums.sha256)."
        )
