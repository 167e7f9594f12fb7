"""``init_from=SOURCE``: start a run's model from trained weights (fine-tuning after pretraining).

SOURCE is another run's checkpoint, a ``zoo.save_pretrained`` folder (or Hub id), or ``pretrained:DATA``, the
weights the package ships for this model trained on DATA; ``reset_head=true`` starts the head anew even where
its shape fits (same number of classes, another task). The source is read once
(:func:`zoo.pretrained.read_weights`; checkpoints by the project's one safe loader). Before the
data states its facts, the tokenizer in the checkpoint's input contract (text runs state theirs: ``preprocessing()``, tasks/base.py) is written
into the run folder as ``tokenizer.json`` and handed to the data module (``data.tokenizer_file``), so the new
run reads text exactly as the pretraining did; then :func:`zoo.checkpoint.load_matching` copies every tensor
the two models share and leaves the head new. What was loaded and what was not is printed and saved as
``init_from.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from tasks.checkpoints import write_atomic
from zoo.checkpoint import InitReport, load_matching
from zoo.pretrained import read_weights
from zoo.registry import ZooError

log = logging.getLogger(__name__)


def read_init_checkpoint(path: str | Path, datamodule: Any, out: Path, *, model: str | None = None) -> dict[str, Any]:
    """The weights ``init_from`` names (``model``: the run's registry name, for ``pretrained:DATA``); their
    tokenizer (if any) becomes the data module's (before ``facts()``)."""
    ckpt = read_weights(path, model=model)
    record = ((ckpt.get("zoo") or {}).get("preprocessing") or {}).get("tokenizer") or {}
    tokenizer = record.get("json") if record.get("type") == "hf" else None  # a subword tokenizer's own JSON
    if isinstance(tokenizer, str):
        if not hasattr(datamodule, "tokenizer_file"):
            log.warning("init_from=%s carries a tokenizer, but %s reads no tokenizer file: its own is used",
                        path, type(datamodule).__name__)
        elif datamodule.tokenizer_file:
            print(f"[init_from] data.tokenizer_file={datamodule.tokenizer_file} is used, not the checkpoint's tokenizer")
        else:
            file = out / "tokenizer.json"
            write_atomic(file, lambda f: f.write(tokenizer.encode()))
            datamodule.tokenizer_file = str(file)
            print(f"[init_from] the checkpoint's tokenizer reads the data -> {file}")
    return ckpt


def init_model(model: nn.Module, ckpt: dict[str, Any], *, source: str, out: Path,
               reset_head: bool = False) -> InitReport:
    """Load the matching weights into ``model``, print what happened and write ``init_from.json``."""
    report = load_matching(model, ckpt, source=source, reset_head=reset_head)
    print(f"[init_from] {report.summary()}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "init_from.json", lambda f: f.write((json.dumps(report.to_dict(), indent=2) + "\n").encode()))
    return report


def freeze_parameters(model: nn.Module, prefixes: list[str] | tuple[str, ...]) -> int:
    """Keep the parameters whose names start with one of ``prefixes`` (e.g. ``embed`` or ``encoder.layers.0``)
    as they are (``requires_grad=False``: the optimizer never sees them); returns how many tensors were frozen.

    The ``freeze=[...]`` key, typically beside ``init_from``: pretrained token embeddings, for one, keep the
    similarities they learned for the words the fine-tuning data rarely shows. A prefix that names no
    parameter is an error listing the model's top-level parts.
    """
    frozen = 0
    for prefix in prefixes:
        hits = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not hits:
            parts = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
            raise ZooError(f"freeze=[{prefix}]: {type(model).__name__} has no parameters under '{prefix}'; its "
                           f"parts are {', '.join(parts)} (name a part, or a dotted path inside one)")
        for p in hits:
            p.requires_grad_(False)
        frozen += len(hits)
    if frozen:
        print(f"[freeze] {frozen} tensors kept fixed ({', '.join(prefixes)})", flush=True)
    return frozen
