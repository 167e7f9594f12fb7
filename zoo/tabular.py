"""Table rows to a model's input: impute, standardise and one-hot encode with statistics saved with the model.

One implementation for training (``tasks/data/tabular.py`` fits the column codes on the training rows and
encodes every split with :func:`encode`) and for prediction (``zoo predict MODEL rows.csv``, with the input
contract a trained tabular model carries), so the two cannot drift apart.

The contract (``model.zoo_preprocessing``, kind ``tabular``): ``columns`` (the feature columns, by name),
``codes`` (one :class:`ColumnCode` per column, as a dict), ``task`` (``classify``: ``classes``; ``regress``:
``target_mean``/``target_std`` of the standardised target and ``log_target``), and the ``target``'s name.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.registry import ZooError

__all__ = ["MISSING", "ColumnCode", "encode", "is_missing", "number", "read_rows", "read_table", "to_target_units"]

MISSING = frozenset({"", "NA", "NaN", "nan", "N/A", "NULL", "null", "?"})  # cells read as missing


def number(v: str) -> float | None:
    """The cell as a finite float, or None."""
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def is_missing(v: str) -> bool:
    return v.strip() in MISSING


@dataclass
class ColumnCode:
    """How one feature column becomes model inputs, with statistics fitted on training rows."""

    name: str
    categorical: bool
    fill: Any = None  # training median (numeric) or most frequent category
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)  # one-hot order (training categories, sorted)
    indicator: bool = False  # one 0/1 column "was missing" (the column had missing cells in training)

    @property
    def width(self) -> int:
        return (len(self.categories) if self.categorical else 1) + int(self.indicator)

    @property
    def names(self) -> list[str]:
        base = [f"{self.name}={c}" for c in self.categories] if self.categorical else [self.name]
        return base + ([f"{self.name}_missing"] if self.indicator else [])


def encode(codes: Sequence[ColumnCode], rows: Sequence[Sequence[str]], *,
           error: type[ZooError] = ZooError) -> torch.Tensor:
    """``(len(rows), sum of widths)`` float32 inputs: each row holds one cell per code, in the codes' order.

    Numeric cells: missing -> the training median, then ``(x - mean) / std``. Categorical cells: missing ->
    the most frequent training category, then one-hot (a category unseen in training: all zeros). A code with
    ``indicator`` adds a 0/1 "was missing" input.
    """
    width = sum(c.width for c in codes)
    out = torch.zeros(len(rows), width, dtype=torch.float64)
    col = 0
    for j, code in enumerate(codes):
        missing = [is_missing(r[j]) for r in rows]
        if code.categorical:
            index = {c: k for k, c in enumerate(code.categories)}
            for i, (r, m) in enumerate(zip(rows, missing, strict=True)):
                k = index.get(code.fill if m else r[j].strip())
                if k is not None:  # unseen in training: all zeros
                    out[i, col + k] = 1.0
            col += len(code.categories)
        else:
            values = [code.fill if m else number(r[j]) for r, m in zip(rows, missing, strict=True)]
            if None in values:
                bad = next(r[j] for r, v in zip(rows, values, strict=True) if v is None)
                raise error(f"column {code.name!r} holds text in some rows ({bad!r}) but was numeric in training; "
                            "correct the cell or leave it empty (NA) if missing")
            x = torch.tensor(values, dtype=torch.float64)
            out[:, col] = (x - code.mean) / code.std
            col += 1
        if code.indicator:
            out[:, col] = torch.tensor(missing, dtype=torch.float64)
            col += 1
    return out.float()


def read_table(path: str | Path, *, error: type[ZooError] = ZooError) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV file (standard library ``csv``); an unnamed first column is R's row names.

    Every problem is one ``error`` naming the file and what to do: missing, not UTF-8, no data rows, a row
    with another number of fields than the header.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{path}: no such file. Pass CSV files with a header row.") from None
    except UnicodeDecodeError as e:
        raise error(f"{path} is not UTF-8 text ({e}); save it as UTF-8 CSV") from None
    if len(rows) < 2:
        got = "it is empty" if not rows else "it has a header row but no data rows"
        raise error(f"{path}: {got}. A CSV with a header row and at least one data row is expected.")
    header = [h.strip() for h in rows[0]]
    if header[0] == "":
        header[0] = "rownames"  # R's write.csv (Rdatasets) leaves the row-name column unnamed
    bad = [i + 2 for i, r in enumerate(rows[1:]) if len(r) != len(header)]
    if bad:
        raise error(f"{path}: {len(bad)} row{'s do' if len(bad) > 1 else ' does'} not have the header's "
                    f"{len(header)} fields (first at line {bad[0]}); is it comma-separated with one header row?")
    return header, rows[1:]


def read_rows(path: str | Path, columns: Sequence[str]) -> list[list[str]]:
    """The cells of ``columns`` (by name, in that order) of every data row of a CSV file with a header row.

    Extra columns (the target, an id) are ignored; a missing one is an error naming it.
    """
    header, rows = read_table(path)
    absent = [c for c in columns if c not in header]
    if absent:
        raise ZooError(f"{path} lacks the column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} the "
                       f"model was trained on (it needs {', '.join(columns)}).")
    idx = [header.index(c) for c in columns]
    return [[r[j] for j in idx] for r in rows]


def to_target_units(standardised: torch.Tensor, contract: dict[str, Any]) -> torch.Tensor:
    """A regression model's standardised outputs in the target's units (``exp`` undone for ``log_target``)."""
    y = standardised.float() * float(contract["target_std"]) + float(contract["target_mean"])
    return y.exp() if contract.get("log_target") else y
