"""Sequence-to-sequence translation: teacher forcing in training, greedy and beam decoding with BLEU at test."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from tasks.base import ZooTask
from tasks.outputs import write_artifact

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # src (B, S), tgt (B, T) = <bos> ... <eos>, index (B,)


class Seq2SeqTask(ZooTask):
    """Train a registry encoder-decoder: ``train/loss``, ``val/loss``, ``test/loss`` (token cross-entropy,
    padding ignored) and ``test/bleu`` (corpus sacreBLEU on detokenised text; beam search when
    ``beam_size > 1``, else greedy), ``test/bleu_greedy``; optionally ``val/bleu`` (greedy) every epoch.

    A few test translations are printed and all of them saved to ``translations.txt`` in the output folder.
    """

    kinds = ("seq2seq",)
    monitor = ("val/loss", "min")
    needs = ("bos_id", "eos_id", "decode", "references", "sources")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        label_smoothing: float = 0.1,
        beam_size: int = 4,
        max_decode_len: int = 64,
        val_bleu: bool = False,
        num_examples: int = 5,
        channels_last: bool | str = False,
        compile: bool = False,
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last, compile=compile,
                         log_every_n_steps=log_every_n_steps)
        self.label_smoothing, self.beam_size, self.max_decode_len = label_smoothing, beam_size, max_decode_len
        self.val_bleu, self.num_examples = val_bleu, num_examples
        self.pad_id = self.model_kwargs.get("pad_id", 0)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self._hyps: dict[str, dict[str, dict[int, str]]] = {}

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, tgt_in, src_padding_mask=src == self.pad_id, tgt_padding_mask=tgt_in == self.pad_id)

    def _loss(self, batch: Batch, *, smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        src, tgt, _ = batch
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # teacher forcing: predict token t+1 from tokens <= t
        logits = self(src, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=self.pad_id,
                               label_smoothing=smoothing)
        return loss, int((tgt_out != self.pad_id).sum())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch, smoothing=self.label_smoothing)
        self.log_train("train/loss", loss)
        return loss

    # --- decoding ----------------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, src: torch.Tensor, *, beam_size: int = 1) -> torch.Tensor:
        """Token ids of the translations of ``src`` (B, S): greedy, or beam search when ``beam_size > 1``."""
        from zoo.decoding import beam_search, greedy_decode

        dm = self.trainer.datamodule
        max_len = min(self.max_decode_len, int(src.shape[1] * 1.5) + 10)
        kw = dict(bos_id=dm.bos_id, eos_id=dm.eos_id, max_len=max_len)
        if beam_size > 1:
            return beam_search(self.model, src, src == self.pad_id, beam_size=beam_size, **kw)
        return greedy_decode(self.model, src, src == self.pad_id, **kw)

    def _collect(self, stage: str, setting: str, batch: Batch, ids: torch.Tensor) -> None:
        dm = self.trainer.datamodule
        store = self._hyps.setdefault(stage, {}).setdefault(setting, {})
        for i, row in zip(batch[2].tolist(), ids.tolist(), strict=True):
            store[i] = dm.decode(row)

    def _gather(self, stage: str) -> None:
        """Under DDP each rank decoded its own shard: put every rank's hypotheses together on every rank
        (BLEU is a corpus score, not a mean of per-rank scores), keyed by the sentences' global indices."""
        if self._trainer is None or self.trainer.world_size == 1 or stage not in self._hyps:
            return
        import torch.distributed as dist

        parts: list[Any] = [None] * self.trainer.world_size
        dist.all_gather_object(parts, self._hyps[stage])
        merged: dict[str, dict[int, str]] = {}
        for part in parts:
            for setting, hyps in part.items():
                merged.setdefault(setting, {}).update(hyps)
        self._hyps[stage] = merged

    def _bleu(self, stage: str, setting: str) -> float:
        import sacrebleu

        refs = self.trainer.datamodule.references(stage)
        got = self._hyps.get(stage, {}).get(setting, {})
        order = sorted(got)
        return sacrebleu.corpus_bleu([got[i] for i in order], [[refs[i] for i in order]]).score

    # --- validation and test -------------------------------------------------------------------------

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, n = self._loss(batch)
        self.val_loss.update(loss, weight=n)
        if self.val_bleu and not self.trainer.sanity_checking:
            self._collect("val", "greedy", batch, self.translate(batch[0]))

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.val_loss.reset()
        if self.val_bleu and not self.trainer.sanity_checking:
            self._gather("val")  # a collective: every rank calls it, with or without hypotheses of its own
            if self._hyps.get("val"):
                self.log("val/bleu", self._bleu("val", "greedy"), prog_bar=True)
        self._hyps.pop("val", None)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, n = self._loss(batch)
        self.test_loss.update(loss, weight=n)
        self._collect("test", "greedy", batch, self.translate(batch[0]))
        if self.beam_size > 1:
            self._collect("test", "beam", batch, self.translate(batch[0], beam_size=self.beam_size))

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss.compute())  # MeanMetric: synced across ranks
        self.test_loss.reset()
        self._gather("test")
        greedy = self._bleu("test", "greedy")
        self.log("test/bleu_greedy", greedy)
        best = "beam" if self.beam_size > 1 else "greedy"
        self.log("test/bleu", self._bleu("test", "beam") if best == "beam" else greedy)
        if self.beam_size > 1:
            self.log("test/bleu_beam", self._bleu("test", "beam"))
        self._write_translations(best)
        self._hyps.pop("test", None)

    def _write_translations(self, setting: str) -> None:
        dm = self.trainer.datamodule
        hyps = self._hyps["test"][setting]
        refs, srcs = dm.references("test"), dm.sources["test"]
        lines = [f"SRC: {srcs[i]}\nREF: {refs[i]}\nHYP: {hyps[i]}\n" for i in sorted(hyps)]
        shown = "\n".join(lines[: self.num_examples])
        if self.trainer.is_global_zero:
            print(f"=== test translations ({setting}, {self.model_name}) ===\n{shown}", flush=True)
        write_artifact(self.trainer, "translations.txt", f"test translations ({setting})", "\n".join(lines),
                       echo=False)
