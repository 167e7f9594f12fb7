"""dnn-zoo: the classic deep-learning family as plain PyTorch modules behind one registry.

``zoo`` imports neither Lightning nor Hydra: use the models in your own code with
``zoo.create_model(name, **kwargs)``.
"""

from zoo import export  # zoo.export.to_onnx / to_torch_export
from zoo.checkpoint import CheckpointError, load_model, save_model
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

__all__ = [
    "CheckpointError",
    "ModelInfo",
    "UnknownModelError",
    "ZooError",
    "count_params",
    "create_model",
    "example_inputs",
    "export",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
    "save_model",
    "select",
]
__version__ = "0.1.0"
