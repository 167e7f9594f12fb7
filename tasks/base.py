"""What every task shares: building the model from the registry, optimisation, cheap metric logging."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from tasks import rng
from tasks.optim import build_optimizer, build_scheduler
from zoo.registry import ZooError, create_model
from zoo.vocab import check_task_kinds


class ZooTask(L.LightningModule):
    """A LightningModule around one registry model.

    ``model`` is ``{"name": registry name, **builder kwargs}``; it is saved as a hyperparameter so
    a checkpoint rebuilds the model without Hydra (``zoo.load_model`` or ``Task.load_from_checkpoint``).
    Subclasses define the loss and metrics. ``channels_last="auto"`` uses the channels-last memory
    format for models with 2-D convolutions (1.25-1.7x faster on CPU, benchmarks/README.md).
    ``compile=True`` compiles the model's forward with ``torch.compile`` (``nn.Module.compile``: in place,
    so parameter names and checkpoints stay the same); off by default: on the development CPU it compiled
    for 11-23 s and then ran slower than eager. Only calls of ``self.model(...)`` are compiled, not its
    other methods (``generate``, ``encode``, ...).
    """

    # -- what the task declares; the pairing check, the model-implied task, the checkpoint monitor and the
    # help texts all read these, so a new task cannot be left out of any of them --
    kinds: ClassVar[tuple[str, ...]] = ()  # the task kinds it trains (zoo.vocab.TASKS)
    families: ClassVar[tuple[str, ...] | None] = None  # registry families it can train; None: any of its kinds
    any_image_data: ClassVar[bool] = False  # uses a dataset's images only, so any image dataset serves it
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")  # (metric, mode) the best checkpoint is chosen by
    needs: ClassVar[tuple[str, ...]] = ()  # DataModule attributes it reads (checked when fitting starts)

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not abstract:  # a concrete task must say what it trains
            check_task_kinds(cls.kinds, owner=f"{cls.__qualname__}.kinds")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(model)
        if "name" not in kwargs:
            raise ZooError("the model config needs a 'name' key with a registry name (see `zoo list`)")
        self.model_name = kwargs.pop("name")
        self.model_kwargs = kwargs
        self.model = create_model(self.model_name, **kwargs)
        if channels_last == "auto":
            channels_last = any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.compiled = bool(compile)
        if self.compiled:
            self.model.compile()  # lazy: compiles at the first call, for the shapes it sees
        self.log_every_n_steps = log_every_n_steps
        self._rng_to_restore: dict[str, Any] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records the hook it is in by setting `_current_fx_name` twice per hook call, ~44 times a
        # training step; nn.Module.__setattr__ checks every value against parameters, buffers and modules
        # first. A hook name (a str or None) is none of those, so it is stored directly: the same result,
        # 2.1 -> 0.35 us a call, ~77 us a step (benchmarks/lightning_hooks.py).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        missing = [a for a in self.needs if dm is not None and not hasattr(dm, a)]
        if missing:
            raise ZooError(f"{type(self).__name__} reads {', '.join(missing)} from its data module, which "
                           f"{type(dm).__name__} does not have: it trains {'/'.join(self.kinds)} and needs data "
                           "for that kind. Drop the task= override: each data config brings its own task.")

    def to_model_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def log_train(self, name: str, value: torch.Tensor, *, prog_bar: bool = True) -> None:
        """Log a training scalar every ``log_every_n_steps`` only: ``self.log`` costs ~1 ms a call.

        Lightning writes step metrics to the loggers after the steps where ``(step + 1) % log_every_n_steps == 0``,
        with the value logged last: so the value of that very step is logged (a value logged at step 0 would be
        written at step 49, shifting every curve), and step 0's too, for the progress bar from the start.
        """
        step = self.global_step
        if step == 0 or (step + 1) % self.log_every_n_steps == 0:
            self.log(name, value, prog_bar=prog_bar, on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        # The learning rate once per epoch, for the learning curves (callbacks=full logs it every step).
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        if optimizers:
            self.log("lr", optimizers[0].param_groups[0]["lr"])

    # -- exact resumption: the random streams (augmentation, dropout, noise) travel with the checkpoint --
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng.capture()  # CPU, CUDA per device, Python, NumPy
        # What zoo.load_model needs to rebuild the model alone: its registry name, its builder kwargs, and
        # where its weights are in the task's state dict (the task holds it as `self.model`).
        checkpoint["zoo"] = {"model": self.model_name, "kwargs": dict(self.model_kwargs), "prefix": "model."}
        # ... and the input contract its data states (channels, size, mean/std, class names, the tokenizer), so a
        # raw input becomes the model's input without the DataModule (zoo.preprocess, `zoo predict`), and
        # init_from=CKPT reads new text with the tokenizer the weights were trained on.
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if callable(getattr(dm, "preprocessing", None)):
            checkpoint["zoo"]["preprocessing"] = dm.preprocessing()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        # Restored here, after Lightning's own set-up has consumed whatever randomness it needs.
        if self._rng_to_restore is not None:
            rng.restore(self._rng_to_restore)
            self._rng_to_restore = None

    def configure_optimizers(self) -> Any:
        opt_cfg = dict(self.hparams.optimizer or {})
        sched_cfg = dict(self.hparams.scheduler or {})
        optimizer = build_optimizer(self.model, **opt_cfg)
        scheduler = build_scheduler(optimizer, total_steps=self.trainer.estimated_stepping_batches, **sched_cfg)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
