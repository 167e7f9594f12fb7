"""The diffusion task: noise-prediction training of a DDPM, Fréchet distances of DDIM samples, denoising pictures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from tasks.generative.base import GenerativeTask
from zoo.registry import ZooError

# trainer.fast_dev_run checks that everything runs, in seconds: test/fd's 5000 samples of 50 steps (250k images
# through the network) would take a CPU many minutes, so a smoke test samples this much instead.
SMOKE_FD_SAMPLES, SMOKE_STEPS = 100, 5


class DiffusionTask(GenerativeTask):
    """Train a DDPM (Ho et al. 2020) on L_simple: the MSE between the true noise and the predicted one.

    Each training image gets a timestep t ~ U{0, ..., T-1} and noise eps ~ N(0, I); the model sees
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (pixels in [-1, 1]) and predicts eps.
    ``train/loss`` and ``{val,test}/loss`` are that MSE (evaluation draws t and eps from a generator seeded
    per batch, so the validation loss is the same estimate every epoch). Samples come from DDIM (Song et
    al. 2021) with ``eta``: ``val/fd`` on ``val_fd_samples`` images with ``val_steps`` steps every
    ``fd_every_n_epochs`` epochs (and after the last), ``test/fd`` on ``fd_samples`` images with
    ``test_steps`` steps (``test/fd_real``: the held-out floor); ``fd_samples=0`` turns both off. Pictures
    after every validation epoch and at test: ``samples`` (a grid from fixed noise) and ``trajectory`` (a
    row per sample: x_T ... x_0). Under ``trainer.fast_dev_run`` sampling shrinks to at most
    ``SMOKE_STEPS`` steps and ``SMOKE_FD_SAMPLES`` samples per Fréchet distance.

    Sampling uses averaged weights when the EMA callback is on (conf/task/diffusion.yaml adds it): it swaps
    the average in for validation, and checkpoints hold the average, so test and ``tasks.generate`` sample
    from it too.
    """

    kinds = ("generate",)
    families = ("diffusion",)
    monitor = ("val/loss", "min")  # every epoch; val/fd only every few

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        num_images: int = 64,
        fd_samples: int = 5000,
        test_steps: int = 50,
        val_fd_samples: int = 1000,
        val_steps: int = 20,
        fd_every_n_epochs: int = 5,
        eta: float = 0.0,
        trajectory_rows: int = 8,
        trajectory_frames: int = 8,
        cache_dir: str | None = None,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images,
                         fd_samples=fd_samples, cache_dir=cache_dir, seed=seed, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        if not all(hasattr(self.model, a) for a in ("q_sample", "sample_trajectory", "num_steps")):
            raise ZooError(f"task=diffusion trains diffusion models (ddpm); {self.model_name!r} is not one. "
                           "Pick the task that fits the model.")
        for name, steps in (("test_steps", test_steps), ("val_steps", val_steps)):
            if not 1 <= steps <= self.model.num_steps:
                raise ZooError(f"task.{name}={steps}: DDIM takes between 1 and the model's "
                               f"num_steps={self.model.num_steps} steps")
        if fd_every_n_epochs < 1:
            raise ZooError(f"task.fd_every_n_epochs={fd_every_n_epochs}: use 1 or more (task.val_fd_samples=0 "
                           "turns val/fd off)")
        self.test_steps, self.val_fd_samples, self.val_steps = test_steps, val_fd_samples, val_steps
        self.fd_every_n_epochs, self.eta = fd_every_n_epochs, eta
        self.trajectory_rows, self.trajectory_frames = trajectory_rows, trajectory_frames
        shape = (num_images, self.model.in_chans, self.model.img_size, self.model.img_size)
        self.register_buffer("fixed_noise", torch.randn(shape, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(self.to_model_input(x_t), t)

    def loss(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple for a batch from the DataModule: pixels -> [-1, 1], a random t and eps per image."""
        x0 = self.unit_pixels(x) * 2 - 1
        t = torch.randint(0, self.model.num_steps, (len(x0),), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return F.mse_loss(self(self.model.q_sample(x0, t, noise), t).float(), noise.float())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch[0])
        self.log_train("train/loss", loss)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        loss = self.loss(batch[0], generator=self.eval_generator(batch[0].device, batch_idx))
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch[0]), sync_dist=True)

    def _eval_epoch_end(self, stage: str) -> None:
        if self._trainer is not None and self.trainer.sanity_checking:
            return  # sampling costs seconds; the sanity check saves no pictures anyway
        steps = self._steps()
        noise = self.to_model_input(self.fixed_noise)
        with self.sampling_context():
            images = self.model.sample_trajectory(len(noise), noise=noise, frames=0, steps=steps, eta=self.eta,
                                                  sampler="ddim").images
        self.save_grid("samples", images.float())
        rows = min(self.trajectory_rows, len(noise))
        if rows and self.trajectory_frames >= 2:
            with self.sampling_context():
                frames = self.model.sample_trajectory(rows, noise=noise[:rows], frames=self.trajectory_frames,
                                                      steps=steps, eta=self.eta, sampler="ddim").frames
            self.save_grid("trajectory", frames.flatten(0, 1).float(), nrow=frames.shape[1])  # (R, F, C, H, W)
        if stage == "test" or self._fd_epoch():
            self.log_fd(stage)

    def _fd_epoch(self) -> bool:
        if self.val_fd_samples <= 0 or self._trainer is None:
            return False
        epoch, last = self.current_epoch + 1, self.trainer.max_epochs
        return epoch % self.fd_every_n_epochs == 0 or (last is not None and epoch >= last)

    def _smoke_test(self) -> bool:
        return bool(self._trainer is not None and self.trainer.fast_dev_run)

    def _steps(self) -> int:
        steps = self.test_steps if self.trainer.testing else self.val_steps
        return min(steps, SMOKE_STEPS) if self._smoke_test() else steps

    def _fd_num(self) -> int:
        n = self.fd_samples if self.trainer.testing else self.val_fd_samples
        if self._smoke_test():
            n = min(n, SMOKE_FD_SAMPLES)
        return min(n, len(self.datamodule.val_set[0]))

    def _samples(self, num: int) -> Iterator[torch.Tensor]:
        steps = self._steps()
        g = torch.Generator(device=self.device).manual_seed(self.seed + 1)  # the same noise every time
        for i in range(0, num, 500):
            with self.sampling_context():
                x = self.model.sample(min(500, num - i), generator=g, steps=steps, eta=self.eta, sampler="ddim")
            yield x.float()
