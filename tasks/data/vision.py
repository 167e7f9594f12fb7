"""Image datasets held in memory as uint8 tensors; normalisation and augmentation run on whole batches."""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchvision import datasets as tvd

from tasks.data.augment import MIXES, alternating_flip_translate, batch_mixer, rand_augment, random_crop_flip
from tasks.data.integrity import DataError, missing_files_error, verify_file
from tasks.data.loader import TensorBatchLoader, data_device, rank_world, training_position

Arrays = tuple[torch.Tensor, torch.Tensor]  # (N, C, H, W) uint8 images, (N,) int64 labels
AUGMENTS = (None, "flip", "crop", "crop_flip", "randaugment", "flip_translate")  # per image; "+mixup" etc. may follow


def parse_augment(augment: str | None) -> tuple[str | None, str | None]:
    """``data.augment`` -> (the per-image augmentation, the batch mixing): ``crop_flip+mixup`` -> (crop_flip, mixup),
    ``cutmix`` -> (None, cutmix), ``crop`` -> (crop, None)."""
    parts = augment.split("+") if augment else []
    mix = [p for p in parts if p in MIXES]
    image = [p for p in parts if p not in MIXES]
    if len(mix) > 1 or len(image) > 1 or image and image[0] not in AUGMENTS:
        raise DataError(f"data.augment={augment!r}; choose null, 'flip', 'crop', 'crop_flip', 'randaugment' or "
                        "'flip_translate', and/or a batch mixing after '+': 'mixup', 'cutmix' or 'mixup_cutmix' "
                        "(e.g. crop_flip+mixup, or cutmix alone)")
    return (image[0] if image else None), (mix[0] if mix else None)


def _read_idx_gz(path: Path, magic: int) -> torch.Tensor:
    """Read an MNIST idx file straight from its .gz (so the data root is never written to)."""
    data = gzip.decompress(path.read_bytes())
    ndim = magic & 0xFF
    header = [int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(ndim + 1)]
    if header[0] != magic:
        raise DataError(f"{path} is not an idx file (magic {header[0]}, expected {magic}); replace the file.")
    shape = header[1:]
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 * (ndim + 1))
    if t.numel() != torch.Size(shape).numel():
        raise DataError(f"{path} is truncated: {t.numel()} values for shape {shape}; replace the file.")
    return t.view(*shape)


def _load_mnist_like(cls: type[tvd.MNIST], root: Path, train: bool, download: bool, manifest: str | None) -> Arrays:
    raw = f"{cls.__name__}/raw"
    prefix = "train" if train else "t10k"
    images_gz = next(f for f, _ in cls.resources if f.startswith(f"{prefix}-images"))
    labels_gz = next(f for f, _ in cls.resources if f.startswith(f"{prefix}-labels"))
    md5 = dict(cls.resources)
    if all((root / raw / f).is_file() for f in (images_gz, labels_gz)):
        for f in (images_gz, labels_gz):
            verify_file(root, f"{raw}/{f}", md5=md5[f], manifest=manifest)
        x = _read_idx_gz(root / raw / images_gz, 2051)
        y = _read_idx_gz(root / raw / labels_gz, 2049)
    elif all((root / raw / f.removesuffix(".gz")).is_file() for f in (images_gz, labels_gz)):
        from torchvision.datasets.mnist import read_image_file, read_label_file

        x = read_image_file(str(root / raw / images_gz.removesuffix(".gz")))
        y = read_label_file(str(root / raw / labels_gz.removesuffix(".gz")))
    elif download:
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as e:  # network errors come in many types
            raise missing_files_error(cls.__name__, root, [f"{raw}/{images_gz}", f"{raw}/{labels_gz}"],
                                      download=True) from e
        x, y = ds.data, ds.targets
    else:
        raise missing_files_error(cls.__name__, root, [f"{raw}/{images_gz}", f"{raw}/{labels_gz}"], download=False)
    return x.unsqueeze(1).contiguous(), y.long()  # (N, 28, 28) -> (N, 1, 28, 28)


