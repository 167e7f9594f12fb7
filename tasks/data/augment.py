"""Augmentations that act on a whole batch of tensors at once (no per-sample Python)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import CutMix, MixUp, RandAugment, RandomChoice

Mixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
MIXES = ("mixup", "cutmix", "mixup_cutmix")


def random_crop_flip(x: torch.Tensor, *, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Zero-pad by ``padding``, take one random crop of the original size per image, and flip half.

    ``x`` is (B, C, H, W); offsets and flips are drawn per image from the global RNG.
    """
    b, _, h, w = x.shape
    if padding > 0:
        x = F.pad(x, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
        dy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = x[batch, chans, rows, cols]  # (B, C, H, W)
    if flip:
        mask = torch.rand(b, 1, 1, 1, device=x.device) < 0.5
        x = torch.where(mask, x.flip(3), x)
    return x


def rand_augment(x: torch.Tensor, *, num_ops: int = 2, magnitude: int = 9, group_size: int = 8) -> torch.Tensor:
    """RandAugment (Cubuk et al. 2020) on a uint8 (B, C, H, W) batch, with torchvision's ops and magnitudes.

    torchvision's ``RandAugment`` draws one sequence of ``num_ops`` ops (and their signs) per call, so on
    a whole batch every image would get the same ones. Calling it on groups of ``group_size`` images gives
    each group its own draw: on 128 CIFAR images 5.5 ms a batch with groups of 8 against 40 ms one image at a
    time (2 ops, 1 thread), which matters next to a small model's step. Shuffling regroups images every epoch.
    Draws come from the global RNG, so seeded runs and resumed checkpoints repeat them.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"rand_augment expects uint8 images (before normalisation), got {x.dtype}")
    augment = RandAugment(num_ops=num_ops, magnitude=magnitude)
    return torch.cat([augment(group) for group in x.split(group_size)])


def batch_mixer(kind: str, *, num_classes: int, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0) -> Mixer:
    """MixUp (Zhang et al. 2018), CutMix (Yun et al. 2019), or either at random per batch (``mixup_cutmix``):
    torchvision's ``MixUp``/``CutMix`` on a whole batch.

    The returned function takes a float (B, C, H, W) batch and (B,) int64 labels and returns the mixed batch
    and soft labels (B, num_classes) whose rows sum to 1: each image is blended with (MixUp) or gets a box
    pasted from (CutMix) its neighbour in the batch, by one ratio ``lam ~ Beta(alpha, alpha)`` per batch, and
    its label becomes the same mix of the two one-hot labels (CutMix: by the pasted box's true area). The
    draws come from the global RNG, so seeded runs and resumed checkpoints repeat them.
    """
    if kind not in MIXES:
        raise ValueError(f"unknown mixing {kind!r}; choose one of {', '.join(MIXES)}")
    mixup = MixUp(alpha=mixup_alpha, num_classes=num_classes)
    cutmix = CutMix(alpha=cutmix_alpha, num_classes=num_classes)
    return {"mixup": mixup, "cutmix": cutmix, "mixup_cutmix": RandomChoice([mixup, cutmix])}[kind]


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices past either edge mirrored back inside, without repeating the edge (``F.pad``'s 'reflect')."""
    i = i.abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _image_coins(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed pseudo-random bit per image, the same whenever the same image comes back (a hash of its pixels)."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.randint(1, 2**20, (x[0].numel(),), generator=g).to(x.device)  # (C*H*W,)
    h = (x.flatten(1).long() * weights).sum(1)  # (B,): at most 255 * 2^20 * C*H*W, well inside int64
    return (h >> 12) & 1 == 1


def alternating_flip_translate(x: torch.Tensor, *, epoch: int, padding: int = 2, seed: int = 0) -> torch.Tensor:
    """airbench's training augmentation (Jordan 2024): random translation and "alternating flip".

    Each image moves by up to ``padding`` pixels each way (a random crop of the reflect-padded image), and
    is mirrored on every other epoch instead of by a fresh coin each time: airbench flips a random half of
    the images once and then flips all of them on odd epochs, so each image shows both orientations in
    any two consecutive epochs. The loader yields no sample ids, so an image's fixed coin is a hash of its
    pixels (``seed`` picks the hash): ``flip = coin XOR (epoch odd)``. Works on any dtype (uint8 before
    normalisation moves 4x fewer bytes), in one gather.
    """
    b, _, h, w = x.shape
    dev = x.device
    dy = torch.randint(-padding, padding + 1, (b, 1), device=dev)
    dx = torch.randint(-padding, padding + 1, (b, 1), device=dev)
    rows = _reflect(dy + torch.arange(h, device=dev), h)  # (B, H)
    cols = _reflect(dx + torch.arange(w, device=dev), w)  # (B, W)
    flip = _image_coins(x, seed) ^ (epoch % 2 == 1)  # (B,)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    return x[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, level: int) -> torch.Tensor:
    """Test-time augmentation as airbench's (Jordan 2024): logits averaged over views of ``x`` (B, C, H, W).

    level 0: the image alone; 1: the mean of the image and its mirror; 2: half that, plus a quarter each for
    the image shifted one pixel up-left and down-right (reflect-padded), each also with its mirror (6 views).
    """
    if level not in (0, 1, 2):
        raise ValueError(f"tta level must be 0 (none), 1 (mirror) or 2 (mirror + translate), got {level!r}")
    if level == 0:
        return forward(x)

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (forward(v) + forward(v.flip(-1)))

    logits = mirrored(x)
    if level == 1:
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
    up_left, down_right = padded[..., :h, :w], padded[..., 2:, 2:]
    return 0.5 * logits + 0.25 * (mirrored(up_left) + mirrored(down_right))
