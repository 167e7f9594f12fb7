"""Where the training application keeps its Hydra configs: ``conf/`` beside ``tasks/`` in a checkout.

The training side (``tasks/``, ``conf/``, ``train.py``) runs from a source checkout, so the configs are
found relative to this package; ``zoo`` (the installed library) never reads them.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
