"""Multivariate time series as in-memory tensors: sliding (input, horizon) windows over a standardised series.

Batch format: ``(x (B, seq_len, in_features), y (B, horizon, out_features))``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tasks.data.fetch import Remote, ensure_files
from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader, data_device, rank_world, resident, training_position

ETTH1 = Remote("ETT/ETTh1.csv", "8381763947c85f4be6ac456c508460d6",
               "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv")
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
HOURS_PER_MONTH = 30 * 24
# Informer's split of ETTh1 (Zhou et al. 2021): 12 / 4 / 4 months of hourly rows
ETTH1_BORDERS = (12 * HOURS_PER_MONTH, 16 * HOURS_PER_MONTH, 20 * HOURS_PER_MONTH)  # 8640, 11520, 14400


def read_ett(path: Path) -> torch.Tensor:
    """The 7 numeric columns of an ETT csv as a (rows, 7) float tensor (the date column is dropped)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["date", *ETT_COLUMNS]:
        raise DataError(f"{path}: header {rows[0]}, expected {['date', *ETT_COLUMNS]}")
    return torch.tensor([[float(v) for v in r[1:]] for r in rows[1:]], dtype=torch.float64).float()


def split_bounds(seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges of each split. Val/test start ``seq_len`` rows early, so their first target follows the
    split border directly and every target row belongs to its own split."""
    a, b, c = ETTH1_BORDERS
    return {"train": (0, a), "val": (a - seq_len, b), "test": (b - seq_len, c)}


class ForecastingDataModule(L.LightningDataModule):
    """ETTh1 with the standard 12/4/4-month split, standardised with the train rows' mean and std.

    ``features``: ``M`` all 7 in -> all 7 out (multivariate, default), ``S`` oil temperature only,
    ``MS`` all 7 in -> oil temperature out. Metrics are computed on the standardised values, as in the
    literature.

    On an accelerator the standardised series is copied to the device once and the windows are views of
    that copy, sliced into batches there (``tasks.data.loader``). ``on_device``: None (auto: on
    accelerators), True (also on CPUs: the same code path, no copy), False (host memory).
    """

    on_device: bool | None = None

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "etth1",
        seq_len: int = 96,
        horizon: int = 96,
        features: str = "M",
        batch_size: int = 32,
        eval_batch_size: int = 512,
        seed: int = 0,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dataset != "etth1":
            raise DataError(f"unknown forecasting dataset {dataset!r}; choose 'etth1'")
        if features not in ("M", "S", "MS"):
            raise DataError(f"data.features={features!r}; choose 'M' (multivariate), 'S' (OT only) or 'MS'")
        self.dataset, self.root = dataset, Path(root).expanduser()
        self.seq_len, self.horizon, self.features = seq_len, horizon, features
        self.in_features = 1 if features == "S" else len(ETT_COLUMNS)
        self.out_features = len(ETT_COLUMNS) if features == "M" else 1
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.download, self.manifest = download, manifest
        self.meta = dict(meta or {})
        self.series: torch.Tensor | None = None

    def facts(self) -> dict[str, Any]:
        """Input and output features per step (from ``features``), the input window and the horizon."""
        return {"in_features": self.in_features, "out_features": self.out_features, "seq_len": self.seq_len,
                "horizon": self.horizon, "max_len": self.seq_len}

    def prepare_data(self) -> None:
        ensure_files(self.dataset, self.root, [ETTH1], download=self.download, manifest=self.manifest)

    def setup(self, stage: str | None = None) -> None:
        if self.series is not None:
            return
        self.prepare_data()
        raw = read_ett(self.root / ETTH1.rel)
        if self.features == "S":
            raw = raw[:, -1:]
        bounds = split_bounds(self.seq_len)
        if len(raw) < bounds["test"][1]:
            raise DataError(f"{self.root / ETTH1.rel} has {len(raw)} rows; the split needs {bounds['test'][1]}")
        train = raw[: bounds["train"][1]]
        self.mean, self.std = train.mean(0), train.std(0, unbiased=False)  # StandardScaler on train rows only
        self.series = (raw - self.mean) / self.std  # (rows, C)
        window = self.seq_len + self.horizon
        self.bounds = bounds
        for name, (lo, hi) in bounds.items():
            if hi - lo < window:
                raise DataError(f"{name} split has {hi - lo} rows, fewer than seq_len + horizon = {window}")
        self.windows = {name: self._windows(name, self.series) for name in bounds}

    def _windows(self, name: str, series: torch.Tensor) -> tuple[torch.Tensor]:
        lo, hi = self.bounds[name]
        # a view, no copy: (N, C, window) with N = rows - window + 1
        return (series[lo:hi].unfold(0, self.seq_len + self.horizon, 1),)

    def _loader(self, name: str, train: bool) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        device = data_device(self.trainer, on_device=self.on_device)
        # On a device: views of the series copied there once (copying the overlapping windows would
        # materialise each row seq_len + horizon times).
        windows = self.windows[name] if device is None else self._windows(name, resident(self.series, device))
        if train:
            return TensorBatchLoader(*windows, batch_size=self.batch_size, shuffle=True,
                                     drop_last=True, seed=self.seed, rank=rank, world_size=world,
                                     position=lambda: training_position(self.trainer), device=device)
        return TensorBatchLoader(*windows, batch_size=self.eval_batch_size, rank=rank, world_size=world,
                                 device=device)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        (w,) = batch
        w = w.transpose(1, 2)  # (B, C, L) -> (B, L, C)
        x, y = w[:, : self.seq_len], w[:, self.seq_len :]
        if self.features == "MS":
            y = y[..., -1:]  # oil temperature
        return x.contiguous(), y.contiguous()
