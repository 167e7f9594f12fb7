"""One training run from a composed Hydra config: data, task, Trainer -> fit -> test -> metrics.json.

``train.py`` calls :func:`run` under ``@hydra.main``; tests call it on a config from ``hydra.compose``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from tasks.callbacks import FrozenHeap, QuietProfiler, SpeedMonitor
from tasks.checkpoints import check_resumable, write_atomic
from tasks.facts import model_kwargs
from tasks.init_from import freeze_parameters, init_model, read_init_checkpoint
from tasks.loggers import finish_runs
from tasks.precision import AUTO, resolve_precision
from tasks.resolve import resolve_for_run, resolve_monitor
from tasks.validate import ConfigError, check_required, validate_config
from zoo.provenance import collect_provenance
from zoo.registry import ZooError, count_params

log = logging.getLogger(__name__)

# Noise a run's user can do nothing about: Lightning 2.6's own use of a torch pytree API that torch 2.14
# deprecates, and its advertisement for a cloud logger at every start.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_`` (null entries are off)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, torch.Tensor) else v


@contextlib.contextmanager
def constructor_errors() -> Iterator[None]:
    """A :class:`ZooError` raised inside a ``_target_``'s constructor (a data file that is not there, a model
    argument it does not take) comes out as itself, not wrapped in Hydra's InstantiationException, so that
    callers of :func:`run` and :func:`build` catch the library's own errors. Its traceback is kept."""
    try:
        yield
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, ZooError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


@constructor_errors()
def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer, SpeedMonitor]:
    """Instantiate the data module, the task and the Trainer of a composed config."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    resolve_monitor(cfg)  # monitor.metric=auto -> the task class's own (configs composed without resolve_config)
    datamodule = instantiate(cfg.data, _convert_="all")
    init_from = cfg.get("init_from")
    if init_from:  # before the data states its facts: the checkpoint may bring the tokenizer
        init_ckpt = read_init_checkpoint(init_from, datamodule, Path(cfg.paths.output_dir), model=cfg.model.name)
    task = instantiate(cfg.task, model=model_config(cfg, datamodule), _convert_="all")
    if init_from:
        init_model(task.model, init_ckpt, source=str(init_from), out=Path(cfg.paths.output_dir),
                   reset_head=bool(cfg.get("reset_head")))
    freeze_parameters(task.model, list(cfg.get("freeze") or []))
    speed = SpeedMonitor()
    callbacks = [*_instantiate_all(cfg.get("callbacks")), speed, FrozenHeap()]
    loggers = _instantiate_all(cfg.get("logger")) or False
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": QuietProfiler()}  # trainer.profiler=simple wins
    trainer = instantiate(_trainer_config(cfg.trainer, task), callbacks=callbacks, logger=loggers,
                          default_root_dir=cfg.paths.output_dir, **profiler)
    _cache_cuda_check(trainer)
    return datamodule, task, trainer, speed


def _trainer_config(trainer_cfg: DictConfig, task: L.LightningModule) -> DictConfig:
    """``cfg.trainer``, with ``precision=bf16-auto`` made Lightning's (``tasks.precision``) and DDP's unused-parameter
    search on for tasks that need it (``ddp_find_unused_parameters``).

    A GAN's discriminator step leaves the generator's parameters out of its graph; DDP without the search
    stops at the second step ("parameters that were not used in producing the loss").
    """
    if str(trainer_cfg.get("precision")) == AUTO:  # bf16 where it is fast (tasks/precision.py)
        precision = resolve_precision(AUTO, str(trainer_cfg.get("accelerator", "cpu")))
        trainer_cfg = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(trainer_cfg, resolve=True)),
                                      {"precision": precision})
    strategy = trainer_cfg.get("strategy")
    if (getattr(task, "ddp_find_unused_parameters", False) and isinstance(strategy, DictConfig)
            and str(strategy.get("_target_", "")).endswith("DDPStrategy") and not strategy.get("find_unused_parameters")):
        resolved = OmegaConf.create(OmegaConf.to_container(trainer_cfg, resolve=True))  # detached from the root
        return OmegaConf.merge(resolved, {"strategy": {"find_unused_parameters": True}})
    return trainer_cfg


def _cache_cuda_check(trainer: L.Trainer) -> None:
    """On a machine without a CUDA device, answer ``torch.cuda.is_available()`` from torch's cached count.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` at import (a check that cannot poison forked
    processes), and with a CUDA build of torch every Adam/AdamW step then asks NVML again (its
    graph-capture health check): a ``dlopen`` and ``nvmlInit`` per step, 0.25 ms here, 2-3% of a LeNet-5
    step (benchmarks/README.md). Without a device there is nothing to poison, so the cached runtime
    count (0.6 us) answers instead. A CUDA machine keeps Lightning's setting.
    """
    if trainer.accelerator.__class__.__name__ == "CPUAccelerator" and torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def model_config(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The model's config with the facts its data module states filled in (``tasks.facts``)."""
    facts = getattr(datamodule, "facts", None)
    if facts is None:
        raise ConfigError(f"{type(datamodule).__name__} does not state its facts: a data module for zoo models "
                          "defines facts() -> dict (num_classes, in_chans, vocab_size, ...), see tasks/facts.py.")
    stated = {"task": (cfg.data.get("meta") or {}).get("task"), **facts()}
    dataset = str(cfg.data.get("dataset") or cfg.data.get("source") or cfg.data.get("_target_"))
    return model_kwargs(OmegaConf.to_container(cfg.model, resolve=True), stated, dataset=dataset)


