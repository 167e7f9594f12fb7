"""Checking a composed config before anything is built, so that a bad request fails in a second with one
message (the key, the offending value, the fix) instead of a traceback minutes into a run.

- Schemas: the ``trainer``/``data``/``task`` groups and every callback and logger entry are checked
  against the signature of their ``_target_`` (keys it accepts, the types it annotates), the top-level
  keys against :class:`RunSchema`, ``task.optimizer``/``task.scheduler`` against the builders in
  ``tasks/optim.py``, and a few keys against value ranges (:data:`RANGES`). Deriving the schemas from
  the constructors keeps them in step with the code; Lightning's and OmegaConf's own errors for these
  come late (after the data is loaded) or as tracebacks.
- Model/data compatibility, from the registry (``ModelInfo.modalities``/``tasks``/``family``), the data
  config's ``meta`` and what the task class declares it trains: an image model on text, a language model
  on images, a GAN under the VAE's task. (Facts such as ``num_classes`` or ``vocab_size`` are checked
  when the data module states them: tasks/facts.py.)
- The output folder: a fresh run never writes into a folder that already holds a run.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tasks.config import CONF_DIR
from tasks.extras import require_for_target
from tasks.facts import FACT_KEYS
from tasks.precision import AUTO
from tasks.resolve import task_class
from tasks.signatures import ConfigError, check_signature, check_target, check_value, close_matches
from zoo.registry import list_models, model_info


@dataclass(frozen=True)
class RunSchema:
    """The top-level keys of conf/train.yaml."""

    seed: int
    threads: int | None = None
    ckpt_path: str | None = None
    checkpoint_every: int = 500
    test: bool = True
    init_from: str | None = None
    stages: dict | None = None
    train: bool = True
    optimized_metric: str | None = None


def _at_least(low: float, what: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v is None or v >= low), what


# Value ranges the annotations cannot say (the type is checked first).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "threads": _at_least(1, "at least 1 (or null for torch's default)"),
    "checkpoint_every": _at_least(1, "a number of training steps, at least 1"),
    "data.batch_size": _at_least(1, "at least 1"),
    "data.eval_batch_size": _at_least(1, "at least 1"),
    "data.val_size": _at_least(0, "0 or more samples"),
    "task.optimizer.lr": ((lambda v: v > 0), "a positive learning rate, e.g. 1e-3"),
    "task.optimizer.weight_decay": _at_least(0, "0 or more"),
    "task.label_smoothing": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    "trainer.max_epochs": _at_least(-1, "a number of epochs (-1: no limit)"),
    "trainer.max_steps": _at_least(-1, "a number of steps (-1: no limit)"),
    "trainer.accumulate_grad_batches": _at_least(1, "at least 1"),
    "trainer.gradient_clip_val": _at_least(0, "0 or more (null: no clipping)"),
    "trainer.log_every_n_steps": _at_least(1, "at least 1"),
    "trainer.limit_train_batches": _at_least(0, "a number of batches or a fraction in (0, 1]"),
    "trainer.limit_val_batches": _at_least(0, "a number of batches or a fraction in [0, 1]"),
    "trainer.limit_test_batches": _at_least(0, "a number of batches or a fraction in [0, 1]"),
}
# Arguments the runner passes itself, not the config.
SUPPLIED = {"trainer": {"callbacks", "logger", "default_root_dir"}, "task": {"model"}}
def validate_config(cfg: DictConfig) -> None:
    """Every check of this module on a composed (and resolved) training config; raises :class:`ConfigError`."""
    check_compatible(cfg)  # first: a model that cannot train on the data is the cause of any later complaint
    check_schemas(cfg)
    check_output_dir(cfg)


def check_required(cfg: DictConfig) -> None:
    """Values a config leaves for the user (``???``, e.g. ``data.path`` of ``data=image_folder``) are given."""
    # group by group: Hydra's own node holds values that are missing until its job runs (hydra.job.num)
    missing = sorted(k for group in cfg if group != "hydra" and OmegaConf.is_dict(cfg._get_node(group))
                     for k in OmegaConf.missing_keys(cfg._get_node(group)))
    if missing:
        from hydra.core.hydra_config import HydraConfig

        choices = cfg.hydra.runtime.choices if "hydra" in cfg else (
            HydraConfig.get().runtime.choices if HydraConfig.initialized() else {})
        data = choices.get("data")
        raise ConfigError(f"{', '.join(missing)} must be set{f' for data={data}' if data else ''}: add "
                          f"{' '.join(f'{k}=...' for k in missing)} to the command line (README: Your own data).")


# -- schemas -------------------------------------------------------------------------------------------------

def _container(cfg: DictConfig, key: str) -> Any:
    """``cfg.<key>`` as plain Python, interpolations resolved; a broken interpolation becomes a ConfigError."""
    node = OmegaConf.select(cfg, key, throw_on_missing=False)
    try:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{key}: {first}. Check the value named there (a typo in an override, or a model "
                          "config that needs a fact its data config does not declare).") from None


def check_schemas(cfg: DictConfig) -> None:
    """Top-level keys, the trainer/data/task groups, callbacks and loggers, optimizer and scheduler."""
    hints = typing.get_type_hints(RunSchema)
    for f in dataclasses.fields(RunSchema):
        if f.name in cfg:
            check_value(f.name, cfg[f.name], hints[f.name], ranges=RANGES)
    for group in ("trainer", "data", "task"):
        values = _container(cfg, group)
        if group == "trainer" and isinstance(values, dict) and values.get("precision") == AUTO:
            values = {**values, "precision": "bf16-mixed"}  # the zoo's own value, checked as what it may become
        if isinstance(values, dict) and "_target_" in values:
            check_target(group, values, skip=SUPPLIED.get(group, ()), ranges=RANGES)
    _check_accelerator(_container(cfg, "trainer") or {})
    for group in ("callbacks", "logger"):
        for name, entry in (_container(cfg, group) or {}).items():
            if isinstance(entry, dict) and "_target_" in entry:
                require_for_target(f"{group}.{name}", str(entry["_target_"]))  # wandb, mlflow: an extra
                check_target(f"{group}.{name}", entry, ranges=RANGES)
    task = _container(cfg, "task") or {}
    if isinstance(task.get("optimizer"), dict):
        _check_optimizer(task["optimizer"])
    if isinstance(task.get("scheduler"), dict):
        _check_scheduler(task["scheduler"])
    _check_model_keys(_container(cfg, "model") or {})


def _check_model_keys(model: dict[str, Any]) -> None:
    """Every key of the model config is an argument of its builder: the builder itself would say so only after
    the data is read, wrapped in Hydra's error. A null fact placeholder the builder does not take is dropped
    later (tasks/facts.py), so it passes."""
    name = str(model.get("name"))
    if "/" in name or name == "auto":  # timm/torchvision classifiers: their own arguments; auto: not chosen yet
        return
    params = inspect.signature(model_info(name).builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key, value in model.items():
        if key != "name" and key not in takes and not (value is None and key in FACT_KEYS):
            raise ConfigError(f"model.{key} is not an argument of {name}.{close_matches(key, takes)} "
                              f"It accepts: {', '.join(takes)}.")


def _check_accelerator(trainer: dict[str, Any]) -> None:
    # Lightning's own message for this is "No supported gpu backend found!", with a traceback.
    import torch

    accelerator = trainer.get("accelerator")
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerator in ("gpu", "cuda", "mps") and not gpu:
        raise ConfigError(f"trainer.accelerator={accelerator!r} but this machine has no usable GPU "
                          "(torch.cuda.is_available() is False). Train on the CPU (trainer=cpu, the default), or "
                          "set trainer.accelerator=auto to use a GPU where there is one.")


def _check_optimizer(opt: dict[str, Any]) -> None:
    from timm.optim import list_optimizers

    from tasks.optim import build_optimizer

    check_signature("task.optimizer", opt, build_optimizer, owner="tasks.optim.build_optimizer", skip=("model",),
                    ranges=RANGES)
    name = opt.get("name", "adamw")
    known = list_optimizers()
    if str(name).lower() not in known:
        raise ConfigError(f"task.optimizer.name={name!r} is not an optimizer timm knows.{close_matches(str(name), known)} "
                          "Common ones: sgd, momentum, adam, adamw, lamb, lion.")


def _check_scheduler(sched: dict[str, Any]) -> None:
    from tasks.optim import SCHEDULES, build_scheduler

    check_signature("task.scheduler", sched, build_scheduler, owner="tasks.optim.build_scheduler",
                    skip=("optimizer", "total_steps"), ranges=RANGES)
    name = sched.get("name", "cosine")
    if name not in SCHEDULES:
        raise ConfigError(f"task.scheduler.name={name!r} is not a schedule.{close_matches(str(name), SCHEDULES)} "
                          f"Choose one of {', '.join(SCHEDULES)}.")


# -- model/data compatibility --------------------------------------------------------------------------------

def _data_configs_for(tasks: Iterable[str], modalities: Iterable[str]) -> list[str]:
    """Data configs (conf/data/*.yaml) whose meta names one of ``tasks`` and ``modalities``."""
    import yaml

    found = []
    for p in sorted((CONF_DIR / "data").glob("*.yaml")):
        meta = ((yaml.safe_load(p.read_text()) or {}).get("data") or {}).get("meta") or {}
        if meta.get("task") in tasks and meta.get("modality") in modalities:
            found.append(p.stem)
    return found


def _model_info(name: str) -> Any:
    """Registry metadata; ``timm/...`` and ``torchvision/...`` names are image classifiers outside the registry."""
    if "/" in name:
        return types.SimpleNamespace(name=name, modalities=("image",), modality="image", tasks=("classify",),
                                     input_shape=None)
    return model_info(name)  # an unknown name fails here, with close matches


def _pairing_error(name: str, info: Any, dataset: str, modality: str | None, task: str | None,
                   task_kinds: tuple[str, ...] | None) -> ConfigError:
    modalities = getattr(info, "modalities", (info.modality,))
    kind = "/".join(modalities)
    wanted = (task,) if task else task_kinds or ()
    others = sorted({m for t in wanted for m in list_models(task=t, modality=modality)}) if modality else []
    fits = _data_configs_for(info.tasks, modalities)
    trained_as = f" (trained as {'/'.join(task_kinds)})" if task_kinds and task not in task_kinds else ""
    return ConfigError(
        f"model {name!r} cannot train on {dataset}: {name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} model "
        f"for {'/'.join(info.tasks)}, and {dataset} is {modality or 'unknown'} data for "
        f"{task or 'an unknown task'}{trained_as}. "
        + (f"Models for {dataset}: {', '.join(others)} (model=NAME). " if others else "")
        + (f"Data for {name}: {', '.join(fits)} (data=NAME)." if fits else "")
    )


def check_compatible(cfg: DictConfig) -> None:
    """The model can learn the data config's task on its modality, as the task class declares.

    The task class says what it trains (``kinds``, ``families``, ``any_image_data``: tasks/base.py); a task
    class that declares nothing cannot be defined, so no task skips this check. The facts the model and the
    data share are checked when the data module states them (tasks/facts.py).
    """
    if "model" not in cfg or "data" not in cfg:
        return
    name = str(cfg.model.get("name"))
    data = cfg.data
    dataset = str(data.get("dataset") or data.get("source") or data.get("_target_"))
    meta = _container(cfg, "data.meta") or {}
    modality, data_task = meta.get("modality"), meta.get("task")
    target = str(OmegaConf.select(cfg, "task._target_", default="") or "")
    cls = task_class(target)
    task_kinds = tuple(getattr(cls, "kinds", ())) or None

    info = _model_info(name)
    if modality and modality not in getattr(info, "modalities", (info.modality,)):
        raise _pairing_error(name, info, dataset, modality, data_task, task_kinds)
    if task_kinds and not set(task_kinds) & set(info.tasks):
        raise _pairing_error(name, info, dataset, modality, data_task, task_kinds)
    families = getattr(cls, "families", None)
    if families is not None and getattr(info, "family", None) not in families:
        raise ConfigError(f"task {target} trains the {'/'.join(families)} famil{'y' if len(families) == 1 else 'ies'}"
                          f", and {name} is a {getattr(info, 'family', '?')} model. Drop the task= override: the "
                          "model brings the task it needs.")
    if task_kinds and data_task and data_task not in task_kinds and not (
            getattr(cls, "any_image_data", False) and modality == "image"):
        raise ConfigError(f"task {target} trains {'/'.join(task_kinds)}, but {dataset} is data for {data_task}. "
                          f"Drop the task= override: the data config brings its own task.")
    task = cfg.model.get("task")
    if task is not None and task not in info.tasks:  # models that serve several tasks take it as an argument
        raise ConfigError(f"model.task={task!r}: {name} does {', '.join(info.tasks)}. "
                          f"Remove the override (the data sets it: {dataset} is data for {data_task}).")


# -- output folder -------------------------------------------------------------------------------------------

def check_output_dir(cfg: DictConfig) -> None:
    """A fresh run does not write into a folder that already holds a run (its results or checkpoints).

    Run folders carry microseconds (conf/hydra/default.yaml), so this only fires when a folder is named
    twice (``hydra.run.dir=...``) - where the second run would silently mix its files with the first's.
    Only rank 0 checks: under DDP the other ranks start inside rank 0's run.
    """
    if cfg.get("ckpt_path") or int(os.environ.get("LOCAL_RANK", 0)) or int(os.environ.get("RANK", 0)):
        return
    out = Path(str(OmegaConf.select(cfg, "paths.output_dir")))
    used = [p for p in (out / "metrics.json", out / "checkpoints" / "last.ckpt") if p.is_file()]
    if used:
        raise ConfigError(f"the output folder {out} already holds a run ({used[0].name} is there). Resume it with "
                          f"resume={out} (or ckpt_path=last), or give this run its own folder: drop "
                          "hydra.run.dir (each run gets a fresh timestamped one) or name another.")