def _load_cifar(cls: type[tvd.CIFAR10], root: Path, train: bool, download: bool, manifest: str | None) -> Arrays:
    class Verified(cls):  # torchvision's reader, our integrity check (md5, or the data root's sha256 manifest)
        def _check_integrity(self) -> bool:
            files = [(f"{self.base_folder}/{f}", md5) for f, md5 in self.train_list + self.test_list]
            if not all((root / f).is_file() for f, _ in files):
                return False
            for f, md5 in files:
                verify_file(root, f, md5=md5, manifest=manifest)
            return True

    try:
        ds = Verified(str(root), train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted" / download failures
        files = [f"{cls.base_folder}/{f}" for f, _ in cls.train_list + cls.test_list]
        raise missing_files_error(cls.__name__, root, files, download=download) from e
    except OSError as e:
        files = [f"{cls.base_folder}/{f}" for f, _ in cls.train_list + cls.test_list]
        raise missing_files_error(cls.__name__, root, files, download=download) from e
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    return x, torch.tensor(ds.targets, dtype=torch.long)


@dataclass(frozen=True)
class VisionSpec:
    load: Callable[[Path, bool, bool, str | None], Arrays]
    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()  # class names in label order (a trained model's predictions are named by them)


_CIFAR100 = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split())
DATASETS: dict[str, VisionSpec] = {
    "mnist": VisionSpec(functools.partial(_load_mnist_like, tvd.MNIST), 10, 1, 28, (0.1307,), (0.3081,),
                        tuple(map(str, range(10)))),
    "fashion_mnist": VisionSpec(functools.partial(_load_mnist_like, tvd.FashionMNIST), 10, 1, 28,
                                (0.2860,), (0.3530,), tuple(tvd.FashionMNIST.classes)),
    "cifar10": VisionSpec(functools.partial(_load_cifar, tvd.CIFAR10), 10, 3, 32,
                          (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                          ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    "cifar100": VisionSpec(functools.partial(_load_cifar, tvd.CIFAR100), 100, 3, 32,
                           (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), _CIFAR100),
}


@functools.lru_cache(maxsize=8)
def load_arrays(dataset: str, root: str, train: bool, download: bool, manifest: str | None) -> Arrays:
    """A whole split as tensors, read once per process."""
    return DATASETS[dataset].load(Path(root), train, download, manifest)


class VisionDataModule(L.LightningDataModule):
    """MNIST, Fashion-MNIST, CIFAR-10/100 as in-memory tensors with batched normalisation and augmentation.

    A validation split of ``val_size`` images is carved from the training set with ``split_seed``.
    :meth:`facts` states ``num_classes``/``in_chans``/``img_size``, which the model is built with. ``augment``: null, ``flip``,
    ``crop`` (pad 4, random crop: shifts without mirroring, for digits), ``crop_flip`` (crop, then flip), ``randaugment`` (RandAugment with ``randaugment_ops``
    ops at ``randaugment_magnitude`` out of 30 on the uint8 images, then crop and flip) or ``flip_translate``
    (airbench's: reflect-padded shifts of up to 2 pixels, each image mirrored on alternate epochs); then,
    after a ``+`` or alone, a batch mixing: ``mixup``, ``cutmix`` or ``mixup_cutmix`` (either per batch; alphas
    ``mixup_alpha``/``cutmix_alpha``). Mixing makes training labels soft (B, num_classes) rows; validation and
    test batches are never augmented or mixed, so their labels stay class indices.

    On an accelerator the uint8 splits are copied to the device once and batches are sliced there
    (``tasks.data.loader``); ``train_set``/``val_set``/``test_set`` stay the host tensors. ``on_device``:
    None (auto: on accelerators), True (also on CPUs: the same code path, no copy), False (host memory).
    """

    on_device: bool | None = None

    def __init__(
        self,
        *,
        dataset: str,
        root: str,
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        seed: int = 0,
        augment: str | None = None,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 1.0,
        normalize: bool = True,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec = self._spec(dataset)
        self.image_augment, mix = parse_augment(augment)
        if not (randaugment_ops >= 0 and 0 <= randaugment_magnitude <= 30):
            raise DataError(f"data.randaugment_ops={randaugment_ops} must be >= 0 and data.randaugment_magnitude="
                            f"{randaugment_magnitude} in [0, 30] (torchvision's 31 magnitude bins)")
        self.dataset, self.root = dataset, Path(root).expanduser()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.seed = val_size, split_seed, seed
        self.augment, self.normalize = augment, normalize
        self.randaugment_ops, self.randaugment_magnitude = randaugment_ops, randaugment_magnitude
        self.download, self.manifest = download, manifest
        self.meta = dict(meta or {})
        self.num_classes, self.in_chans, self.img_size = spec.num_classes, spec.in_chans, spec.img_size
        if mix and not (mixup_alpha > 0 and cutmix_alpha > 0):
            raise DataError(f"data.mixup_alpha={mixup_alpha} and data.cutmix_alpha={cutmix_alpha} must be > 0: "
                            "the mixing ratio is drawn from Beta(alpha, alpha) (1.0: uniform)")
        self.mixer = batch_mixer(mix, num_classes=spec.num_classes, mixup_alpha=mixup_alpha,
                                 cutmix_alpha=cutmix_alpha) if mix else None
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _spec(self, dataset: str) -> VisionSpec:
        if dataset not in DATASETS:
            raise DataError(f"unknown image dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        return DATASETS[dataset]

    def facts(self) -> dict[str, Any]:
        """What the model is built with: the dataset's classes, channels and image side."""
        return {"num_classes": self.num_classes, "in_chans": self.in_chans, "img_size": self.img_size}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries (zoo.preprocess turns image files into its input with it)."""
        mean, std = (self.spec.mean, self.spec.std) if self.normalize else ((0.0,) * self.in_chans, (1.0,) * self.in_chans)
        return {"kind": "image", "in_chans": self.in_chans, "img_size": self.img_size, "mean": list(mean),
                "std": list(std), "classes": list(self.spec.classes)}

    def _load(self, train: bool) -> Arrays:
        return load_arrays(self.dataset, str(self.root), train, self.download, self.manifest)

    def prepare_data(self) -> None:
        # Runs on one process only: downloads (if allowed) and fails early on missing/corrupt files.
        self._load(True)
        self._load(False)

    def setup(self, stage: str | None = None) -> None:
        x, y = self._load(True)
        if not 0 <= self.val_size < len(x):
            raise DataError(f"data.val_size={self.val_size} must be in [0, {len(x)})")
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        val, train = perm[: self.val_size], perm[self.val_size :]
        self.train_set = (x[train], y[train])
        self.val_set = (x[val], y[val])
        self.test_set = self._load(False)

    def train_dataloader(self) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        if len(self.train_set[0]) // world < self.batch_size:  # whole batches only: the epoch would be empty
            raise DataError(f"data.batch_size={self.batch_size} is larger than the {len(self.train_set[0]) // world} "
                            f"training images{' per process' if world > 1 else ''} of {self.dataset}: no batch would "
                            f"be trained. Set data.batch_size={max(1, len(self.train_set[0]) // world)} or less.")
        return TensorBatchLoader(*self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                                 seed=self.seed, rank=rank, world_size=world, position=self._position,
                                 device=self.batch_device())

    def _position(self) -> tuple[int, int] | None:
        return training_position(self.trainer)

    def batch_device(self) -> torch.device | None:
        return data_device(self.trainer, on_device=self.on_device)

    def val_dataloader(self) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        return TensorBatchLoader(*self.val_set, batch_size=self.eval_batch_size, rank=rank, world_size=world,
                                 device=self.batch_device())

    def test_dataloader(self) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        return TensorBatchLoader(*self.test_set, batch_size=self.eval_batch_size, rank=rank, world_size=world,
                                 device=self.batch_device())

    def transform(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float, normalised, augmented when ``train``; runs on the batch's device."""
        augment = self.image_augment
        if train and augment == "randaugment":  # its colour ops (posterize, solarize, ...) need uint8
            x = rand_augment(x, num_ops=self.randaugment_ops, magnitude=self.randaugment_magnitude)
        if train and augment == "flip_translate":  # airbench's: pad-2 translations, flips alternating by epoch
            x = alternating_flip_translate(x, epoch=self.trainer.current_epoch if self.trainer else 0, seed=self.seed)
        x = x.float().div_(255)
        if self.normalize:
            if x.device not in self._norm:
                shape = (1, -1, 1, 1)
                self._norm[x.device] = (torch.tensor(self.spec.mean, device=x.device).view(shape),
                                        torch.tensor(self.spec.std, device=x.device).view(shape))
            mean, std = self._norm[x.device]
            x = (x - mean) / std
        if train and augment and augment != "flip_translate":
            x = random_crop_flip(x, padding=0 if augment == "flip" else 4, flip=augment != "crop")
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        x = self.transform(x, train=training)
        if training and self.mixer is not None:  # after the per-image augmentation, on normalised floats
            x, y = self.mixer(x, y)  # y: (B,) int64 -> (B, num_classes) float, rows summing to 1
        return x, y
