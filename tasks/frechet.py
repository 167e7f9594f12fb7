"""The Fréchet distance between generated and real images, in the feature space of a classifier of the same data.

FID (Heusel et al. 2017) measures sample quality with Inception-v3 features of ImageNet photos; for
28x28 digits that network is both foreign and expensive, so the zoo uses its own classifier instead:
``lenet5`` trained by :func:`train_feature_extractor` on the training split of the same dataset
(a plain loop: ``RECIPE`` epochs of Adam, seeded, on the pixels normalised with the dataset's mean/std).
Its penultimate layer (the 84 units of F6, after the activation) is the feature space. The trained
weights are cached as ``<cache_dir>/frechet/<dataset>-lenet5-<key>.pt`` where the key hashes the
recipe and the training images and labels, so changing either trains a new extractor; nothing is
written into the data root. Distances are comparable only between runs with the same extractor
(same key) and the same number of samples (the estimate is biased upwards for small sets); the
distance of a held-out real set of the same size is the floor.

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from tasks.checkpoints import load_checkpoint
from tasks.data.tokenize import cache_root
from zoo.io import cached

log = logging.getLogger(__name__)

RECIPE = {"model": "lenet5", "epochs": 2, "batch_size": 128, "lr": 2e-3, "seed": 0, "version": 1}

Stats = tuple[torch.Tensor, torch.Tensor]  # float64 mean (D,) and covariance (D, D)


def feature_stats(features: torch.Tensor) -> Stats:
    """Mean and (unbiased) covariance of ``features`` (N, D), in float64."""
    f = features.double()
    if len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(f)}")
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """The Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    tr((S1 S2)^(1/2)) equals tr((A S2 A)^(1/2)) with A = S1^(1/2), and A S2 A is symmetric positive
    semi-definite, so both square roots come from ``torch.linalg.eigh`` (real, stable; rounding can
    make tiny eigenvalues negative, which are clamped to 0). No scipy ``sqrtm`` with its complex parts.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    evals, evecs = torch.linalg.eigh(sigma1)
    root1 = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T  # S1^(1/2)
    middle = root1 @ sigma2 @ root1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_covmean
    return float(d2.clamp_min(0))


class FeatureExtractor(nn.Module):
    """Images in [0, 1] (B, C, H, W) -> penultimate-layer features (B, D) of a trained classifier."""

    def __init__(self, net: nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _cache_key(dataset: str, images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256(json.dumps({"dataset": dataset, **RECIPE}, sort_keys=True).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _classifier(spec) -> nn.Module:
    return zoo.create_model(RECIPE["model"], num_classes=spec.num_classes, in_chans=spec.in_chans,
                            img_size=spec.img_size)


def train_feature_extractor(
    images: torch.Tensor, labels: torch.Tensor, *, spec, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Train the classifier of ``RECIPE`` on uint8 ``images`` (N, C, H, W); returns its state_dict.

    The global random state is left untouched (the run's own streams stay reproducible).
    """
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    # Tasks call this from validation hooks, which run under inference mode: training needs autograd.
    # One thread: LeNet's ops are too small to split, and on a busy CPU a second OpenMP thread made this
    # loop ~10x slower (every op waits for a descheduled thread); the caller's setting is restored.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
            return _train(images, labels, spec=spec, device=device, mean=mean, std=std)
    finally:
        torch.set_num_threads(threads)


def _train(images: torch.Tensor, labels: torch.Tensor, *, spec, device: torch.device | str,
           mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(RECIPE["seed"])
    net = _classifier(spec).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
    g = torch.Generator().manual_seed(RECIPE["seed"])
    bs, n = RECIPE["batch_size"], len(images)
    for _ in range(RECIPE["epochs"]):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            x = (images[idx].to(device).float() / 255 - mean) / std
            loss = F.cross_entropy(net(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def load_feature_extractor(
    dataset: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    spec,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
) -> FeatureExtractor:
    """The feature extractor for ``dataset`` trained on ``images``/``labels``, from the cache or trained now.

    ``spec`` gives ``num_classes``, ``in_chans``, ``img_size``, ``mean`` and ``std`` (a VisionSpec).
    """
    path = cache_root(cache_dir) / "frechet" / f"{dataset}-{RECIPE['model']}-{_cache_key(dataset, images, labels)}.pt"

    def build() -> dict[str, torch.Tensor]:
        log.info("training the Fréchet-distance feature extractor (%s, %d epochs on %d %s images) -> %s",
                 RECIPE["model"], RECIPE["epochs"], len(images), dataset, path)
        return train_feature_extractor(images, labels, spec=spec, device=device)

    # once across processes (a lock file: the jobs of a parallel sweep wait for one build), written atomically
    state = cached(path, read=lambda p: load_checkpoint(p)["state_dict"], build=build,
                   write=lambda st, f: torch.save({"state_dict": st, "recipe": dict(RECIPE), "dataset": dataset}, f))
    with torch.inference_mode(False):  # ordinary tensors, usable inside and outside inference mode
        net = _classifier(spec)
        net.load_state_dict(state)
        net.classifier[-1] = nn.Identity()  # drop the class logits: the penultimate layer is the feature space
        return FeatureExtractor(net, mean=spec.mean, std=spec.std).to(device).eval().requires_grad_(False)


class FrechetScorer:
    """Feature statistics of image sets and their Fréchet distances, with one extractor."""

    def __init__(self, extractor: FeatureExtractor, *, batch_size: int = 1000) -> None:
        self.extractor, self.batch_size = extractor, batch_size
        self._device = next(iter(extractor.buffers())).device
        self._cache: dict[str, Stats] = {}

    @torch.no_grad()
    def stats(self, batches: Iterable[torch.Tensor]) -> Stats:
        """Statistics of images in [0, 1] given batch by batch (any float dtype, any device)."""
        feats = [self.extractor(b.to(self._device, torch.float32)) for b in batches]
        return feature_stats(torch.cat(feats))

    def real_stats(self, name: str, images: torch.Tensor) -> Stats:
        """Statistics of a real uint8 set (N, C, H, W), computed once per ``name``."""
        if name not in self._cache:
            bs = self.batch_size
            self._cache[name] = self.stats(images[i : i + bs].float() / 255 for i in range(0, len(images), bs))
        return self._cache[name]

    @staticmethod
    def distance(a: Stats, b: Stats) -> float:
        return frechet_distance(a[0], a[1], b[0], b[1])