def _resolve_ckpt_path(ckpt_path: str | None, out: Path) -> str | None:
    """``last`` means this run folder's checkpoints/last.ckpt; no checkpoint yet means a fresh start."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        last = out / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.warning("ckpt_path=last but %s does not exist yet: starting from scratch", last)
            return None
        return str(last)
    return str(ckpt_path)


@constructor_errors()
def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, test the best checkpoint, write ``metrics.json`` in the output folder and return the metrics
    (the test's and the last validation's).

    ``train=false`` skips fitting and tests ``ckpt_path`` (evaluation of a trained model, same metrics.json).
    A config with ``stages`` (an experiment of several runs, e.g. pretraining then fine-tuning) runs each stage
    in turn instead (tasks/stages.py).
    """
    if cfg.get("stages"):
        from tasks.stages import run_stages

        return run_stages(cfg)
    out = Path(cfg.paths.output_dir)
    check_required(cfg)  # before model=auto reads the data: data.path=??? would fail there with a traceback
    cfg = resolve_for_run(cfg, out)  # model=auto and model-implied tasks; prints them, writes selection.json
    validate_config(cfg)  # bad keys, values and model/data pairs stop here, before any data is read
    out.mkdir(parents=True, exist_ok=True)
    datamodule, task, trainer, speed = build(cfg)
    try:
        metrics = _fit_and_test(cfg, out, datamodule, task, trainer, speed)
    except BaseException:
        finish_runs(failed=True)
        raise
    finish_runs()
    return metrics


def _fit_and_test(cfg: DictConfig, out: Path, datamodule: L.LightningDataModule, task: L.LightningModule,
                  trainer: L.Trainer, speed: SpeedMonitor) -> dict[str, Any]:
    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"), out)
    fit = bool(cfg.get("train", True))
    if not fit and ckpt_path is None:
        raise ConfigError("train=false evaluates a trained model without training: name it with ckpt_path=PATH "
                          "(a run's checkpoints/best-*.ckpt), with the run's own model and data overrides.")
    if ckpt_path is not None:
        check_resumable(ckpt_path, dict(task.hparams.model), task=task)
    t0 = time.perf_counter()
    if fit:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    train_time = time.perf_counter() - t0
    # the last validation's values, read before testing: what a hyperparameter search optimises (tasks/search.py)
    validated = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path else None
    best = best if fit else ckpt_path  # train=false: the checkpoint it was given is the one tested
    results = [{}]
    if cfg.get("test", True) or not fit:
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)

    metrics: dict[str, Any] = {
        "model": task.model_name,
        "data": cfg.data.get("dataset", cfg.data.get("_target_")),
        **{k: _scalar(v) for k, v in results[0].items()},
        **validated,
        "params": count_params(task.model),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_time_s": round(train_time, 2),
        "samples_per_s": round(speed.samples_per_s * trainer.world_size, 1),  # all ranks (equal shards)
        "world_size": trainer.world_size,
        "best_checkpoint": best,
        "init_from": cfg.get("init_from"),
        "reset_head": bool(cfg.get("reset_head")) if cfg.get("init_from") else None,
        "seed": cfg.seed,
        # code, libraries, threads, precision, machine: what a report merging sweeps checks (zoo.provenance)
        "provenance": collect_provenance(threads=torch.get_num_threads(), precision=str(trainer.precision),
                                         device=trainer.strategy.root_device),
    }
    if trainer.is_global_zero:
        write_atomic(out / "metrics.json", lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
        print(f"[{metrics['model']} on {metrics['data']}] {shown}  params={metrics['params']:,}  "
              f"epochs={metrics['epochs']}  train_time={train_time:.1f}s  "
              f"samples/s={metrics['samples_per_s']:.0f}  -> {out / 'metrics.json'}")
    return metrics
