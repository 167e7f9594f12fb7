"""A whole-batch loader over in-memory tensors.

Per-sample collation costs 1-2 ms a step on this machine (benchmarks/README.md); slicing a permutation of
tensors that already sit in memory costs microseconds. The loader is stateful, so Lightning saves
its position in checkpoints and a resumed run continues with the very batches it would have seen.

On an accelerator the tensors live on the device (:func:`data_device`, :func:`resident`): they are
copied there once, every batch is a gather on the device with a device copy of the epoch's permutation,
and Lightning's per-batch host-to-device transfer finds the batch already there (a no-op). The
permutation is still drawn on the host from the same seeded generator, so a device and a host loader
yield the same batches. Under DDP every process holds its own copy on its own device.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tasks.data.integrity import DataError

# (id of a host tensor, device) -> its copy on that device; an entry goes when its host tensor is freed
_COPIES: dict[tuple[int, torch.device], torch.Tensor] = {}


def resident(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """``t`` on ``device``, copied at most once per host tensor and device (``None``: ``t`` itself).

    A DataModule asks for its training set again for every loader it builds (fit, the data-dependent
    init, a later fit); the copy made the first time is returned each time, as long as the host tensor
    it was made from lives. A tensor already on ``device`` is returned as it is.
    """
    if device is None:
        return t
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" -> "cuda:N", as tensors there report it
        device = torch.device("cuda", torch.cuda.current_device())
    if t.device == device:
        return t
    key = (id(t), device)
    copy = _COPIES.get(key)
    if copy is None:
        copy = _COPIES[key] = t.to(device)
        weakref.finalize(t, _COPIES.pop, key, None)
    return copy


def data_device(trainer: Any, *, on_device: bool | None = None) -> torch.device | None:
    """Where a DataModule's in-memory tensors should live for ``trainer``: ``None`` keeps them in host memory.

    ``on_device=None`` (auto): on the trainer's root device when that is an accelerator (CUDA, MPS, XPU),
    in host memory on CPUs; ``True``: on the root device whatever it is (on a CPU this runs the device path
    with no copy at all, which is how the tests exercise it); ``False``: in host memory (Lightning copies
    each batch).
    """
    if trainer is None or on_device is False:
        return None
    strategy = getattr(trainer, "strategy", None)
    device = getattr(strategy, "root_device", None)
    if device is None:
        return None
    device = torch.device(device)
    return device if on_device or device.type != "cpu" else None


def rank_world(trainer: Any) -> tuple[int, int]:
    """``(rank, world size)`` of a Lightning trainer; ``(0, 1)`` without one."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def training_position(trainer: Any) -> tuple[int, int] | None:
    """``(epoch, batches done in it)`` from a Lightning trainer's (possibly restored) loop progress;
    ``None`` without a trainer (a loader used on its own), so the loader keeps its own count."""
    if trainer is None:
        return None
    epoch_loop = trainer.fit_loop.epoch_loop
    return trainer.current_epoch, epoch_loop.batch_progress.current.ready


