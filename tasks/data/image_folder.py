"""Your own images: a folder in torchvision's ``ImageFolder`` layout (``path/<class>/<image>``), held in memory.

Every image is read once, centre-cropped to a square and resized to ``img_size`` (PIL, bilinear), and kept as a
uint8 tensor like the built-in image sets, so training, augmentation and normalisation are theirs
(:class:`~tasks.data.vision.VisionDataModule`). Normalisation uses the mean and standard deviation of the
training split.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch

from tasks.data.integrity import DataError
from tasks.data.vision import Arrays, VisionDataModule, VisionSpec


def _classes(path: Path) -> list[str]:
    if not path.is_dir():
        raise DataError(f"data.path={path} is not a folder. Point it at a folder in ImageFolder layout: one "
                        "sub-folder per class holding its images (path/cat/1.jpg, path/dog/2.png, ...).")
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.path={path} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                        "a classifier needs at least 2: one sub-folder per class holding its images.")
    return classes


@functools.lru_cache(maxsize=4)
def load_folder(path: str, classes: tuple[str, ...], img_size: int, channels: int) -> Arrays:
    """Every image under ``path/<class>/`` as (N, C, img_size, img_size) uint8 and (N,) labels; read once per
    process."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS

    mode = {1: "L", 3: "RGB"}[channels]
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = Path(path) / name
        if not folder.is_dir():
            raise DataError(f"{path} has no class folder {name!r}, which the training folder has: a test folder "
                            f"needs the same class folders ({', '.join(classes)})")
        for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS):
            try:
                with Image.open(f) as img:
                    img = ImageOps.fit(img.convert(mode), (img_size, img_size), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"cannot read image {f} ({e}); remove or replace the file") from None
            t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            images.append(t.view(img_size, img_size, channels).permute(2, 0, 1))  # (H, W, C) -> (C, H, W)
            labels.append(label)
    if not images:
        raise DataError(f"no images under {path} (looked for {', '.join(IMG_EXTENSIONS)} in its class folders)")
    seen = set(labels)
    empty = [name for k, name in enumerate(classes) if k not in seen]
    if empty:  # a class with no examples would be a class the model is never shown, yet can predict
        raise DataError(f"class folder(s) {', '.join(map(repr, empty))} under {path} hold no images (looked for "
                        f"{', '.join(IMG_EXTENSIONS)}): add images, or remove the folder(s).")
    return torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.long)


def _count(size: float, n: int, key: str) -> int:
    """``size``: a fraction of ``n`` (below 1) or a number of images."""
    if size < 0:
        raise DataError(f"data.{key}={size} must be >= 0: a fraction of the images (0.1) or a number (500)")
    return round(size * n) if size < 1 else int(size)


class ImageFolderDataModule(VisionDataModule):
    """Images from ``path`` (ImageFolder layout) resized once to ``img_size``: a seeded split into train, validation
    (``val_size``) and test (``test_size``; or a separate ``test_path`` folder with the same class folders).

    ``val_size``/``test_size``: a fraction of the images (below 1) or a number of images. ``channels``: 3 (RGB)
    or 1 (greyscale). Classes are the sorted sub-folder names (``self.classes``).
    """

    def __init__(
        self,
        *,
        path: str,
        img_size: int = 32,
        channels: int = 3,
        test_path: str | None = None,
        val_size: float = 0.1,
        test_size: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        split_seed: int = 0,
        seed: int = 0,
        augment: str | None = None,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 1.0,
        normalize: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise DataError(f"data.channels={channels}: choose 3 (RGB) or 1 (greyscale)")
        if img_size < 8:
            raise DataError(f"data.img_size={img_size}: images are resized to img_size x img_size; use at least 8")
        self.path, self.test_path = Path(path).expanduser(), Path(test_path).expanduser() if test_path else None
        self.channels, self.side, self.test_size = channels, img_size, test_size
        self.classes = _classes(self.path)
        super().__init__(dataset="image_folder", root=str(self.path), batch_size=batch_size,
                         eval_batch_size=eval_batch_size, val_size=val_size, split_seed=split_seed, seed=seed,
                         augment=augment, randaugment_ops=randaugment_ops,
                         randaugment_magnitude=randaugment_magnitude, mixup_alpha=mixup_alpha,
                         cutmix_alpha=cutmix_alpha, normalize=normalize, download=False,
                         manifest=None, meta=meta)

    def _spec(self, dataset: str) -> VisionSpec:
        gray = (0.5,) * self.channels  # replaced by the training split's statistics in setup()
        return VisionSpec(load=self._load, num_classes=len(self.classes), in_chans=self.channels,
                          img_size=self.side, mean=gray, std=gray)

    def _load(self, train: bool) -> Arrays:
        folder = self.path if train else self.test_path
        return load_folder(str(folder), tuple(self.classes), self.img_size, self.channels)

    def prepare_data(self) -> None:
        self._load(True)
        if self.test_path is not None:
            self._load(False)

    def setup(self, stage: str | None = None) -> None:
        x, y = self._load(True)
        n = len(x)
        n_val = _count(self.val_size, n, "val_size")
        n_test = 0 if self.test_path is not None else _count(self.test_size, n, "test_size")
        if n_val + n_test >= n:
            raise DataError(f"{self.path} has {n} images: data.val_size={self.val_size} and data.test_size="
                            f"{self.test_size} leave none to train on. Use smaller fractions or add images.")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
        self.train_set = (x[train], y[train])
        self.val_set = (x[val], y[val])
        self.test_set = self._load(False) if self.test_path is not None else (x[test], y[test])
        pixels = self.train_set[0].float().div_(255)
        mean, std = pixels.mean((0, 2, 3)), pixels.std((0, 2, 3)).clamp(min=1e-3)
        self.spec = dataclasses.replace(self.spec, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
        self._norm.clear()
