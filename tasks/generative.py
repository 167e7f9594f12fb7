"""Generative tasks: reconstruction (autoencoders, denoising), the VAE's ELBO, and adversarial training.

Pixels: the image DataModule normalises batches with the dataset's mean/std; these tasks map every
batch back to [0, 1] with the DataModule's own ``spec`` (nothing to configure; with
``data.normalize=false`` the batch is taken as it comes), so losses, metrics and pictures are all in
pixel units.

Pictures: after every validation epoch and at test, image grids go to ``<run folder>/images/``
(``<name>-epoch003.png``, ``<name>-test.png``; rank 0 only, never during the sanity check) and to
TensorBoard when that logger is on.

Sample quality: the VAE and GAN tasks log ``val/fd`` every validation epoch and ``test/fd`` at test, the
Fréchet distance of ``fd_samples`` generated images (a fixed noise seed) to the real validation / test
set in the feature space of this project's own MNIST-style classifier (``tasks/frechet.py``), and
``test/fd_real``, the same distance for as many held-out real images (the validation split): the floor.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid, save_image

from tasks.base import ZooTask
from tasks.frechet import FrechetScorer, load_feature_extractor
from tasks.optim import build_optimizer, build_scheduler
from zoo.registry import ZooError

BINARIZE = ("stochastic", "threshold", "none")

# With manual optimisation Lightning warns at every step-interval checkpoint that it holds the state
# *after* the optimizer steps. That is the state at ``global_step``, exactly what resuming needs.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in nats, summed over the last dimension: (B, Z) -> (B,)."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)


class ELBO(NamedTuple):
    nelbo: torch.Tensor  # (B,) negative ELBO in nats per image: recon + kl
    recon: torch.Tensor  # (B,) -log p(x | z) at one posterior sample z ~ q(z | x)
    kl: torch.Tensor  # (B,) KL(q(z | x) || p(z)), analytic


class GenerativeTask(ZooTask):
    """What the generative tasks share: pixels in [0, 1], image grids, the Fréchet distance."""

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
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps)
        if num_images < 1:
            raise ZooError(f"task.num_images={num_images}: the pictures need at least one image")
        self.num_images, self.fd_samples, self.cache_dir, self.seed = num_images, fd_samples, cache_dir, seed
        self._scorer: FrechetScorer | None = None
        self._pixel_stats: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._shown: dict[str, dict[str, torch.Tensor]] = {}  # the first evaluation batch of a stage, for the pictures

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(self.to_model_input(x))

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

    def _samples(self, num: int):
        g = torch.Generator(device=self.device).manual_seed(self.seed + 1)  # the same noise every epoch
        for i in range(0, num, 1000):
            yield self.model.sample(min(1000, num - i), generator=g)

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


class ReconstructionTask(GenerativeTask):
    """Train an autoencoder on pixel MSE: ``train/loss``, ``val/mse``, ``test/mse`` (per pixel, pixels in [0, 1]).

    For a model with a noise model (a ``corrupt`` method, e.g. ``denoising_autoencoder``) the input is
    corrupted and the clean image is the target; ``val/noisy_mse`` and ``test/noisy_mse`` are the
    corrupted input's own error against the clean image, the baseline a denoiser must beat. Evaluation
    corruption is seeded per batch, so every epoch sees the same noisy validation and test sets.
    """

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
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images, seed=seed,
                         channels_last=channels_last, log_every_n_steps=log_every_n_steps)
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

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _pictures(self, stage: str) -> None:
        shown = self._shown.pop(stage, None)
        if shown is None:
            return
        rows = (shown["x"], shown["inputs"], shown["recon"]) if self.denoising else (shown["x"], shown["recon"])
        self.save_grid("recon", self.interleave_rows(*rows, nrow=8))  # clean / (noisy) / reconstructed rows

    def on_validation_epoch_end(self) -> None:
        self._pictures("val")

    def on_test_epoch_end(self) -> None:
        self._pictures("test")


class VAETask(GenerativeTask):
    """Train a VAE on the negative ELBO: ``train/loss``, ``{val,test}/nelbo``, ``/recon``, ``/kl`` (nats per image).

    The likelihood is Bernoulli over binarised pixels: ``binarize=stochastic`` draws each pixel as 1 with
    its grey level as probability (a fresh draw every training step; seeded per batch in evaluation),
    the dynamically binarised MNIST of the VAE literature; ``threshold`` sets pixels above 0.5; ``none``
    keeps grey levels, whose binary cross-entropy is then a loss, not a likelihood. The negative ELBO is
    -log p(x | z) summed over all pixels at one sample z ~ q(z | x), plus the analytic KL to the N(0, I)
    prior: an unbiased estimate of the true negative ELBO. Pictures: prior samples from a fixed noise
    buffer, reconstructions under their inputs, latent interpolations between validation images.
    """

    monitor = ("val/nelbo", "min")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        binarize: str = "stochastic",
        num_images: int = 64,
        fd_samples: int = 5000,
        cache_dir: str | None = None,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images,
                         fd_samples=fd_samples, cache_dir=cache_dir, seed=seed, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps)
        if binarize not in BINARIZE:
            raise ZooError(f"task.binarize={binarize!r}; choose one of {', '.join(BINARIZE)}")
        if not all(hasattr(self.model, a) for a in ("encode", "reparameterize", "decode", "latent_dim")):
            raise ZooError(f"task=vae trains variational autoencoders (vae); {self.model_name!r} is not one. "
                           "Pick the task that fits the model.")
        self.binarize_mode = binarize
        noise = torch.randn(num_images, self.model.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed_noise", noise)  # saved in checkpoints; moves with the module

    def binarize(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.binarize_mode == "stochastic":
            return torch.bernoulli(x, generator=generator)
        if self.binarize_mode == "threshold":
            return (x > 0.5).to(x.dtype)
        return x

    def elbo(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> ELBO:
        """The ELBO's terms per image for (binarised) pixels ``x`` (B, C, H, W)."""
        mu, logvar = self.model.encode(self.to_model_input(x))
        z = self.model.reparameterize(mu, logvar, generator=generator)
        logits = self.model.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1).sum(1)
        kl = gaussian_kl(mu.float(), logvar.float())
        return ELBO(recon + kl, recon, kl)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.elbo(self.binarize(self.unit_pixels(batch[0])))
        loss = terms.nelbo.mean()
        self.log_train("train/loss", loss)
        self.log_train("train/kl", terms.kl.mean(), prog_bar=False)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> None:
        g = self.eval_generator(batch[0].device, batch_idx)
        x = self.binarize(self.unit_pixels(batch[0]), generator=g)
        terms = self.elbo(x, generator=g)
        for name, value in terms._asdict().items():
            self.log(f"{stage}/{name}", value.mean(), prog_bar=stage == "val" and name == "nelbo",
                     batch_size=len(x), sync_dist=True)
        self.keep_for_pictures(stage, batch_idx, x=x)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _pictures(self, stage: str) -> None:
        self.save_grid("samples", self.model.generate(self.fixed_noise))
        shown = self._shown.pop(stage, None)
        if shown is None:
            return
        x = shown["x"]
        mu, _ = self.model.encode(self.to_model_input(x))
        self.save_grid("recon", self.interleave_rows(x, self.model.generate(mu), nrow=8))  # input / recon rows
        pairs = min(8, len(mu) // 2)  # rows of the interpolation grid
        if pairs:
            steps = torch.linspace(0, 1, 10, device=mu.device, dtype=mu.dtype).view(1, -1, 1)  # (1, 10, 1)
            a, b = mu[:pairs, None], mu[pairs : 2 * pairs, None]  # (P, 1, Z) each
            z = (a * (1 - steps) + b * steps).flatten(0, 1)  # (P, 10, Z) -> (P*10, Z)
            self.save_grid("interpolation", self.model.generate(z), nrow=10)

    def on_validation_epoch_end(self) -> None:
        self._pictures("val")
        self.log_fd("val")

    def on_test_epoch_end(self) -> None:
        self._pictures("test")
        self.log_fd("test")


class GANTask(GenerativeTask):
    """Adversarial training (Goodfellow et al. 2014) with Lightning's manual optimisation.

    Each batch: one discriminator step on real vs generated images (binary cross-entropy), then one
    generator step on the non-saturating loss -log D(G(z)), each under ``toggled_optimizer`` so only its
    player's parameters get gradients. Logs ``train/d_loss``, ``train/g_loss``, ``train/d_real`` and
    ``train/d_fake`` (the discriminator's mean probability of "real"), ``val/fd`` / ``test/fd`` /
    ``test/fd_real`` and sample grids from the fixed noise buffer (saved with the checkpoint).
    ``global_step`` counts optimizer steps: two per batch.
    """

    monitor = ("val/fd", "min")

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        num_images: int = 64,
        fd_samples: int = 5000,
        cache_dir: str | None = None,
        seed: int = 0,
        channels_last: bool | str = "auto",
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, scheduler=scheduler, num_images=num_images,
                         fd_samples=fd_samples, cache_dir=cache_dir, seed=seed, channels_last=channels_last,
                         log_every_n_steps=log_every_n_steps)
        if not all(hasattr(self.model, a) for a in ("generator", "discriminator", "latent_dim")):
            raise ZooError(f"task=gan trains models with a generator and a discriminator (gan, dcgan); "
                           f"{self.model_name!r} has none. Pick the task that fits the model.")
        self.automatic_optimization = False
        noise = torch.randn(num_images, self.model.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed_noise", noise)  # saved in checkpoints; moves with the module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        real = self.to_model_input(self.unit_pixels(batch[0]) * 2 - 1)  # [0, 1] -> the generator's tanh range
        opt_g, opt_d = self.optimizers()
        G, D = self.model.generator, self.model.discriminator
        z = torch.randn(len(real), self.model.latent_dim, device=real.device, dtype=real.dtype)
        fake = G(z)  # one generator pass serves both steps: detached for D, through D for G
        ones, zeros = torch.ones(len(real), device=real.device), torch.zeros(len(real), device=real.device)

        with self.toggled_optimizer(opt_d):
            d_real, d_fake = D(real).float(), D(fake.detach()).float()
            d_loss = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()

        with self.toggled_optimizer(opt_g):
            # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))), whose gradient
            # vanishes exactly when D confidently rejects the samples (early in training).
            g_loss = F.binary_cross_entropy_with_logits(D(fake).float(), ones)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()

        schedulers = self.lr_schedulers()
        for s in (schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []):
            s.step()
        self.log_train("train/d_loss", d_loss)
        self.log_train("train/g_loss", g_loss)
        self.log_train("train/d_real", torch.sigmoid(d_real).mean(), prog_bar=False)
        self.log_train("train/d_fake", torch.sigmoid(d_fake).mean(), prog_bar=False)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        real = self.to_model_input(self.unit_pixels(batch[0]) * 2 - 1)
        d_real = torch.sigmoid(self.model.discriminator(real).float()).mean()
        self.log(f"{stage}/d_real", d_real, batch_size=len(real), sync_dist=True)  # D's belief in held-out reals

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.save_grid("samples", self.model.generate(self.fixed_noise))
        self.log_fd("val")

    def on_test_epoch_end(self) -> None:
        self.save_grid("samples", self.model.generate(self.fixed_noise))
        self.log_fd("test")

    def configure_optimizers(self) -> Any:
        opt_cfg = dict(self.hparams.optimizer or {"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)})
        optimizers = [build_optimizer(self.model.generator, **opt_cfg),
                      build_optimizer(self.model.discriminator, **opt_cfg)]
        if not self.hparams.scheduler:
            return optimizers
        # Manual optimisation: Lightning does not step these; training_step does, once per batch.
        total = self.trainer.estimated_stepping_batches
        schedulers = [build_scheduler(o, total_steps=total, **dict(self.hparams.scheduler)) for o in optimizers]
        return optimizers, schedulers
