"""Config resolution after composing: ``model=auto`` through the decision tree, and the task a model implies.

Hydra cannot do either while composing (a model config cannot ``override /task``, and an interpolated
defaults-list entry cannot carry overrides), so both happen on the composed config:

- ``model=auto``: :func:`zoo.select` picks a registry name from ``data.meta.modality``, the task
  (``goal.task``, else ``data.meta.task``) and the other ``goal.*`` settings.
- A model that cannot do the data config's task but implies another (the generative families on an
  image dataset: autoencoders reconstruct, a VAE or a GAN generates) gets its own task config.
- A data config whose task is a setting (``data=csv data.task=regress``) gets the one task config that
  trains that task, when the one it composed with does not.

Either way the whole config is composed again from the job's own overrides plus ``model=<name>`` and/or
``task=<config>``, so command-line overrides (``task.optimizer.lr=...``) survive and each job of a
multirun resolves on its own. A ``task=`` given by the user always wins. A resolved config carries a
``selection`` entry (what was chosen and why), which also makes resolving it again a no-op.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf, open_dict

from tasks.config import CONF_DIR
from zoo.registry import ModelInfo, UnknownModelError, ZooError, model_info
from zoo.select import GOALS, Selection, select

AUTO = "auto"


class Resolution(NamedTuple):
    """A resolved config and what resolution did: the tree's choice, the task config, the added overrides."""

    cfg: DictConfig
    selection: Selection | None = None
    task_config: str | None = None
    added: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.cfg.model.name, "task_config": self.task_config, "added_overrides": list(self.added),
                "resolution_s": round(self.seconds, 3),
                **({"selection": self.selection.to_dict()} if self.selection else {})}


def _key(override: str) -> str:
    """``+task.x=1`` -> ``task.x``; ``~model`` -> ``model``."""
    return override.split("=", 1)[0].lstrip("+~")


def job_overrides(cfg: DictConfig) -> list[str] | None:
    """The overrides this job was composed with: from ``cfg.hydra`` or the running Hydra job, else None."""
    if "hydra" in cfg:
        return list(cfg.hydra.overrides.task)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return None


def _choose(cfg: DictConfig) -> Selection:
    meta = cfg.data.get("meta") or {}
    goal = cfg.get("goal") or {}
    modality = meta.get("modality")
    if not modality:
        raise ZooError(f"model=auto needs the data config to declare data.meta.modality (one of image, text, "
                       f"speech, timeseries, tabular); data {cfg.data.get('dataset', cfg.data.get('_target_'))!r} "
                       "declares none. Add a meta block to its conf/data/*.yaml or name a model: model=<name>.")
    task = goal.get("task") or meta.get("task")
    goals = {k: goal[k] for k in GOALS if goal.get(k) is not None}
    return select(modality, task=task, img_size=_image_size(cfg) if modality == "image" else None, **goals)


def _image_size(cfg: DictConfig) -> int | None:
    """The image side the data module states (its constructor reads no data; ``facts()`` is cheap for images)."""
    from hydra.utils import instantiate

    facts = getattr(instantiate(cfg.data, _convert_="all"), "facts", None)
    return facts().get("img_size") if facts is not None else None


def task_class(target: str | None) -> type | None:
    """The task class a ``task._target_`` names (None for a target that is not importable)."""
    if not target:
        return None
    from hydra.utils import get_class

    try:
        return get_class(str(target))
    except Exception:  # noqa: BLE001 - a bad target is reported by the schema check with close matches
        return None


@functools.cache
def task_configs() -> dict[str, type]:
    """Every task config (conf/task/NAME.yaml) -> the task class it builds, read from the configs themselves."""
    found = {}
    for path in sorted((CONF_DIR / "task").glob("*.yaml")):
        cls = task_class(OmegaConf.select(OmegaConf.load(path), "task._target_"))
        if cls is not None:
            found[path.stem] = cls
    return found


def trains(cls: type, info: ModelInfo) -> bool:
    """Whether a task class (its declared ``kinds`` and ``families``) can train a registry model."""
    families = getattr(cls, "families", None)
    return bool(set(getattr(cls, "kinds", ())) & set(info.tasks)) and (families is None or info.family in families)


def _implied_task_config(model_name: str, data_task: str | None, modality: str | None,
                         current: type | None = None) -> str | None:
    """The task config a model needs when the data config's task cannot train it (None: keep the task).

    Derived from the task classes' declarations: a task that can use this data whatever its labels
    (``any_image_data``: the generative tasks on images) and trains one of the model's kinds, preferring a task
    made for the model's family (a VAE's, a GAN's) over one for any model of the kind.
    """
    if "/" in model_name:  # timm/..., torchvision/...: image classifiers
        return None
    try:
        info = model_info(model_name)
    except UnknownModelError:
        return None  # building the model reports it, with close matches
    if data_task is None:
        return None
    if data_task in info.tasks:
        return _data_task_config(current, data_task, info)
    fits = [(getattr(cls, "families", None) is None, name) for name, cls in task_configs().items()
            if trains(cls, info) and getattr(cls, "any_image_data", False) and modality == "image"]
    return min(fits)[1] if fits else None


