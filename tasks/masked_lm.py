"""Masked-LM pretraining (BERT, Devlin et al. 2019): predict masked tokens from their context on both sides."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tasks.base import ZooTask
from tasks.data.tokenize import MASK_ID


class MaskedBatch(NamedTuple):
    """What :func:`mask_tokens` makes of a batch of token ids (all (B, T))."""

    inputs: torch.Tensor  # the ids the model sees: chosen positions replaced by <mask> or a random token, or kept
    targets: torch.Tensor  # the original ids
    chosen: torch.Tensor  # bool: the positions to predict (the loss is taken there only)


def mask_tokens(ids: torch.Tensor, *, vocab_size: int, mask_id: int = MASK_ID, first_normal_id: int = MASK_ID + 1,
                mask_prob: float = 0.15, replace_prob: float = 0.8, random_prob: float = 0.1,
                generator: torch.Generator | None = None) -> MaskedBatch:
    """BERT's corruption: each ordinary token (id >= ``first_normal_id``: never padding or another special) is
    chosen with probability ``mask_prob``; a chosen token becomes ``<mask>`` with probability ``replace_prob``,
    a random ordinary token with ``random_prob``, and stays itself otherwise (80/10/10 by default), so the
    model cannot tell from its input which positions it is asked about.

    ``generator``: a seeded generator on ``ids``'s device for a fixed masking (validation); None: the global RNG
    (training: every epoch masks afresh, RoBERTa's dynamic masking, and a resumed run restores that RNG).
    """
    def uniform() -> torch.Tensor:
        return torch.rand(ids.shape, device=ids.device, generator=generator)

    normal = ids >= first_normal_id
    chosen = normal & (uniform() < mask_prob)
    roll = uniform()  # one draw decides mask / random / keep for every chosen position
    to_mask = chosen & (roll < replace_prob)
    to_random = chosen & (roll >= replace_prob) & (roll < replace_prob + random_prob)
    random_ids = torch.randint(first_normal_id, vocab_size, ids.shape, device=ids.device, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return MaskedBatch(inputs, ids, chosen)


class MaskedLMTask(ZooTask):
    """Masked-LM pretraining of ``transformer_encoder`` (``task="mlm"``): cross-entropy on the masked positions
    only; logs ``train/loss``, ``val/loss``, ``val/mlm_ppl`` and ``test/mlm_ppl`` (the perplexity of the masked
    tokens: exp of their mean loss).

    The data module yields batches of token ids (``((tokens, padding_mask),)``) and states ``mask_id`` (its
    tokenizer's ``<mask>``) and ``first_normal_id`` (the first id that is not a special token). Validation
    and test mask with a fixed seed, so ``val/mlm_ppl`` compares epochs on the same masked positions. Fine-tune
    the result with ``init_from=<its checkpoint>`` on a classification data set (README "Pretraining").
    """

    kinds = ("mlm",)
    monitor = ("val/mlm_ppl", "min")
    needs = ("mask_id", "first_normal_id")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        mask_prob: float = 0.15,
        replace_prob: float = 0.8,
        random_prob: float = 0.1,
        eval_seed: int = 0,
        channels_last: bool | str = False,
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        if not (0 < mask_prob <= 1 and replace_prob >= 0 and random_prob >= 0 and replace_prob + random_prob <= 1):
            raise ValueError(f"task.mask_prob={mask_prob} must be in (0, 1] and task.replace_prob={replace_prob} + "
                             f"task.random_prob={random_prob} at most 1 (BERT: 0.15, 0.8, 0.1)")
        self.mask_prob, self.replace_prob, self.random_prob = mask_prob, replace_prob, random_prob
        self.eval_seed = eval_seed
        self.vocab_size = int(self.model_kwargs["vocab_size"])
        self.mask_id, self.first_normal_id = MASK_ID, MASK_ID + 1  # the data module's, from setup() on
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(tokens, padding_mask)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None:
            self.mask_id, self.first_normal_id = int(dm.mask_id), int(dm.first_normal_id)

    def mask(self, ids: torch.Tensor, generator: torch.Generator | None = None) -> MaskedBatch:
        return mask_tokens(ids, vocab_size=self.vocab_size, mask_id=self.mask_id,
                           first_normal_id=self.first_normal_id, mask_prob=self.mask_prob,
                           replace_prob=self.replace_prob, random_prob=self.random_prob, generator=generator)

    def mlm_loss(self, batch: MaskedBatch, padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(mean cross-entropy over the chosen positions, how many there were). Only the chosen positions are
        projected to the vocabulary: (N, D) -> (N, V) instead of (B, T, V), about 7x less work at 15%."""
        h = self.model.forward_features(batch.inputs, padding_mask).features  # (B, T, D)
        n = int(batch.chosen.sum())
        if n == 0:  # a batch of very short sentences may have nothing masked: no signal, but a graph
            return h.sum() * 0.0, 0
        logits = self.model.forward_head(h[batch.chosen])  # (N, D) -> (N, V)
        return F.cross_entropy(logits.float(), batch.targets[batch.chosen]), n

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (ids, padding_mask), = batch
        loss, _ = self.mlm_loss(self.mask(ids), padding_mask)
        self.log_train("train/loss", loss)
        return loss

    def _eval_step(self, batch: Any, batch_idx: int, metric: MeanMetric) -> None:
        (ids, padding_mask), = batch
        g = torch.Generator(device=ids.device).manual_seed(self.eval_seed + batch_idx)  # the same masks each time
        loss, n = self.mlm_loss(self.mask(ids, g), padding_mask)
        if n:
            metric.update(loss, weight=n)  # a mean over masked tokens, not over batches

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.val_loss)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, self.test_loss)

    def _log_epoch(self, stage: str, metric: MeanMetric) -> None:
        loss = metric.compute()  # synced across ranks
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}/mlm_ppl", loss.exp(), prog_bar=True)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_loss)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_loss)
