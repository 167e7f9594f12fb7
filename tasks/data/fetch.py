"""Finding a dataset file in the data root: verify it if present, else download it from upstream (when allowed)."""

from __future__ import annotations

import gzip
import shutil
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tasks.data.integrity import DataError, missing_files_error, verify_file

DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Remote:
    """One file of a dataset: where it lives under the root, its md5, and where upstream serves it.

    ``url`` may point at a ``.gz`` (decompressed after download) or a ``.zip`` (``member`` extracted).
    """

    rel: str
    md5: str | None
    url: str | None = None
    member: str | None = None
    archive_md5: str | None = None


def _download(root: Path, f: Remote) -> None:
    from torchvision.datasets.utils import download_url

    dest = root / f.rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = Path(f.url.rsplit("/", 1)[1])
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # offline machines fail fast instead of hanging
    try:
        if archive.suffix == ".zip":
            download_url(f.url, str(dest.parent), filename=archive.name, md5=f.archive_md5)
            with zipfile.ZipFile(dest.parent / archive.name) as z, z.open(f.member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        elif archive.suffix == ".gz" and not f.rel.endswith(".gz"):
            download_url(f.url, str(dest.parent), filename=archive.name, md5=f.archive_md5)
            with gzip.open(dest.parent / archive.name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        else:
            download_url(f.url, str(dest.parent), filename=dest.name, md5=f.md5)
    finally:
        socket.setdefaulttimeout(old)


def ensure_files(dataset: str, root: Path, files: list[Remote], *, download: bool, manifest: str | None) -> None:
    """Every file present and verified (md5 from the data README / upstream, or the root's sha256 manifest).

    Missing files are downloaded from upstream when ``download``; otherwise, or when that fails, a
    :class:`DataError` lists what is expected where.
    """
    missing = [f for f in files if not (root / f.rel).is_file()]
    if missing and download and all(f.url for f in missing):
        try:
            for f in missing:
                _download(root, f)
        except Exception as e:  # network errors come in many types
            raise missing_files_error(dataset, root, [f.rel for f in missing], download=True) from e
        missing = [f for f in files if not (root / f.rel).is_file()]
    if missing:
        raise missing_files_error(dataset, root, [f.rel for f in missing], download=download)
    for f in files:
        verify_file(root, f.rel, md5=f.md5, manifest=manifest)


def read_text(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{root / rel} is not UTF-8 text ({e}); replace the file") from e
