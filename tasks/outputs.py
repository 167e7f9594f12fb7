"""Text artefacts a task leaves next to metrics.json (generated samples, translations, neighbours)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning as L


def write_artifact(trainer: L.Trainer | None, filename: str, title: str, text: str, *, echo: bool = True) -> None:
    """Append ``text`` under ``title`` to ``<output dir>/<filename>`` and print it when ``echo`` (rank 0 only)."""
    if trainer is None or not trainer.is_global_zero or trainer.sanity_checking:
        return
    block = f"=== {title} ===\n{text.rstrip()}\n"
    if echo:
        print(block, flush=True)
    out = Path(trainer.default_root_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / filename, "a", encoding="utf-8") as f:
        f.write(block + "\n")
