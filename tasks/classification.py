"""Classification: cross-entropy (optionally label-smoothed), torchmetrics accuracy, and AUROC for two classes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy

from tasks.base import ZooTask
from tasks.data.augment import tta_logits
from tasks.data_init import init_from_data
from zoo.registry import ZooError


class ClassificationTask(ZooTask):
    """Train any registry classifier: logs ``train/loss``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``;
    with two classes also ``val/auroc`` and ``test/auroc`` (area under the ROC curve of the softmax
    probability of class 1, the usual score of credit scoring).

    Training labels are class indices (B,) or, under MixUp/CutMix (``data.augment=crop_flip+mixup``), soft
    labels (B, num_classes) whose rows sum to 1: cross-entropy takes either (label smoothing then blends the
    soft label with the uniform one). Validation and test batches are never mixed, so accuracy and AUROC
    always compare with hard labels."""

    kinds = ("classify",)
    monitor = ("val/acc", "max")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
        tta: int = 0,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        self.label_smoothing = label_smoothing
        if tta not in (0, 1, 2):
            raise ValueError(f"task.tta={tta!r}: choose 0 (none), 1 (+ mirror) or 2 (+ 1-pixel shifts, airbench's)")
        self.tta = tta  # test-time augmentation in val/test: 0 none, 1 + mirror, 2 + 1-pixel shifts (airbench)
        num_classes = self.model_kwargs.get("num_classes")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ZooError(f"classifying needs the model's num_classes (got {num_classes!r}); it comes from the "
                           "data module's facts() - pass model={'name': ..., 'num_classes': N} when building "
                           "the task by hand.")
        self.register_buffer("_loss_sum", torch.zeros(()), persistent=False)  # epoch mean without a Metric
        self._loss_steps = 0
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.binary = num_classes == 2
        if self.binary:  # exact AUROC (thresholds=None): keeps the epoch's scores, a few KB for tabular data
            self.val_auroc, self.test_auroc = BinaryAUROC(), BinaryAUROC()

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        if isinstance(x, (tuple, list)):  # text: (tokens, padding_mask) from TextClassificationDataModule
            return self.model(*x)
        return self.model(self.to_model_input(x))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":  # models with a data-dependent init (airbench's whitening) get training images
            init_from_data(self.model, self.trainer)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: (B,) class indices, or (B, num_classes) soft labels from MixUp/CutMix
        loss = F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)
        self._loss_sum += loss.detach()
        self._loss_steps += 1
        self.log_train("train/loss", loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self._loss_steps:
            self.log("train/loss_epoch", self._loss_sum / self._loss_steps, sync_dist=True)
        self._loss_sum.zero_()
        self._loss_steps = 0

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, acc: MulticlassAccuracy,
                   auroc: BinaryAUROC | None = None) -> None:
        x, y = batch
        logits = tta_logits(self, x, level=self.tta) if self.tta else self(x)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), prog_bar=stage == "val", batch_size=len(y),
                 sync_dist=True)
        acc.update(logits, y)
        self.log(f"{stage}/acc", acc, prog_bar=True, on_epoch=True)
        if auroc is not None:
            auroc.update(logits.float().softmax(-1)[:, 1], y)
            self.log(f"{stage}/auroc", auroc, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc, self.val_auroc if self.binary else None)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc, self.test_auroc if self.binary else None)