class ResumableLoader:
    """An epoch-counting loader that knows how far into its epoch it is, so a resumed run continues there.

    ``position``: a callable giving ``(epoch, batches done in it)`` at the start of each pass, e.g. a
    trainer's restored loop progress (:func:`training_position`), or ``None`` to keep counting passes
    itself; the same with a ``position`` that returns ``None``.

    Subclasses give ``__len__`` (batches per epoch) and ``_epoch_batches``, which plans the epoch
    ``self.epoch`` and returns the function that builds its batch number ``b``.
    """

    def __init__(self, *, position: Callable[[], tuple[int, int] | None] | None = None) -> None:
        self.position = position
        self.epoch = 0
        self._start = 0  # batches of the current epoch to skip (set when resuming)
        self._yielded = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def _epoch_batches(self) -> Callable[[int], Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        where = self.position() if self.position is not None else None
        if where is not None:
            self.epoch, self._start = where
        batch = self._epoch_batches()
        start, self._start = self._start, 0
        for b in range(start, len(self)):
            self._yielded = b + 1
            yield batch(b)
        self.epoch += 1
        self._yielded = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._start = state["epoch"], state["batches"]


class TensorBatchLoader(ResumableLoader):
    """Yields tuples of batches sliced from ``tensors`` (all of equal first dimension).

    Shuffling uses its own generator seeded with ``seed + epoch``, so the order of every epoch is
    reproducible and independent of the global RNG. ``rank``/``world_size`` give each rank a strided shard:

    - shuffled (training): equal shards of the epoch's permutation, the last ``n % world_size`` samples left
      to later epochs, so every rank runs the same number of steps and none waits alone in a per-step
      collective (DDP's gradient all-reduce, the finite-loss and signal checks of tasks/callbacks.py);
    - unshuffled (evaluation): every sample, shards uneven by at most one, so metrics reduced across ranks
      at the epoch's end are those of the whole split, as one process would compute them. Evaluation has no
      per-step collective (metrics sync once, at the epoch's end), so uneven batch counts cannot hang; but
      every rank needs at least one sample, or it would never reach that sync.

    ``position``: see :class:`ResumableLoader`.

    ``lengths`` (optional, one per sample) turns on length bucketing for shuffled loaders: each chunk of
    ``bucket_batches`` batches of the epoch's permutation is sorted by length before it is cut into
    batches, and the batches are then shuffled, so sequences of similar length share a batch and
    trimming padding per batch saves most of its cost (translation batches: about 1.5x fewer tokens).

    ``device``: where batches are sliced. The tensors are moved there once (:func:`resident`), each epoch's
    permutation (drawn on the host, so every device sees the same batches) is copied there once, and each
    batch is a gather on the device. ``None``: the tensors stay where they are.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        position: Callable[[], tuple[int, int] | None] | None = None,
        lengths: torch.Tensor | None = None,
        bucket_batches: int = 50,
        device: torch.device | str | None = None,
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchLoader needs one or more tensors of equal length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(position=position)
        self.device = torch.device(device) if device is not None else None
        self.tensors = tuple(resident(t, self.device) for t in tensors)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        if lengths is not None and len(lengths) != len(tensors[0]):
            raise ValueError("TensorBatchLoader: lengths needs one value per sample")
        self.lengths, self.bucket_batches = lengths, bucket_batches
        n = len(tensors[0])
        if not shuffle and 0 < n < world_size:  # a rank without a batch never reaches the epoch-end sync
            raise DataError(f"{n} evaluation sample(s) cannot be shared among {world_size} processes: each needs "
                            "at least one. Evaluate on fewer devices (trainer.devices) or on a larger split.")

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n, world = len(self.tensors[0]), self.world_size
        if world == 1:
            return n
        return n // world if self.shuffle else len(range(self.rank, n, world))

    def __len__(self) -> int:
        n, bs = self.num_samples, self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def _indices(self) -> torch.Tensor:
        n = len(self.tensors[0])
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:  # strided shares: of equal size when shuffled, of every sample when not
            stop = self.num_samples * self.world_size if self.shuffle else None
            idx = idx[self.rank : stop : self.world_size]
        if self.shuffle and self.lengths is not None:
            idx = self._bucket(idx, g)
        return idx

    def _bucket(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Sort each chunk of ``bucket_batches`` batches by length, then shuffle whole batches."""
        bs, chunk = self.batch_size, self.batch_size * self.bucket_batches
        parts = [c[self.lengths[c].argsort(stable=True)] for c in idx.split(chunk)]
        idx = torch.cat(parts)
        n_full = len(idx) // bs
        order = torch.randperm(n_full, generator=g)
        head = idx[: n_full * bs].view(n_full, bs)[order].flatten()  # (batches, B) rows shuffled
        return torch.cat([head, idx[n_full * bs :]])

    def _epoch_batches(self) -> Callable[[int], tuple[torch.Tensor, ...]]:
        idx, bs = self._indices(), self.batch_size
        idx = idx.to(self.tensors[0].device)  # one small copy an epoch; batches are then gathers where the data is
        return lambda b: tuple(t[idx[b * bs : (b + 1) * bs]] for t in self.tensors)
