"""Multi-step forecasting: MSE training, MSE and MAE on the standardised series."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from tasks.base import ZooTask


class ForecastingTask(ZooTask):
    """Train a registry ``forecast`` model: ``train/loss`` (MSE), ``val/mse``, ``val/mae``, ``test/mse``,
    ``test/mae`` over every predicted value (all horizons and output features)."""

    kinds = ("forecast",)
    monitor = ("val/mse", "min")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        loss: str = "mse",
        channels_last: bool | str = False,
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        if loss not in ("mse", "mae", "huber"):
            raise ValueError(f"task.loss={loss!r}; choose 'mse', 'mae' or 'huber'")
        self.loss_name = loss
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{m}": cls() for stage in ("val", "test")
            for m, cls in (("mse", MeanSquaredError), ("mae", MeanAbsoluteError))
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        pred = self(x)  # (B, horizon, out_features)
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.smooth_l1_loss}[self.loss_name]
        loss = fn(pred, y)
        self.log_train("train/loss", loss)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        pred = self(x)
        for m in ("mse", "mae"):
            metric = self.metrics[f"{stage}_{m}"]
            metric.update(pred.flatten(), y.flatten())
            self.log(f"{stage}/{m}", metric, prog_bar=stage == "val" and m == "mse", on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")
