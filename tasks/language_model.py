"""Autoregressive language modelling: next-token cross-entropy, perplexity, bits per character, samples."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tasks.base import ZooTask
from tasks.outputs import write_artifact


class LanguageModelTask(ZooTask):
    """Train any registry ``lm`` model: ``train/loss``, ``val/loss``, ``test/loss`` (nats/token), ``test/ppl``
    and, for character-level data, ``test/bpc`` (bits per character = loss / ln 2).

    At the end of fit and of test a sample continued from ``prompt`` is printed and appended to
    ``samples.txt`` in the output folder (the data module supplies ``encode``/``decode``).
    """

    kinds = ("lm",)
    monitor = ("val/loss", "min")
    needs = ("encode", "decode")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        prompt: str = "\n",
        sample_tokens: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        channels_last: bool | str = False,
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        self.prompt, self.sample_tokens = prompt, sample_tokens
        self.temperature, self.top_k = temperature, top_k
        self.test_loss = MeanMetric()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log_train("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=batch[1].numel(), sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.test_loss.update(self._loss(batch), weight=batch[1].numel())  # a mean over tokens

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()  # synced across ranks
        self.log("test/loss", loss)
        self.log("test/ppl", loss.exp())
        if self._char_level:
            self.log("test/bpc", loss / math.log(2))
        self.test_loss.reset()

    @property
    def _char_level(self) -> bool:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return bool(getattr(dm, "char_level", False))

    @torch.no_grad()
    def generate(self, prompt: str, *, max_new_tokens: int) -> str:
        """Continue ``prompt`` with the data module's tokenizer and ``zoo.decoding.sample``."""
        from zoo.decoding import sample

        dm = self.trainer.datamodule
        ids = dm.encode(prompt).to(self.device)[None]  # (1, T)
        was_training = self.training
        self.eval()
        try:
            out = sample(self.model, ids, max_new_tokens=max_new_tokens, temperature=self.temperature,
                         top_k=self.top_k)
        finally:
            self.train(was_training)
        return dm.decode(out[0].tolist())

    def _write_sample(self, when: str) -> None:
        if self.sample_tokens <= 0 or not hasattr(getattr(self.trainer, "datamodule", None), "decode"):
            return
        text = self.generate(self.prompt, max_new_tokens=self.sample_tokens)
        write_artifact(self.trainer, "samples.txt", f"sample after {when} ({self.model_name}, "
                       f"temperature {self.temperature}, top_k {self.top_k})", text)

    def on_fit_end(self) -> None:
        self._write_sample("fit")

    def on_test_end(self) -> None:
        self._write_sample("test")