def _data_task_config(current: type | None, data_task: str, info: ModelInfo) -> str | None:
    """The one task config that trains the data's task on this model, when the composed task (``current``)
    does not: a data config whose task is a setting (``data=csv data.task=regress``) cannot pick its task
    config while composing. None when the composed task fits, or no single task config does."""
    if current is None or data_task in getattr(current, "kinds", ()):
        return None
    fits = [name for name, cls in task_configs().items()
            if data_task in getattr(cls, "kinds", ()) and trains(cls, info) and not getattr(cls, "any_image_data", False)]
    return fits[0] if len(fits) == 1 else None


def resolve_monitor(cfg: DictConfig) -> None:
    """``monitor.metric``/``monitor.mode`` = ``auto`` -> what the task class declares (``Task.monitor``)."""
    mon = cfg.get("monitor")
    if mon is None or AUTO not in (mon.get("metric"), mon.get("mode")):
        return
    cls = task_class(OmegaConf.select(cfg, "task._target_"))
    metric, mode = getattr(cls, "monitor", ("val/loss", "min"))
    with open_dict(cfg):
        if mon.get("metric") == AUTO:
            cfg.monitor.metric = metric
        if mon.get("mode") == AUTO:
            cfg.monitor.mode = mode


def _recompose(base: Sequence[str], added: Sequence[str], *, with_hydra: bool) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    replaced = {_key(o) for o in added}
    # model.* / task.* keys that had to be appended (+key) to the placeholder config may exist in the real
    # one: ++ sets them either way.
    kept = [f"+{o}" if o.startswith("+") and not o.startswith("++") and "." in _key(o) else o
            for o in base if _key(o) not in replaced]
    overrides = [*kept, *added]
    try:
        if GlobalHydra.instance().is_initialized():  # inside @hydra.main or a test's initialize_config_dir
            return compose("train", overrides=overrides, return_hydra_config=with_hydra)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=with_hydra)
    except MissingConfigException as e:
        raise ZooError(f"resolving the config needs {' '.join(added)}, but that config does not exist "
                       f"({str(e).splitlines()[0]}). Name the model and task yourself: model=... task=...") from e


def resolve_config(cfg: DictConfig, *, overrides: Sequence[str] | None = None) -> Resolution:
    """Resolve ``model=auto`` and a model-implied task. ``overrides``: the job's own (default: Hydra's record)."""
    t0 = time.perf_counter()
    if "selection" in cfg:  # resolved already
        resolve_monitor(cfg)
        return Resolution(cfg)
    meta = cfg.data.get("meta") or {}
    model_name = str(cfg.model.name)
    selection = None
    added: list[str] = []
    if model_name == AUTO:
        selection = _choose(cfg)
        model_name = selection.name
        added.append(f"model={model_name}")
    base = list(overrides) if overrides is not None else job_overrides(cfg)
    user_task = base is not None and any(_key(o) == "task" for o in base)
    task_config = None if user_task else _implied_task_config(model_name, meta.get("task"), meta.get("modality"),
                                                              task_class(cfg.task.get("_target_")))
    if task_config is not None and task_class(cfg.task.get("_target_")) is task_configs().get(task_config):
        task_config = None  # the config's task trains the model already (e.g. task= given with the model)
    if task_config is not None:
        added.append(f"task={task_config}")
    if not added:
        resolve_monitor(cfg)
        return Resolution(cfg, seconds=time.perf_counter() - t0)
    if base is None:
        raise ZooError(f"resolving this config needs {' '.join(added)} on top of the overrides it was composed "
                       "with, and those are unknown here. Pass them: resolve_config(cfg, overrides=[...]), or "
                       "compose with return_hydra_config=True.")
    new = _recompose(base, added, with_hydra="hydra" in cfg)
    res = Resolution(new, selection, task_config, tuple(added), time.perf_counter() - t0)
    with open_dict(new):
        new.selection = res.to_dict()
    resolve_monitor(new)
    return res


def resolve_for_run(cfg: DictConfig, out: Path) -> DictConfig:
    """:func:`resolve_config` for a training run: print the choice and save ``selection.json`` and
    ``resolved_config.yaml`` in the run folder (only when resolution changed the config)."""
    res = resolve_config(cfg)
    if res.cfg.get("selection") is None:
        return res.cfg
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # DDP re-launches the script on every rank: one record is enough
        sel = OmegaConf.to_container(res.cfg.selection)
        out.mkdir(parents=True, exist_ok=True)
        (out / "selection.json").write_text(json.dumps(sel, indent=2) + "\n")
        (out / "resolved_config.yaml").write_text(OmegaConf.to_yaml(res.cfg, resolve=True))
        print(describe(sel), flush=True)
    return res.cfg


def describe(selection: dict[str, Any]) -> str:
    """One line for the console: the chosen model, the decision path, the implied task config."""
    parts = [f"[selection] model={selection['model']}"]
    if "selection" in selection:
        parts.append(f"by the decision tree: {selection['selection']['summary']}")
    if selection.get("task_config"):
        parts.append(f"task={selection['task_config']} (the task this model implies)")
    return "  ".join(parts)
