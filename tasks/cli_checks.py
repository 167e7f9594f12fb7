"""Turning mistakes on the command line into one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from zoo.registry import ZooError

DEBUG_ENV = ("HYDRA_FULL_ERROR", "ZOO_DEBUG")


def _debug() -> bool:
    return any(os.environ.get(v) == "1" for v in DEBUG_ENV)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    if not _debug():
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
    sys.exit(code)


def group_options(conf_dir: Path, group: str) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_overrides(argv: Sequence[str], conf_dir: str | Path) -> None:
    """Before Hydra starts: ``group=option`` naming an option that does not exist fails with close matches."""
    conf_dir = Path(conf_dir)
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "hydra")):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "." in key or "/" in key or not (conf_dir / key).is_dir():
            continue
        options = group_options(conf_dir, key)
        for v in value.split(","):  # multirun sweeps: model=a,b,c
            if v in ("null", "") or v in options:
                continue
            close = difflib.get_close_matches(v, options, n=4, cutoff=0.4)
            hint = f"Did you mean: {', '.join(close)}? " if close else ""
            fail(f"unknown {key} {v!r}. {hint}Available {key} configs: {', '.join(options)}.")


def expand_resume(argv: Sequence[str]) -> list[str]:
    """``resume=RUN_DIR`` -> that run's own overrides + ``hydra.run.dir=RUN_DIR ckpt_path=last``.

    The resumed run writes into the same folder, continues from ``checkpoints/last.ckpt`` (optimizer,
    scheduler, RNG and data position included) and ends with the metrics the uninterrupted run would have.
    Overrides given after ``resume=`` are applied on top (e.g. a larger ``trainer.max_epochs``).
    """
    args = list(argv)
    resume = [a for a in args if a.startswith("resume=")]
    if not resume:
        return args
    run_dir = Path(resume[-1].split("=", 1)[1]).expanduser()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        fail(f"resume={run_dir}: no run folder there ({saved} is missing). Pass the folder of the run to "
             "resume, e.g. resume=outputs/2026-01-31/12-00-00-000000.")
    import yaml  # PyYAML comes with Hydra; imported here so that train.py stays quick when not resuming

    skip = ("hydra.run.dir=", "ckpt_path=", "resume=")
    previous = [o for o in yaml.safe_load(saved.read_text()) or [] if not o.startswith(skip)]
    extra = [a for a in args if not a.startswith("resume=")]
    return [*previous, *extra, f"hydra.run.dir={run_dir}", "ckpt_path=last"]


def _user_error(e: BaseException) -> ZooError | None:
    """The ZooError behind ``e`` (Hydra wraps errors raised while instantiating), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ZooError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def report_user_error() -> Iterator[None]:
    """Let a :class:`ZooError` end the program with its message and exit status 2 (unless debugging)."""
    try:
        yield
    except Exception as e:
        err = _user_error(e)
        if err is None or _debug():
            raise
        fail(str(err))
