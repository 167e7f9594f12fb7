"""dnn-zoo: the classic deep-learning family as plain PyTorch modules behind one registry.

``zoo`` imports neither Lightning nor Hydra: use the models in your own code with
``zoo.create_model(name, **kwargs)``.
"""

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

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "ZooError",
    "count_params",
    "create_model",
    "example_inputs",
    "list_models",
    "model_info",
    "register_model",
]
__version__ = "0.1.0"
