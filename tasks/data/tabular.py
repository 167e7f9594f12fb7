"""Tables of numeric and categorical columns (CSV) as in-memory tensors, for classification and regression.

Batch format: ``(x (B, in_features) float, y (B,))`` with ``y`` class ids (long) or standardised targets
(float). Every statistic of the preprocessing (medians, most frequent categories, means and standard
deviations, the one-hot vocabularies, the target's scale) is fitted on the training split only, so nothing
of the validation or test rows leaks into training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tasks.data.fetch import Remote, ensure_files
from tasks.data.integrity import DataError
from tasks.data.loader import TensorBatchLoader, data_device, rank_world, training_position
from zoo import tabular
from zoo.tabular import ColumnCode, encode, is_missing, number

TASKS = ("classify", "regress")
RDATASETS = "https://vincentarelbundock.github.io/Rdatasets/csv/modeldata"


@dataclass(frozen=True)
class TabularSource:
    """A named table in the data root: its file and, optionally, a documented rule for outliers."""

    file: Remote
    outliers: tuple[str, float] | None = None  # (column, maximum): rows above it are dropped when asked


# The local copies were written from R modeldata (via the rdatasets package) and are verified with the data
# root's sha256 manifest. Upstream, the Rdatasets project serves the same tables, formatted differently
# (quoted fields, an unnamed first column), so their bytes are not checked: md5 None.
DATASETS: dict[str, TabularSource] = {
    "credit": TabularSource(Remote("tabular/credit_data.csv", None, f"{RDATASETS}/credit_data.csv")),
    # De Cock (2011): "I would recommend removing any houses with more than 4000 square feet from the data set"
    # (three partial sales of huge houses at low prices, two very large true sales).
    "ames": TabularSource(Remote("tabular/ames.csv", None, f"{RDATASETS}/ames.csv"),
                          outliers=("Gr_Liv_Area", 4000.0)),
    "concrete": TabularSource(Remote("tabular/concrete.csv", None, f"{RDATASETS}/concrete.csv")),
}


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (:func:`zoo.tabular.read_table`); a problem is one DataError."""
    return tabular.read_table(path, error=DataError)


def numeric_columns(header: Sequence[str], rows: Sequence[Sequence[str]], *, categorical: Sequence[str] = (),
                    source: str = "the table") -> set[str]:
    """Columns whose every present cell is a number (the rest are categorical).

    A column of numbers with a few text cells ("12", "7", "n/a?") is far more often a typo or an unlisted
    missing-value marker than a category: read as categories, its every number would become a one-hot input.
    It is refused, naming a text cell, unless ``categorical`` lists it.
    """
    numeric = set()
    for j, name in enumerate(header):
        present = [r[j].strip() for r in rows if not is_missing(r[j])]
        text = [v for v in present if number(v) is None]
        if not text:
            numeric.add(name)
        elif len(text) * 2 < len(present) and name not in categorical:
            raise DataError(f"{source}: column {name!r} holds numbers, but {len(text)} of its {len(present)} cells "
                            f"{'is' if len(text) == 1 else 'are'} not a number ({text[0]!r}). Correct them, leave them "
                            "empty (or NA) if missing, or list the column in data.categorical to read all its values "
                            "as categories.")
    return numeric


