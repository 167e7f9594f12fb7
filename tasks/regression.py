"""Regression: MSE on the standardised target; MSE, RMSE, MAE and R^2 in the target's own units."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score

from tasks.base import ZooTask

METRICS = {"mse": lambda: MeanSquaredError(), "rmse": lambda: MeanSquaredError(squared=False),
           "mae": MeanAbsoluteError, "r2": R2Score}


class RegressionTask(ZooTask):
    """Train a registry ``regress`` model (one output per input): ``train/loss`` (MSE on the standardised
    target), ``val/mse``, ``val/rmse``, ``val/mae``, ``val/r2`` and the same on ``test/``.

    The data module standardises the target with training statistics (``target_mean``, ``target_std``); the
    metrics undo that, so they are in target units. With ``data.log_target=true`` the target *is* the log
    (natural) of the column, and the metrics are on the log scale: ``test/rmse`` is then the RMSE of log
    predictions, the score of the Kaggle House Prices benchmark (RMSE between log predicted and log observed
    price). The scale is kept as buffers, so a checkpoint predicts in target units without the data.
    """

    kinds = ("regress",)
    monitor = ("val/rmse", "min")
    needs = ("target_mean", "target_std")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool | str = False,
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.metrics = torch.nn.ModuleDict({f"{stage}_{m}": make() for stage in ("val", "test")
                                            for m, make in METRICS.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in target units (the log scale with ``log_target``): ``(B,)``."""
        return self.predict_standardised(x) * self.target_std + self.target_mean

    def predict_standardised(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)  # (B, 1) -> (B,)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and stage == "fit":  # a test-only run keeps the scale its checkpoint holds
            dm.setup(stage)
            self.target_mean.fill_(float(dm.target_mean))
            self.target_std.fill_(float(dm.target_std))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.predict_standardised(x), y)
        self.log_train("train/loss", loss)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        pred = self.predict_standardised(x)
        self.log(f"{stage}/loss", F.mse_loss(pred, y), batch_size=len(y), sync_dist=True)
        pred_units = pred * self.target_std + self.target_mean
        y_units = y * self.target_std + self.target_mean
        for m in METRICS:
            metric = self.metrics[f"{stage}_{m}"]
            metric.update(pred_units, y_units)
            self.log(f"{stage}/{m}", metric, prog_bar=stage == "val" and m == "rmse", on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")
