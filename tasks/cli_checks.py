"""Turning mistakes on the command line into one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zoo.registry import ZooError

DEBUG_ENV = ("HYDRA_FULL_ERROR", "ZOO_DEBUG")


def _debug() -> bool:
    return any(os.environ.get(v) == "1" for v in DEBUG_ENV)


def _end_progress_lines() -> None:
    """A progress bar leaves its line open (it redraws with carriage returns): start the message on its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        for stream in (sys.stdout, sys.stderr):
            stream.write("\n")
            stream.flush()


def fail(message: str, code: int = 2) -> None:
    _end_progress_lines()
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
    check_sweeper_installed(argv, conf_dir)
    check_override_keys(argv, conf_dir)
    check_output_dirs(argv)


def check_sweeper_installed(argv: Sequence[str], conf_dir: str | Path) -> None:
    """``hparams_search=NAME`` (or ``hydra/sweeper=optuna``) without the Optuna sweeper plugin installed fails
    with the pip command; Hydra's own message would be "Could not load 'hydra/sweeper/optuna'"."""
    from tasks.extras import OPTUNA_SWEEPER, require
    from tasks.signatures import ConfigError

    for arg in argv:
        key, _, value = arg.partition("=")
        key = key.lstrip("+")
        if key == "hydra/sweeper":
            wants = value == "optuna"
        else:  # a config (hparams_search/NAME, experiment/NAME) whose defaults select the Optuna sweeper
            group = Path(conf_dir) / key
            path = group / f"{value}.yaml"
            own = key and "." not in key and "/" not in key + value and group.is_dir() and path.is_file()
            wants = bool(own) and "/hydra/sweeper: optuna" in path.read_text()
        if wants:
            try:
                require(OPTUNA_SWEEPER, what=f"{key}={value}")
            except ConfigError as e:
                fail(str(e))


def check_output_dirs(argv: Sequence[str]) -> None:
    """``hydra.run.dir=``/``hydra.sweep.dir=`` naming a folder that cannot be created fails with one line.

    Hydra creates the folder before the run starts, where an ``OSError`` would end in a traceback. A literal
    path is created here instead (Hydra would create it a moment later anyway); one with an interpolation
    (``${now:...}``) is left to Hydra.
    """
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        folder = Path(value).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".zoo-write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            fail(f"{key}={value}: cannot write the run's output folder there ({e.strerror or e}). Choose a folder "
                 f"you can write, e.g. {key}=outputs/my-run.")


def check_override_keys(argv: Sequence[str], conf_dir: str | Path) -> None:
    """``a.b=value`` naming a key the composed config lacks fails with close matches and the '+' hint.

    Hydra refuses such overrides too, but its message ("Key 'max_epoch' is not in struct") names no
    alternative. Costs one compose (~0.1 s) when dotted overrides are given; skipped for sweeps, and for
    anything that does not compose (Hydra then reports it itself).
    """
    conf_dir = Path(conf_dir)
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    keys = [a.split("=", 1)[0] for a in args]
    dotted = [k for k in keys if k[:1] not in "+~" and not k.startswith("hydra") and
              ("." in k or not (conf_dir / k).is_dir())]
    if not dotted or any("," in a or "(" in a for a in args if "." not in a.split("=", 1)[0]):
        return
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    others = [a for a, k in zip(args, keys, strict=True) if k not in dotted and not k.startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("train", overrides=others)
    except Exception:
        return
    tree = OmegaConf.to_container(cfg, resolve=False)  # unresolved: ${hydra:...} values cannot resolve yet
    for key in dotted:
        if _has_key(tree, key):
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        siblings = [str(k) for k in node.keys() if not str(k).startswith("_")] if OmegaConf.is_dict(node) else []
        close = difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.5)
        hint = f"Did you mean: {', '.join(f'{parent}.{c}' if parent else c for c in close)}? " if close else ""
        where = f"{parent} has: {', '.join(siblings)}. " if parent and siblings else ""
        if parent == "model" and OmegaConf.select(cfg, "model.name") == "auto":
            where = "model=auto has no arguments until the decision tree has chosen: name the model (model=...). "
        fail(f"unknown config key {key!r}. {hint}{where}To add a key the config does not have, prefix it "
             f"with '+': +{key}=...")


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


def _user_error(e: BaseException) -> BaseException | None:
    """The ZooError behind ``e`` (Hydra wraps errors raised while instantiating), if any; Lightning's
    MisconfigurationException (``trainer=gpu`` without a GPU, ...) counts as one."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ZooError) or type(e).__name__ == "MisconfigurationException":
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def report_user_error() -> Iterator[None]:
    """Let a :class:`ZooError` end the program with its message and exit status 2 (unless debugging), or
    the error's own ``exit_code`` (an interrupted run: 128 + the signal)."""
    try:
        yield
    except Exception as e:
        err = _user_error(e)
        if err is None or _debug():
            raise
        fail(str(err), getattr(err, "exit_code", 2))
    except SystemExit as e:
        # Lightning ends a run that got SIGTERM outside training (testing, set-up) with SIGTERMException,
        # a SystemExit with status 0: a scheduler would count the killed run as a success.
        if type(e).__name__ != "SIGTERMException":
            raise
        fail("SIGTERM received: the run stopped before it finished. Resume it with resume=<its run folder>.",
             128 + 15)


def _has_key(tree: Any, key: str) -> bool:
    """Whether the dotted ``key`` names an entry of the plain nested dict ``tree``."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True