class TabularPreprocessor:
    """Impute, standardise and one-hot encode feature columns with statistics of the training rows only.

    Numeric columns: missing cells get the training median, then ``(x - mean) / std`` (training mean and
    standard deviation after imputation). Categorical columns: missing cells get the most frequent training
    category, then one-hot over the training categories; a category never seen in training encodes as all
    zeros. Every column with missing cells in training also gets a 0/1 missing-indicator input.
    """

    def __init__(self, columns: Sequence[str], categorical: set[str]) -> None:
        self.columns, self.categorical = list(columns), set(categorical)
        self.codes: list[ColumnCode] = []

    def fit(self, rows: Sequence[Sequence[str]]) -> TabularPreprocessor:
        if not rows:
            raise DataError("the training split has no rows; lower data.val_frac / data.test_frac")
        self.codes = []
        for j, name in enumerate(self.columns):
            cells = [r[j] for r in rows]
            present = [v.strip() for v in cells if not is_missing(v)]
            code = ColumnCode(name, name in self.categorical, indicator=len(present) < len(cells))
            if code.categorical:
                counts = Counter(present)
                code.categories = sorted(counts)
                # ties broken by name, so the fill does not depend on row order
                code.fill = min(counts, key=lambda c: (-counts[c], c)) if counts else ""
            else:
                values = sorted(float(v) for v in present)
                code.fill = _median(values) if values else 0.0
                filled = torch.tensor(values + [code.fill] * (len(cells) - len(values)), dtype=torch.float64)
                code.mean = float(filled.mean())
                std = float(filled.std(unbiased=False))
                code.std = std if std > 0 else 1.0  # a constant column stays 0 rather than dividing by zero
            self.codes.append(code)
        return self

    @property
    def in_features(self) -> int:
        return sum(c.width for c in self.codes)

    @property
    def feature_names(self) -> list[str]:
        return [n for c in self.codes for n in c.names]

    def transform(self, rows: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(len(rows), in_features)`` float32 inputs (:func:`zoo.tabular.encode`)."""
        return encode(self.codes, rows, error=DataError)


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def split_indices(n: int, *, val_frac: float, test_frac: float, seed: int,
                  strata: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Seeded train/val/test row indices; with ``strata`` (class ids) each class is split in the same proportions."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DataError(f"data.val_frac={val_frac} and data.test_frac={test_frac}: each in [0, 1) and together "
                        "below 1 (the rest trains)")
    g = torch.Generator().manual_seed(seed)
    groups = [torch.arange(n)] if strata is None else [
        (torch.tensor(strata) == s).nonzero().flatten() for s in sorted(set(strata))]
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for idx in groups:
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test, n_val = round(len(idx) * test_frac), round(len(idx) * val_frac)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


class TabularDataModule(L.LightningDataModule):
    """A CSV table: one target column, numeric and categorical features, a seeded (stratified) split.

    ``dataset``: ``credit``, ``ames`` or ``concrete`` (files in the data root, checked against its sha256
    manifest) or ``csv`` (any file at ``path``, not checked). ``target``: the column to predict; ``task``:
    ``classify`` (classes: the target's distinct values, sorted) or ``regress``. ``categorical``: columns
    to treat as categories even if they look numeric (the rest is detected: a column is numeric when all its
    present cells are numbers); ``drop``: columns that are not features (e.g. ``rownames``, a row number).
    ``log_target``: regress on ``log(target)`` (metrics are then on the log scale). ``drop_outliers``: remove
    the rows the dataset's documentation says to remove (ames: ``Gr_Liv_Area`` > 4000, De Cock 2011) before
    splitting. Regression targets are standardised with training statistics (``target_mean``,
    ``target_std``: the task turns predictions back into target units).

    Rows with a missing target are dropped. The split: ``test_frac`` and ``val_frac`` of the rows (of each
    class, for classification) drawn with ``split_seed``; the rest trains.
    """

    on_device: bool | None = None

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "csv",
        path: str | None = None,
        target: str | None = None,
        task: str = "classify",
        categorical: Sequence[str] = (),
        drop: Sequence[str] = (),
        log_target: bool = False,
        drop_outliers: bool = False,
        val_frac: float = 0.15,
        test_frac: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        seed: int = 0,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dataset != "csv" and dataset not in DATASETS:
            raise DataError(f"unknown tabular dataset {dataset!r}; choose one of {', '.join(DATASETS)} or csv "
                            "(data=csv data.path=FILE.csv data.target=COLUMN)")
        if dataset == "csv" and not path:
            raise DataError("data=csv needs the file and the column to predict: data.path=/path/to/file.csv "
                            "data.target=COLUMN")
        if not target:
            raise DataError(f"{dataset}: data.target is not set; name the column to predict: data.target=COLUMN")
        if task not in TASKS:
            raise DataError(f"data.task={task!r}; choose classify or regress")
        if log_target and task != "regress":
            raise DataError("data.log_target=true needs data.task=regress (a log of class labels means nothing)")
        if drop_outliers and (dataset == "csv" or DATASETS[dataset].outliers is None):
            with_rule = [d for d, s in DATASETS.items() if s.outliers]
            raise DataError(f"data.drop_outliers=true: {dataset} has no documented outlier rule (only "
                            f"{', '.join(with_rule)} has); set it to false")
        self.dataset, self.root = dataset, Path(root).expanduser()
        self.path = Path(path).expanduser() if dataset == "csv" else self.root / DATASETS[dataset].file.rel
        self.target, self.task = target, task
        self.categorical, self.drop = list(categorical), list(drop)
        self.log_target, self.drop_outliers = log_target, drop_outliers
        self.val_frac, self.test_frac, self.split_seed = val_frac, test_frac, split_seed
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.download, self.manifest = download, manifest
        self.meta = dict(meta or {})
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.classes: list[str] | None = None
        self.target_mean, self.target_std = 0.0, 1.0

    def facts(self) -> dict[str, Any]:
        """Input width after encoding (reads and encodes the table), classes or one output, and the task."""
        self.setup("fit")
        outputs = len(self.classes) if self.task == "classify" else 1
        return {"task": self.task, "in_features": self.preprocessor.in_features, "num_classes": outputs,
                **({"out_features": 1} if self.task == "regress" else {})}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries: zoo.tabular encodes CSV rows into its input with it."""
        self.setup("fit")
        contract: dict[str, Any] = {"kind": "tabular", "columns": list(self.preprocessor.columns),
                                    "codes": [asdict(c) for c in self.preprocessor.codes], "task": self.task,
                                    "target": self.target}
        if self.task == "classify":
            contract["classes"] = list(self.classes)
        else:
            contract.update(target_mean=self.target_mean, target_std=self.target_std, log_target=self.log_target)
        return contract

    @property
    def num_classes(self) -> int:
        self.setup("fit")
        return len(self.classes) if self.classes is not None else 1

    def prepare_data(self) -> None:
        if self.dataset == "csv":
            if not self.path.is_file():
                raise DataError(f"data.path={self.path}: no such file. Point data.path at a CSV file with a header row.")
            return
        ensure_files(self.dataset, self.root, [DATASETS[self.dataset].file], download=self.download,
                     manifest=self.manifest)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.prepare_data()
        header, rows = read_table(self.path)
        for name in [self.target, *self.categorical, *self.drop]:
            if name not in header:
                what = "data.target" if name == self.target else "data.categorical/data.drop"
                raise DataError(f"{self.path.name}: {what} names column {name!r}, which is not in the file. "
                                f"Its columns: {', '.join(header)}")
        t = header.index(self.target)
        dropped_na = len(rows)
        rows = [r for r in rows if not is_missing(r[t])]
        self.dropped_missing_target = dropped_na - len(rows)
        if self.drop_outliers:
            col, limit = DATASETS[self.dataset].outliers
            j = header.index(col)
            rows = [r for r in rows if (number(r[j]) or 0.0) <= limit]
        features = [h for h in header if h != self.target and h not in self.drop]
        if not features:
            raise DataError(f"{self.path.name}: no feature columns left after the target and data.drop")
        feat_idx = [header.index(h) for h in features]
        x_rows = [[r[j] for j in feat_idx] for r in rows]
        numeric = numeric_columns(features, x_rows, categorical=self.categorical, source=self.path.name)
        categorical = {h for h in features if h not in numeric} | set(self.categorical)

        y_cells = [r[t].strip() for r in rows]
        if self.task == "classify":
            self.classes = sorted(set(y_cells))
            if len(self.classes) < 2:
                raise DataError(f"{self.path.name}: target {self.target!r} has {len(self.classes)} distinct value; "
                                "classification needs at least 2")
            index = {c: k for k, c in enumerate(self.classes)}
            y = torch.tensor([index[v] for v in y_cells], dtype=torch.long)
            strata = y.tolist()
        else:
            values = [number(v) for v in y_cells]
            bad = [v for v, x in zip(y_cells, values, strict=True) if x is None]
            if bad:
                raise DataError(f"{self.path.name}: target {self.target!r} has non-numeric values such as {bad[0]!r}; "
                                "regression needs numbers (or use data.task=classify)")
            y = torch.tensor(values, dtype=torch.float64)
            if self.log_target:
                if (y <= 0).any():
                    raise DataError(f"data.log_target=true but {self.target!r} has values <= 0; set it to false")
                y = y.log()
            strata = None

        idx = split_indices(len(rows), val_frac=self.val_frac, test_frac=self.test_frac, seed=self.split_seed,
                            strata=strata)
        train_rows = [x_rows[i] for i in idx["train"].tolist()]
        self.preprocessor = TabularPreprocessor(features, categorical).fit(train_rows)
        if self.task == "regress":
            train_y = y[idx["train"]]
            self.target_mean = float(train_y.mean())
            self.target_std = float(train_y.std(unbiased=False)) or 1.0
            y = ((y - self.target_mean) / self.target_std).float()
        self.feature_names = self.preprocessor.feature_names
        self.splits = {name: (self.preprocessor.transform([x_rows[i] for i in ix.tolist()]), y[ix])
                       for name, ix in idx.items()}
        self.split_rows = {name: ix for name, ix in idx.items()}

    def _loader(self, name: str, train: bool) -> TensorBatchLoader:
        self.setup()
        rank, world = rank_world(self.trainer)
        device = data_device(self.trainer, on_device=self.on_device)
        x, y = self.splits[name]
        if len(x) == 0:
            raise DataError(f"the {name} split is empty; raise data.{name}_frac")
        if train:
            return TensorBatchLoader(x, y, batch_size=min(self.batch_size, len(x)), shuffle=True,
                                     drop_last=True, seed=self.seed, rank=rank, world_size=world,
                                     position=lambda: training_position(self.trainer), device=device)
        return TensorBatchLoader(x, y, batch_size=self.eval_batch_size, rank=rank, world_size=world, device=device)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", False)
