"""Autoencoders (plain and denoising) trained on pixel MSE."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tasks.generative.base import GenerativeTask
from zoo.registry import ZooError


class ReconstructionTask(GenerativeTask):
    """Train an autoencoder on pixel MSE: ``train/loss``, ``val/mse``, ``test/mse`` (per pixel, pixels in [0, 1]).

    For a model with a noise model (a ``corrupt`` method, e.g. ``denoising_autoencoder``) the input is
    corrupted and the clean image is the target; ``val/noisy_mse`` and ``test/noisy_mse`` are the
    corrupted input's own error against the clean image, the baseline a denoiser must beat. Evaluation
    corruption is seeded per batch, so every epoch sees the same noisy validation and test sets.
    """

    kinds = ("reconstruct", "denoise")
    families = ("autoencoder",)
    monitor = ("val/mse", "min")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        num_images: int = 32,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images, seed=seed,
                         channels_last=channels_last, log_every_n_steps=log_every_n_steps, compile=compile)
        if not hasattr(self.model, "decode"):
            raise ZooError(f"task=reconstruction trains autoencoders (autoencoder, denoising_autoencoder); "
                           f"{self.model_name!r} is not one. Pick the task that fits the model.")

    @property
    def denoising(self) -> bool:
        return callable(getattr(self.model, "corrupt", None))

    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean pixels -> (the model's input: corrupted when it has a noise model, its reconstruction)."""
        inputs = self.model.corrupt(x, generator=generator) if self.denoising else x
        return inputs, self(inputs).recon

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = self.unit_pixels(batch[0])
        _, recon = self.reconstruct(x)
        loss = F.mse_loss(recon.float(), x)  # the clean image is the target
        self.log_train("train/loss", loss)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        x = self.unit_pixels(batch[0])
        inputs, recon = self.reconstruct(x, generator=self.eval_generator(x.device, batch_idx))
        self.log(f"{stage}/mse", F.mse_loss(recon.float(), x), prog_bar=stage == "val", batch_size=len(x),
                 sync_dist=True)
        if self.denoising:
            self.log(f"{stage}/noisy_mse", F.mse_loss(inputs.float(), x), batch_size=len(x), sync_dist=True)
        self.keep_for_pictures(stage, batch_idx, x=x, inputs=inputs, recon=recon)

    def _eval_epoch_end(self, stage: str) -> None:
        shown = self._shown.pop(stage, None)
        if shown is None:
            return
        rows = (shown["x"], shown["inputs"], shown["recon"]) if self.denoising else (shown["x"], shown["recon"])
        self.save_grid("recon", self.interleave_rows(*rows, nrow=8))  # clean / (noisy) / reconstructed rows
