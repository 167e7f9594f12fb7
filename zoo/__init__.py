"""dnn-zoo: the classic deep-learning family as plain PyTorch modules behind one registry.

``zoo`` imports neither Lightning nor Hydra: use the models in your own code with
``zoo.create_model(name, **kwargs)``.

``import zoo`` does not import torch either: the registry and the decision tree are plain Python; torch,
timm and the model families come with the first call that needs a model (``create_model``, ``list_models``,
``select``, ...), and ``load_model``, ``save_model``, ``save_pretrained``, ``from_pretrained``, ``CheckpointError`` and the submodules (``zoo.export``,
``zoo.report``, ...) on first access (PEP 562). ``benchmarks/startup.py`` measures it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zoo.registry import (
    ModelInfo,
    UnknownModelError,
    ZooError,
    count_params,
    create_model,
    example_inputs,
    list_models,
    model_info,
    register_model,
)
from zoo.select import select  # the function; the tree itself: from zoo.select import TREE

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from zoo import export
    from zoo.checkpoint import CheckpointError, load_model, save_model
    from zoo.pretrained import from_pretrained, save_pretrained

__all__ = [
    "CheckpointError",
    "ModelInfo",
    "UnknownModelError",
    "ZooError",
    "count_params",
    "create_model",
    "example_inputs",
    "export",
    "from_pretrained",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
    "save_model",
    "save_pretrained",
    "select",
]
__version__ = "0.1.0"

# name -> the module that defines it; imported on first access (each of these imports torch)
_LAZY_NAMES = {"CheckpointError": "zoo.checkpoint", "load_model": "zoo.checkpoint", "save_model": "zoo.checkpoint",
               "save_pretrained": "zoo.pretrained", "from_pretrained": "zoo.pretrained"}
_SUBMODULES = frozenset({"checkpoint", "cli", "decoding", "export", "external", "io", "layers", "models", "pictures", "plots",
                         "report", "vocab", "pretrained", "preprocess", "predict"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"zoo.{name}")
    else:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
