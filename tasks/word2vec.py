"""word2vec skip-gram with negative sampling (Mikolov et al. 2013): logistic loss on true vs noise pairs."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tasks.base import ZooTask
from tasks.outputs import write_artifact

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # center (B,), context (B,), negatives (B, K)


class Word2VecTask(ZooTask):
    """``train/loss``, ``val/loss``, ``test/loss``: -log s(u_c.v_o) - sum_k log s(-u_c.v_k), averaged over pairs.

    After fitting, the nearest neighbours of ``probe_words`` are printed and saved to ``samples.txt``.
    """

    kinds = ("embed",)
    monitor = ("val/loss", "min")
    needs = ("stoi", "itos")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        probe_words: tuple[str, ...] = ("king", "love", "good", "night", "sword"),
        num_neighbours: int = 8,
        channels_last: bool | str = False,
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        self.probe_words, self.num_neighbours = tuple(probe_words), num_neighbours
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor):
        return self.model(center, context, negatives)

    def _loss(self, batch: Batch) -> torch.Tensor:
        pos, neg = self(*batch)  # (B,), (B, K)
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()  # softplus(-z) = -log sigmoid(z)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log_train("train/loss", loss)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_loss.update(self._loss(batch), weight=len(batch[0]))

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.val_loss.reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.test_loss.update(self._loss(batch), weight=len(batch[0]))

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss.compute())
        self.test_loss.reset()

    def neighbours(self, words: tuple[str, ...], k: int) -> dict[str, list[str]]:
        """The ``k`` nearest words of each known word in ``words`` (by the model's ``most_similar``)."""
        dm = self.trainer.datamodule
        known = [w for w in words if w in dm.stoi]
        if not known:
            return {}
        ids = torch.tensor([dm.stoi[w] for w in known], device=self.device)
        with torch.no_grad():
            out = self.model.most_similar(ids, k)
        near = out[0] if isinstance(out, tuple) else out  # ids (n, k), possibly with scores
        near = getattr(out, "indices", near)
        return {w: [dm.itos[j] for j in row] for w, row in zip(known, near.tolist(), strict=True)}

    def on_fit_end(self) -> None:
        nn = self.neighbours(self.probe_words, self.num_neighbours)
        if nn:
            write_artifact(self.trainer, "samples.txt", f"nearest words ({self.model_name})",
                           "\n".join(f"{w}: {', '.join(n)}" for w, n in nn.items()))
