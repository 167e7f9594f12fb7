"""The base of the generative tasks: pixels in [0, 1], image grids, the Fréchet distance (see ``tasks.generative``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from tasks.base import ZooTask
from tasks.frechet import FrechetScorer, load_feature_extractor
from zoo.registry import ZooError


class GenerativeTask(ZooTask, abstract=True):
    """What the generative tasks share: pixels in [0, 1], image grids, the Fréchet distance."""

    any_image_data = True  # the images only: any image dataset serves a generative task
    needs = ("spec", "dataset")  # pixel statistics and the Fréchet extractor's cache key

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        num_images: int = 64,
        fd_samples: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
        compile: bool = False,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps, compile=compile)
        if num_images < 1:
            raise ZooError(f"task.num_images={num_images}: the pictures need at least one image")
        self.num_images, self.fd_samples, self.cache_dir, self.seed = num_images, fd_samples, cache_dir, seed
        self._scorer: FrechetScorer | None = None
        self._pixel_stats: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._shown: dict[str, dict[str, torch.Tensor]] = {}  # the first evaluation batch of a stage, for the pictures

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(self.to_model_input(x))

    # -- evaluation: each task gives _eval_step (one batch) and _eval_epoch_end (pictures, metrics) --
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        raise NotImplementedError

    def _eval_epoch_end(self, stage: str) -> None:
        raise NotImplementedError

    # -- pixels --
    @property
    def datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def unit_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """A batch from the DataModule -> pixels in [0, 1] (undoing its mean/std normalisation)."""
        dm = self.datamodule
        if dm is None or not getattr(dm, "normalize", False):
            return x
        key = (x.device, x.dtype)
        if key not in self._pixel_stats:
            shape = (1, -1, 1, 1)
            self._pixel_stats[key] = (x.new_tensor(dm.spec.mean).view(shape), x.new_tensor(dm.spec.std).view(shape))
        mean, std = self._pixel_stats[key]
        return (x * std + mean).clamp_(0, 1)  # clamp: float rounding of k/255 values

    def eval_generator(self, device: torch.device, batch_idx: int) -> torch.Generator:
        """A generator seeded per evaluation batch: the same noise every epoch, independent of training."""
        return torch.Generator(device=device).manual_seed((self.seed + 1) * 100_003 + batch_idx)

    def keep_for_pictures(self, stage: str, batch_idx: int, **tensors: torch.Tensor) -> None:
        if batch_idx == 0:
            self._shown[stage] = {k: v[: self.num_images].detach() for k, v in tensors.items()}

    # -- pictures --
    def save_grid(self, name: str, images: torch.Tensor, *, nrow: int = 8) -> None:
        """Save images in [0, 1] (N, C, H, W) as one PNG grid under ``<run folder>/images`` (+ TensorBoard)."""
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        stage, tag = ("test", "test") if trainer.testing else ("val", f"epoch{self.current_epoch:03d}")
        grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=0.5)
        out = Path(trainer.default_root_dir) / "images"
        out.mkdir(parents=True, exist_ok=True)
        save_image(grid, out / f"{name}-{tag}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"{stage}/{name}", grid, self.global_step)

    @staticmethod
    def interleave_rows(*rows: torch.Tensor, nrow: int) -> torch.Tensor:
        """Image sets of equal length -> one set whose grid shows them row by row: a row of each, then the next."""
        n = min(len(r) for r in rows) // nrow * nrow
        if n == 0:  # fewer images than one row: one short row each
            n, nrow = min(len(r) for r in rows), min(len(r) for r in rows)
        stacked = torch.stack([r[:n].reshape(n // nrow, nrow, *r.shape[1:]) for r in rows], 1)  # (R, S, nrow, C, H, W)
        return stacked.flatten(0, 2)  # (R, S, nrow, C, H, W) -> (R*S*nrow, C, H, W)

    # -- Fréchet distance --
    def _fd_scorer(self) -> FrechetScorer:
        if self._scorer is None:
            dm = self.datamodule
            if dm is None or not all(hasattr(dm, a) for a in ("train_set", "val_set", "test_set", "spec", "dataset")):
                raise ZooError("the Fréchet distance (task.fd_samples > 0) needs the image DataModule "
                               "(tasks.data.VisionDataModule) for its real images; set task.fd_samples=0 without it")
            images, labels = dm.train_set
            extractor = load_feature_extractor(dm.dataset, images, labels, spec=dm.spec, cache_dir=self.cache_dir,
                                               device=self.device)
            self._scorer = FrechetScorer(extractor)
        return self._scorer

    def _fd_num(self) -> int:
        # Generated and held-out real sets have the same size, so that test/fd and its floor compare.
        return min(self.fd_samples, len(self.datamodule.val_set[0]))

    def sampling_context(self) -> AbstractContextManager[Any]:
        """The trainer's precision context (``bf16-mixed``: autocast), for sampling at the end of an epoch.

        Lightning enters it around the step hooks only; sampling for the pictures and the Fréchet distance runs
        in the epoch-end hooks, so without it a bf16 run would sample in float32, about half as fast here.
        Enter it per batch and leave it before yielding: autocast is thread state, and the feature extractor
        that consumes the samples should see float32.
        """
        return self.trainer.precision_plugin.forward_context() if self._trainer is not None else nullcontext()

    def _samples(self, num: int):
        g = torch.Generator(device=self.device).manual_seed(self.seed + 1)  # the same noise every epoch
        for i in range(0, num, 1000):
            with self.sampling_context():
                x = self.model.sample(min(1000, num - i), generator=g)
            yield x.float()

    def log_fd(self, stage: str) -> None:
        """``{stage}/fd`` (and ``test/fd_real`` at test): see the module docstring."""
        if self.fd_samples <= 0 or self._trainer is None or self.trainer.sanity_checking:
            return
        scorer, dm, n = self._fd_scorer(), self.datamodule, self._fd_num()
        if n < 2:
            raise ZooError(f"the Fréchet distance needs at least 2 samples; task.fd_samples={self.fd_samples}, "
                           f"validation images: {len(dm.val_set[0])}")
        real = scorer.real_stats(stage, (dm.test_set if stage == "test" else dm.val_set)[0])
        self.log(f"{stage}/fd", scorer.distance(real, scorer.stats(self._samples(n))), prog_bar=stage == "val")
        if stage == "test":
            self.log("test/fd_real", scorer.distance(real, scorer.real_stats("held_out", dm.val_set[0][:n])))
