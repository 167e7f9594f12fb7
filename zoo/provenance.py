"""Where a result came from: the code (git commit), the libraries, the threads, the precision and the machine.

Each run records :func:`collect_provenance` in its ``metrics.json`` (``"provenance"``), so a report that merges
sweeps run on different days can say what changed in between (:func:`flatten_provenance` gives the keys it
compares). Plain Python: git is asked through ``subprocess`` and may be absent.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "collect_provenance", "flatten_provenance", "git_state"]

PACKAGES = ("torch", "lightning", "hydra-core", "timm", "dnn-zoo")  # distribution names; dnn-zoo is this package
_SOURCE = Path(__file__).resolve().with_name("__init__.py")  # a file of this package, as git would track it


def git_state(source: str | Path = _SOURCE) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout that tracks the file ``source`` (default: this package's
    ``__init__.py``); (None, None) when no checkout tracks it or git is missing.

    Tracked, not merely inside: an installed zoo in a virtual environment that lives in some other project's
    checkout is not that project's code. Dirty means tracked files differ from the commit (untracked files,
    e.g. run outputs, do not count).
    """
    source = Path(source).resolve()

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(source.parent), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):  # no git, or it hung on a network filesystem
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    if git("ls-files", "--error-unmatch", source.name) is None:
        return None, None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "unknown"


def collect_provenance(*, threads: int | None = None, precision: str | None = None,
                       device: Any = None) -> dict[str, Any]:
    """The provenance of a run about to be (or just) trained: a JSON-ready dict.

    ``threads``: torch's intra-op threads (default: ``torch.get_num_threads()``); ``precision``: the trainer's
    (``32-true``, ``bf16-mixed``...); ``device``: the ``torch.device`` it trained on (a CUDA device adds the
    GPU's name). Keys: ``git_commit``, ``git_dirty`` (None outside a git checkout), ``packages`` (versions,
    None where not installed), ``python``, ``threads``, ``precision``, ``device`` (``type``, ``cpu``, ``gpu``).
    """
    import torch

    commit, dirty = git_state()
    device = torch.device(device) if device is not None else torch.device("cpu")
    gpu = None
    if device.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "precision": None if precision is None else str(precision),
        "device": {"type": device.type, "cpu": _cpu_name(), "gpu": gpu},
        "platform": sys.platform,
    }


def flatten_provenance(provenance: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"packages": {"torch": "2.6"}}`` -> ``{"packages.torch": "2.6"}``: one comparable value per key."""
    flat: dict[str, Any] = {}
    for key, value in provenance.items():
        if isinstance(value, dict):
            flat.update(flatten_provenance(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
